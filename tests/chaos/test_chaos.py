"""Under faults, on the real broker (its own, from the jars, since it is killed): nothing is lost or
stuck, nothing deploys twice, nothing deploys unapproved, production never moves backwards.

A small fixed-seed run of bench.chaos (`make chaos` runs a longer one beside a fault-free
baseline): auto-approved, human-approved, human-rejected and checks-failed submissions over a few
models, with the targeted faults (the policy and the deployer killed around a rejection, and the
rejected bytes resubmitted under other model names while both are down; the broker SIGKILLed
once; approvals of older versions arriving after a newer one was deployed) and random SIGKILLs of
the four services throughout."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import scenario as plan
from bench.chaos.drive import Chaos, run
from bench.chaos.figures import MUST_BE_ZERO
from bench.chaos.report import evidence, table

pytestmark = pytest.mark.kafka

SEED = 7
SUBMISSIONS = 24


def test_faults_lose_nothing_duplicate_nothing_and_never_move_production_backwards(tmp_path: Path) -> None:
    scenario = plan.build(SEED, SUBMISSIONS, models=3)
    result = run(tmp_path, scenario, Chaos(), drain_timeout=120, label="faults")
    report = f"{table([result])}\n{evidence(result)}\n(service logs in {tmp_path / 'logs'})"
    print(report)

    # The faults the test is about did happen.
    faults = [(f["what"], f["target"], f["note"]) for f in result.faults]
    assert {("kill", "policy", "held"), ("kill", "deployer", "held")} <= set(faults), report  # the probe's
    assert {"broker kill", "broker up"} <= {what for what, _, _ in faults}, report
    assert sum(what == "kill" and not note for what, _, note in faults) >= 3, report  # random ones besides

    assert result.figures.undecodable == [], report  # every record seen: no figure is zero by blindness
    figures = {name: result.figures.count(name) for name in MUST_BE_ZERO}
    assert figures == dict.fromkeys(MUST_BE_ZERO, 0), report

    # The targeted submissions ended as they must: every copy of the rejected bytes rejected, every
    # approval that arrived after a newer version was deployed superseded.
    ends = {s["n"]: s["end"] for s in result.outcomes.values()}
    assert [ends[c.n] for c in scenario.probe_copies] == ["rejected"] * len(scenario.probe_copies), report
    late = [p.n for p in scenario.submissions if p.vote_after is not None]
    assert [ends[n] for n in late] == ["superseded"] * len(late), report
