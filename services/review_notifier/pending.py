"""Which open reviews wait for one person (`GET /reviews?pending=me`, `signoff pending`): pure.

A review waits for a person while it is undecided and they may still vote on it: an approver (or,
after an escalation, an escalation approver) who has not voted and is not its submitter
(`Review.pending_approvers`, the same rule a vote is judged by)."""

from __future__ import annotations

from collections.abc import Iterable

from services.review_notifier.reviews import Review

MAX_LISTED = 200  # one person's queue; more than this is a queue to look at another way


def waiting_for(reviews: Iterable[Review], person: str) -> list[Review]:
    """The undecided reviews `person` may still vote on, the nearest deadline first."""
    mine = [r for r in reviews if r.decision is None and person in r.pending_approvers]
    return sorted(mine, key=lambda r: r.deadline)[:MAX_LISTED]


def summary(review: Review) -> dict:
    """What a list shows of one review: enough to choose, `GET /reviews/{id}` has the rest."""
    request = review.request
    candidate = request.submission.candidate
    return {
        "submission_id": str(request.submission_id),
        "model": candidate.model,
        "version": candidate.version,
        "requested_at": request.occurred_at.isoformat(),
        "deadline": review.deadline.isoformat(),
        "quorum": request.quorum,
        "approvers": list(review.approvers),
        "votes": [{"approver": v.approver, "decision": v.decision} for v in review.votes],
        "workflow": request.policy.name,
    }
