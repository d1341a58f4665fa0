"""A projection of Signoff's topics for the console: every submission with its status and
timeline, and the reviews still waiting for a decision. Pure: it takes verified events (the audit
index's, in the order indexed) and answers questions; applying an event twice changes nothing.

Operations (a rollback's own id, which its outcomes carry) are not submissions: they appear on
the model's page, from the audit queries, not in the submissions list.

A submission id is claimed by its first model.submitted: a later one reusing the id (another
pipeline's, or an unsigned one where those are accepted; the audit index records it as a conflict)
changes nothing here. Once the policy's signed review.requested arrives, the model and version
shown are its candidate's, the one a vote approves. Who submitted is the verified signer the
validator and the policy carry (`signed_by`); until then only the claimed name is known, and the
pages say it is a claim.

A projection restored from its snapshot (projection_snapshot.py) holds each submission's summary:
what the lists need (model, version, status, who, when, whether a review is pending) and, for a
pending review, its request and escalation. Such a submission is `partial`: its timeline, and the
request and decision of a review no longer pending, are in the audit index, and `Feed.full` reads
them from there (`replay_one`). Everything a submission shows depends only on the events carrying
its id, so that replay gives what projecting every event would.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from shared.events import (
    ChecksFailed,
    ChecksPassed,
    DeploymentFailed,
    DeploymentProgressed,
    DeploymentRevoked,
    DeploymentRolledBack,
    DeploymentSucceeded,
    DeploymentSuperseded,
    Event,
    ModelSubmitted,
    ReviewDecided,
    ReviewEscalated,
    ReviewRequested,
    RollbackRequested,
)

# Statuses, in the words the pages and the filter use.
STATUSES = ("submitted", "checks failed", "in review", "approved", "rejected", "deploying", "deployed",
            "deployment failed", "superseded", "rolled back", "revoked")


@dataclass
class Submission:
    id: uuid.UUID
    model: str
    version: str = "?"
    submitter: str = "?"  # as the submission claims it (free text, anyone's to write)
    signed_by: str | None = None  # the verified signer's identity (checks/review events' submitted_by)
    submitted_at: datetime | None = None
    status: str = "submitted"
    events: list[Event] = field(default_factory=list)  # the timeline, in the order indexed
    request: ReviewRequested | None = None
    escalation: ReviewEscalated | None = None
    decision: ReviewDecided | None = None
    first_seen: datetime | None = None  # the first event's time (its model.submitted's, or one indexed before it)
    decided: bool = False  # a review.decided arrived (`decision` may be elided: `partial`)
    partial: bool = False  # restored from a snapshot: `events` (and a decided review's events) are in the index

    @property
    def approvers(self) -> tuple[str, ...]:
        """Who may vote on its review now (the request's, and the escalation's after one)."""
        if self.request is None:
            return ()
        extra = self.escalation.approvers if self.escalation else ()
        return tuple(dict.fromkeys((*self.request.approvers, *extra)))

    @property
    def pending_review(self) -> bool:
        return self.request is not None and not self.decided

    @property
    def first_at(self) -> datetime:
        return self.submitted_at or self.first_seen or self.events[0].occurred_at


class Projection:
    def __init__(self) -> None:
        self.submissions: dict[uuid.UUID, Submission] = {}
        self.operations: set[uuid.UUID] = set()
        self._seen: set[tuple[str, uuid.UUID]] = set()

    def apply(self, event: Event) -> bool:
        """Take one verified event in; False when it was seen already (or is an operation's)."""
        if (event.topic, event.event_id) in self._seen:
            return False
        self._seen.add((event.topic, event.event_id))
        if isinstance(event, RollbackRequested):
            self.operations.add(event.submission_id)
            self.submissions.pop(event.submission_id, None)
        if event.submission_id in self.operations:
            return False
        sub = self.submissions.get(event.submission_id)
        if isinstance(event, ModelSubmitted) and sub is not None and sub.submitted_at is not None:
            return False  # the id was claimed first by another model.submitted: this one is not its
        if sub is None:
            sub = self.submissions[event.submission_id] = Submission(event.submission_id, event.key,
                                                                     first_seen=event.occurred_at)
        sub.events.append(event)
        _fold(sub, event)
        return True

    def get(self, submission_id: uuid.UUID) -> Submission | None:
        return self.submissions.get(submission_id)

    def pending_for(self, person: str) -> list[Submission]:
        """Reviews waiting for a decision that `person` may vote on, oldest deadline first."""
        found = [s for s in self.submissions.values() if s.pending_review and person in s.approvers]
        return sorted(found, key=lambda s: _deadline(s))

    def pending(self) -> list[Submission]:
        return sorted((s for s in self.submissions.values() if s.pending_review), key=_deadline)

    def select(self, model: str | None = None, status: str | None = None, since: datetime | None = None,
               until: datetime | None = None, limit: int = 200) -> list[Submission]:
        """Submissions, newest first: of `model` (its name contains it), with `status`, first seen
        in [since, until)."""
        out = [s for s in self.submissions.values()
               if (not model or model in s.model) and (not status or s.status == status)
               and (since is None or s.first_at >= since) and (until is None or s.first_at < until)]
        return sorted(out, key=lambda s: s.first_at, reverse=True)[:limit]

    def models(self) -> list[str]:
        return sorted({s.model for s in self.submissions.values()})


def replay_one(submission_id: uuid.UUID, events: Iterable[Event]) -> Submission | None:
    """The whole submission from every indexed event carrying its id, in the order indexed (the
    index holds each (topic, event_id) once): what projecting all the events would hold for it."""
    projection = Projection()
    for event in events:
        projection.apply(event)
    return projection.get(submission_id)


def _deadline(sub: Submission) -> datetime:
    assert sub.request is not None
    return sub.escalation.deadline if sub.escalation else sub.request.deadline


def _fold(sub: Submission, event: Event) -> None:
    """The submission after `event`. A final status (rejected, failed, superseded) is not undone
    by an event indexed late; a deployed model may still be rolled back or revoked."""
    match event:
        case ModelSubmitted(submission=s):
            sub.version, sub.submitter, sub.submitted_at = s.candidate.version, s.submitter, event.occurred_at
            return
        case ChecksFailed():
            _signed(sub, event)
            _set(sub, "checks failed")
        case ChecksPassed():
            _signed(sub, event)
            _set(sub, "submitted")
        case ReviewRequested(submission=s):
            sub.request = event
            sub.model, sub.version = s.candidate.model, s.candidate.version  # what a vote approves
            _signed(sub, event)
            _set(sub, "in review")
        case ReviewEscalated():
            sub.escalation = event
        case ReviewDecided(outcome=outcome):
            sub.decision, sub.decided = event, True
            _set(sub, outcome)
        case DeploymentProgressed():
            _set(sub, "deploying")
        case DeploymentSucceeded():
            _set(sub, "deployed")
        case DeploymentFailed():
            _set(sub, "deployment failed")
        case DeploymentSuperseded():
            _set(sub, "superseded")
        case DeploymentRolledBack():
            _set(sub, "rolled back")
        case DeploymentRevoked():
            sub.status = "revoked"
    if sub.version == "?":
        candidate = getattr(event, "candidate", None) or getattr(getattr(event, "submission", None), "candidate",
                                                                 None)
        if candidate is not None:
            sub.version = candidate.version


def _signed(sub: Submission, event: ChecksPassed | ChecksFailed | ReviewRequested) -> None:
    if event.submitted_by is not None:
        sub.signed_by = event.submitted_by.identity


_RANK = {status: i for i, status in enumerate(STATUSES)}
_FINAL = {"checks failed", "rejected", "deployment failed", "superseded", "revoked"}


def _set(sub: Submission, status: str) -> None:
    """Move forward only (events of one submission can be indexed out of order across topics)."""
    if sub.status in _FINAL:
        return
    if _RANK[status] >= _RANK[sub.status] or status in _FINAL:
        sub.status = status
