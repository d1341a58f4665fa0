"""Followers take records in batches (shared.broker.follow) and check each one themselves: one
hostile record in a batch costs only itself, whatever is wrong with it, and the barrier of the
facts a decision must not miss never passes a fact the view has not taken."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.structs import ConsumerRecord
from faststream.kafka import TestKafkaBroker

from shared import codec, topics
from shared.broker import NotYet, follow, keys_of, make_broker
from shared.events import DeploymentSucceeded
from shared.facts import Facts
from shared.production import EVENTS, ProductionBook
from shared.rejections import Rejections
from shared.replay import _handler
from shared.settings import ServiceSettings
from tests import keys
from tests.unit import factories as f

NOWHERE = {"kafka_bootstrap_servers": "127.0.0.1:1", "kafka_security_protocol": "PLAINTEXT"}  # never contacted


@pytest.fixture
def broker():
    settings = ServiceSettings(**NOWHERE, consumer_group_prefix="test", **keys.service_fields("validator"))
    made = make_broker(settings, "probe")
    keys_of(made).open()
    return made


def deployed(version: str) -> DeploymentSucceeded:
    approval = f.decided(f.submitted(f.submission(f.candidate(version=version))))
    return DeploymentSucceeded.caused_by(approval, candidate=approval.candidate, target="model-store",
                                         location=f"/store/fraud-detector/{version}", metrics={"accuracy": 0.9})


def record(signed: codec.Record, offset: int, extra: list[tuple[str, bytes | None]] = ()) -> ConsumerRecord:
    headers = [(k, v.encode()) for k, v in signed.headers.items()] + list(extra)
    return ConsumerRecord(topic=signed.topic, partition=0, offset=offset, timestamp=0, timestamp_type=0,
                          key=signed.key, value=signed.value, checksum=None, serialized_key_size=len(signed.key),
                          serialized_value_size=len(signed.value), headers=headers)


async def as_delivered(broker, batch: list[ConsumerRecord]) -> list:
    """What a follower's handler gets for `batch`: the parser and decoder `follow` wires, composed
    with FastStream's own as the broker composes them."""
    subscriber = follow(broker, topics.DEPLOYMENT_SUCCEEDED)

    @subscriber
    async def nothing(records: list) -> None:
        return None

    async with TestKafkaBroker(broker):
        [item] = subscriber.calls
        return await item.decoder(await item.parser(tuple(batch)))


async def test_a_hostile_record_in_a_batch_costs_only_itself(broker):
    """A header value that is not UTF-8 (FastStream's own batch parser would fail the whole batch on
    it), a null header value, and a record signed by a role that may not make it: the rest of the
    batch is applied, and only what was applied is noted for the snapshot."""
    book, noted = ProductionBook(), []
    v2, v3, v4, v5 = (deployed(v) for v in "2345")
    batch = [
        record(keys.signed(v2), 0),
        record(keys.signed(v3), 1, extra=[("x-note", b"\xff\xfe")]),  # not covered by the signature: valid
        record(keys.signed(v4), 2, extra=[("x-null", None)]),
        record(keys.signed(v5, by="validator"), 3),  # a deployment the validator may not sign
    ]
    handle = _handler(broker, EVENTS, book.apply, lambda topic, partition, offset: noted.append(offset))
    await handle(await as_delivered(broker, batch))
    known = book.known("fraud-detector")
    assert known is not None and known.candidate.version == "3"
    assert noted == [0, 1]


async def test_a_record_of_another_type_on_a_followed_topic_is_skipped(broker):
    book, noted = ProductionBook(), []
    decision = f.decided(f.submitted(f.submission(f.candidate(version="9"))))
    signed = keys.signed(decision)
    misplaced = codec.Record(topics.DEPLOYMENT_SUCCEEDED, signed.key, signed.value, signed.headers)
    handle = _handler(broker, EVENTS, book.apply, lambda *where: noted.append(where))
    await handle(await as_delivered(broker, [record(keys.sign(misplaced, by="deployer"), 0)]))
    assert book.known("fraud-detector") is None and noted == []


def rejected(version: str):
    return f.decided(f.submitted(f.submission(f.candidate(version=version, artifact_sha256=version * 64))),
                     outcome="rejected", mode="automatic", decided_by="policy:test/rule")


async def test_a_fact_the_view_could_not_take_holds_the_barrier_until_it_is_taken(broker):
    """The view's store failed on a rejection: the batch reads on, but no decision passes the
    barrier until the rejection is applied (retried at the next wait)."""
    view, failing = Rejections(), [True]

    def apply(event):
        if failing[0]:
            raise OSError("database is locked")
        return view.apply(event)

    facts = Facts(broker, topics.REVIEW_DECIDED, apply, ServiceSettings(**NOWHERE).kafka)
    facts.in_memory = True  # each publish handled before it returns: no offsets to wait for
    no, yes = rejected("a"), rejected("b")
    batch = [record(keys.signed(no), 0, extra=[("x-null", None)]), record(keys.signed(yes), 1)]
    await facts.follower(await as_delivered(broker, batch))
    assert facts.handled == {0: 1} and facts.skipped == 1
    assert [where for *where, _ in facts.pending] == [[topics.REVIEW_DECIDED, 0, 1]]
    with pytest.raises(NotYet):
        await facts.caught_up()
    failing[0] = False
    await facts.caught_up()
    assert view.get("b" * 64) is not None and not facts.pending


async def test_on_the_broker_the_barrier_waits_for_a_fact_the_view_has_not_taken(broker):
    """The same on the real path: every record read to the end offsets is not enough while a
    verified fact waits to be applied."""
    view, failing = Rejections(), [True]

    def apply(event):
        if failing[0]:
            raise OSError("database is locked")
        return view.apply(event)

    facts = Facts(broker, topics.REVIEW_DECIDED, apply, ServiceSettings(**NOWHERE).kafka, timeout=60)

    class Ends:  # what the broker says: partition 0 ends after offset 0
        def partitions_for_topic(self, topic):
            return {0}

        async def end_offsets(self, partitions):
            return {tp: 1 for tp in partitions}

        async def beginning_offsets(self, partitions):
            return {tp: 0 for tp in partitions}

    async def ends():
        return Ends()

    facts._offsets = ends  # type: ignore[method-assign]
    await facts.follower(await as_delivered(broker, [record(keys.signed(rejected("c")), 0)]))
    assert facts.handled == {0: 0} and facts.pending
    with pytest.raises(NotYet):  # at once, not after the 60 s: the event is retried after a back-off
        await asyncio.wait_for(facts.caught_up(), 5)
    failing[0] = False
    await asyncio.wait_for(facts.caught_up(), 5)
    assert view.get("c" * 64) is not None


async def test_facts_read_behind_one_the_view_refused_wait_their_turn(broker):
    """In order, and the failing store is asked once per try, not once per fact behind it. (In
    memory every record is at offset 0: the waiting facts are not told apart by offset.)"""
    view, failing, tries = Rejections(), [True], []

    def apply(event):
        tries.append(event.candidate.version)
        if failing[0]:
            raise OSError("database is locked")
        return view.apply(event)

    facts = Facts(broker, topics.REVIEW_DECIDED, apply, ServiceSettings(**NOWHERE).kafka)
    facts.in_memory = True
    for version in "def":
        await facts.follower(await as_delivered(broker, [record(keys.signed(rejected(version)), 0)]))
    assert tries == ["d", "d", "d"] and len(facts.pending) == 3
    failing[0] = False
    await facts.caught_up()
    assert tries == ["d", "d", "d", "d", "e", "f"] and not facts.pending
    assert all(view.get(v * 64) is not None for v in "def")


def fetched(answers: list[dict], asked: list[int]):
    """aiokafka's getmany, as the consumer's base class answers it: `answers` in turn, then empty."""
    async def getmany(consumer, *partitions, timeout_ms=0, max_records=None):
        asked.append(timeout_ms)
        return answers.pop(0) if answers else {}

    return getmany


async def test_a_follower_is_not_handed_an_empty_batch_while_its_consumer_runs(monkeypatch):
    """FastStream sleeps as long as the poll after an empty answer: a record fetched meanwhile
    would wait. An empty answer is asked again at once; a poll of 0 ms is answered as it is."""
    import aiokafka

    from shared.commits import BatchingConsumer

    asked: list[int] = []
    monkeypatch.setattr(aiokafka.AIOKafkaConsumer, "getmany", fetched([{}, {}, {"tp": ["record"]}], asked))
    consumer = BatchingConsumer(bootstrap_servers="127.0.0.1:1")
    assert await consumer.getmany(timeout_ms=500) == {"tp": ["record"]} and asked == [500, 500, 500]
    assert await consumer.getmany(timeout_ms=0) == {} and asked[-1] == 0
    consumer._closed = True  # stopped: an empty answer is returned (FastStream then sees the stop)
    assert await consumer.getmany(timeout_ms=500) == {}
