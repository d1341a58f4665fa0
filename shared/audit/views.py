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


class Ack(View):
    """Who acknowledged a gap or a problem (`signoff audit ack`), when and why: it is still listed,
    and no longer changes the exit code. A note in this index file, not a signed event."""

    by: str
    at: datetime
    why: str


class Gap(View):
    """Offsets of a partition that were gone (deleted, expired, or in a log deleted with its topic)
    before the index read them. `last_offset` -1: how many is unknown (a topic created again)."""

    id: int = 0
    topic: str
    partition: int
    first_offset: int
    last_offset: int
    found_at: datetime
    why: str
    ack: Ack | None = None

    @property
    def ref(self) -> str:
        return f"G{self.id}"

    def line(self) -> str:
        offsets = (f"offsets {self.first_offset}-{self.last_offset}" if self.last_offset >= self.first_offset
                   else f"offsets from {self.first_offset} of the earlier log")
        return f"gap in {self.topic} partition {self.partition}: {offsets} {self.why}"


class Problem(View):
    """A record that is not a fact: it did not verify or decode, its signer may not make it
    (untrusted), or it conflicts with an indexed event (an event_id or a submission claimed
    twice: `conflict`, about the models `key` and `other_key`). Or a decision's policy texts did
    not hash to its digest (`policy`; that event stays, its signature holds)."""

    id: int = 0
    topic: str
    partition: int
    offset: int
    kind: Literal["untrusted", "undecodable", "policy", "conflict"]
    reason: str
    key: str | None
    other_key: str | None = None
    found_at: datetime
    ack: Ack | None = None

    @property
    def ref(self) -> str:
        return f"P{self.id}"

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
    disputed: list[Entry] = []  # other model.submitted claiming this submission_id, not the one its checks cite


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
    """Everything that makes an answer incomplete or suspect; printed with every answer.
    `blocking` counts what makes it incomplete for the question asked (the exit code): every gap
    and open link, a conflict about the model, and (about the model, or any with --strict) a
    record refused. Acknowledged gaps and problems are listed apart and never block."""

    gaps: list[Gap]
    problems: list[Problem]
    open_links: list[OpenLink]
    more_problems: int = 0
    more_links: int = 0
    acknowledged: list[Gap | Problem] = []
    blocking: int = 0

    @property
    def clean(self) -> bool:
        return not (self.gaps or self.problems or self.open_links or self.more_problems or self.more_links)

    def lines(self) -> list[str]:
        out = [f"{g.line()} [{g.ref}]" for g in self.gaps] + [f"{p.line()} [{p.ref}]" for p in self.problems]
        if self.more_problems:
            out.append(f"and {self.more_problems} more records that did not verify, decode or agree")
        out += [link.line() for link in self.open_links]
        if self.more_links:
            out.append(f"and {self.more_links} more missing links")
        return out

    def acknowledged_lines(self) -> list[str]:
        return [f"[{a.ref}] by {a.ack.by} at {a.ack.at.isoformat()} ({a.ack.why}): {a.line()}"
                for a in self.acknowledged if a.ack is not None]
