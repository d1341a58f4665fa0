"""The event contract: every event Signoff services exchange, as frozen pydantic models.

Each event is one JSON object on its topic. The envelope fields (`event_id`, `submission_id`,
`occurred_at`, `schema_version`, `causation_id`) are common to all; the record key is the model
name, so every event about one model stays in order on one partition. CloudEvents headers are
added on the wire by `shared.codec`.

Names are past tense. Each event type has its own version (`class_version`): a change that is not
backwards compatible bumps that one class's version and adds one upcaster in `shared.upcasting`.
Events are upcast wherever they are validated, on the wire and inside stored state alike.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, ClassVar, Literal, Self

from pydantic import Field, model_validator

from shared import topics
from shared.attestation import Envelope
from shared.upcasting import upcast, upcaster

# What events carry, re-exported: `from shared.events import Candidate` keeps working.
from shared.values import (  # noqa: F401
    Candidate,
    CheckResult,
    CommitSha,
    Escalation,
    Frozen,
    Metric,
    Metrics,
    ModelName,
    NonEmpty,
    PolicyDocuments,
    PolicyRef,
    Production,
    Sha256,
    Submission,
    Submitter,
    Text,
    UtcDatetime,
    Version,
    Vote,
    utcnow,
)


class Event(Frozen):
    """The envelope every event carries."""

    topic: ClassVar[str]
    type: ClassVar[str]
    class_version: ClassVar[int] = 1  # bump per type, with an upcaster (shared.upcasting)

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4, description="Unique id; duplicates share it")
    submission_id: uuid.UUID = Field(description="The submission this event is about")
    occurred_at: UtcDatetime = Field(default_factory=utcnow, description="When it happened, UTC")
    schema_version: int = Field(default=1, ge=1, description="Version of this event type's schema")
    causation_id: uuid.UUID | None = Field(default=None, description="event_id of the event that caused this one")

    @model_validator(mode="before")
    @classmethod
    def _current_version(cls, data: object) -> object:
        """Bring JSON written under an older version of this type up to date (raises for a newer
        one); an event built in code is at the current version."""
        if isinstance(data, dict) and hasattr(cls, "type"):
            if "schema_version" not in data:
                return {**data, "schema_version": cls.class_version}
            return upcast(cls.type, cls.class_version, data)
        return data

    @classmethod
    def caused_by(cls, cause: Event, *, salt: str = "", **fields: object) -> Self:
        """The event that `cause` leads to. Its id is derived from the cause, so handling the same
        cause twice yields the same event_id and downstream consumers can drop the duplicate."""
        return cls(
            event_id=uuid.uuid5(cause.event_id, f"{cls.type}:{salt}"),
            submission_id=cause.submission_id,
            causation_id=cause.event_id,
            **fields,
        )

    @property
    def key(self) -> str:
        """Record key: the model name, so all events of one model share a partition."""
        return self.candidate.model  # type: ignore[attr-defined]


class ModelSubmitted(Event):
    topic = topics.MODEL_SUBMITTED
    type = "signoff.model.submitted"

    submission: Submission

    @property
    def key(self) -> str:
        return self.submission.candidate.model


# Checks whose verdict is about the artifact's bytes alone (see ChecksCompleted.condemns_artifact).
BYTE_CHECKS = frozenset({"security"})


class ChecksCompleted(Event):
    class_version = 2  # 2: submitted_by

    submission: Submission
    results: tuple[CheckResult, ...]
    workflow: PolicyRef | None = Field(default=None, description="Workflow whose checks step ran")
    submitted_by: Submitter | None = Field(
        default=None, description="The verified signer of the model.submitted (None: it was unsigned); "
        "who submitted, for separation of duties, instead of the claimed `submission.submitter`")

    @property
    def key(self) -> str:
        return self.submission.candidate.model


    @property
    def artifact_verified(self) -> bool:
        """The artifact's bytes were read and have the declared digest."""
        return any(r.name == "integrity" and r.passed for r in self.results)

    @property
    def condemns_artifact(self) -> bool:
        """The checks judged the bytes themselves, and they failed (the security scan of verified
        bytes): a rejection for good of the digest. Metrics, lineage, fairness, regression and the
        model card are what the submission *declares* beside the bytes: anyone may submit someone
        else's artifact with bad declarations, and must not get it banned for every model."""
        return self.artifact_verified and any(r.name in BYTE_CHECKS and r.blocking and not r.passed
                                              for r in self.results)


class ChecksPassed(ChecksCompleted):
    topic = topics.CHECKS_PASSED
    type = "signoff.checks.passed"


class ChecksFailed(ChecksCompleted):
    topic = topics.CHECKS_FAILED
    type = "signoff.checks.failed"


class ReviewRequested(Event):
    """Its causation_id is the checks.passed it follows (the decision cites it as checks_event_id)."""

    topic = topics.REVIEW_REQUESTED
    type = "signoff.review.requested"
    class_version = 3  # 2: submitted_by; 3: policy.documents

    submission: Submission
    results: tuple[CheckResult, ...]
    approvers: tuple[NonEmpty, ...] = Field(min_length=1, description="Who may vote (groups expanded)")
    quorum: int = Field(default=1, ge=1)
    deadline: UtcDatetime = Field(description="When the review times out")
    on_timeout: Literal["reject", "escalate"] = "reject"
    escalation: Escalation | None = Field(default=None, description="With on_timeout: escalate")
    remind_every: timedelta | None = Field(default=None, description="Remind pending approvers this often")
    break_glass: tuple[NonEmpty, ...] = Field(
        default=(), description="Who may approve alone, with a written justification")
    veto: bool = Field(default=True, description="One rejection rejects; else rejections need the quorum")
    policy: PolicyRef
    reason: Text
    production: Production | None = Field(default=None, description="The model it would replace")
    submitted_by: Submitter | None = Field(
        default=None, description="The verified submitter (the checks event's submitted_by; None: unsigned)")

    @property
    def key(self) -> str:
        return self.submission.candidate.model


class ReviewDecided(Event):
    topic = topics.REVIEW_DECIDED
    type = "signoff.review.decided"
    class_version = 4  # 2: anchored_to; 3: checks_event_id; 4: policy.documents

    candidate: Candidate
    outcome: Literal["approved", "rejected"]
    mode: Literal["automatic", "human"]
    decided_by: NonEmpty = Field(description="The approver, or policy:<name>/<rule> when automatic")
    reason: Text
    policy: PolicyRef
    cites: uuid.UUID | None = Field(
        default=None, description="event_id of an earlier decision this one follows (a repeated rejection)")
    votes: tuple[Vote, ...] = Field(default=(), description="Every vote of a human review")
    break_glass: bool = Field(default=False, description="Approved alone under the break-glass role")
    final_for_artifact: bool = Field(
        default=True,
        description="A rejection that holds for the artifact digest for good; false when the "
        "artifact's bytes were never verified to have that digest (integrity check failed) or when "
        "nobody judged the artifact (the review timed out)")
    anchored_to: uuid.UUID | None = Field(
        default=None, description="A carried-forward approval: submission_id of the release approved "
        "by a person that the candidate was compared with")
    checks_event_id: uuid.UUID | None = Field(
        default=None, description="event_id of the checks event this decision follows (checks.passed; "
        "checks.failed for a rejection): the deployer acts on an approval only when it cites the "
        "checks.passed it holds for the submission")


# The order in which the deployer changed a model's production: what the production view orders
# by (shared.production), never by a timestamp. Stamped by the deployer from its own state.
DeployerSequence = Annotated[int | None, Field(
    default=None, ge=1, description="The deployer's number for this change of the model's production: "
    "per model, increasing (None: emitted before the deployer numbered its events)")]


class DeploymentSucceeded(Event):
    topic = topics.DEPLOYMENT_SUCCEEDED
    type = "signoff.deployment.succeeded"

    class_version = 4  # 2: approval_mode, anchored_to; 3: sequence; 4: attestation

    candidate: Candidate
    target: NonEmpty
    location: NonEmpty
    metrics: Metrics = Field(default_factory=dict, description="Metrics of the model now in production")
    approval_mode: Literal["automatic", "human"] | None = Field(
        default=None, description="How the release was approved; a release approved by a person "
        "anchors later carried-forward approvals (None: deployed before this was recorded)")
    anchored_to: uuid.UUID | None = Field(
        default=None, description="A carried-forward release: the release approved by a person it "
        "was compared with (its approval's anchored_to)")
    sequence: DeployerSequence = None
    attestation: Envelope | None = Field(
        default=None, description="The release's approval attestation: an in-toto Statement in a DSSE "
        "envelope signed by the deployer (shared.attestation; `signoff verify` checks it). None: "
        "deployed before attestations were made")


class DeploymentFailed(Event):
    topic = topics.DEPLOYMENT_FAILED
    type = "signoff.deployment.failed"

    candidate: Candidate
    target: NonEmpty
    reason: Text


class ReviewEscalated(Event):
    """The first approvers let the deadline pass; the review now asks the escalation approvers."""

    topic = topics.REVIEW_ESCALATED
    type = "signoff.review.escalated"

    candidate: Candidate
    approvers: tuple[NonEmpty, ...] = Field(min_length=1)
    deadline: UtcDatetime
    reason: Text


class RollbackRequested(Event):
    """Put an earlier version of `model` back in production. `submission_id` is this operation's
    id (what `signoff watch` follows), not a model submission."""

    topic = topics.ROLLBACK_REQUESTED
    type = "signoff.rollback.requested"

    model: ModelName
    to_version: Version | None = Field(default=None, description="None: the last approved, healthy version")
    requested_by: NonEmpty
    reason: NonEmpty

    @property
    def key(self) -> str:
        return self.model


class RevocationRequested(Event):
    """Revoke the submission `submission_id`: it is taken out of production if it is there, and can
    never be deployed again."""

    topic = topics.REVOCATION_REQUESTED
    type = "signoff.revocation.requested"

    model: ModelName
    requested_by: NonEmpty
    reason: NonEmpty

    @property
    def key(self) -> str:
        return self.model


class DeploymentProgressed(Event):
    """A stage of a staged (canary) rollout was handed to the target."""

    topic = topics.DEPLOYMENT_PROGRESSED
    type = "signoff.deployment.progressed"

    candidate: Candidate
    target: NonEmpty
    stage: NonEmpty
    traffic_percent: int = Field(ge=0, le=100)


class DeploymentRolledBack(Event):
    topic = topics.DEPLOYMENT_ROLLED_BACK
    type = "signoff.deployment.rolled_back"
    class_version = 2  # 2: sequence

    model: ModelName
    from_version: Version | None
    to_version: Version
    to_submission_id: uuid.UUID
    target: NonEmpty
    requested_by: NonEmpty
    reason: Text
    sequence: DeployerSequence = None

    @property
    def key(self) -> str:
        return self.model


class DeploymentRevoked(Event):
    topic = topics.DEPLOYMENT_REVOKED
    type = "signoff.deployment.revoked"
    class_version = 2  # 2: sequence

    candidate: Candidate
    requested_by: NonEmpty
    reason: NonEmpty
    was_in_production: bool
    sequence: DeployerSequence = None


class DeploymentSuperseded(Event):
    """An approved submission that was not deployed because a newer submission of the same model
    is already in production (or rolling out): production never moves backwards unless an
    operator asks (a rollback). Newer means submitted later (see docs/deployer.md)."""

    topic = topics.DEPLOYMENT_SUPERSEDED
    type = "signoff.deployment.superseded"

    candidate: Candidate
    target: NonEmpty
    superseded_by: uuid.UUID = Field(description="submission_id of the newer release in production")
    superseded_by_version: Version
    reason: Text


class DeploymentDrifted(Event):
    """A target's production was found changed by someone other than Signoff (an MLflow alias
    moved or deleted by hand): reported, and put back when the deploy step says `on_drift: revert`.
    `submission_id` is the release that should be in production (when nothing should be: the last
    release the deployer deployed of the model)."""

    topic = topics.DEPLOYMENT_DRIFTED
    type = "signoff.deployment.drifted"

    model: ModelName
    target: NonEmpty
    where: NonEmpty = Field(description="What was found changed, e.g. models:/churn@champion",
                            examples=["models:/churn@champion"])
    expected_version: Version | None = Field(description="The version the deployer put in production (None: none)")
    found_version: Version | None = Field(description="The version found there (None: nothing, e.g. the alias deleted)")
    action: Literal["reported", "reverted", "revert_failed"] = Field(
        description="reported: left as found (on_drift: report); reverted: put back to expected_version; "
        "revert_failed: on_drift: revert, but putting it back failed (reason says why)")
    reason: Text

    @property
    def key(self) -> str:
        return self.model


EVENT_TYPES: tuple[type[Event], ...] = (
    ModelSubmitted, ChecksPassed, ChecksFailed, ReviewRequested, ReviewDecided,
    DeploymentSucceeded, DeploymentFailed, ReviewEscalated, RollbackRequested, RevocationRequested,
    DeploymentProgressed, DeploymentRolledBack, DeploymentRevoked, DeploymentSuperseded, DeploymentDrifted,
)
BY_TOPIC: dict[str, type[Event]] = {cls.topic: cls for cls in EVENT_TYPES}
BY_TYPE: dict[str, type[Event]] = {cls.type: cls for cls in EVENT_TYPES}


# --- upcasters: one per bump, beside the contract they upgrade ------------------------------------

@upcaster(ReviewDecided.type, from_version=1)
def _review_decided_v1_to_v2(data: dict) -> dict:
    return {**data, "anchored_to": None}  # no anchor was recorded


@upcaster(DeploymentSucceeded.type, from_version=1)
def _deployment_succeeded_v1_to_v2(data: dict) -> dict:
    return {**data, "approval_mode": None, "anchored_to": None}  # unknown: such a release anchors nothing


def _unsigned(data: dict) -> dict:
    return {**data, "submitted_by": None}  # written before the signer was recorded: unsigned


def _cites_no_checks(data: dict) -> dict:
    return {**data, "checks_event_id": None}  # cites nothing: the deployer does not act on it


def _unnumbered(data: dict) -> dict:
    return {**data, "sequence": None}  # before the deployer numbered its events: ordered before them


upcaster(ChecksPassed.type, from_version=1)(_unsigned)
upcaster(ChecksFailed.type, from_version=1)(_unsigned)
upcaster(ReviewRequested.type, from_version=1)(_unsigned)
upcaster(ReviewDecided.type, from_version=2)(_cites_no_checks)
upcaster(DeploymentSucceeded.type, from_version=2)(_unnumbered)
upcaster(DeploymentRolledBack.type, from_version=1)(_unnumbered)
upcaster(DeploymentRevoked.type, from_version=1)(_unnumbered)


@upcaster(DeploymentSucceeded.type, from_version=3)
def _unattested(data: dict) -> dict:
    return {**data, "attestation": None}  # deployed before the deployer attested its releases


@upcaster(ReviewRequested.type, from_version=2)
@upcaster(ReviewDecided.type, from_version=3)
def _policy_without_documents(data: dict) -> dict:
    # Written before decisions carried the policy text: its digest is the workflow file's sha256.
    policy = data.get("policy")
    return {**data, "policy": {**policy, "documents": None}} if isinstance(policy, dict) else data
