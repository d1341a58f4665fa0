"""The validator's checks: each result carries what was measured and against what."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from services.validator import checks
from shared.events import CheckResult, ChecksFailed, ChecksPassed, Production
from shared.production import Unknown
from tests.unit import factories as f


def test_integrity_match():
    r = checks.integrity(f.SHA, f.SHA)
    assert (r.name, r.passed, r.measured, r.threshold) == ("integrity", True, f.SHA, f.SHA)


def test_integrity_mismatch_names_both_digests():
    r = checks.integrity(f.SHA, f.OTHER_SHA)
    assert not r.passed and r.blocking
    assert r.measured == f.OTHER_SHA and r.threshold == f.SHA
    assert f.OTHER_SHA in r.message and f.SHA in r.message


def test_integrity_error_fails_with_the_reason():
    r = checks.integrity(f.SHA, None, "artifact_uri 'x' is outside the allowed roots")
    assert not r.passed and r.measured is None
    assert r.message == "artifact_uri 'x' is outside the allowed roots"


def test_lineage_complete():
    r = checks.lineage(f.submission(), ("data_version", "code_commit", "training_run_id"))
    assert r.passed
    assert r.measured == "data_version, code_commit, training_run_id"


def test_lineage_missing_training_run():
    r = checks.lineage(f.submission(training_run_id=None), ("data_version", "training_run_id"))
    assert not r.passed
    assert r.message == "missing lineage: training_run_id"
    assert r.measured == "data_version"


def test_lineage_with_nothing_required_passes():
    assert checks.lineage(f.submission(training_run_id=None), ()).passed


@pytest.mark.parametrize(("value", "passed"), [(0.79, False), (0.8, True), (0.95, True)])
def test_threshold_minimum(value, passed):
    [r] = checks.thresholds({"accuracy": value}, {"accuracy": 0.8}, {})
    assert (r.name, r.passed, r.measured, r.threshold) == ("metric:accuracy", passed, value, 0.8)
    assert ">= 0.8" in r.message


@pytest.mark.parametrize(("value", "passed"), [(49.0, True), (50.0, True), (50.5, False)])
def test_threshold_maximum(value, passed):
    [r] = checks.thresholds({"latency_ms": value}, {}, {"latency_ms": 50})
    assert (r.name, r.passed, r.measured) == ("metric:latency_ms", passed, value)
    assert "<= 50" in r.message


def test_missing_metric_fails_by_name():
    rs = checks.thresholds({"auc": 0.9}, {"accuracy": 0.8}, {"latency_ms": 50})
    assert [(r.name, r.passed) for r in rs] == [("metric:accuracy", False), ("metric:latency_ms", False)]
    assert "'accuracy' is missing" in rs[0].message
    assert all(r.measured is None for r in rs)


def test_no_bounds_no_results():
    assert checks.thresholds({"accuracy": 0.1}, {}, {}) == []


def test_verdict_passed_carries_every_result():
    cause = f.submitted()
    results = [CheckResult(name="a", passed=True), CheckResult(name="b", passed=False, blocking=False)]
    out = checks.verdict(cause, results, f.POLICY)
    assert type(out) is ChecksPassed
    assert out.results == tuple(results)
    assert out.workflow == f.POLICY  # the workflow whose checks step ran, for the audit trail
    assert out.submission == cause.submission and out.causation_id == cause.event_id


def test_verdict_failed_on_any_blocking_failure_carries_every_result():
    cause = f.submitted()
    results = [CheckResult(name="a", passed=True), CheckResult(name="b", passed=False)]
    out = checks.verdict(cause, results, None)
    assert type(out) is ChecksFailed
    assert out.results == tuple(results)
    assert out.workflow is None


def test_verdict_is_idempotent():
    cause = f.submitted()
    assert checks.verdict(cause, [], f.POLICY).event_id == checks.verdict(cause, [], f.POLICY).event_id


def groups(**rates: float | None) -> dict[str, dict[str, float]]:
    return {g: ({} if r is None else {"selection_rate": r}) for g, r in rates.items()}


@pytest.mark.parametrize(("rates", "passed", "ratio"), [
    (groups(group_a=0.30, group_b=0.27), True, 0.9),
    (groups(group_a=0.30, group_b=0.20, group_c=0.25), False, 0.666667),  # lowest over highest
    (groups(group_a=0.40, group_b=0.50), True, 0.8),  # exactly four fifths passes
    (groups(group_a=0.0, group_b=0.3), False, 0.0),
])
def test_parity_ratio_four_fifths_rule(rates, passed, ratio):
    r = checks.parity_ratio(rates, 0.8)
    assert (r.name, r.passed, r.measured, r.threshold, r.blocking) == (
        "fairness:parity_ratio", passed, ratio, 0.8, True)
    assert r.message.startswith(f"parity ratio {ratio:.3f} (") and r.message.endswith("required >= 0.8")


def test_parity_ratio_message_names_the_lowest_and_highest_groups():
    r = checks.parity_ratio(groups(group_a=0.30, group_b=0.20, group_c=0.25), 0.8)
    assert r.message == "parity ratio 0.667 (group_b 0.2 / group_a 0.3), required >= 0.8"


def test_parity_ratio_uses_the_given_minimum():
    assert checks.parity_ratio(groups(a=0.30, b=0.20), 0.6).passed
    assert not checks.parity_ratio(groups(a=0.30, b=0.27), 0.95).passed


@pytest.mark.parametrize("rates", [
    groups(),
    groups(group_a=0.3),  # one group: nothing to compare
    groups(group_a=0.3, group_b=None),  # group_b has no selection_rate
    {"group_a": {"selection_rate": 0.3}, "group_b": {"tpr": 0.7}},
])
def test_parity_ratio_needs_two_groups_with_selection_rates(rates):
    r = checks.parity_ratio(rates, 0.8)
    assert not r.passed and r.measured is None and r.threshold == 0.8
    assert r.message == "needs selection_rate for at least two groups in group_metrics"


@pytest.mark.parametrize("bad", [-0.1, 1.2])
def test_parity_ratio_refuses_rates_outside_zero_to_one(bad):
    r = checks.parity_ratio(groups(group_a=0.3, group_b=bad), 0.8)
    assert not r.passed and r.measured is None
    assert r.message == f"selection rates must be between 0 and 1, got {{'group_a': 0.3, 'group_b': {bad}}}"


def test_parity_ratio_of_exactly_four_fifths_passes_despite_float_error():
    """0.32 / 0.40 is 0.7999999999999999 in floating point; exactly four fifths must pass, and the
    ratio compared is the ratio reported."""
    for low, high in ((0.32, 0.40), (0.04, 0.05), (0.16, 0.20)):
        r = checks.parity_ratio(groups(group_a=low, group_b=high), 0.8)
        assert r.measured == 0.8
        assert r.passed, r


def test_no_workflow_is_a_failed_blocking_check_with_the_reason():
    r = checks.no_workflow("no workflow matches model 'churn-model' and no default workflow is configured")
    assert (r.name, r.passed, r.blocking) == ("workflow", False, True)
    assert r.message == "no workflow matches model 'churn-model' and no default workflow is configured"


def test_the_checks_import_no_io_framework_or_settings():
    """Decisions are pure: importing them pulls in no parser, broker, HTTP client, database or settings."""
    code = "import sys, services.validator.checks; print('\\n'.join(sys.modules))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                cwd=Path(__file__).parents[2]).stdout.split())
    forbidden = {"yaml", "celpy", "httpx", "aiokafka", "faststream", "sqlite3", "pydantic_settings"}
    assert {m for m in loaded if m.split(".")[0] in forbidden or m.rpartition(".")[2] == "settings"} == set()


def in_production(accuracy: float) -> Production:
    return Production(candidate=f.candidate(version="1.3.0"), metrics={"accuracy": accuracy},
                      submission_id=uuid.uuid4())


def test_regression_against_production_fails_beyond_the_tolerance():
    [worse] = checks.regression({"accuracy": 0.93}, in_production(0.95), {"accuracy": 0.01}, {})
    assert (worse.name, worse.passed, worse.blocking, worse.threshold) == ("regression:accuracy", False, True, 0.94)
    [within] = checks.regression({"accuracy": 0.945}, in_production(0.95), {"accuracy": 0.01}, {})
    assert within.passed


def test_regression_with_nothing_in_production_passes():
    [result] = checks.regression({"accuracy": 0.1}, None, {"accuracy": 0.01}, {})
    assert (result.name, result.passed) == ("regression", True)


def test_regression_against_an_unknown_production_fails_without_blocking_saying_why():
    """Unknown is not "nothing in production": comparing with nothing would pass a worse model.
    The check fails, but does not block: the policy sends the model to a person."""
    unknown = Unknown("fraud-detector", uuid.uuid4(), "0.9")
    [result] = checks.regression({"accuracy": 0.1}, unknown, {"accuracy": 0.01}, {})
    assert (result.name, result.passed, result.blocking) == ("regression", False, False)
    assert result.message.startswith(f"production of fraud-detector is unknown: it was rolled back to version 0.9 "
                                     f"(submission {unknown.submission_id})")
    assert result.message.endswith("nothing to compare against, so a person decides")
    assert type(checks.verdict(f.submitted(), [result], None)) is ChecksPassed  # for the policy to route
