"""Two replicas of the review-notifier on one store (an SQLite file, or PostgreSQL as replicas
share it): a vote counts once whichever replica takes it, two votes taken at once both count, and
a notification is sent by one replica (a claim in the store), again only when its send failed."""

from __future__ import annotations

import asyncio
import threading

import pytest

from services.review_notifier import reviews
from services.review_notifier.channels import Receipt
from services.review_notifier.channels.base import Notices
from services.review_notifier.channels.email import EmailChannel
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


def test_a_notification_is_sent_by_one_replica_and_sent_again_only_after_a_failure(replicas):
    """Both replicas run the deadline loop, which announces every pending review: the claim lets
    one of them post (the other sees it taken), a failed send gives it back, a recorded one is done."""
    one, two = replicas
    rev = review(quorum=1)
    one.open(rev.request)
    sid = rev.submission_id
    first = one.claim_notice(sid, "slack:requested", now=100.0, lease=60.0)
    assert first == 160.0
    assert two.claim_notice(sid, "slack:requested", now=101.0, lease=60.0) is None  # taken
    assert two.notice(sid, "slack:requested") is None  # a claim is not a sent notice
    one.release_notice(sid, "slack:requested", first)  # the post failed
    assert two.claim_notice(sid, "slack:requested", now=102.0, lease=60.0) is not None
    two.record_notice(sid, "slack:requested", {"channel": "C1", "ts": "1.2"})
    assert one.notice(sid, "slack:requested") == {"channel": "C1", "ts": "1.2"}
    assert one.claim_notice(sid, "slack:requested", now=10_000.0, lease=60.0) is None  # sent: never again
    one.release_notice(sid, "slack:requested", first)  # releasing a sent notice changes nothing
    assert two.notice(sid, "slack:requested") == {"channel": "C1", "ts": "1.2"}


def test_a_claim_left_by_a_replica_that_died_while_sending_lapses(replicas):
    one, two = replicas
    rev = review(quorum=1)
    one.open(rev.request)
    lapsed = one.claim_notice(rev.submission_id, "email:requested:alice", now=100.0, lease=60.0)
    assert lapsed is not None
    assert two.claim_notice(rev.submission_id, "email:requested:alice", now=159.0, lease=60.0) is None
    taken = two.claim_notice(rev.submission_id, "email:requested:alice", now=161.0, lease=60.0)
    assert taken is not None
    # The slow first replica's send fails at last: giving back its lapsed claim leaves the new one.
    one.release_notice(rev.submission_id, "email:requested:alice", lapsed)
    assert one.claim_notice(rev.submission_id, "email:requested:alice", now=162.0, lease=60.0) is None


def test_two_replicas_claiming_at_once_one_wins(replicas):
    one, two = replicas
    rev = review(quorum=1)
    one.open(rev.request)
    won: list[bool] = []
    threads = [threading.Thread(target=lambda s=store: won.append(
        s.claim_notice(rev.submission_id, "slack:escalated", now=100.0, lease=60.0) is not None))
        for store in (one, two)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert sorted(won) == [False, True]


async def test_two_replicas_announcing_at_once_mail_each_approver_once_and_a_failed_mail_is_retried(replicas):
    """Two review-notifiers' deadline loops announce the same pending review at the same moment:
    each approver is mailed by one of them; a mail that failed is sent by the next announce."""
    rev = review(quorum=1)
    replicas[0].open(rev.request)
    sent: list[str] = []
    gate = asyncio.Event()
    failing = {"bob"}

    async def mail(review, approver, reminder=False):
        await gate.wait()  # both replicas are inside announce before either finishes sending
        if approver in failing:
            return False
        sent.append(approver)
        return True

    channels = []
    for store in replicas:
        channel = EmailChannel()
        channel.open(None, Notices(store, "email"))  # type: ignore[arg-type]
        channel._mail = mail  # type: ignore[method-assign]
        channels.append(channel)
    both = asyncio.gather(*(channel.announce(rev) for channel in channels))
    await asyncio.sleep(0)  # let both start and claim
    gate.set()
    await both
    approvers = list(rev.request.approvers)
    assert sorted(sent) == sorted(a for a in approvers if a not in failing)
    failing.clear()
    await channels[1].announce(rev)  # the next tick, on either replica
    assert sorted(sent) == sorted(approvers)


def test_a_claim_made_while_a_vote_waits_on_its_emit_survives_the_votes_rollback(postgres):
    """A notifier task runs while a vote's transaction awaits its emit (same process, same store):
    on PostgreSQL the claim is on a connection of its own, so the vote's rollback (its emit
    failed) does not take the claim with it, and the other replica cannot mail the same person."""
    url = postgres.database()
    one, two = ReviewStore(url), ReviewStore(url)
    try:
        rev = review(quorum=1)
        one.open(rev.request)
        with pytest.raises(RuntimeError):
            with one.locked(rev.submission_id):
                assert one.claim_notice(rev.submission_id, "email:requested:alice", now=100.0, lease=60.0)
                raise RuntimeError("the emit failed")
        assert two.claim_notice(rev.submission_id, "email:requested:alice", now=101.0, lease=60.0) is None
    finally:
        one.close()
        two.close()
