"""The in-toto Statement (v1) of an approval: its subject is the artifact (file name and sha256), its
predicate (`ApprovalPredicate`, type PREDICATE_TYPE) the decision that let it into production.
Typed, bounded and strict (unknown fields are refused: a new field is a new predicate version).
shared.attestation signs it in a DSSE envelope and reads it back.
"""

from __future__ import annotations

import uuid
from typing import Final, Literal

from pydantic import Field

from shared.values import (
    CommitSha,
    FigureText,
    Frozen,
    Metrics,
    ModelName,
    NonEmpty,
    Sha256,
    Submitter,
    Text,
    UtcDatetime,
    Version,
)

STATEMENT_TYPE: Final = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE: Final = "https://signoff.dev/attestation/approval/v1"
MAX_DETAIL = 500  # a check's message, clipped in the predicate so the envelope stays bounded
MAX_CHECKS = 512
MAX_VOTES = 64


class Digest(Frozen):
    sha256: Sha256


class Subject(Frozen):
    name: NonEmpty = Field(description="The artifact's file name in the version folder")
    digest: Digest


class CheckRecord(Frozen):
    name: NonEmpty
    passed: bool
    blocking: bool
    measured: float | FigureText | None = None
    threshold: float | FigureText | None = None
    detail: str = Field(default="", max_length=MAX_DETAIL)


class VoteRecord(Frozen):
    who: NonEmpty
    decision: Literal["approve", "reject"]
    reason: Text
    channel: NonEmpty
    at: UtcDatetime
    break_glass: bool = False


class PolicyCited(Frozen):
    name: NonEmpty
    rule: NonEmpty
    digest: Sha256 = Field(description="The workflow's digest as the decision recorded it")


class DecisionRecord(Frozen):
    outcome: Literal["approved"]
    mode: Literal["automatic", "human"]
    decided_by: NonEmpty
    reason: Text
    decided_at: UtcDatetime
    break_glass: bool
    votes: tuple[VoteRecord, ...] = Field(default=(), max_length=MAX_VOTES)
    policy: PolicyCited
    anchored_to: uuid.UUID | None = None


class Chain(Frozen):
    """The event ids from submission to decision (null: not known to the deployer)."""

    model_submitted: uuid.UUID | None = None
    checks_passed: uuid.UUID | None = None
    review_requested: uuid.UUID | None = None
    review_decided: uuid.UUID


class DeployedTo(Frozen):
    target: NonEmpty
    location: NonEmpty


class ApprovalPredicate(Frozen):
    submission_id: uuid.UUID
    model: ModelName
    version: Version
    artifact_uri: NonEmpty
    data_version: NonEmpty
    code_commit: CommitSha
    training_run_id: NonEmpty | None = None
    submitter: Submitter | None = Field(description="The verified signer of the submission (null: unsigned)")
    claimed_submitter: NonEmpty | None = Field(default=None, description="The name the submission typed")
    metrics: Metrics = {}
    checks: tuple[CheckRecord, ...] = Field(default=(), max_length=MAX_CHECKS)
    decision: DecisionRecord
    chain: Chain
    deployer: DeployedTo


class Statement(Frozen):
    type_: Literal["https://in-toto.io/Statement/v1"] = Field(default=STATEMENT_TYPE, alias="_type")
    subject: tuple[Subject, ...] = Field(min_length=1, max_length=1)
    predicateType: Literal["https://signoff.dev/attestation/approval/v1"] = PREDICATE_TYPE
    predicate: ApprovalPredicate

    model_config = Frozen.model_config | {"populate_by_name": True}

    @property
    def artifact(self) -> Subject:
        return self.subject[0]
