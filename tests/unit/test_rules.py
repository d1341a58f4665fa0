"""The policy, from the matching workflow: automatic approval when review is not needed, a review
otherwise (or when a condition cannot be evaluated), carry-forward against production, rejection of
a digest rejected before, of failed checks and of a model no workflow is for."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.policy import rules
from shared.events import (
    CheckResult,
    ChecksFailed,
    ChecksPassed,
    Production,
    ReviewDecided,
    ReviewRequested,
    Submitter,
)
from shared.values import PolicyDocuments
from shared.workflow.matching import WorkflowSet
from tests.unit import factories as f

# "Approve automatically above 90% accuracy, otherwise manual approval."
STRICT = """\
name: strict
match: ["fraud-*"]
steps:
  - name: automated_checks
    type: checks
    inputs: {min: {accuracy: 0.8, auc: 0.9}}
  - name: manual_approval
    type: approval
    when: "metrics.accuracy < 0.9"
    inputs: {approvers: ['alice', 'group:leads'], quorum: 2, timeout: 2h}
  - name: deploy
    type: deploy
"""

# Fraud models retrained from the same code within one point of production skip review.
CARRY_FORWARD = """\
name: fraud-models
match: ["fraud-*"]
steps:
  - name: automated_checks
    type: checks
    inputs: {min: {accuracy: 0.8}}
  - name: risk_approval
    type: approval
    carry_forward_when: >-
      code_commit == production.code_commit
      && metrics.accuracy >= production.metrics.accuracy - 0.01
    inputs: {approvers: ['group:risk']}
"""


@pytest.fixture
def strict(tmp_path):
    return f.load_workflow(tmp_path, STRICT)


def match(loaded) -> rules.Match:
    return rules.Match(loaded, "", WorkflowSet((loaded,)).digest)


def decide(loaded, event, rejection=None, production=None, anchor=None):
    """`anchor`: the last release a person approved; by default the one in production."""
    return rules.on_checks_passed(event, match(loaded), rejection, production,
                                  production if anchor is None else anchor)


def passed_with(cand=None, **metrics: float):
    return f.checks_passed(f.submitted(f.submission(cand, metrics=metrics)))


def production(accuracy: float, code_commit: str = "3f2c9ab") -> Production:
    cand = f.candidate(version="1.3.0", artifact_sha256=f.OTHER_SHA, code_commit=code_commit)
    return Production(candidate=cand, metrics={"accuracy": accuracy}, submission_id=uuid.uuid4())


def test_auto_approve_above_the_bar_names_the_workflow_and_its_file(strict, tmp_path):
    cause = passed_with(accuracy=0.95, auc=0.99)
    out = decide(strict, cause)
    assert type(out) is ReviewDecided
    assert (out.outcome, out.mode) == ("approved", "automatic")
    assert out.decided_by == "policy:strict/manual_approval.when"
    assert (out.policy.name, out.policy.rule) == ("strict", "manual_approval.when")
    assert out.policy.documents == PolicyDocuments(workflow=(tmp_path / "workflow.yaml").read_text(),
                                                   groups=(tmp_path / "groups.yaml").read_text())
    assert out.policy.digest == out.policy.documents.digest() == strict.digest
    assert out.reason == ("all automated checks passed and review is not needed: "
                          "`metrics.accuracy < 0.9` is false")
    assert out.candidate == cause.submission.candidate
    assert out.causation_id == cause.event_id and out.cites is None


def test_exactly_at_the_bar_is_approved(strict):
    out = decide(strict, passed_with(accuracy=0.9, auc=0.99))
    assert (type(out), out.outcome) == (ReviewDecided, "approved")


def test_review_requested_below_the_bar_from_the_expanded_approvers(strict, tmp_path):
    cause = passed_with(accuracy=0.85, auc=0.99)
    out = decide(strict, cause)
    assert type(out) is ReviewRequested
    assert out.approvers == ("alice", "bob", "carol") and out.quorum == 2
    assert out.deadline == cause.occurred_at + timedelta(hours=2)
    assert out.on_timeout == "reject"
    assert out.reason == "`metrics.accuracy < 0.9` is true"
    assert (out.policy.name, out.policy.rule) == ("strict", "manual_approval")
    assert out.policy.documents == strict.policy_documents()
    assert out.policy.documents.workflow == (tmp_path / "workflow.yaml").read_text()
    assert out.policy.digest == out.policy.documents.digest()
    assert out.results == cause.results and out.submission == cause.submission
    assert out.production is None and out.causation_id == cause.event_id


def test_decisions_are_idempotent(strict):
    cause = passed_with(accuracy=0.99, auc=0.99)
    assert decide(strict, cause).event_id == decide(strict, cause).event_id
    below = passed_with(accuracy=0.85, auc=0.99)
    assert decide(strict, below).event_id == decide(strict, below).event_id


def test_checks_failed_is_a_rejection_naming_the_failed_checks(strict):
    cause = f.checks_failed()
    out = rules.on_checks_failed(cause, match(strict))
    assert (out.outcome, out.mode) == ("rejected", "automatic")
    assert out.decided_by == "policy:strict/automated_checks"
    assert out.policy.rule == "automated_checks" and out.policy.digest == strict.digest
    assert out.policy.documents == strict.policy_documents()
    assert out.reason == "automated checks failed: metric:accuracy: accuracy = 0.95 (required >= 0.8)"
    assert "integrity" not in out.reason  # only the failed checks are reasons
    assert out.candidate == cause.submission.candidate


def test_rejected_before_cites_the_earlier_decision(strict):
    earlier = rules.Rejection(event_id=uuid.uuid4(), submission_id=uuid.uuid4(), decided_by="bob",
                              at=datetime(2026, 11, 1, 9, 30, tzinfo=UTC),
                              reason="recall on the thin-file segment dropped")
    cause = passed_with(accuracy=0.99, auc=0.99)  # would otherwise be approved automatically
    out = decide(strict, cause, rejection=earlier)
    assert type(out) is ReviewDecided
    assert (out.outcome, out.mode) == ("rejected", "automatic")
    assert out.cites == earlier.event_id
    assert out.decided_by == "policy:strict/rejected_before" and out.policy.rule == "rejected_before"
    assert out.reason == (
        f"artifact {f.SHA} was rejected before, by bob at 2026-11-01T09:30:00+00:00 "
        f"(submission {earlier.submission_id}, decision {earlier.event_id}): "
        "recall on the thin-file segment dropped")


def test_carry_forward_needs_a_model_in_production(tmp_path):
    loaded = f.load_workflow(tmp_path, CARRY_FORWARD)
    cause = passed_with(accuracy=0.85)
    out = decide(loaded, cause)
    assert type(out) is ReviewRequested
    assert out.production is None
    assert out.approvers == ("dave", "erin") and out.quorum == 1
    assert out.deadline == cause.occurred_at + timedelta(hours=24)  # the default timeout
    assert out.reason == "the workflow requires review"


def test_carry_forward_approves_when_the_condition_holds_against_production(tmp_path):
    loaded = f.load_workflow(tmp_path, CARRY_FORWARD)
    prod = production(accuracy=0.855)
    out = decide(loaded, passed_with(accuracy=0.85), production=prod)
    assert type(out) is ReviewDecided
    assert (out.outcome, out.mode) == ("approved", "automatic")
    assert out.decided_by == "policy:fraud-models/risk_approval.carry_forward_when"
    assert out.reason.startswith("carried forward from version 1.3.0, the last one a person approved ")
    assert "code_commit == production.code_commit" in out.reason
    assert out.anchored_to == prod.submission_id


def test_carry_forward_compares_with_the_last_release_a_person_approved(tmp_path):
    """0.94 approved by a person, then 0.935 carried forward (in production now): 0.926 is within a
    point of 0.935 but not of 0.94, so a person decides; the chain cannot drift."""
    loaded = f.load_workflow(tmp_path, CARRY_FORWARD)
    human, carried = production(accuracy=0.94), production(accuracy=0.935)
    out = decide(loaded, passed_with(accuracy=0.926), production=carried, anchor=human)
    assert type(out) is ReviewRequested and out.production == carried
    within = decide(loaded, passed_with(accuracy=0.931), production=carried, anchor=human)
    assert type(within) is ReviewDecided and within.anchored_to == human.submission_id


def test_without_a_release_a_person_approved_nothing_is_carried_forward(tmp_path):
    loaded = f.load_workflow(tmp_path, CARRY_FORWARD)
    out = rules.on_checks_passed(passed_with(accuracy=0.85), match(loaded), None, production(accuracy=0.85), None)
    assert type(out) is ReviewRequested
    assert out.reason.endswith("nothing to carry forward from: no release in production was approved by a person")


@pytest.mark.parametrize(("prod", "why"), [
    (production(accuracy=0.87), "more than a point below production"),
    (production(accuracy=0.85, code_commit="0000000"), "trained from other code"),
])
def test_no_carry_forward_when_the_condition_fails_and_production_is_evidence(tmp_path, prod, why):
    loaded = f.load_workflow(tmp_path, CARRY_FORWARD)
    out = decide(loaded, passed_with(accuracy=0.85), production=prod)
    assert type(out) is ReviewRequested, why
    assert out.production == prod  # reviewers see what it would replace


def test_carry_forward_condition_that_errs_asks_a_person(tmp_path):
    text = CARRY_FORWARD.replace("metrics.accuracy >= production.metrics.accuracy - 0.01",
                                 "metrics.accuracy >= production.metrics.auc")
    loaded = f.load_workflow(tmp_path, text)
    out = decide(loaded, passed_with(accuracy=0.85), production=production(accuracy=0.85))
    assert type(out) is ReviewRequested
    assert out.reason.startswith("a condition could not be evaluated, so a person decides: ")
    assert "production.metrics.auc" in out.reason


@pytest.mark.parametrize("when", [
    "group_metrics.group_a.selection_rate < 0.3",  # the submission has no group_a
    "int(submitter) > 3",  # 'pipeline' is not a number
    "metrics.accuracy",  # not true or false
])
def test_when_that_errs_at_evaluation_asks_a_person(tmp_path, when):
    loaded = f.load_workflow(tmp_path, STRICT.replace('"metrics.accuracy < 0.9"', f'"{when}"'))
    out = decide(loaded, passed_with(accuracy=0.99, auc=0.99))
    assert type(out) is ReviewRequested  # fail safe: never approve on an error
    assert out.reason.startswith("a condition could not be evaluated, so a person decides: ")
    assert when in out.reason


def test_no_approval_step_approves_automatically(tmp_path):
    loaded = f.load_workflow(tmp_path, STRICT.split("  - name: manual_approval")[0])
    out = decide(loaded, passed_with(accuracy=0.5, auc=0.5))
    assert (type(out), out.outcome, out.mode) == (ReviewDecided, "approved", "automatic")
    assert out.decided_by == "policy:strict/no_approval_step"


def test_approval_without_when_always_asks(tmp_path):
    loaded = f.load_workflow(tmp_path, STRICT.replace('    when: "metrics.accuracy < 0.9"\n', ""))
    out = decide(loaded, passed_with(accuracy=0.99, auc=0.99))
    assert type(out) is ReviewRequested
    assert out.reason == "the workflow requires review"


def test_no_workflow_is_a_rejection_with_the_reason_and_the_set_digest(tmp_path):
    workflows = WorkflowSet((f.load_workflow(tmp_path, STRICT),))
    cause = passed_with(f.candidate(model="churn-model"), accuracy=0.99, auc=0.99)
    workflow, reason = workflows.match("churn-model")
    assert workflow is None
    no_match = rules.Match(None, reason, workflows.digest)
    for out in (rules.on_checks_passed(cause, no_match, None, None),
                rules.on_checks_failed(f.checks_failed(f.submitted(cause.submission)), no_match)):
        assert type(out) is ReviewDecided
        assert (out.outcome, out.mode) == ("rejected", "automatic")
        assert out.reason == "no workflow matches model 'churn-model' and no default workflow is configured"
        assert out.decided_by == "policy:(no workflow)"
        assert (out.policy.name, out.policy.rule) == ("(no workflow)", "no_workflow")
        assert out.policy.digest == workflows.digest
        assert out.policy.documents is None  # no one workflow's texts decided


def test_evaluation_context_has_the_submission_checks_and_production():
    cause = f.checks_passed()
    prod = production(accuracy=0.9)
    context = rules.evaluation_context(cause, prod)
    assert context["metrics"] == {"accuracy": 0.95, "auc": 0.97}
    assert context["checks"]["integrity"]["passed"] is True
    assert context["production"]["metrics"] == {"accuracy": 0.9}
    assert context["production"]["artifact_sha256"] == f.OTHER_SHA
    assert rules.evaluation_context(cause, None)["production"] == {}


def test_a_failed_security_scan_rejects_the_digest_for_good(strict):
    assert rules.on_checks_failed(f.checks_failed(scan=True), match(strict)).final_for_artifact is True


def test_a_metric_failure_rejects_the_submission_not_the_digest(strict):
    """The attack: resubmit another team's artifact (its URI and digest are on the topics) with
    declared metrics below the thresholds. Integrity passes; the rejection must not ban the bytes
    for every model."""
    out = rules.on_checks_failed(f.checks_failed(), match(strict))
    assert out.outcome == "rejected" and out.final_for_artifact is False


def test_an_integrity_failure_ends_the_submission_but_not_the_digest(strict):
    """Bytes that did not match the declared digest (or could not be read) say nothing about it."""
    cause = f.submitted()
    failed = ChecksFailed.caused_by(cause, submission=cause.submission, results=(
        CheckResult(name="integrity", passed=False, threshold=f.SHA, message="no such file"),))
    out = rules.on_checks_failed(failed, match(strict))
    assert out.outcome == "rejected" and out.final_for_artifact is False


def test_a_rejected_digest_is_cited_even_when_no_workflow_matches_any_more():
    earlier = rules.Rejection(uuid.uuid4(), uuid.uuid4(), "bob", datetime(2026, 11, 1, tzinfo=UTC), "leaks")
    event = f.checks_passed()  # model 'fraud-detector' matches no pattern of NARROW
    out = rules.on_checks_passed(event, rules.Match(None, "no workflow matches", "e" * 64), earlier, None)
    assert out.outcome == "rejected" and out.cites == earlier.event_id
    assert out.policy.rule == "rejected_before" and out.policy.digest == "e" * 64


UNKNOWN = CheckResult(name="regression", passed=False, blocking=False,
                      message="production of fraud-detector is unknown: ...; so a person decides")


def passed_flagged(accuracy: float, *extra: CheckResult):
    cause = f.submitted(f.submission(metrics={"accuracy": accuracy, "auc": 0.99}))
    return ChecksPassed.caused_by(cause, submission=cause.submission, results=(*f.results(), *extra))


def test_a_check_failed_without_blocking_asks_a_person_even_when_when_is_false(strict):
    out = decide(strict, passed_flagged(0.99, UNKNOWN))  # `metrics.accuracy < 0.9` is false
    assert type(out) is ReviewRequested
    assert out.reason == f"a check failed without blocking, so a person decides: regression: {UNKNOWN.message}"
    assert out.results[-1] == UNKNOWN and out.production is None


def test_a_check_failed_without_blocking_is_not_carried_forward(tmp_path):
    loaded = f.load_workflow(tmp_path, CARRY_FORWARD)
    assert type(decide(loaded, passed_flagged(0.85), production=production(accuracy=0.855))) is ReviewDecided
    out = decide(loaded, passed_flagged(0.85, UNKNOWN), production=production(accuracy=0.855))
    assert type(out) is ReviewRequested and "regression: production of fraud-detector is unknown" in out.reason


def test_a_check_failed_without_blocking_and_no_approval_step_is_rejected_not_for_good(tmp_path):
    loaded = f.load_workflow(tmp_path, STRICT.split("  - name: manual_approval")[0])
    out = decide(loaded, passed_flagged(0.99, UNKNOWN))
    assert (type(out), out.outcome, out.mode, out.final_for_artifact) == (ReviewDecided, "rejected", "automatic", False)
    assert out.decided_by == "policy:strict/no_approval_step"
    assert out.reason.startswith("a check failed and the workflow has no approval step to ask a person: regression:")


def test_a_passed_non_blocking_check_changes_nothing(strict):
    ok = UNKNOWN.model_copy(update={"passed": True})
    assert (type(out := decide(strict, passed_flagged(0.99, ok))), out.outcome) == (ReviewDecided, "approved")


# --- decisions on signed facts ------------------------------------------------------------------

ALICES_PIPELINE = Submitter(name="fraud-ci", owner="alice", team="risk")


def signed(event: ChecksPassed, by: Submitter | None = ALICES_PIPELINE) -> ChecksPassed:
    return event.model_copy(update={"submitted_by": by})


def test_every_decision_cites_the_checks_it_follows(strict, tmp_path):
    approved = passed_with(accuracy=0.95, auc=0.99)
    assert decide(strict, approved).checks_event_id == approved.event_id
    reviewed = passed_with(accuracy=0.85, auc=0.99)
    request = decide(strict, reviewed)
    assert type(request) is ReviewRequested and request.causation_id == reviewed.event_id
    failed = f.checks_failed()
    assert rules.on_checks_failed(failed, match(strict)).checks_event_id == failed.event_id
    assert rules.on_checks_passed(approved, rules.Match(None, "no workflow", "d" * 64), None, None) \
        .checks_event_id == approved.event_id


def test_a_review_request_carries_the_verified_submitter(strict):
    request = decide(strict, signed(passed_with(accuracy=0.85, auc=0.99)))
    assert type(request) is ReviewRequested and request.submitted_by == ALICES_PIPELINE
    assert decide(strict, passed_with(accuracy=0.85, auc=0.99)).submitted_by is None


REQUIRE_SIGNED = STRICT.replace("match: [\"fraud-*\"]\n", "match: [\"fraud-*\"]\nrequire_signed_submission: true\n")


def test_an_unsigned_submission_is_rejected_not_for_good_when_the_workflow_requires_signatures(tmp_path):
    loaded = f.load_workflow(tmp_path, REQUIRE_SIGNED)
    assert loaded.workflow.require_signed_submission
    out = decide(loaded, passed_with(accuracy=0.95, auc=0.99))
    assert type(out) is ReviewDecided and out.outcome == "rejected" and not out.final_for_artifact
    assert out.policy.rule == "require_signed_submission" and "unsigned" in out.reason
    assert decide(loaded, signed(passed_with(accuracy=0.95, auc=0.99))).outcome == "approved"


def test_conditions_see_the_signer_as_the_submitter_not_the_claim(tmp_path):
    """A workflow that skips review for its release bot must not skip it for anyone who types
    the bot's name: `submitter` is the key's owner when the submission is signed."""
    text = STRICT.replace('when: "metrics.accuracy < 0.9"', 'when: "submitter != \'release-bot\'"')
    loaded = f.load_workflow(tmp_path, text)
    claim = f.checks_passed(f.submitted(f.submission(submitter="release-bot")))
    bot = Submitter(name="release-bot-key", owner="release-bot")
    assert type(decide(loaded, signed(claim, bot))) is ReviewDecided
    assert type(decide(loaded, signed(claim))) is ReviewRequested  # alice's key, claiming to be the bot
