"""The validator's checks on the real broker, under a workflow that asks for all of them."""

from __future__ import annotations

import asyncio
import os
import pickle
import uuid
from pathlib import Path

import pytest

from shared import topics
from shared.events import Candidate, ModelSubmitted, Submission
from signoff import client
from tests.e2e.conftest import Env
from tests.eventlog import EventLog

pytestmark = pytest.mark.kafka

FAIR = {"a": {"selection_rate": 0.30, "tpr": 0.80, "fpr": 0.10},
        "b": {"selection_rate": 0.28, "tpr": 0.78, "fpr": 0.12}}


class Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def strict_submission(e2e: Env, model: str, version: str, content: bytes | None = None,
                      accuracy: float = 0.93, group_metrics: dict = FAIR,
                      sha256: str | None = None) -> ModelSubmitted:
    path, digest = e2e.artifact(f"{model}-{version}.bin", content)
    card, _ = e2e.artifact(f"{model}-{version}.md", b"# Model card\n\nIntended use: tests.\n")
    return ModelSubmitted(submission_id=uuid.uuid4(), submission=Submission(
        candidate=Candidate(model=model, version=version, artifact_uri=path.as_uri(),
                            artifact_sha256=sha256 or digest, data_version="d1", code_commit="abcdef1"),
        metrics={"accuracy": accuracy}, group_metrics=group_metrics, submitter="carol",
        training_run_id="run-1", model_card_uri=card.as_uri()))


async def run(e2e: Env, events: EventLog, event: ModelSubmitted) -> dict:
    await client.publish(e2e.pipeline, [event])
    await events.wait_for(lambda log: log.about(event.submission_id, topics.CHECKS_PASSED)
                          or log.about(event.submission_id, topics.CHECKS_FAILED), what="checks")
    [checked] = [s.event for s in events.about(event.submission_id) if s.topic.startswith("checks.")]
    return {r.name: r for r in checked.results}


async def test_a_clean_model_passes_every_check_and_is_deployed(e2e: Env, events: EventLog, unique: str) -> None:
    benign = pickle.dumps({"weights": [0.1, 0.2]})  # only builtins: no global imported at all
    event = strict_submission(e2e, f"strict-clean-{unique}", "1", benign)
    results = await run(e2e, events, event)

    assert all(r.passed for r in results.values()), results
    assert set(results) == {"integrity", "security", "lineage", "metric:accuracy", "fairness:parity_ratio",
                            "fairness:equalized_odds_difference", "regression", "model_card"}
    end = await events.wait_terminal(event.submission_id)
    assert end.topic == topics.DEPLOYMENT_SUCCEEDED


async def test_a_pickle_that_runs_a_command_is_blocked_and_never_run(
        e2e: Env, events: EventLog, unique: str) -> None:
    marker = e2e.workdir / f"pwned-{unique}"
    event = strict_submission(e2e, f"strict-evil-{unique}", "1", pickle.dumps(Exploit(marker)))
    results = await run(e2e, events, event)

    assert not results["security"].passed and "system" in results["security"].message
    assert results["integrity"].passed  # the bytes are what was declared: only the content is bad
    assert not marker.exists()
    end = await events.wait_terminal(event.submission_id)
    assert end.event.outcome == "rejected"


async def test_failures_carry_the_measured_figure(e2e: Env, events: EventLog, unique: str) -> None:
    mismatch = strict_submission(e2e, f"strict-digest-{unique}", "1", sha256="f" * 64)
    unfair = strict_submission(e2e, f"strict-unfair-{unique}", "1", group_metrics={
        "a": {"selection_rate": 0.40, "tpr": 0.8, "fpr": 0.1}, "b": {"selection_rate": 0.20, "tpr": 0.8, "fpr": 0.1}})

    integrity = (await run(e2e, events, mismatch))["integrity"]
    parity = (await run(e2e, events, unfair))["fairness:parity_ratio"]

    assert not integrity.passed and integrity.threshold == "f" * 64 and integrity.measured != "f" * 64
    assert not parity.passed and parity.measured == 0.5 and parity.threshold == 0.8


async def test_a_regression_against_production_fails_with_the_figures(
        e2e: Env, events: EventLog, unique: str) -> None:
    model = f"strict-regress-{unique}"
    first = strict_submission(e2e, model, "1", pickle.dumps([1]), accuracy=0.95)
    await client.publish(e2e.pipeline, [first])
    deployed = await events.wait_terminal(first.submission_id)
    assert deployed.topic == topics.DEPLOYMENT_SUCCEEDED and deployed.event is not None
    # The validator's production view follows deployment.succeeded on its own consumer: known once applied.
    await applied_by_validator(e2e, deployed.event.event_id)

    worse = strict_submission(e2e, model, "2", pickle.dumps([2]), accuracy=0.92)
    results = await run(e2e, events, worse)

    regression = results["regression:accuracy"]
    assert not regression.passed and regression.measured == 0.92 and regression.threshold == 0.94
    assert "worse by 0.03, tolerance 0.01" in regression.message


async def deploy(e2e: Env, events: EventLog, model: str, version: str, accuracy: float) -> ModelSubmitted:
    event = strict_submission(e2e, model, version, pickle.dumps([version]), accuracy=accuracy)
    await client.publish(e2e.pipeline, [event])
    assert (await events.wait_terminal(event.submission_id)).topic == topics.DEPLOYMENT_SUCCEEDED
    return event


async def applied_by_validator(e2e: Env, event_id: uuid.UUID, timeout: float = 30.0) -> None:
    """Wait until the validator's follower has applied the event and it changed production: no API
    says so, but the follower logs `state_changed` with the event's id (polling the log file, bounded
    by a deadline, as signoff.devstack waits for a service to be ready)."""
    path, needle = e2e.stack.log_path("validator"), f'"event_id": "{event_id}"'
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if any('"state_changed"' in line and needle in line
               for line in path.read_text(errors="replace").splitlines()):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the validator did not apply {event_id} within {timeout}s")


async def test_after_a_rollback_the_regression_check_compares_with_the_release_rolled_back_to(
        e2e: Env, events: EventLog, unique: str) -> None:
    model = f"strict-rollback-{unique}"
    await deploy(e2e, events, model, "1", accuracy=0.95)
    await deploy(e2e, events, model, "2", accuracy=0.97)

    op = e2e.cli("rollback", model, "--to", "1", "--reason", "2 misbehaves").stdout.strip()
    [rolled] = await events.wait_for(lambda log: log.about(op, topics.DEPLOYMENT_ROLLED_BACK),
                                     what="deployment.rolled_back")
    assert (rolled.event.from_version, rolled.event.to_version) == ("2", "1")
    await applied_by_validator(e2e, rolled.event.event_id)  # the live follower, not a restart

    # 0.955 is within 0.01 of 1 (0.95) but not of 2 (0.97 - 0.01 = 0.96).
    results = await run(e2e, events, strict_submission(e2e, model, "3", pickle.dumps([3]), accuracy=0.955))

    regression = results["regression:accuracy"]
    assert regression.passed and regression.measured == 0.955 and regression.threshold == 0.94
    assert "vs production 1 0.95" in regression.message


async def test_a_restarted_validator_rebuilds_production_from_a_revocation(
        e2e: Env, events: EventLog, unique: str) -> None:
    """Revoking the live release restores the previous one (deployment.rolled_back, then
    deployment.revoked); a validator started afterwards rebuilds that from the three topics."""
    model = f"strict-revoke-{unique}"
    await deploy(e2e, events, model, "1", accuracy=0.95)
    live = await deploy(e2e, events, model, "2", accuracy=0.97)

    revoked = e2e.cli("revoke", str(live.submission_id), "--reason", "trained on PII", "--wait", "--timeout", "60",
                      signer="security")
    assert "=> revoked" in revoked.stdout
    # The events are on their topics; a validator starting now reads them all before it is ready
    # (the replay runs in on_startup, before FastStream logs that it started): no race to wait out.
    e2e.stack.stop("validator")
    e2e.stack.start("validator")

    results = await run(e2e, events, strict_submission(e2e, model, "3", pickle.dumps([3]), accuracy=0.955))

    regression = results["regression:accuracy"]
    assert regression.passed and regression.threshold == 0.94
    assert "vs production 1 0.95" in regression.message
