"""Review rules, as pure functions: who may vote, when a review is decided, what it decides.

Only listed approvers vote; the submitter never approves their own model (separation of duties);
`quorum` distinct approvals approve; one rejection vetoes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from shared.events import Frozen, NonEmpty, ReviewDecided, ReviewRequested


class Vote(Frozen):
    approver: NonEmpty
    decision: Literal["approve", "reject"]
    reason: NonEmpty
    channel: NonEmpty
    at: datetime


class Review(Frozen):
    request: ReviewRequested
    votes: tuple[Vote, ...] = ()
    decision: ReviewDecided | None = None


class Refused(Exception):
    """A vote that changes nothing; `status` is the HTTP status that fits."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def cast(review: Review | None, vote: Vote) -> tuple[Review, ReviewDecided | None]:
    """Record the vote; returns the review and, when the vote settles it, the decision."""
    if review is None:
        raise Refused(404, "no review is pending for this submission")
    if review.decision is not None:
        raise Refused(409, f"the review is already decided: {review.decision.outcome} "
                           f"by {review.decision.decided_by}")
    request = review.request
    if vote.approver not in request.approvers:
        raise Refused(403, f"{vote.approver!r} is not an approver of this review "
                           f"(approvers: {', '.join(request.approvers)})")
    if vote.approver == request.submission.submitter and vote.decision == "approve":
        raise Refused(403, "the submitter cannot approve their own model")
    if any(v.approver == vote.approver for v in review.votes):
        raise Refused(409, f"{vote.approver!r} has already voted on this review")

    review = review.model_copy(update={"votes": (*review.votes, vote)})
    approvals = [v for v in review.votes if v.decision == "approve"]
    if vote.decision == "reject":
        decision = _decided(request, "rejected", vote.approver, vote.reason)
    elif len(approvals) >= request.quorum:
        decision = _decided(request, "approved", ", ".join(v.approver for v in approvals),
                            "; ".join(f"{v.approver}: {v.reason}" for v in approvals))
    else:
        return review, None
    return review.model_copy(update={"decision": decision}), decision


def _decided(request: ReviewRequested, outcome: str, by: str, reason: str) -> ReviewDecided:
    return ReviewDecided.caused_by(
        request,
        candidate=request.submission.candidate,
        outcome=outcome,
        mode="human",
        decided_by=by,
        reason=reason,
        policy=request.policy,
    )
