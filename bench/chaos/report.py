"""The figures table, the evidence behind every non-zero figure, and the JSON of a chaos run."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict

from bench.chaos.drive import Run
from bench.chaos.figures import MUST_BE_ZERO
from bench.chaos.scenario import Scenario

ROWS = (
    ("lost", "lost"),
    ("stuck", "stuck"),
    ("wrong outcome", "wrong_outcome"),
    ("duplicate deployments", "duplicate_deployments"),
    ("duplicate events (at-least-once)", "duplicate_events"),
    ("unapproved deployments", "unapproved_deployments"),
    ("backwards moves", "backwards_moves"),
    ("store disagreements", "store_disagreements"),
    ("dead letters", "dead_letters"),
    ("undecodable records", "undecodable"),
)
EVIDENCE_LINES = 12


def table(runs: list[Run]) -> str:
    head = f"{'figure':<34}" + "".join(f"{r.label:>14}" for r in runs)
    lines = [head, "-" * len(head)]

    def row(name: str, values: list[object]) -> None:
        lines.append(f"{name:<34}" + "".join(f"{v!s:>14}" for v in values))

    row("submissions", [r.figures.submissions for r in runs])
    for outcome in ("deployed", "superseded", "rejected", "failed"):
        row(f"  ended {outcome}", [r.figures.outcomes.get(outcome, 0) for r in runs])
    for name, attr in ROWS:
        row(name, [r.figures.count(attr) for r in runs])
    row("drain time (s)", [r.drain_seconds if r.drained else f">{r.drain_seconds}" for r in runs])
    row("first submission to last end (s)", [r.scenario_seconds for r in runs])
    row("service kills", [sum(f["what"] == "kill" for f in r.faults) for r in runs])
    row("broker kills", [sum(f["what"] == "broker kill" for f in r.faults) for r in runs])
    row("services that died on their own", [sum(f["what"] == "died" for f in r.faults) for r in runs])
    row("votes refused, cast again", [r.revotes for r in runs])
    row("driver problems", [len(r.problems) for r in runs])
    return "\n".join(lines)


def evidence(run: Run) -> str:
    """Every finding behind a non-zero figure (the first few of each), the driver's problems."""
    out = []
    for name, attr in ROWS:
        found = getattr(run.figures, attr)
        if found:
            out.append(f"[{run.label}] {name}: {len(found)}")
            out += [f"    {line}" for line in found[:EVIDENCE_LINES]]
            if len(found) > EVIDENCE_LINES:
                out.append(f"    ... and {len(found) - EVIDENCE_LINES} more (all in the JSON)")
    if run.problems:
        out.append(f"[{run.label}] driver problems: {len(run.problems)}")
        out += [f"    {line}" for line in run.problems[:EVIDENCE_LINES]]
    faults = Counter(f"{f['what']} {f['target']}" for f in run.faults)
    if faults:
        out.append(f"[{run.label}] faults: " + ", ".join(f"{k} x{n}" for k, n in sorted(faults.items())))
    return "\n".join(out)


def failures(runs: list[Run]) -> list[str]:
    """The figures that must be zero and are not, per run."""
    return [f"{r.label}: {attr} = {r.figures.count(attr)}" for r in runs for attr in MUST_BE_ZERO
            if r.figures.count(attr)]


def as_json(scenario: Scenario, runs: list[Run], **context: object) -> dict:
    return {
        **context,
        "seed": scenario.seed,
        "broker_kill_after": scenario.broker_kill_after,
        "plan": [asdict(p) for p in scenario.submissions],
        "runs": {r.label: {"figures": r.figures.as_dict(), "drained": r.drained,
                           "drain_seconds": r.drain_seconds, "scenario_seconds": r.scenario_seconds,
                           "faults": r.faults, "problems": r.problems, "submissions": r.outcomes}
                 for r in runs},
        "must_be_zero": {attr: {r.label: r.figures.count(attr) for r in runs} for attr in MUST_BE_ZERO},
    }
