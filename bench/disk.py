"""What the deployer's durable writes cost on this disk, measured outside Kafka.

Per auto-approved submission the deployer commits its state three times (checks.passed; the
release with its lifecycle and number; deployed; SQLite WAL with synchronous=FULL, so one fsync
each), installs the artifact (copy + fsync, manifest + fsync, rename + directory fsync) and points
production and traffic at it (two files + fsync each, one directory fsync). This replays those
writes, with the deployer's own modules, and times them.
"""

from __future__ import annotations

import statistics
import time
import uuid
from pathlib import Path

from bench.load import Artifact, submissions
from services.deployer import lifecycle
from services.deployer.rollout import Plan
from services.deployer.state import StateStore
from services.deployer.targets import _store_files as target
from shared.events import CheckResult, ChecksPassed, PolicyRef, ReviewDecided
from shared.workflow.schema import DeployInputs

# Built from the event contract, not by the validator and policy: only the deployer is measured.
POLICY = PolicyRef(name="bench", rule="auto_approve", digest="0" * 64)
PLAN = Plan(inputs=DeployInputs(), workflow="bench")


def deployer_writes(folder: Path, artifact: Artifact, count: int = 200) -> dict:
    """Median and p90 milliseconds of the three state saves and the install, per deployment."""
    store = StateStore(folder / "state.db")
    saves, installs = [], []
    try:
        for event in submissions("disk", count, 4, artifact):
            passed = ChecksPassed.caused_by(event, submission=event.submission,
                                            results=(CheckResult(name="integrity", passed=True),))
            decided = ReviewDecided.caused_by(
                passed, candidate=event.submission.candidate, outcome="approved", mode="automatic",
                decided_by="policy:bench/auto_approve", reason="bench", policy=POLICY,
                checks_event_id=passed.event_id)  # an approval cites the checks it follows
            waiting, _ = lifecycle.advance(lifecycle.Lifecycle(submission_id=event.submission_id), passed, PLAN)
            deploying, [action] = lifecycle.advance(waiting, decided, PLAN)
            # A Fail says why (the lifecycle's rules moved on: a broken chain, say); shown by bench.run.
            assert isinstance(action, lifecycle.Deploy), f"an auto-approved submission deploys, got {action!r}"
            t0 = time.perf_counter()
            store.save(waiting)
            store.save(deploying)
            t1 = time.perf_counter()
            target.install(folder / "store", action.candidate, artifact.path, {"id": str(uuid.uuid4())})
            target.set_serving(folder / "store", action.candidate.model, action.candidate.version,
                               {action.candidate.version: 100}, "full")
            t2 = time.perf_counter()
            store.save(lifecycle.deployed(deploying, "x"))
            t3 = time.perf_counter()
            saves.append((t1 - t0 + t3 - t2) * 1e3)
            installs.append((t2 - t1) * 1e3)
    finally:
        store.close()
    return {"count": count, "state_saves_ms": _summary(saves), "install_ms": _summary(installs),
            "total_median_ms": round(statistics.median(s + i for s, i in zip(saves, installs, strict=True)), 2)}


def _summary(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {"median": round(statistics.median(values), 2), "p90": round(values[int(len(values) * 0.9)], 2)}
