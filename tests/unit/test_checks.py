"""The validator's checks: each result carries what was measured and against what."""

from __future__ import annotations

import pytest

from services.validator import checks
from shared.events import CheckResult, ChecksFailed, ChecksPassed
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
    out = checks.verdict(cause, results)
    assert type(out) is ChecksPassed
    assert out.results == tuple(results)
    assert out.submission == cause.submission and out.causation_id == cause.event_id


def test_verdict_failed_on_any_blocking_failure_carries_every_result():
    cause = f.submitted()
    results = [CheckResult(name="a", passed=True), CheckResult(name="b", passed=False)]
    out = checks.verdict(cause, results)
    assert type(out) is ChecksFailed
    assert out.results == tuple(results)


def test_verdict_is_idempotent():
    cause = f.submitted()
    assert checks.verdict(cause, []).event_id == checks.verdict(cause, []).event_id
