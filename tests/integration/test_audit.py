"""The audit index on the real broker, read as the operator (who may read every record topic):
a signed history published, indexed and answered; a second catch-up that reads only what is new;
a gap made with the admin's delete_records, reported by the index and by `signoff audit` (exit 6);
a forged record reported and never indexed. Other tests share the topics: every assertion is
about this test's model or this test's offsets."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.errors import TopicAlreadyExistsError

from shared import codec, topics
from shared.admin import partitions_of
from shared.audit import queries
from shared.audit.feed import catch_up
from shared.audit.index import Index
from shared.events import Event, ReviewEscalated
from shared.kafka import KafkaAccess
from tests import keys
from tests.audit_history import T0, deployed_rolled_back_redeployed
from tests.kafka_broker import Cluster
from tests.unit import factories as f
from tests.unit.audit_log import keyring

pytestmark = pytest.mark.kafka


async def publish(kafka: KafkaAccess, records: list[codec.Record]) -> list[tuple[int, int]]:
    """Send each record as it is (signed or forged); their (partition, offset)."""
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all")
    await producer.start()
    try:
        out = []
        for r in records:
            meta = await producer.send_and_wait(r.topic, r.value, key=r.key,
                                                headers=[(k, v.encode()) for k, v in r.headers.items()])
            out.append((meta.partition, meta.offset))
        return out
    finally:
        await producer.stop()


async def ends(kafka: KafkaAccess) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**kafka.client_kwargs())
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics.EVENT_TOPICS for p in await partitions_of(consumer, t)]
        return await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


def signed(*events: Event) -> list[codec.Record]:
    return [keys.signed(e) for e in events]


async def test_a_signed_history_is_indexed_answered_and_caught_up_incrementally(
        kafka_cluster: Cluster, kafka: KafkaAccess, unique: str, tmp_path: Path) -> None:
    operator = kafka_cluster.access("operator")
    model = f"audit-{unique}"
    history, one, two, three = deployed_rolled_back_redeployed(model)
    await publish(kafka, signed(*history.events))
    index = Index.open(tmp_path / "audit.sqlite")

    first = await catch_up(operator, keyring(), index)
    assert first.indexed >= len(history.events)
    # Every published event once (the session's services, when other tests run them, may add their
    # own answers about this model: those are not this test's).
    indexed = [(e.topic, e.event.event_id) for e in index.entries(model)]
    assert len(indexed) == len(set(indexed))
    assert {(e.topic, e.event_id) for e in history.events} <= set(indexed)
    between = queries.production_at(index, model, T0 + timedelta(hours=2.5))
    assert (between.version, between.rollback_request.event.requested_by,
            between.approval.event.decided_by) == ("1.0", "oncall", "alice")
    after = queries.production_at(index, model, T0 + timedelta(hours=4))
    assert (after.version, after.approval.event.policy.digest) == ("3.0", three.decision.policy.digest)
    assert index.health(model).open_links == []

    await catch_up(operator, keyring(), index)
    before = await ends(kafka)
    later = history.release("4.0", T0 + timedelta(hours=5))
    await publish(kafka, signed(later.submitted, later.checks))
    grown = await ends(kafka)
    second = await catch_up(operator, keyring(), index)
    # Only what was appended since is fetched: a re-read from the start would fetch every record again.
    assert second.fetched == second.read == sum(grown[tp] - before[tp] for tp in grown) >= 2
    assert index.entry(later.checks.event_id, topics.CHECKS_PASSED) is not None


async def _delete_to_end(kafka: KafkaAccess, tp: TopicPartition) -> int:
    end = (await ends(kafka))[tp]
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        await admin.delete_records({tp: RecordsToDelete(end)})
    finally:
        await admin.close()
    return end


def escalation(model: str) -> ReviewEscalated:
    return ReviewEscalated(submission_id=uuid.uuid4(), candidate=f.candidate(model=model), approvers=("dave",),
                           deadline=T0 + timedelta(days=1), reason="no decision by the deadline")


async def test_records_deleted_by_the_admin_are_a_gap_the_audit_reports(
        kafka_cluster: Cluster, kafka: KafkaAccess, unique: str, tmp_path: Path) -> None:
    """review.escalated, which no service consumes: records of it deleted after the index read
    some and before it read the rest; and a fresh index finding the partition starting past 0."""
    operator = kafka_cluster.access("operator")
    model = f"audit-gap-{unique}"
    index = Index.open(tmp_path / "audit.sqlite")
    [(partition, read_offset)] = await publish(kafka, signed(escalation(model)))
    await catch_up(operator, keyring(), index)
    [(_, first_lost), (_, last_lost)] = await publish(kafka, signed(escalation(model), escalation(model)))
    tp = TopicPartition(topics.REVIEW_ESCALATED, partition)
    end = await _delete_to_end(kafka, tp)
    assert end == last_lost + 1

    progress = await catch_up(operator, keyring(), index)
    assert progress.gaps == 1
    [gap] = [g for g in index.health().gaps if (g.topic, g.partition) == (tp.topic, partition)]
    assert (gap.first_offset, gap.last_offset) == (first_lost, last_lost)
    assert index.entries(model) and len(index.entries(model)) == 1 and read_offset < first_lost

    fresh = Index.open(tmp_path / "fresh.sqlite")
    await catch_up(operator, keyring(), fresh)
    assert [(g.first_offset, g.last_offset) for g in fresh.health().gaps if (g.topic, g.partition) == (
        tp.topic, partition)] == [(0, last_lost)]

    env = {**os.environ, **operator.env(), "SIGNOFF_TRUSTED_KEYS": str(keys.keys().trust),
           "SIGNOFF_AUDIT_INDEX": str(tmp_path / "audit.sqlite")}
    result = subprocess.run([sys.executable, "-m", "signoff.cli", "audit", model], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 6, result.stderr
    assert (f"WARNING: gap in review.escalated partition {partition}: offsets {first_lost}-{last_lost} deleted"
            in result.stderr)
    accepted = subprocess.run([sys.executable, "-m", "signoff.cli", "audit", model, "--accept-gaps", "--offline"],
                              env=env, capture_output=True, text=True, timeout=120)
    assert accepted.returncode == 0 and "review.escalated" in accepted.stdout


async def test_a_forged_record_is_reported_and_never_indexed(
        kafka_cluster: Cluster, kafka: KafkaAccess, unique: str, tmp_path: Path) -> None:
    model = f"audit-forged-{unique}"
    history, one, *_ = deployed_rolled_back_redeployed(model)
    genuine = keys.signed(one.decision)
    forged = genuine._replace(value=genuine.value.replace(b'"alice"', b'"mallory"'))  # after it was signed
    [(partition, offset)] = await publish(kafka, [forged])
    index = Index.open(tmp_path / "audit.sqlite")
    await catch_up(kafka_cluster.access("operator"), keyring(), index)
    assert index.entry(one.decision.event_id, topics.REVIEW_DECIDED) is None
    [problem] = [p for p in index.health(limit=10_000).problems
                 if (p.topic, p.partition, p.offset) == (topics.REVIEW_DECIDED, partition, offset)]
    assert problem.kind == "untrusted" and "signature does not verify" in problem.reason and problem.key == model


async def test_a_topic_deleted_and_created_again_is_a_gap_and_the_new_log_is_read_from_its_start(
        kafka: KafkaAccess, unique: str, tmp_path: Path) -> None:
    """On a topic of this test's own (its records are problems to the index, not events: what is
    tested is which offsets are read): the new log has grown past the offsets indexed from the
    old one, so only the record below the stored offset tells them apart (aiokafka 0.14 sees no
    topic ids)."""
    name = f"audit-recreated-{unique}"
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1)])
        await publish(kafka, [codec.Record(name, b"k", f"old {i}".encode(), {}) for i in range(2)])
        index = Index.open(tmp_path / "audit.sqlite")
        assert (await catch_up(kafka, keyring(), index, (name,))).problems == 2
        await admin.delete_topics([name])
        await _created_again(admin, name)
    finally:
        await admin.close()
    await publish(kafka, [codec.Record(name, b"k", f"new {i}".encode(), {}) for i in range(3)])
    progress = await catch_up(kafka, keyring(), index, (name,))
    assert (progress.gaps, progress.read) == (1, 3)  # the new log's offsets 0, 1 and 2, not only 2
    [gap] = index.health().gaps
    assert (gap.topic, gap.first_offset, gap.last_offset) == (name, 2, -1)
    assert "another record is at offset 1" in gap.why
    assert [p.offset for p in index.health().problems] == [0, 1, 0, 1, 2]  # the old log's, then the new one's
    again = await catch_up(kafka, keyring(), index, (name,))
    assert (again.gaps, again.read) == (0, 0)


async def _created_again(admin: AIOKafkaAdminClient, name: str, timeout: float = 30.0) -> None:
    """Create `name` again once the broker has finished deleting it (deletion is asynchronous)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await admin.create_topics([NewTopic(name, 1, 1)])
            return
        except TopicAlreadyExistsError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)  # polling the broker's deletion, bounded by the deadline
