"""The approval attestation of a release: what the deployer states, and signs, about the artifact it
deploys (shared.attestation has the format). Built from the lifecycle alone, with no clock and no
randomness, so a repeated deployment signs the same statement to the same bytes.

Pure: the event contract and the attestation format; the signing function comes in.
"""

from __future__ import annotations

from collections.abc import Callable

from services.deployer.lifecycle import Lifecycle
from shared import attestation
from shared.attestation import (
    ApprovalPredicate,
    Chain,
    CheckRecord,
    DecisionRecord,
    DeployedTo,
    Digest,
    Envelope,
    PolicyCited,
    Statement,
    Subject,
    VoteRecord,
)
from shared.events import CheckResult, ReviewDecided


def statement(state: Lifecycle, approval: ReviewDecided, name: str, target: str, location: str) -> Statement:
    """What the deployer attests for `state`'s release about to be deployed to `target` at `location`;
    `name`: the artifact's file name where it is installed."""
    c = approval.candidate
    decision = DecisionRecord(
        outcome="approved", mode=approval.mode, decided_by=approval.decided_by, reason=approval.reason,
        decided_at=approval.occurred_at, break_glass=approval.break_glass,
        votes=tuple(VoteRecord(who=v.approver, decision=v.decision, reason=v.reason, channel=v.channel,
                               at=v.at, break_glass=v.break_glass) for v in approval.votes[:attestation.MAX_VOTES]),
        policy=PolicyCited(name=approval.policy.name, rule=approval.policy.rule, digest=approval.policy.digest),
        anchored_to=approval.anchored_to)
    # A person's decision answers the review.requested (its cause); an automatic one follows the checks.
    requested = (approval.causation_id if approval.mode == "human"
                 and approval.causation_id not in (state.checks_event_id, state.submitted_event_id) else None)
    predicate = ApprovalPredicate(
        submission_id=state.submission_id, model=c.model, version=c.version, artifact_uri=c.artifact_uri,
        data_version=c.data_version, code_commit=c.code_commit, training_run_id=state.training_run_id,
        submitter=state.submitted_by, claimed_submitter=state.claimed_submitter, metrics=state.metrics,
        checks=tuple(map(_check, state.results[:attestation.MAX_CHECKS])), decision=decision,
        chain=Chain(model_submitted=state.submitted_event_id, checks_passed=state.checks_event_id,
                    review_requested=requested, review_decided=approval.event_id),
        deployer=DeployedTo(target=target, location=location))
    return Statement(subject=(Subject(name=name, digest=Digest(sha256=c.artifact_sha256)),), predicate=predicate)


def attest(state: Lifecycle, approval: ReviewDecided, name: str, target: str, location: str, kid: str,
           sign_bytes: Callable[[bytes], bytes]) -> Envelope:
    """The signed attestation (raises AttestationError when it would exceed its bound)."""
    return attestation.sign(statement(state, approval, name, target, location), kid, sign_bytes)


def _check(result: CheckResult) -> CheckRecord:
    detail = result.message
    if len(detail) > attestation.MAX_DETAIL:
        detail = detail[:attestation.MAX_DETAIL - 1] + "…"
    return CheckRecord(name=result.name, passed=result.passed, blocking=result.blocking,
                       measured=result.measured, threshold=result.threshold, detail=detail)
