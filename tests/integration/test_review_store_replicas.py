"""Two replicas of the review-notifier on one store (an SQLite file, or PostgreSQL as replicas
share it): a vote counts once whichever replica takes it, and two votes taken at once both count."""

from __future__ import annotations

import threading

import pytest

from services.review_notifier import reviews
from services.review_notifier.channels import Receipt
from services.review_notifier.state import ReviewStore
from shared import database
from tests.unit.test_reviews import T0, review, vote

SLACK_CLICK = Receipt("slack", "v0=click")


@pytest.fixture
def replicas(state_db):
    first, second = ReviewStore(state_db), ReviewStore(state_db)
    yield first, second
    first.close()
    second.close()


def test_a_request_counted_on_one_replica_is_refused_on_the_other(replicas):
    one, two = replicas
    rev = review(quorum=2)
    assert one.open(rev.request) is True and two.open(rev.request) is False  # a redelivery elsewhere
    with one.locked(rev.submission_id) as current:
        counted, _ = reviews.cast(current, vote("alice"))
        one.save(counted, receipt=SLACK_CLICK, at=T0)
    assert two.receipt_seen(SLACK_CLICK)
    again, _ = reviews.cast(counted, vote("bob"))
    with pytest.raises(database.IntegrityError):  # the unique receipt, not anything in this process
        with two.locked(rev.submission_id):
            two.save(again, receipt=SLACK_CLICK, at=T0)
    assert two.get(rev.submission_id) == counted  # rolled back whole: bob's vote is not in


def test_two_votes_taken_at_once_on_two_replicas_both_count(replicas):
    """The second replica's read waits for the first one's save (the row lock), so neither
    overwrites the other's vote."""
    one, two = replicas
    rev = review(quorum=3)
    one.open(rev.request)
    first_read, second_read = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def second_replica() -> None:
        try:
            first_read.wait(10)
            with two.locked(rev.submission_id) as current:
                second_read.set()
                counted, _ = reviews.cast(current, vote("bob"))
                two.save(counted, receipt=Receipt("email", "bob-link"), at=T0)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failures.append(exc)

    other = threading.Thread(target=second_replica)
    other.start()
    try:
        with one.locked(rev.submission_id) as current:
            first_read.set()
            # While this replica holds the review, the other cannot read it (bounded wait).
            assert not second_read.wait(0.5), "the other replica read the review while it was held"
            counted, _ = reviews.cast(current, vote("alice"))
            one.save(counted, receipt=SLACK_CLICK, at=T0)
    finally:
        other.join(15)
    assert not other.is_alive() and failures == []
    final = one.get(rev.submission_id)
    assert final is not None and sorted(v.approver for v in final.votes) == ["alice", "bob"]
