"""What events carry: names, digests, metrics and the value objects inside events (a candidate,
a submission, a check result, a vote, ...). Frozen pydantic models, strict about unknown fields;
`shared.events` builds the events from them and re-exports them."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

# Names and versions become folder names in the model store: one safe path segment each.
ModelName = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$"),
    Field(description="Model name: lowercase letters, digits, '.', '_', '-'; starts alphanumeric",
          examples=["fraud-detector"]),
]
Version = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"),
    Field(description="Model version: one path segment, starts alphanumeric", examples=["1.4.0"]),
]
Sha256 = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{64}$"),
    Field(description="sha256 of the artifact bytes, 64 lowercase hex digits"),
]
CommitSha = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{7,64}$"),
    Field(description="Code commit the model was trained from (git sha, 7-64 hex digits)",
          examples=["3f2c9ab"]),
]
NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=512, strip_whitespace=True)]


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number (not NaN or infinity)")
    return value


Metric = Annotated[float, AfterValidator(_finite)]
Metrics = dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], Metric]


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Frozen(BaseModel):
    """Immutable, strict about unknown fields: a typo in a producer is an error, not a silent drop."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Candidate(Frozen):
    """What an approval is bound to: the exact artifact bytes and their lineage."""

    model: ModelName
    version: Version
    artifact_uri: NonEmpty = Field(description="file:// or http(s):// location of the artifact",
                                   examples=["file:///models/incoming/fraud-1.4.0.onnx"])
    artifact_sha256: Sha256
    data_version: NonEmpty = Field(description="Version of the training data", examples=["2026-11-01"])
    code_commit: CommitSha


class Submission(Frozen):
    """Everything a training job declares about a model it wants in production."""

    candidate: Candidate
    metrics: Metrics = Field(description="Evaluation metrics, name to value",
                             examples=[{"accuracy": 0.93, "auc": 0.97}])
    group_metrics: dict[NonEmpty, Metrics] = Field(
        default_factory=dict,
        description="Optional metrics per sensitive group, group to (metric to value)",
        examples=[{"group_a": {"selection_rate": 0.31}, "group_b": {"selection_rate": 0.29}}],
    )
    submitter: NonEmpty = Field(description="Who submitted the model (a person or a pipeline)")
    training_run_id: NonEmpty | None = None
    model_card_uri: NonEmpty | None = Field(
        default=None, description="file:// or http(s):// location of the model card (text/Markdown)")
    evaluation_uri: NonEmpty | None = Field(
        default=None, description="file:// or http(s):// CSV with columns label, prediction, group: "
        "fairness is computed from it rather than from reported group metrics")


class PolicyRef(Frozen):
    """Which workflow produced a decision, for the audit trail (like OPA's policy revision)."""

    name: NonEmpty = Field(description="Workflow name")
    rule: NonEmpty = Field(description="Step or rule of the workflow that decided")
    digest: Sha256 = Field(description="sha256 of the workflow file")


class Production(Frozen):
    """The model in production for a name when a decision was made: evidence for reviewers."""

    candidate: Candidate
    metrics: Metrics
    submission_id: uuid.UUID


class CheckResult(Frozen):
    name: NonEmpty
    passed: bool
    blocking: bool = Field(default=True, description="A failed blocking check fails the submission")
    measured: float | str | None = None
    threshold: float | str | None = None
    message: str = ""


class Vote(Frozen):
    """One reviewer's answer, as recorded in the audit trail."""

    approver: NonEmpty
    decision: Literal["approve", "reject"]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=4000, strip_whitespace=True)] = Field(
        description="Why; a break-glass approval's written justification")
    channel: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,31}$")] = Field(
        description="How the vote arrived: a channel of the review-notifier (http, slack, email, ...)")
    at: UtcDatetime
    break_glass: bool = Field(default=False, description="Approved alone under the break-glass role")


class Escalation(Frozen):
    """Who is asked when the first approvers let the deadline pass."""

    approvers: tuple[NonEmpty, ...] = Field(min_length=1)
    timeout: timedelta = Field(description="Time the escalation approvers get")
