"""Each submission's lifecycle in the deployer: a state machine that only moves forward.

    open --checks failed / rejected--> rejected            (terminal)
    open --checks passed + approved (same digest)--> deploying --> deployed   (terminal)
    deploying --first canary stage handed to the target--> rolling_out --last stage--> deployed
    open --approval for another digest, or the deploy fails--> failed         (terminal)
    any --revocation--> revoked                                               (terminal)

Checks and decisions arrive on different topics, so in either order: an approval that arrives
before checks.passed waits for it. A rejected digest is rejected for good, whatever submission
carries it later; so is a revoked one. While `rolling_out`, the scheduler owns the submission:
a redelivered approval starts nothing.
"""

from __future__ import annotations

import uuid
from typing import Literal

from shared.events import (
    Candidate, ChecksFailed, ChecksPassed, DeploymentFailed, DeploymentSucceeded, Frozen, Metrics,
    ReviewDecided, RevocationRequested,
)
from shared.workflows import DeployInputs
from services.deployer.rollout import StoredInputs

Status = Literal["open", "deploying", "rolling_out", "deployed", "rejected", "failed", "revoked"]
TERMINAL = ("deployed", "rejected", "failed", "revoked")


class Lifecycle(Frozen):
    submission_id: uuid.UUID
    status: Status = "open"
    checked: Candidate | None = None  # the candidate whose checks passed
    metrics: Metrics = {}
    approval: ReviewDecided | None = None
    note: str = ""
    # Set when the deployment starts: how (the workflow's deploy step) and what it replaces.
    deploy: StoredInputs | None = None
    previous: uuid.UUID | None = None  # submission in production when the rollout started
    stage: int = -1  # index of the last stage handed to the target
    revocation: RevocationRequested | None = None
    announced: bool = True  # False: revoked before its candidate was known, DeploymentRevoked pending

    @property
    def candidate(self) -> Candidate | None:
        return self.checked or (self.approval.candidate if self.approval else None)


class Deploy(Frozen):
    candidate: Candidate
    approval: ReviewDecided


class Fail(Frozen):
    approval: ReviewDecided
    reason: str


Action = Deploy | Fail | None


def advance(
    state: Lifecycle, event: ChecksPassed | ChecksFailed | ReviewDecided, digest_rejected: bool,
    revoked: str | None = None,
) -> tuple[Lifecycle, Action]:
    """The next state, and what to do now. `digest_rejected` says whether the artifact digest
    in the event was rejected before (by any submission); `revoked`, why the artifact (digest or
    model version) was revoked, if it was."""
    if state.status in TERMINAL or state.status == "rolling_out":
        return state, None
    if isinstance(event, ChecksFailed):
        return state.model_copy(update={"status": "rejected", "note": "checks failed"}), None
    if isinstance(event, ReviewDecided) and event.outcome == "rejected":
        return state.model_copy(update={"status": "rejected", "note": event.reason}), None
    if isinstance(event, ChecksPassed):
        state = state.model_copy(update={"checked": event.submission.candidate,
                                         "metrics": event.submission.metrics})
    elif state.approval is not None and state.approval.candidate != event.candidate:
        reason = (f"two approvals for different artifacts ({state.approval.candidate.artifact_sha256} "
                  f"and {event.candidate.artifact_sha256}); deploying neither")
        return state.model_copy(update={"status": "failed", "note": reason}), Fail(approval=event, reason=reason)
    else:
        state = state.model_copy(update={"approval": event})
    return _ready(state, digest_rejected, revoked)


def _ready(state: Lifecycle, digest_rejected: bool, revoked: str | None) -> tuple[Lifecycle, Action]:
    if state.checked is None or state.approval is None:
        return state, None  # wait for the other half
    approval = state.approval
    if approval.candidate != state.checked:
        reason = (f"approval is for artifact {approval.candidate.artifact_sha256} "
                  f"({approval.candidate.data_version}, {approval.candidate.code_commit}), "
                  f"but the checks passed for {state.checked.artifact_sha256} "
                  f"({state.checked.data_version}, {state.checked.code_commit})")
        return state.model_copy(update={"status": "failed", "note": reason}), Fail(approval=approval, reason=reason)
    if digest_rejected:
        reason = f"artifact {approval.candidate.artifact_sha256} was rejected before; a rejection is final"
        return state.model_copy(update={"status": "failed", "note": reason}), Fail(approval=approval, reason=reason)
    if revoked:
        reason = f"{revoked}; a revoked artifact is never deployed again"
        return state.model_copy(update={"status": "failed", "note": reason}), Fail(approval=approval, reason=reason)
    return state.model_copy(update={"status": "deploying"}), Deploy(candidate=state.checked, approval=approval)


def bans_digest(event: ChecksPassed | ChecksFailed | ReviewDecided) -> bool:
    """Whether a rejection by `event` holds for its artifact digest for good: not when the bytes
    were never verified to have that digest."""
    if isinstance(event, ReviewDecided):
        return event.final_for_artifact
    return event.artifact_verified


def deployed(state: Lifecycle, location: str) -> Lifecycle:
    return state.model_copy(update={"status": "deployed", "note": location})


def failed(state: Lifecycle, reason: str) -> Lifecycle:
    return state.model_copy(update={"status": "failed", "note": reason})


def started(state: Lifecycle, deploy: DeployInputs, previous: uuid.UUID | None) -> Lifecycle:
    return state.model_copy(update={"deploy": deploy, "previous": previous, "stage": -1})


def staged(state: Lifecycle, index: int) -> Lifecycle:
    """Stage `index` was handed to the target; the scheduler moves it on after the bake."""
    return state.model_copy(update={"status": "rolling_out", "stage": index})


def revoke(state: Lifecycle, request: RevocationRequested) -> Lifecycle:
    """Terminal whatever the state. Without a known candidate, DeploymentRevoked is announced
    when one of the submission's events brings it."""
    return state.model_copy(update={
        "status": "revoked", "note": f"revoked by {request.requested_by}: {request.reason}",
        "revocation": request, "announced": state.candidate is not None})


def succeeded_event(state: Lifecycle, target: str, location: str) -> DeploymentSucceeded:
    """Derived from the approval, so a repeated deploy emits the same event_id."""
    assert state.approval is not None
    return DeploymentSucceeded.caused_by(state.approval, candidate=state.approval.candidate,
                                         target=target, location=location, metrics=state.metrics)


def failed_event(approval: ReviewDecided, target: str, reason: str) -> DeploymentFailed:
    return DeploymentFailed.caused_by(approval, candidate=approval.candidate, target=target, reason=reason)
