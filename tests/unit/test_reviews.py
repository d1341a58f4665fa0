"""Review rules: only approvers vote, never on their own model, once each; quorum approves, one 'no' vetoes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.review_notifier import reviews
from services.review_notifier.reviews import Refused, Review, Vote
from services.review_notifier.state import ReviewStore
from tests.unit import factories as f


def vote(approver: str, decision: str = "approve", reason: str = "fine") -> Vote:
    return Vote(approver=approver, decision=decision, reason=reason, channel="test", at=datetime.now(UTC))


def review(quorum: int = 1, approvers=("alice", "bob", "carol"), submitter: str = "pipeline") -> Review:
    cause = f.submitted(f.submission(submitter=submitter))
    return Review(request=f.review_requested(cause, approvers=approvers, quorum=quorum))


def refused(rev, v) -> Refused:
    with pytest.raises(Refused) as info:
        reviews.cast(rev, v)
    return info.value


def test_unknown_review_is_404():
    assert refused(None, vote("alice")).status == 404


def test_non_approver_is_403():
    r = refused(review(), vote("mallory"))
    assert r.status == 403 and "'mallory' is not an approver" in r.message


def test_submitter_cannot_approve_own_model():
    r = refused(review(submitter="alice"), vote("alice"))
    assert r.status == 403 and "submitter" in r.message


def test_submitter_may_reject_own_model():
    _, decision = reviews.cast(review(submitter="alice"), vote("alice", "reject", "found a bug"))
    assert decision is not None and decision.outcome == "rejected"


def test_one_approval_meets_quorum_one():
    rev = review()
    updated, decision = reviews.cast(rev, vote("alice", reason="ship it"))
    assert decision is not None
    assert (decision.outcome, decision.mode, decision.decided_by) == ("approved", "human", "alice")
    assert decision.reason == "alice: ship it"
    assert decision.candidate == rev.request.submission.candidate
    assert decision.policy == rev.request.policy
    assert decision.causation_id == rev.request.event_id
    assert updated.decision == decision and len(updated.votes) == 1


def test_quorum_two_needs_two_distinct_approvers():
    rev, decision = reviews.cast(review(quorum=2), vote("alice"))
    assert decision is None and rev.decision is None
    assert refused(rev, vote("alice")).status == 409  # the same approver twice does not count twice
    rev, decision = reviews.cast(rev, vote("bob"))
    assert decision is not None and decision.outcome == "approved"
    assert decision.decided_by == "alice, bob"


def test_double_vote_is_409():
    rev, _ = reviews.cast(review(quorum=2), vote("alice"))
    r = refused(rev, vote("alice", "reject"))
    assert r.status == 409 and "already voted" in r.message


def test_one_rejection_vetoes():
    rev, _ = reviews.cast(review(quorum=2), vote("alice"))
    rev, decision = reviews.cast(rev, vote("bob", "reject", "bias on group_b"))
    assert decision is not None
    assert (decision.outcome, decision.decided_by, decision.reason) == ("rejected", "bob", "bias on group_b")


def test_decided_review_is_409():
    rev, _ = reviews.cast(review(), vote("alice"))
    r = refused(rev, vote("bob", "reject"))
    assert r.status == 409 and "already decided: approved by alice" in r.message


def test_the_decision_is_idempotent_for_the_same_request():
    rev = review()
    _, a = reviews.cast(rev, vote("alice"))
    _, b = reviews.cast(rev, vote("alice"))
    assert a.event_id == b.event_id


def test_store_opens_once_and_saves_votes(tmp_path):
    store = ReviewStore(tmp_path / "r" / "reviews.db")
    try:
        rev = review(quorum=2)
        assert store.open(rev.request) is True
        assert store.open(rev.request) is False  # a redelivered request
        assert store.get(rev.request.submission_id) == rev
        updated, _ = reviews.cast(rev, vote("alice"))
        store.save(updated)
        assert store.get(rev.request.submission_id) == updated
        assert store.open(rev.request) is False
        assert store.get(rev.request.submission_id) == updated  # not reset by a redelivery
    finally:
        store.close()
