"""What events carry: names, digests, metrics and the value objects inside events (a candidate,
a submission, a check result, a vote, ...). Frozen pydantic models, strict about unknown fields;
`shared.events` builds the events from them and re-exports them."""

from __future__ import annotations

import hashlib
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

# What one event may carry. With strings of at most 512 characters (NonEmpty) and free text
# clipped to MAX_TEXT, the largest submission, and what the services emit from it (checks.*, a
# review.requested carrying it with its results and the model it would replace), stay far under
# the broker's 1 MiB record limit (shared.codec.MAX_EVENT_BYTES); parsing cost stays bounded too.
MAX_METRICS = 256        # metrics of a model
MAX_GROUPS = 64          # sensitive groups in group_metrics
MAX_GROUP_METRICS = 32   # metrics of one group
MAX_TEXT = 4000          # free text (reasons, messages): clipped, never refused
MAX_FIGURE_TEXT = 512    # a check's measured value or threshold, when it is text
# A policy document (a workflow file, groups.yaml) travels in full inside the decisions made under
# it (PolicyDocuments). 64 KiB each is ten times a large workflow or a groups file of ~3,000 people;
# even written all in characters JSON escapes (doubling them), both add at most 256 KiB to the
# largest review.requested, which stays under the record limit.
MAX_POLICY_BYTES = 64 * 1024  # UTF-8 bytes of one policy document

# Names and versions become folder names in the model store: one safe path segment each.
ModelName = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$"),
    Field(description="Model name: lowercase letters, digits, '.', '_', '-'; starts alphanumeric",
          examples=["fraud-detector"]),
]
# Beside a model's version folders the deployer keeps files of its own (the model store and the s3
# target: the pointer, the traffic split; inside a version: manifest, attestation, revocation mark):
# a version of one of these names (in any case: a store may sit on a case-insensitive disk) would
# be a folder where the pointer is, or the pointer a folder's key in a bucket.
RESERVED_VERSIONS = frozenset({"production", "traffic.json", "revoked", "manifest.json", "attestation.intoto.json"})


def _unreserved_version(value: str) -> str:
    if value.casefold() in RESERVED_VERSIONS:
        raise ValueError(f"{value!r} is a name the model store keeps for its own files "
                         f"({', '.join(sorted(RESERVED_VERSIONS))}, in any case); choose another version")
    return value


Version = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"),
    AfterValidator(_unreserved_version),
    Field(description="Model version: one path segment, starts alphanumeric, not one of the store's own "
          "names (PRODUCTION, traffic.json, REVOKED, manifest.json, attestation.intoto.json)",
          examples=["1.4.0"]),
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


def _number(value: object) -> object:
    """A metric is a JSON number: "0.9" or true would be read as 0.9 or 1.0 by lax parsing, so a
    producer's quoting bug (or a boolean where a figure belongs) would pass a threshold unseen."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a JSON number such as 0.93 (unquoted), not a {_json_type(value)}")
    return value


def _json_type(value: object) -> str:
    names = {bool: "boolean", str: "string", type(None): "null", dict: "object", list: "array"}
    return names.get(type(value), type(value).__name__)


def _at_most(limit: int, what: str, fix: str) -> BeforeValidator:
    """Refuse a collection over `limit` before its items are validated, saying how to fix it."""
    def check(value: object) -> object:
        if isinstance(value, dict | list | tuple) and len(value) > limit:
            raise ValueError(f"{len(value)} {what}, at most {limit}: {fix}")
        return value

    return BeforeValidator(check)


def _clipped(limit: int) -> BeforeValidator:
    """Text longer than `limit` is cut to it, ending with '…'. For free text that services compose
    from other texts (a rejection citing an earlier one, a scan listing globals): an event must
    never become invalid, or too large to publish, because a message grew."""
    def clip(value: object) -> object:
        return value[:limit - 1] + "…" if isinstance(value, str) and len(value) > limit else value

    return BeforeValidator(clip)


Metric = Annotated[float, BeforeValidator(_number), AfterValidator(_finite)]
MetricName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Metrics = Annotated[dict[MetricName, Metric], _at_most(
    MAX_METRICS, "metrics", "submit the metrics the workflow checks and keep the others in the model card")]
GroupMetrics = Annotated[dict[NonEmpty, Annotated[dict[MetricName, Metric], _at_most(
    MAX_GROUP_METRICS, "metrics in one group", "report the fairness figures (selection_rate, tpr, fpr) "
    "per group")]], _at_most(
    MAX_GROUPS, "groups", "report the groups the fairness checks compare, or attach an evaluation file "
    "(evaluation_uri) with a row per example")]
Text = Annotated[str, _clipped(MAX_TEXT)]
FigureText = Annotated[str, _clipped(MAX_FIGURE_TEXT)]


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
    metrics: Metrics = Field(description="Evaluation metrics, name to value (at most 256)",
                             examples=[{"accuracy": 0.93, "auc": 0.97}])
    group_metrics: GroupMetrics = Field(
        default_factory=dict,
        description="Optional metrics per sensitive group, group to (metric to value); at most 64 "
        "groups of 32 metrics",
        examples=[{"group_a": {"selection_rate": 0.31}, "group_b": {"selection_rate": 0.29}}],
    )
    submitter: NonEmpty = Field(description="Who submitted the model (a person or a pipeline)")
    training_run_id: NonEmpty | None = None
    model_card_uri: NonEmpty | None = Field(
        default=None, description="file:// or http(s):// location of the model card (text/Markdown)")
    evaluation_uri: NonEmpty | None = Field(
        default=None, description="file:// or http(s):// CSV with columns label, prediction, group: "
        "fairness is computed from it rather than from reported group metrics")


class Submitter(Frozen):
    """Who proved they submitted a model: the verified signer of its model.submitted (a pipeline's
    key in the trust file, mapped to the person and team that own it). Separation of duties
    compares approvers with `identity`, never with the free-text `Submission.submitter`."""

    name: NonEmpty = Field(description="The signing key's principal, as the trust file names it")
    owner: NonEmpty | None = Field(default=None, description="The person who owns that key")
    team: NonEmpty | None = Field(default=None, description="The owner's team")

    @property
    def identity(self) -> str:
        """Who submitted: the key's owner, or the principal itself when it has no owner."""
        return self.owner or self.name


def _policy_text(value: str) -> str:
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("must be UTF-8 text (it holds a lone surrogate)") from None
    if size > MAX_POLICY_BYTES:
        raise ValueError(f"{size} bytes, at most {MAX_POLICY_BYTES}: keep each workflow file and "
                         f"groups.yaml under {MAX_POLICY_BYTES // 1024} KiB (split a large workflow, "
                         "move comments into the repository's docs)")
    return value


POLICY_FRAMING = b"signoff-policy/v1\n"


def policy_digest(workflow: str, groups: str) -> str:
    r"""sha256 of b"signoff-policy/v1\n" + b"workflow <n>\n" + the workflow's n UTF-8 bytes +
    b"groups <m>\n" + groups.yaml's m UTF-8 bytes. Lengths make the framing unambiguous: no byte
    can move from one text to the other and keep the digest (anyone can recompute it from the texts)."""
    digest = hashlib.sha256(POLICY_FRAMING)
    for label, text in (("workflow", workflow), ("groups", groups)):
        raw = text.encode("utf-8")
        digest.update(f"{label} {len(raw)}\n".encode())
        digest.update(raw)
    return digest.hexdigest()


class PolicyDocuments(Frozen):
    """The policy text in force for a decision, exactly as the service read it: the workflow file and
    the groups.yaml beside it. A decision carrying it shows the audit what was in force without the
    repository; its digest is the decision's PolicyRef.digest."""

    workflow: Annotated[str, AfterValidator(_policy_text)] = Field(
        description=f"The workflow file's text (at most {MAX_POLICY_BYTES} UTF-8 bytes)")
    groups: Annotated[str, AfterValidator(_policy_text)] = Field(
        default="", description="groups.yaml's text, read beside the workflow ('' when there is none)")

    def digest(self) -> str:
        """The policy digest (`policy_digest`): what PolicyRef.digest says for these texts."""
        return policy_digest(self.workflow, self.groups)


class PolicyRef(Frozen):
    """Which workflow produced a decision, for the audit trail (like OPA's policy revision)."""

    name: NonEmpty = Field(description="Workflow name")
    rule: NonEmpty = Field(description="Step or rule of the workflow that decided")
    digest: Sha256 = Field(description="The policy digest: sha256 over the workflow file and groups.yaml "
                           "as PolicyDocuments.digest frames them (events written before the policy "
                           "digest: sha256 of the workflow file); for '(no workflow)', of the whole folder")
    documents: PolicyDocuments | None = Field(
        default=None, exclude_if=lambda documents: documents is None,
        description="The workflow and groups.yaml texts the digest is of (None: not carried, as on "
        "checks events and '(no workflow)' decisions, and on events written before it was)")

    @field_validator("documents")
    @classmethod
    def _documents_match_digest(cls, documents: PolicyDocuments | None,
                                info: ValidationInfo) -> PolicyDocuments | None:
        digest = info.data.get("digest")
        if documents is not None and digest is not None and documents.digest() != digest:
            raise ValueError(f"the documents' policy digest is {documents.digest()}, but digest says {digest}: "
                             "a decision must carry the texts its digest is of")
        return documents


class Production(Frozen):
    """The model in production for a name when a decision was made: evidence for reviewers."""

    candidate: Candidate
    metrics: Metrics
    submission_id: uuid.UUID


class CheckResult(Frozen):
    name: NonEmpty
    passed: bool
    blocking: bool = Field(default=True, description="A failed blocking check fails the submission")
    measured: float | FigureText | None = None
    threshold: float | FigureText | None = None
    message: Text = ""


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
