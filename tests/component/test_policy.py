"""The policy service, in memory: checks.* in, review.decided or review.requested out; review.decided
and deployment.succeeded / .rolled_back / .revoked in, remembered for later decisions."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from shared import topics
from shared.broker import DeadLetters
from shared.events import (
    CheckResult,
    ChecksPassed,
    DeploymentRevoked,
    DeploymentRolledBack,
    DeploymentSucceeded,
    ReviewDecided,
    ReviewRequested,
)
from shared.values import PolicyDocuments
from tests.component.conftest import DLQ, capture, publish, publish_raw, running, sent, sent_all, write_workflows
from tests.unit import factories as f

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
    inputs: {approvers: ['group:risk'], timeout: 4h}
"""


@pytest.fixture
def policy(build_app):
    return build_app("policy")


def passed_with(accuracy: float, **candidate: str):
    return f.checks_passed(f.submitted(f.submission(f.candidate(**candidate), metrics={"accuracy": accuracy})))


def decisions(policy) -> list[ReviewDecided]:
    return sent_all(policy.emitter.publishers[ReviewDecided], topics.REVIEW_DECIDED)


def requests(policy) -> list[ReviewRequested]:
    return sent_all(policy.emitter.publishers[ReviewRequested], topics.REVIEW_REQUESTED)


def documents(workflows) -> PolicyDocuments:
    """What was in force: the workflow file and the groups.yaml beside it, as written."""
    return PolicyDocuments(workflow=(workflows / "default.yaml").read_text(),
                           groups=(workflows / "groups.yaml").read_text())


async def test_auto_approves_above_the_bar(policy, workflows):
    cause = passed_with(0.95)
    async with running(policy.broker) as br:
        await publish(br, cause)
        policy.emitter.publishers[ReviewRequested].mock.assert_not_called()
        out = sent(policy.emitter.publishers[ReviewDecided], topics.REVIEW_DECIDED)
    assert (out.outcome, out.mode, out.decided_by) == (
        "approved", "automatic", "policy:test-policy/manual_approval.when")
    assert out.policy.documents == documents(workflows)  # the audit sees the texts that decided
    assert out.policy.digest == documents(workflows).digest() == policy.workflows.workflows[0].digest
    assert out.causation_id == cause.event_id


async def test_requests_a_review_below_the_bar(policy, workflows):
    cause = passed_with(0.85)
    async with running(policy.broker) as br:
        await publish(br, cause)
        policy.emitter.publishers[ReviewDecided].mock.assert_not_called()
        out = sent(policy.emitter.publishers[ReviewRequested], topics.REVIEW_REQUESTED)
    assert out.approvers == ("alice", "bob") and out.quorum == 1  # bob through group:leads
    assert out.reason == "`metrics.accuracy < 0.9` is true"
    assert out.deadline == cause.occurred_at + timedelta(hours=24)
    assert (out.policy.rule, out.policy.digest) == ("manual_approval", documents(workflows).digest())
    assert out.policy.documents == documents(workflows)


async def test_a_changed_folder_is_reported_and_decisions_keep_the_policy_loaded_at_start(policy, workflows):
    """Changes apply at restart: a person added to a group is said to need one, and until then the
    review is still asked of the groups the service loaded, under their digest."""
    in_force = documents(workflows)
    (workflows / "groups.yaml").write_text("leads: [bob, mallory]\n")
    warned = policy.watch.check()
    assert warned is not None and warned["old_digest"] == policy.workflows.digest != warned["new_digest"]
    async with running(policy.broker) as br:
        await publish(br, passed_with(0.85))
        out = sent(policy.emitter.publishers[ReviewRequested], topics.REVIEW_REQUESTED)
    assert out.approvers == ("alice", "bob")  # not mallory: nothing was reloaded
    assert out.policy.documents == in_force and out.policy.digest == in_force.digest()


async def test_failed_checks_are_rejected(policy):
    cause = f.checks_failed()
    async with running(policy.broker) as br:
        await publish(br, cause)
        out = sent(policy.emitter.publishers[ReviewDecided], topics.REVIEW_DECIDED)
    assert (out.outcome, out.decided_by) == ("rejected", "policy:test-policy/automated_checks")
    assert "metric:accuracy" in out.reason
    assert out.policy.documents is not None and out.policy.digest == out.policy.documents.digest()


async def test_bad_checks_event_is_dead_lettered_then_the_next_is_decided(policy):
    dead = capture(policy.broker, DLQ(topics.CHECKS_PASSED))
    async with running(policy.broker) as br:
        await publish_raw(br, topics.CHECKS_PASSED, b'{"schema_version": 1}')
        await publish(br, passed_with(0.95))
        policy.emitter.publishers[ReviewDecided].mock.assert_called_once()
    [record] = dead.records
    assert record.value == b'{"schema_version": 1}'
    assert "missing envelope field event_id, occurred_at" in dead.headers()["dlq_reason"]


@pytest.mark.parametrize(("accuracy", "kind"), [(0.95, ReviewDecided), (0.85, ReviewRequested)])
async def test_a_redelivered_checks_event_is_decided_once(policy, accuracy, kind):
    cause = passed_with(accuracy)
    out = capture(policy.broker, kind.topic)
    async with running(policy.broker) as br:
        await publish(br, cause)
        await publish(br, cause)  # the same event again, as after a consumer restart
        assert policy.on_checks_passed.mock.call_count == 2  # the handler did see it twice
        assert len(decisions(policy)) + len(requests(policy)) == 1
    [event] = out.events()
    assert type(event) is kind and event.causation_id == cause.event_id


async def test_a_checks_event_redelivered_after_a_restart_is_not_decided_again(build_app):
    cause = passed_with(0.95)
    first = build_app("policy")
    async with running(first.broker) as br:
        await publish(br, cause)
        assert len(decisions(first)) == 1
    await first.close()  # the process stops; its SQLite file stays
    restarted = build_app("policy")  # built afresh: new broker and store, same state_db
    emitted = []  # what the restarted policy publishes (the topic itself holds the first decision)
    publish_for_real = restarted.emitter.emit
    restarted.emitter.emit = lambda event: (emitted.append(event), publish_for_real(event))[1]
    async with running(restarted.broker) as br:
        await publish(br, cause)
        assert restarted.on_checks_passed.mock.call_count == 1
        assert emitted == [] and requests(restarted) == []


async def test_a_redelivered_failed_checks_event_is_rejected_once(policy):
    cause = f.checks_failed()
    async with running(policy.broker) as br:
        await publish(br, cause)
        await publish(br, cause)
        assert policy.on_checks_failed.mock.call_count == 2
        assert [d.outcome for d in decisions(policy)] == ["rejected"]


async def test_a_human_rejection_rejects_the_same_artifact_resubmitted(policy):
    first = f.submitted(f.submission(metrics={"accuracy": 0.85}))
    human = f.decided(first, outcome="rejected", mode="human", decided_by="bob",
                      reason="recall on the thin-file segment dropped")
    again = passed_with(0.97, version="1.4.1")  # same bytes (f.SHA), new submission, above the bar
    assert again.submission_id != first.submission_id
    assert again.submission.candidate.artifact_sha256 == human.candidate.artifact_sha256
    async with running(policy.broker) as br:
        await publish(br, human)
        policy.facts.follower.mock.assert_called_once()
        await publish(br, again)
        policy.emitter.publishers[ReviewRequested].mock.assert_not_called()
        # the publisher's test mock sees every record on review.decided, the human one included
        published, out = decisions(policy)
    assert published == human
    assert (out.outcome, out.mode, out.policy.rule) == ("rejected", "automatic", "rejected_before")
    assert out.cites == human.event_id
    assert out.submission_id == again.submission_id
    assert f"decision {human.event_id}" in out.reason and "by bob" in out.reason
    assert out.reason.endswith(": recall on the thin-file segment dropped")


async def test_an_approval_does_not_ban_the_digest(policy):
    approved = f.decided(f.submitted(), outcome="approved")
    async with running(policy.broker) as br:
        await publish(br, approved)
        await publish(br, passed_with(0.95, version="1.4.1"))
        published, out = decisions(policy)
    assert published == approved
    assert (out.outcome, out.mode, out.cites) == ("approved", "automatic", None)


async def test_its_own_automatic_rejection_rejects_a_resubmission(policy):
    failed = f.checks_failed(scan=True)  # the scan condemned the bytes
    again = passed_with(0.95, version="1.4.1")
    async with running(policy.broker) as br:
        await publish(br, failed)
        await publish(br, again)
        first, second = decisions(policy)
    assert first.outcome == "rejected" and first.policy.rule == "automated_checks"
    assert (second.outcome, second.cites, second.submission_id) == ("rejected", first.event_id, again.submission_id)


async def test_a_metric_failure_does_not_ban_the_artifact_for_a_resubmission(policy):
    """Declared metrics are the submitter's word: someone else submitting this artifact with bad
    ones must not get it rejected for good (the digest-ban attack)."""
    failed = f.checks_failed()
    again = passed_with(0.95, version="1.4.1")
    async with running(policy.broker) as br:
        await publish(br, failed)
        await publish(br, again)
        first, second = decisions(policy)
    assert first.outcome == "rejected" and not first.final_for_artifact
    assert (second.outcome, second.cites) == ("approved", None)


def deployed(accuracy: float, code_commit: str = "3f2c9ab", version: str = "1.3.0") -> DeploymentSucceeded:
    cand = f.candidate(version=version, artifact_sha256=f.OTHER_SHA, code_commit=code_commit)
    approval = f.decided(f.submitted(f.submission(cand)))
    return DeploymentSucceeded.caused_by(approval, candidate=cand, target="model-store",
                                         location=f"/store/fraud-detector/{version}",
                                         metrics={"accuracy": accuracy}, approval_mode=approval.mode)


def rolled_back(current: DeploymentSucceeded, to: DeploymentSucceeded) -> DeploymentRolledBack:
    """What the deployer emits for `signoff rollback fraud-detector --to <to's version>`."""
    return DeploymentRolledBack(submission_id=uuid.uuid4(), model="fraud-detector",
                                from_version=current.candidate.version, to_version=to.candidate.version,
                                to_submission_id=to.submission_id, target="model-store",
                                requested_by="oncall", reason="p99 latency doubled")


def revoked(release: DeploymentSucceeded) -> DeploymentRevoked:
    return DeploymentRevoked(submission_id=release.submission_id, candidate=release.candidate,
                             requested_by="security", reason="trained on PII", was_in_production=True)


@pytest.fixture
def carry_forward(build_app, tmp_path):
    folder = write_workflows(tmp_path / "carry-forward", groups="risk: [dave, erin]\n", fraud=CARRY_FORWARD)
    return build_app("policy", workflows=folder)


async def test_a_deployment_makes_carry_forward_apply(carry_forward):
    policy = carry_forward
    before = passed_with(0.85)
    production = deployed(accuracy=0.855)
    after = passed_with(0.85, version="1.4.1")
    async with running(policy.broker) as br:
        await publish(br, before)  # nothing in production yet: a person decides
        await publish(br, production)
        policy.followers[DeploymentSucceeded].mock.assert_called_once()
        await publish(br, after)
        [request] = requests(policy)
        [decision] = decisions(policy)
    assert request.causation_id == before.event_id and request.production is None
    assert request.approvers == ("dave", "erin")
    assert decision.causation_id == after.event_id
    assert (decision.outcome, decision.mode) == ("approved", "automatic")
    assert decision.decided_by == "policy:fraud-models/risk_approval.carry_forward_when"
    assert decision.reason.startswith("carried forward from version 1.3.0, the last one a person approved ")
    assert decision.anchored_to == production.submission_id


async def test_outside_the_tolerance_production_is_evidence_for_the_reviewers(carry_forward):
    policy = carry_forward
    production = deployed(accuracy=0.90)
    cause = passed_with(0.85)
    async with running(policy.broker) as br:
        await publish(br, production)
        await publish(br, cause)
        policy.emitter.publishers[ReviewDecided].mock.assert_not_called()
        out = sent(policy.emitter.publishers[ReviewRequested], topics.REVIEW_REQUESTED)
    assert out.production is not None
    assert out.production.candidate == production.candidate
    assert out.production.metrics == {"accuracy": 0.90}
    assert out.production.submission_id == production.submission_id
    assert out.deadline == cause.occurred_at + timedelta(hours=4)


async def test_after_a_rollback_carry_forward_compares_with_the_release_rolled_back_to(carry_forward):
    policy = carry_forward
    v1, v2 = deployed(accuracy=0.85, version="1.2.0"), deployed(accuracy=0.90, version="1.3.0")
    back = rolled_back(current=v2, to=v1)
    cause = passed_with(0.845, version="1.4.1")  # within 0.01 of 1.2.0 (0.85), not of 1.3.0 (0.90)
    async with running(policy.broker) as br:
        for event in (v1, v2, back):
            await publish(br, event)
        assert policy.followers[DeploymentRolledBack].mock.call_count == 3  # one follower: v1, v2, the rollback
        await publish(br, cause)
        policy.emitter.publishers[ReviewRequested].mock.assert_not_called()
        [decision] = decisions(policy)
    assert (decision.outcome, decision.causation_id) == ("approved", cause.event_id)
    assert decision.decided_by == "policy:fraud-models/risk_approval.carry_forward_when"
    assert decision.reason.startswith("carried forward from version 1.2.0, the last one a person approved ")


async def test_without_a_rollback_the_same_candidate_is_reviewed_against_the_newer_release(carry_forward):
    """The control for the test above: against 1.3.0 the candidate is outside the tolerance."""
    policy = carry_forward
    v1, v2 = deployed(accuracy=0.85, version="1.2.0"), deployed(accuracy=0.90, version="1.3.0")
    async with running(policy.broker) as br:
        for event in (v1, v2, passed_with(0.845, version="1.4.1")):
            await publish(br, event)
        policy.emitter.publishers[ReviewDecided].mock.assert_not_called()
        out = sent(policy.emitter.publishers[ReviewRequested], topics.REVIEW_REQUESTED)
    assert out.production.candidate == v2.candidate


async def test_a_revoked_release_is_neither_carried_forward_from_nor_shown_as_production(carry_forward):
    policy = carry_forward
    live = deployed(accuracy=0.85)
    async with running(policy.broker) as br:
        await publish(br, live)
        await publish(br, revoked(live))  # nothing earlier to restore: the model is out of production
        assert policy.followers[DeploymentRevoked].mock.call_count == 2  # one follower: the deployment, the revocation
        await publish(br, passed_with(0.85, version="1.4.1"))
        policy.emitter.publishers[ReviewDecided].mock.assert_not_called()
        out = sent(policy.emitter.publishers[ReviewRequested], topics.REVIEW_REQUESTED)
    assert out.production is None


async def test_no_workflow_for_the_model_is_rejected(build_app, tmp_path):
    folder = write_workflows(tmp_path / "fraud-only", groups="risk: [dave, erin]\n", fraud=CARRY_FORWARD)
    policy = build_app("policy", workflows=folder)
    async with running(policy.broker) as br:
        await publish(br, passed_with(0.99, model="churn-model"))
        out = sent(policy.emitter.publishers[ReviewDecided], topics.REVIEW_DECIDED)
    assert (out.outcome, out.policy.name, out.policy.rule) == ("rejected", "(no workflow)", "no_workflow")
    assert out.reason == "no workflow matches model 'churn-model' and no default workflow is configured"
    assert out.policy.digest == policy.workflows.digest


def test_an_invalid_workflow_folder_stops_the_service(build_app, tmp_path):
    folder = write_workflows(tmp_path / "bad", fraud=CARRY_FORWARD.replace("['group:risk']", "'dave'"))
    with pytest.raises(SystemExit, match="approvers must be a list"):
        build_app("policy", workflows=folder)


@pytest.mark.parametrize("value", [b'{"metrics": {"accuracy": ' + b"9" * 5000 + b"}}",
                                   b"[" * 10_000 + b"]" * 10_000])
async def test_a_poison_record_on_deployment_succeeded_is_skipped_and_the_next_deployment_counts(
        carry_forward, value):
    policy = carry_forward
    [dead_letters] = [m for m in policy.broker.middlewares if isinstance(m, DeadLetters)]
    production = deployed(accuracy=0.90)
    async with running(policy.broker) as br:
        await publish_raw(br, topics.DEPLOYMENT_SUCCEEDED, value)
        await publish(br, production)
        await publish(br, passed_with(0.85))
        out = sent(policy.emitter.publishers[ReviewRequested], topics.REVIEW_REQUESTED)
    assert dead_letters.skipped == {topics.DEPLOYMENT_SUCCEEDED: 1}
    assert out.production is not None and out.production.submission_id == production.submission_id


async def test_production_unknown_sends_the_model_to_a_person_with_no_evidence(carry_forward):
    """Rolled back to a release whose deployment the policy never saw: carry_forward_when cannot
    compare, the validator's regression check failed without blocking, and nobody approves it
    automatically; reviewers are not shown the release rolled back from as production."""
    policy = carry_forward
    v2 = deployed(accuracy=0.85)
    back = DeploymentRolledBack(submission_id=uuid.uuid4(), model="fraud-detector", from_version="1.3.0",
                                to_version="0.9", to_submission_id=uuid.uuid4(), target="model-store",
                                requested_by="oncall", reason="p99 latency doubled")
    cause = f.submitted(f.submission(metrics={"accuracy": 0.85}))
    unknown = CheckResult(name="regression", passed=False, blocking=False,
                          message=f"production of fraud-detector is unknown: it was rolled back to version 0.9 "
                          f"(submission {back.to_submission_id}), ...; so a person decides")
    flagged = ChecksPassed.caused_by(cause, submission=cause.submission, results=(*f.results(), unknown))
    async with running(policy.broker) as br:
        for event in (v2, back, flagged):
            await publish(br, event)
        policy.emitter.publishers[ReviewDecided].mock.assert_not_called()
        out = sent(policy.emitter.publishers[ReviewRequested], topics.REVIEW_REQUESTED)
    assert out.production is None
    assert out.reason.startswith("a check failed without blocking, so a person decides: regression: production "
                                 "of fraud-detector is unknown")


async def test_carry_forward_does_not_drift_along_carried_forward_releases(carry_forward):
    """0.94 approved by a person, then 0.935 carried forward and deployed: 0.926 is within a point
    of 0.935 but not of 0.94, so a person decides (before, each step compared with the last one,
    and 0.94 -> 0.935 -> 0.926 -> 0.917 -> 0.908 all deployed unreviewed)."""
    policy = carry_forward
    human = deployed(accuracy=0.94, version="1.0.0")
    carried = deployed(accuracy=0.935, version="1.0.1").model_copy(
        update={"approval_mode": "automatic", "anchored_to": human.submission_id})
    async with running(policy.broker) as br:
        await publish(br, human)
        await publish(br, carried)
        await publish(br, passed_with(0.926, version="1.0.2"))
        policy.emitter.publishers[ReviewDecided].mock.assert_not_called()
        out = sent(policy.emitter.publishers[ReviewRequested], topics.REVIEW_REQUESTED)
    assert out.production.candidate.version == "1.0.1"  # reviewers see what it would replace
