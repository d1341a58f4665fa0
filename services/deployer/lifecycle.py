"""Each submission's lifecycle in the deployer: a state machine that only moves forward.

    open --checks failed / rejected--> rejected            (terminal)
    open --checks passed + approved (same digest)--> deploying --> deployed   (terminal)
    deploying --first canary stage handed to the target--> rolling_out --last stage--> deployed
    open --approval for another digest, no deploy step, or the deploy fails--> failed   (terminal)
    open --approved, but a newer submission is in production or rolling out--> superseded (terminal)
    any --revocation--> revoked                                               (terminal)

Checks and decisions arrive on different topics, so in either order: an approval that arrives
before checks.passed waits for it. An approval deploys only when it cites (`checks_event_id`) the
checks.passed held for its submission and binds the same candidate (digest, data version, code
commit): a broken chain fails the submission (deployment.failed, saying which events disagree).
A rejected digest is rejected for good, whatever submission carries it later; so is a revoked
one. While `rolling_out`, the scheduler owns the submission: a redelivered approval starts
nothing. Production never moves backwards: "newer" is submitted later, which the validator's
checks.passed stamps (`checked_at`): it checks one model's submissions in the order they were
submitted (one partition per model), one after the other.

`advance` returns the next state and every action to carry out; the service only executes them.
Pure: the event contract and the workflow schema, no I/O.
"""

from __future__ import annotations

import uuid
from typing import Literal

from services.deployer.rollout import Plan, Release, StoredInputs
from shared.attestation import Envelope
from shared.events import (
    Candidate,
    CheckResult,
    ChecksFailed,
    ChecksPassed,
    DeploymentFailed,
    DeploymentRevoked,
    DeploymentSucceeded,
    DeploymentSuperseded,
    Frozen,
    Metrics,
    ReviewDecided,
    RevocationRequested,
    Submitter,
)
from shared.values import UtcDatetime
from shared.workflow.schema import DeployInputs

Status = Literal["open", "deploying", "rolling_out", "deployed", "rejected", "failed", "revoked", "superseded"]
TERMINAL = ("deployed", "rejected", "failed", "revoked", "superseded")
SubmissionEvent = ChecksPassed | ChecksFailed | ReviewDecided


class Lifecycle(Frozen):
    submission_id: uuid.UUID
    status: Status = "open"
    checked: Candidate | None = None  # the candidate whose checks passed
    checked_at: UtcDatetime | None = None  # when they first passed: the submission's place in order
    checks_event_id: uuid.UUID | None = None  # the checks.passed held: what an approval must cite
    metrics: Metrics = {}
    # What the attestation records from checks.passed besides the candidate (defaults: stored before).
    results: tuple[CheckResult, ...] = ()
    submitted_by: Submitter | None = None  # the verified signer of the submission
    claimed_submitter: str | None = None  # the name the submission typed
    training_run_id: str | None = None
    submitted_event_id: uuid.UUID | None = None  # the model.submitted the checks followed
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


# --- actions, in the order the service carries them out: emit, record the state, deploy -----------

class AnnounceRevocation(Frozen):
    """The submission was revoked before its candidate was known; now it is: ban its digest and
    version too, and emit deployment.revoked."""

    request: RevocationRequested
    candidate: Candidate

    @property
    def why(self) -> str:
        return f"by {self.request.requested_by}: {self.request.reason}"

    @property
    def event(self) -> DeploymentRevoked:
        r = self.request
        return DeploymentRevoked.caused_by(r, candidate=self.candidate, requested_by=r.requested_by,
                                           reason=r.reason, was_in_production=False)


class Fail(Frozen):
    """Emit deployment.failed, before the failed state is recorded (a crash in between fails again
    on redelivery, with the same event id)."""

    approval: ReviewDecided
    target: str
    reason: str

    @property
    def event(self) -> DeploymentFailed:
        return failed_event(self.approval, self.target, self.reason)


class Supersede(Frozen):
    """Emit deployment.superseded: a newer release of the model is in production or rolling out."""

    approval: ReviewDecided
    target: str
    by: Release

    @property
    def event(self) -> DeploymentSuperseded:
        a, by = self.approval, self.by
        return DeploymentSuperseded.caused_by(
            a, candidate=a.candidate, target=self.target, superseded_by=by.submission_id,
            superseded_by_version=by.version,
            reason=f"{by.candidate.model} {by.version} (submission {by.submission_id}), submitted later, is "
                   f"already in production or rolling out; production does not move backwards "
                   f"(an operator can roll back)")


class BanDigest(Frozen):
    """Record, with the rejected state, that this artifact digest is never deployed."""

    sha256: str


class Deploy(Frozen):
    """Start the deployment, once the `deploying` state is recorded."""

    candidate: Candidate
    approval: ReviewDecided
    plan: Plan


Action = AnnounceRevocation | Fail | Supersede | BanDigest | Deploy


def advance(state: Lifecycle, event: SubmissionEvent, plan: Plan, *, digest_rejected: bool = False,
            revoked: str | None = None, ahead: Release | None = None) -> tuple[Lifecycle, list[Action]]:
    """The next state, and what to do now. `plan`: how the model's workflow deploys it;
    `digest_rejected`: the event's artifact digest was rejected before (by any submission);
    `revoked`: why its submission, digest or model version was revoked, if it was; `ahead`: the
    newest release of the model in production or rolling out, if any."""
    if state.status == "revoked" and not state.announced:
        assert state.revocation is not None  # set with the status by `revoke`
        announce = AnnounceRevocation(request=state.revocation, candidate=candidate_of(event))
        return state.model_copy(update={"announced": True}), [announce]
    if state.status in TERMINAL or state.status == "rolling_out":
        return state, []
    if isinstance(event, ChecksFailed):
        return _rejected(state, event, "checks failed")
    if isinstance(event, ReviewDecided) and event.outcome == "rejected":
        return _rejected(state, event, event.reason)
    if isinstance(event, ChecksPassed):
        state = state.model_copy(update={"checked": event.submission.candidate,
                                         "checks_event_id": event.event_id,
                                         "metrics": event.submission.metrics,
                                         "results": event.results, "submitted_by": event.submitted_by,
                                         "claimed_submitter": event.submission.submitter,
                                         "training_run_id": event.submission.training_run_id,
                                         "submitted_event_id": event.causation_id,
                                         "checked_at": state.checked_at or event.occurred_at})
    elif state.approval is not None and state.approval.candidate != event.candidate:
        reason = (f"two approvals for different artifacts ({state.approval.candidate.artifact_sha256} "
                  f"and {event.candidate.artifact_sha256}); deploying neither")
        return _failed(state, event, plan.target, reason)
    else:
        state = state.model_copy(update={"approval": event})
    return _ready(state, plan, digest_rejected, revoked, ahead)


def completes(state: Lifecycle, event: SubmissionEvent) -> bool:
    """Whether `advance(state, event)` may get past "wait for the other half": the checks and an
    approval both known after it. Only then does it read `digest_rejected`, so only then must the
    rejections be read to their end first; a checks.passed that arrives before its approval (the
    usual order) decides nothing that depends on them."""
    if state.status in TERMINAL or state.status == "rolling_out":
        return False
    checked = state.checked is not None or isinstance(event, ChecksPassed)
    approved = state.approval is not None or (isinstance(event, ReviewDecided) and event.outcome == "approved")
    return checked and approved


def started_unfinished(state: Lifecycle) -> bool:
    """Whether the deployment of `state` was started (its release recorded) and did not finish: a
    crash may have left the target moved to it before deployment.succeeded (or the first canary
    stage) was recorded. What ends it otherwise must first give the target back."""
    return state.status == "deploying" and state.deploy is not None


def _ready(state: Lifecycle, plan: Plan, digest_rejected: bool, revoked: str | None,
           ahead: Release | None) -> tuple[Lifecycle, list[Action]]:
    if state.checked is None or state.approval is None:
        return state, []  # wait for the other half
    approval = state.approval
    if approval.candidate != state.checked:
        reason = (f"approval is for artifact {approval.candidate.artifact_sha256} "
                  f"({approval.candidate.data_version}, {approval.candidate.code_commit}), "
                  f"but the checks passed for {state.checked.artifact_sha256} "
                  f"({state.checked.data_version}, {state.checked.code_commit})")
        return _failed(state, approval, plan.target, reason)
    if (broken := broken_chain(approval, state)) is not None:
        return _failed(state, approval, plan.target, broken)
    if digest_rejected:
        reason = f"artifact {approval.candidate.artifact_sha256} was rejected before; a rejection is final"
        return _failed(state, approval, plan.target, reason)
    if revoked:
        return _failed(state, approval, plan.target, f"{revoked}; a revoked artifact is never deployed again")
    if plan.inputs is None:
        return _failed(state, approval, plan.target, plan.why)
    if newer(ahead, state):
        assert ahead is not None
        supersede = Supersede(approval=approval, target=plan.target, by=ahead)
        return state.model_copy(update={"status": "superseded", "note": supersede.event.reason}), [supersede]
    return state.model_copy(update={"status": "deploying"}), [Deploy(candidate=state.checked, approval=approval,
                                                                     plan=plan)]


def _rejected(state: Lifecycle, event: SubmissionEvent, note: str) -> tuple[Lifecycle, list[Action]]:
    ban: list[Action] = [BanDigest(sha256=candidate_of(event).artifact_sha256)] if bans_digest(event) else []
    return state.model_copy(update={"status": "rejected", "note": note}), ban


def _failed(state: Lifecycle, approval: ReviewDecided, target: str, reason: str) -> tuple[Lifecycle, list[Action]]:
    return failed(state, reason), [Fail(approval=approval, target=target, reason=reason)]


def broken_chain(approval: ReviewDecided, state: Lifecycle) -> str | None:
    """Why `approval` does not follow the checks held for its submission, or None when it cites
    them. An approval citing nothing (written before approvals cited their checks) does not deploy."""
    if approval.checks_event_id is not None and approval.checks_event_id == state.checks_event_id:
        return None
    held = (f"the checks that passed for submission {state.submission_id} are event {state.checks_event_id}"
            if state.checks_event_id else "the checks held for this submission were recorded without their event id")
    cited = (f"cites checks event {approval.checks_event_id}" if approval.checks_event_id
             else "cites no checks event")
    return (f"approval {approval.event_id} by {approval.decided_by} {cited}, but {held}; an approval "
            "deploys only the checks it follows")


def newer(release: Release | None, state: Lifecycle) -> bool:
    """Whether `release` was submitted after the submission of `state`. Unknown order (a release
    or state stored before the order was kept) is not newer: it deploys as it did before."""
    return (release is not None and release.submission_id != state.submission_id
            and release.checked_at is not None and state.checked_at is not None
            and release.checked_at > state.checked_at)


def candidate_of(event: SubmissionEvent) -> Candidate:
    return event.candidate if isinstance(event, ReviewDecided) else event.submission.candidate


def bans_digest(event: SubmissionEvent) -> bool:
    """Whether a rejection by `event` holds for its artifact digest for good: not when the bytes
    were never verified to have that digest."""
    if isinstance(event, ReviewDecided):
        return event.final_for_artifact
    return event.condemns_artifact


# --- the steps of a deployment, recorded by the service as it carries them out --------------------

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


def succeeded_event(state: Lifecycle, target: str, location: str,
                    attestation: Envelope | None = None) -> DeploymentSucceeded:
    """Derived from the approval, so a repeated deploy emits the same event_id."""
    assert state.approval is not None
    return DeploymentSucceeded.caused_by(state.approval, candidate=state.approval.candidate,
                                         target=target, location=location, metrics=state.metrics,
                                         approval_mode=state.approval.mode,
                                         anchored_to=state.approval.anchored_to, attestation=attestation)


def failed_event(approval: ReviewDecided, target: str, reason: str) -> DeploymentFailed:
    return DeploymentFailed.caused_by(approval, candidate=approval.candidate, target=target, reason=reason)
