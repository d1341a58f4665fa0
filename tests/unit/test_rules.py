"""The policy: automatic approval above the bar, a review below it, rejection on failed checks."""

from __future__ import annotations

import re

from services.policy import rules
from shared.events import ReviewDecided, ReviewRequested
from tests.unit import factories as f

POLICY = rules.Policy("strict", {"accuracy": 0.9, "auc": 0.95}, ("alice", "bob"), quorum=2)


def passed_with(**metrics: float):
    return f.checks_passed(f.submitted(f.submission(metrics=metrics)))


def test_auto_approve_when_every_minimum_holds():
    cause = passed_with(accuracy=0.9, auc=0.99)
    out = rules.on_checks_passed(cause, POLICY)
    assert type(out) is ReviewDecided
    assert (out.outcome, out.mode) == ("approved", "automatic")
    assert out.decided_by == "policy:strict/auto_approve"
    assert out.policy.name == "strict" and out.policy.rule == "auto_approve"
    assert out.policy.digest == POLICY.digest and re.fullmatch(r"[0-9a-f]{64}", POLICY.digest)
    assert out.candidate == cause.submission.candidate
    assert out.causation_id == cause.event_id


def test_policy_digest_is_stable_and_depends_on_the_definition():
    same = rules.Policy("strict", {"auc": 0.95, "accuracy": 0.9}, ("alice", "bob"), quorum=2)
    assert same.digest == POLICY.digest  # key order of the minimums does not matter
    assert rules.Policy("strict", {"accuracy": 0.9, "auc": 0.95}, ("alice", "bob"), 1).digest != POLICY.digest
    assert rules.Policy("strict", {"accuracy": 0.91, "auc": 0.95}, ("alice", "bob"), 2).digest != POLICY.digest


def test_review_requested_below_the_bar_names_the_shortfall():
    cause = passed_with(accuracy=0.85, auc=0.99)
    out = rules.on_checks_passed(cause, POLICY)
    assert type(out) is ReviewRequested
    assert out.approvers == ("alice", "bob") and out.quorum == 2
    assert out.reason == "accuracy = 0.85 (auto-approve needs >= 0.9)"
    assert out.policy.rule == "manual_approval" and out.policy.digest == POLICY.digest
    assert out.results == cause.results and out.submission == cause.submission


def test_missing_metric_needs_a_review():
    out = rules.on_checks_passed(passed_with(accuracy=0.99), POLICY)
    assert type(out) is ReviewRequested
    assert out.reason == "auc = None (auto-approve needs >= 0.95)"


def test_checks_failed_is_a_rejection_with_the_reasons():
    cause = f.checks_failed()
    out = rules.on_checks_failed(cause, POLICY)
    assert (out.outcome, out.mode) == ("rejected", "automatic")
    assert out.decided_by == "policy:strict/checks_failed"
    assert out.reason == "automated checks failed: metric:accuracy: accuracy = 0.95 (required >= 0.8)"
    assert "integrity" not in out.reason  # only the failed checks are reasons
    assert out.candidate == cause.submission.candidate


def test_decisions_are_idempotent():
    cause = passed_with(accuracy=0.99, auc=0.99)
    assert rules.on_checks_passed(cause, POLICY).event_id == rules.on_checks_passed(cause, POLICY).event_id
