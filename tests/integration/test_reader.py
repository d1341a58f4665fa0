"""The one topic reader on the real broker: from the beginning or a time, until the end or a
predicate with a deadline, the newest match read backwards; and `signoff watch` built on it. A
read ends on empty and truncated partitions, and the start-up replay on truncated topics. The
tests run as the admin (`kafka`): they make topics and delete records, which only it may do."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete

from shared import codec, reader, signing, topics
from shared.admin import partitions_of
from shared.events import Production, RollbackRequested
from shared.kafka import KafkaAccess
from shared.production import EVENTS, ProductionBook
from shared.replay import rebuild
from signoff import client
from tests import keys
from tests.unit import factories as f

pytestmark = pytest.mark.kafka


def rollback(model: str, reason: str) -> RollbackRequested:
    return RollbackRequested(submission_id=uuid.uuid4(), model=model, requested_by="ops", reason=reason)


async def keyed(servers: KafkaAccess, model: str, **options) -> list[RollbackRequested]:
    out = []
    async for record in reader.read(servers, (topics.ROLLBACK_REQUESTED,), **options):
        if record.key == model.encode():
            out.append(reader.decode(record))
    return out


async def test_from_the_beginning_until_the_end_and_from_a_time(kafka: KafkaAccess, unique: str) -> None:
    model = f"reader-{unique}"
    early = [rollback(model, f"early {i}") for i in range(3)]
    await client.publish(kafka, early)
    await asyncio.sleep(0.05)  # record timestamps are in milliseconds: keep the two sets apart
    middle = datetime.now(UTC)
    late = [rollback(model, f"late {i}") for i in range(2)]
    await client.publish(kafka, late)

    assert [e.reason for e in await keyed(kafka, model)] == [e.reason for e in early + late]
    assert [e.reason for e in await keyed(kafka, model, since=middle)] == [e.reason for e in late]


async def test_until_a_predicate_reads_past_the_end_and_a_deadline_ends_it(kafka: KafkaAccess, unique: str) -> None:
    model = f"reader-{unique}"
    seen: list[str] = []

    async def collect() -> None:
        async for record in reader.read(kafka, (topics.ROLLBACK_REQUESTED,), since=datetime.now(UTC),
                                        until=lambda: "last" in seen, timeout=60):
            if record.key == model.encode():
                seen.append(reader.decode(record).reason)

    task = asyncio.create_task(collect())
    await client.publish(kafka, [rollback(model, "first"), rollback(model, "last")])  # after the read began
    await asyncio.wait_for(task, 60)
    assert seen == ["first", "last"]

    loop = asyncio.get_running_loop()
    started = loop.time()
    never = [r async for r in reader.read(kafka, (topics.ROLLBACK_REQUESTED,), since=datetime.now(UTC),
                                          until=lambda: False, timeout=1.0)]
    assert never == [] and loop.time() - started >= 1.0


async def test_find_newest_reads_backwards_and_answers_none_for_an_unknown_id(kafka: KafkaAccess, unique: str) -> None:
    model = f"reader-{unique}"
    events = [rollback(model, f"r{i}") for i in range(5)]
    await client.publish(kafka, events)
    wanted = str(events[2].submission_id).encode()
    record = await reader.find_newest(kafka, (topics.ROLLBACK_REQUESTED,),
                                      lambda r: dict(r.headers).get("ce_subject") == wanted)
    assert reader.decode(record) == events[2]
    assert await reader.find_newest(kafka, (topics.ROLLBACK_REQUESTED,), lambda r: False) is None


def test_watch_of_an_id_never_published_fails_fast(kafka: KafkaAccess) -> None:
    missing = uuid.uuid4()
    result = subprocess.run([sys.executable, "-m", "signoff.cli", "watch", str(missing), "--timeout", "300"],
                            env={**os.environ, **kafka.env()},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert f"no submission or rollback {missing}" in result.stderr


async def test_watch_starts_from_the_operation_not_from_the_beginning(kafka: KafkaAccess, unique: str) -> None:
    """A rollback of a model never deployed gets no outcome here (no deployer runs): the follow
    yields the request alone and ends at its deadline; it read from the request's own time."""
    model = f"reader-{unique}"
    request = rollback(model, "watch me")
    await client.publish(kafka, [request])
    since = await client.started_at(kafka, request.submission_id)
    assert abs((since - request.occurred_at).total_seconds()) < 60
    followed = [e async for e in client.follow(kafka, request.submission_id, timeout=10.0)]
    assert followed == [request]


async def _delete_up_to(servers: KafkaAccess, offsets: dict[TopicPartition, int]) -> None:
    admin = AIOKafkaAdminClient(**servers.client_kwargs())
    await admin.start()
    try:
        await admin.delete_records({tp: RecordsToDelete(o) for tp, o in offsets.items() if o})
    finally:
        await admin.close()


async def _ends(servers: KafkaAccess, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**servers.client_kwargs())
    await consumer.start()
    try:
        return await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


async def test_a_read_ends_on_empty_and_truncated_partitions(kafka: KafkaAccess, unique: str) -> None:
    """Partition 0 written and then emptied (as retention or delete_records leaves it: start ==
    end), 1 partly truncated, 2 never written, 3 emptied too: every read returns, with what is left."""
    topic = f"reader-truncated-{unique}"
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all")
    await producer.start()
    try:
        for partition, n in ((0, 3), (1, 3), (3, 2)):
            for i in range(n):
                await producer.send_and_wait(topic, f"{partition}-{i}".encode(), partition=partition)
    finally:
        await producer.stop()
    parts = [TopicPartition(topic, p) for p in range(4)]
    ends = await _ends(kafka, parts)
    await _delete_up_to(kafka, {parts[0]: ends[parts[0]], parts[1]: 1, parts[3]: ends[parts[3]]})

    async def values(**options) -> list[bytes]:
        return [r.value async for r in reader.read(kafka, (topic,), **options)]

    assert await asyncio.wait_for(values(), 30) == [b"1-1", b"1-2"]
    assert await asyncio.wait_for(values(since=datetime(2000, 1, 1, tzinfo=UTC)), 30) == [b"1-1", b"1-2"]
    assert await asyncio.wait_for(values(until=lambda: True, timeout=30), 30) == [b"1-1", b"1-2"]

    await _delete_up_to(kafka, {parts[1]: ends[parts[1]]})  # now every partition is empty
    assert await asyncio.wait_for(values(), 30) == []


async def test_rebuild_returns_on_truncated_deployment_topics_and_skips_poison(kafka: KafkaAccess, unique: str) -> None:
    """The start-up replay on the services' own topics, emptied by delete_records, then one
    poison record (a 5,000-digit number) and one good deployment: it returns, applies the good
    one and counts the poison. (It truncates the shared deployment topics: integration tests run
    after the end-to-end tests, and nothing else reads these topics' history here.)"""
    model = f"rebuild-{unique}"
    parts = [TopicPartition(cls.topic, p) for cls in EVENTS
             for p in range(len(await _partitions(kafka, cls.topic)))]
    await _delete_up_to(kafka, await _ends(kafka, parts))
    good = f.deployment_succeeded(f.submitted(f.submission(f.candidate(model=model))))
    bad = codec.encode(good, "/test").value.replace(b'"accuracy":0.95', b'"accuracy":' + b"9" * 5000)
    ce = {"ce_id": "bad", "ce_type": "signoff.deployment.succeeded"}  # only the body is bad
    bad_record = keys.sign(codec.Record(topics.DEPLOYMENT_SUCCEEDED, model.encode(), bad, ce))  # reaches the parser
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(bad_record.topic, bad_record.value, key=bad_record.key,
                                     headers=[(k, v.encode()) for k, v in bad_record.headers.items()])
    finally:
        await producer.stop()
    await client.publish(kafka, [good], signer=keys.signer("deployer"))
    forged = f.deployment_succeeded(f.submitted(f.submission(f.candidate(model=f"forged-{model}"))))
    await client.publish(kafka, [forged])  # unsigned: never in the book

    book = ProductionBook()
    trusted = signing.load_trust(keys.keys().trust)
    applied = await asyncio.wait_for(rebuild(kafka, book.apply, *EVENTS, keyring=trusted), 30)
    assert book.get(f"forged-{model}") is None
    assert applied >= 1 and book.get(model) == Production(candidate=good.candidate, metrics=good.metrics,
                                                          submission_id=good.submission_id)
    skipped: Counter[str] = Counter()
    await reader.read_events(kafka, [cls.topic for cls in EVENTS], skipped=skipped)
    assert skipped[topics.DEPLOYMENT_SUCCEEDED] >= 1


async def _partitions(servers: KafkaAccess, topic: str) -> set[int]:
    consumer = AIOKafkaConsumer(**servers.client_kwargs())
    await consumer.start()
    try:
        return await partitions_of(consumer, topic)
    finally:
        await consumer.stop()
