"""Review rules, as pure functions of a review's state, a vote and the time.

- Only the listed approvers vote (groups arrive expanded); after an escalation the escalation
  approvers join them. The submitter never approves their own model (separation of duties,
  `approval_refused`): the submitter is who *proved* they submitted (the owner of the pipeline key
  that signed it, `submitted_by`); a claimed name can only take approval away, never give it. An
  unsigned submission's claimed name counts as the known user it names or looks like; one that
  is malformed or names nobody known proves nothing, so no one may approve it (when in doubt, no).
- `quorum` distinct approvals approve. With `veto` (the default) one rejection rejects; without it,
  rejections need the quorum too, or a review rejects once approval can no longer reach it.
- Break-glass: someone in the request's `break_glass` list approves alone, with a written
  justification; the decision and the vote carry `break_glass=True`.
- Time: reminders every `remind_every` until the deadline; at the deadline the declared
  `on_timeout` happens: reject, or escalate once to the escalation approvers with a new deadline.
- Evidence: a vote counts against the production its reviewers were shown. When the model in
  production changed since, the vote is refused and the review shows the production now
  (`Reshown`): the voter looks again and votes again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Literal

from pydantic import ValidationError, model_validator

from shared.events import (
    Frozen,
    Production,
    ReviewDecided,
    ReviewEscalated,
    ReviewRequested,
    UtcDatetime,
    Vote,
)
from shared.identity import Directory, IdentityError, normalise, skeleton, well_formed

TIMEOUT_DECIDER = "review-notifier/timeout"
MIN_JUSTIFICATION = 20  # characters of written justification a break-glass approval needs


class Review(Frozen):
    request: ReviewRequested
    votes: tuple[Vote, ...] = ()
    decision: ReviewDecided | None = None
    escalation: ReviewEscalated | None = None
    reminded_at: UtcDatetime | None = None
    shown: Production | None = None  # the production reviewers were shown; the request's until refreshed

    @model_validator(mode="before")
    @classmethod
    def _shown_defaults_to_the_request(cls, data: Any) -> Any:
        """A review opened from a request, or stored before `shown` existed, shows the request's
        production (read from the request as validated: upcast when stored under an older version)."""
        if not isinstance(data, dict) or "shown" in data:
            return data
        request = data.get("request")
        if isinstance(request, dict):
            try:
                request = ReviewRequested.model_validate(request)
            except ValidationError:
                return data  # reported, field by field, by the validation that follows
        if not isinstance(request, ReviewRequested):
            return data
        return {**data, "request": request, "shown": request.production}

    @property
    def submission_id(self):
        return self.request.submission_id

    @property
    def approvers(self) -> tuple[str, ...]:
        """Who may vote now: the approvers, and after an escalation the escalation approvers."""
        extra = self.escalation.approvers if self.escalation else ()
        return tuple(dict.fromkeys((*self.request.approvers, *extra)))

    @property
    def deadline(self) -> datetime:
        return self.escalation.deadline if self.escalation else self.request.deadline

    @property
    def pending_approvers(self) -> tuple[str, ...]:
        """Those who may still vote: not yet voted, and not the submitter."""
        voted = {v.approver for v in self.votes}
        return tuple(a for a in self.approvers
                     if a not in voted and not is_submitter(self.request, a))


class Refused(Exception):
    """A vote that changes nothing; `status` is the HTTP status that fits."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Unknown(Enum):
    """The answer when the model in production cannot be known (the caller has no record of it)."""

    UNKNOWN = "unknown"


UNKNOWN = Unknown.UNKNOWN
CurrentProduction = Production | None | Literal[Unknown.UNKNOWN]  # None: known to be nothing


class Reshown(Refused):
    """A vote refused because the model in production changed since the review was shown: it does
    not count; `review` shows the production now (save it, and refresh what the channels show)."""

    def __init__(self, review: Review, was: Production | None) -> None:
        super().__init__(409, f"production changed since this review was shown: now {_label(review.shown)} "
                              f"(was {_label(was, review.shown)}); the evidence is refreshed, "
                              "look again and vote again")
        self.review = review


def reshown(review: Review, production: CurrentProduction) -> Reshown | None:
    """The refusal and refreshed review when `production` is no longer what the review shows
    (another release, or one where there was none, or none where there was one); None when it is
    the same, or unknown (then the vote is judged as it always was)."""
    if production is UNKNOWN:
        return None
    now = production.submission_id if production else None
    if now == (review.shown.submission_id if review.shown else None):
        return None
    return Reshown(review.model_copy(update={"shown": production}), was=review.shown)


def cast(review: Review | None, vote: Vote, production: CurrentProduction = UNKNOWN,
         people: Directory | None = None) -> tuple[Review, ReviewDecided | None]:
    """Record the vote; returns the review and, when the vote settles it, the decision. Raises
    Refused when the vote may not count; Reshown when it may, but `production` (the model in
    production now) is not what the review showed. `people`: the known users (separation of
    duties judges an unsigned submission's claimed submitter against them)."""
    if review is None:
        raise Refused(404, "no review is pending for this submission")
    if review.decision is not None:
        raise Refused(409, f"the review is already decided: {review.decision.outcome} "
                           f"by {review.decision.decided_by}")
    if vote.break_glass:
        _may_break_glass(review, vote, people)
    else:
        _may_vote(review, vote, people)
    # Only a vote that would count is judged against the evidence: a refusal above says more.
    if (stale := reshown(review, production)) is not None:
        raise stale
    if vote.break_glass:
        return _break_glass(review, vote)

    review = review.model_copy(update={"votes": (*review.votes, vote)})
    outcome = tally(review)
    if outcome is None:
        return review, None
    deciders = [v for v in review.votes if v.decision == ("approve" if outcome == "approved" else "reject")]
    decision = _decided(review, outcome, ", ".join(v.approver for v in deciders),
                        "; ".join(f"{v.approver}: {v.reason}" for v in deciders))
    return review.model_copy(update={"decision": decision}), decision


def tally(review: Review) -> str | None:
    """'approved', 'rejected', or None while the votes settle nothing."""
    request = review.request
    approvals = sum(v.decision == "approve" for v in review.votes)
    rejections = sum(v.decision == "reject" for v in review.votes)
    if rejections and request.veto:
        return "rejected"
    if approvals >= request.quorum:
        return "approved"
    if rejections >= request.quorum:
        return "rejected"
    if rejections and approvals + len(review.pending_approvers) < request.quorum:
        return "rejected"  # the approvals can no longer reach the quorum
    return None


# --- separation of duties ----------------------------------------------------------------------

def _same(a: str, b: str) -> bool:
    """Whether two names are, or look like, the same identity (normalised; in-ASCII look-alikes)."""
    a, b = normalise(a), normalise(b)
    return a == b or skeleton(a) == skeleton(b)


def is_submitter(request: ReviewRequested, person: str) -> bool:
    """Whether `person` is, or by name may be, who submitted: the signer's owner or principal, or
    the claimed submitter (a claim only ever counts against a person)."""
    signer = request.submitted_by
    names = (request.submission.submitter, *((signer.identity, signer.name) if signer else ()))
    return any(_same(person, name) for name in names)


def approval_refused(request: ReviewRequested, approver: str, people: Directory | None) -> str | None:
    """Why `approver` may not approve `request`'s model (they are, or may be, its submitter); None
    when they may. `people`: the known users; without them, an unsigned submission's claimed name
    is only compared, not judged."""
    signer = request.submitted_by
    if is_submitter(request, approver):
        if signer is not None and _same(approver, signer.identity):
            return (f"the submitter cannot approve their own model: {approver} owns the key "
                    f"{signer.name} that signed the submission")
        return "the submitter cannot approve their own model"
    if signer is not None:
        return None
    claimed = request.submission.submitter
    try:
        claim = well_formed(claimed)
    except IdentityError as exc:
        return (f"the submission is unsigned and its claimed submitter is not an identity ({exc}), so no "
                "approver can be shown not to be its submitter; the pipeline must sign its submissions")
    if people is not None and not any(skeleton(claim) == skeleton(u) for u in people.users):
        return (f"the submission is unsigned and its claimed submitter {claim!r} is not a known user, so no "
                "approver can be shown not to be its submitter; the pipeline must sign its submissions "
                "(or submit as a known user)")
    return None


def _may_vote(review: Review, vote: Vote, people: Directory | None) -> None:
    if vote.approver not in review.approvers:
        raise Refused(403, f"{vote.approver!r} is not an approver of this review "
                           f"(approvers: {', '.join(review.approvers)})")
    if vote.decision == "approve" and (why := approval_refused(review.request, vote.approver, people)):
        raise Refused(403, why)
    if any(v.approver == vote.approver for v in review.votes):
        raise Refused(409, f"{vote.approver!r} has already voted on this review")


def _may_break_glass(review: Review, vote: Vote, people: Directory | None) -> None:
    request = review.request
    if vote.approver not in request.break_glass:
        raise Refused(403, f"{vote.approver!r} may not break glass on this review"
                           + (f" (break-glass: {', '.join(request.break_glass)})" if request.break_glass
                              else " (the workflow allows no break-glass approval)"))
    if vote.decision != "approve":
        raise Refused(422, "break-glass is for approving alone; reject as a normal approver")
    if (why := approval_refused(request, vote.approver, people)) is not None:
        raise Refused(403, f"{why}; not even by breaking glass")
    if len(vote.reason.strip()) < MIN_JUSTIFICATION:
        raise Refused(422, f"a break-glass approval needs a written justification of at least "
                           f"{MIN_JUSTIFICATION} characters")


def _break_glass(review: Review, vote: Vote) -> tuple[Review, ReviewDecided]:
    review = review.model_copy(update={"votes": (*review.votes, vote)})
    decision = _decided(review, "approved", vote.approver, f"BREAK-GLASS by {vote.approver}: {vote.reason}",
                        break_glass=True)
    return review.model_copy(update={"decision": decision}), decision


@dataclass(frozen=True)
class Due:
    """What the time brings: the updated review and what to announce (each may be empty)."""

    review: Review
    decision: ReviewDecided | None = None
    escalation: ReviewEscalated | None = None
    remind: tuple[str, ...] = ()


def due(review: Review, now: datetime) -> Due:
    """Apply the deadline and reminders as of `now`. Idempotent: applying it twice at the same
    time changes nothing the second time."""
    if review.decision is not None:
        return Due(review)
    request = review.request
    if now >= review.deadline:
        if request.on_timeout == "escalate" and request.escalation and review.escalation is None:
            escalation = ReviewEscalated.caused_by(
                request, candidate=request.submission.candidate,
                approvers=request.escalation.approvers, deadline=now + request.escalation.timeout,
                reason=f"no decision by {request.deadline.isoformat()}: escalated to "
                       f"{', '.join(request.escalation.approvers)} as the workflow declares")
            return Due(review.model_copy(update={"escalation": escalation, "reminded_at": now}),
                       escalation=escalation)
        decision = ReviewDecided.caused_by(
            request, salt="timeout", candidate=request.submission.candidate, outcome="rejected",
            mode="automatic", decided_by=TIMEOUT_DECIDER,
            reason=f"no decision by the deadline {review.deadline.isoformat()}: the workflow's "
                   f"on_timeout rejects" + (" (after escalation)" if review.escalation else ""),
            policy=request.policy.model_copy(update={"rule": f"{request.policy.rule}.on_timeout"}),
            votes=review.votes,
            # Nobody judged the artifact: it may be submitted again and reviewed again.
            final_for_artifact=False, checks_event_id=request.causation_id)
        return Due(review.model_copy(update={"decision": decision}), decision=decision)
    every = request.remind_every
    last = review.reminded_at or request.occurred_at
    if every is not None and now >= last + every and review.pending_approvers:
        return Due(review.model_copy(update={"reminded_at": now}), remind=review.pending_approvers)
    return Due(review)


def next_due(review: Review) -> datetime | None:
    """When `due` next has something to do (None once decided)."""
    if review.decision is not None:
        return None
    times = [review.deadline]
    if review.request.remind_every is not None:
        times.append((review.reminded_at or review.request.occurred_at) + review.request.remind_every)
    return min(times)


def _decided(review: Review, outcome: str, by: str, reason: str, break_glass: bool = False) -> ReviewDecided:
    request = review.request
    return ReviewDecided.caused_by(
        request,
        candidate=request.submission.candidate,
        outcome=outcome,
        mode="human",
        decided_by=by,
        reason=reason,
        policy=request.policy,
        votes=review.votes,
        break_glass=break_glass,
        checks_event_id=request.causation_id,  # the policy asked for review on these checks
    )


def _label(production: Production | None, same_model_as: Production | None = None) -> str:
    """'fraud-detector 1.6.0', or only '1.1.0' beside a release of the same model named before."""
    if production is None:
        return "no model in production"
    c = production.candidate
    return c.version if same_model_as and same_model_as.candidate.model == c.model else f"{c.model} {c.version}"
