"""What the audit index answers, as typed values: an indexed event with who signed it and where it
was read, the gaps and problems found while indexing, and the two answers an auditor asks for (a
model's releases, and what was in production at a time). `--json` prints them as they are."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, SerializeAsAny

from shared.events import Event


class View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Signed(View):
    """Who signed an indexed event, as the trust file named the key when it was indexed
    ('unsigned': a model.submitted the keyring accepted without a signature)."""

    name: str
    role: str | None = None
    owner: str | None = None
    team: str | None = None
    kid: str | None = None

    def __str__(self) -> str:
        if self.role is None:
            return self.name
        extra = ", ".join(x for x in (self.role, self.owner and f"owner {self.owner}") if x)
        return f"{self.name} ({extra})"


class Entry(View):
    """One event of the index: verified when indexed, read at topic/partition/offset."""

    event: SerializeAsAny[Event]
    signer: Signed
    topic: str
    partition: int
    offset: int


class Gap(View):
    """Offsets of a partition that were gone (deleted, expired) before the index read them."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    found_at: datetime
    why: str

    def line(self) -> str:
        return (f"gap in {self.topic} partition {self.partition}: offsets {self.first_offset}-{self.last_offset} "
                f"{self.why}")


class Problem(View):
    """A record that is not a fact: it did not verify or decode (or a decision's policy texts
    did not hash to its digest). Never indexed as an event."""

    topic: str
    partition: int
    offset: int
    kind: Literal["untrusted", "undecodable", "policy"]
    reason: str
    key: str | None
    found_at: datetime

    def line(self) -> str:
        about = f" (key {self.key!r})" if self.key else ""
        return (f"{self.kind} record in {self.topic} partition {self.partition} offset {self.offset}{about}: "
                f"{self.reason}")


class OpenLink(View):
    """A chain gap: an indexed event whose cause, checks, approval or submission the index does
    not hold (deleted before it was indexed, or never published)."""

    event_id: uuid.UUID
    type: str
    model: str
    target: str
    why: str

    def line(self) -> str:
        return (f"missing link: {self.type} {self.event_id} of {self.model} cites {self.why} {self.target}, "
                "not in the index")


class PolicyTexts(View):
    """The workflow file and groups.yaml in force under a policy digest (one copy per digest)."""

    digest: str
    workflow: str
    groups: str


class Release(View):
    """One submission of a model, from its submission to what became of it."""

    submission_id: uuid.UUID
    version: str | None
    submitted: Entry | None
    checks: list[Entry]
    reviews: list[Entry]        # review.requested, review.escalated
    decisions: list[Entry]      # review.decided
    deployments: list[Entry]    # deployment.* about this release, rollbacks to or from it
    revocations: list[Entry]    # revocation.requested


class Operation(View):
    """An operator's rollback: the request and its outcome (rolled back, or refused)."""

    operation_id: uuid.UUID
    request: Entry | None
    outcomes: list[Entry]


class ModelAudit(View):
    model: str
    releases: list[Release]
    operations: list[Operation]


class InProduction(View):
    """What was in production for `model` at `at`, and what put it there: the deployment (or the
    rollback, and who asked for it), the decision that approved the release, and its submission."""

    model: str
    at: datetime
    state: Literal["deployed", "nothing", "unknown"]
    version: str | None = None
    submission_id: uuid.UUID | None = None
    set_by: Entry | None = None          # the deployment.succeeded or deployment.rolled_back
    rollback_request: Entry | None = None
    deployment: Entry | None = None      # the release's deployment.succeeded
    approval: Entry | None = None        # the review.decided the deployment acted on
    submitted: Entry | None = None
    taken_out_by: Entry | None = None    # state "nothing" after a revocation
    note: str = ""


class Health(View):
    """Everything that makes an answer incomplete or suspect; printed with every answer."""

    gaps: list[Gap]
    problems: list[Problem]
    open_links: list[OpenLink]
    more_problems: int = 0
    more_links: int = 0

    @property
    def clean(self) -> bool:
        return not (self.gaps or self.problems or self.open_links or self.more_problems or self.more_links)

    def lines(self) -> list[str]:
        out = [g.line() for g in self.gaps] + [p.line() for p in self.problems]
        if self.more_problems:
            out.append(f"and {self.more_problems} more records that did not verify or decode")
        out += [link.line() for link in self.open_links]
        if self.more_links:
            out.append(f"and {self.more_links} more missing links")
        return out
