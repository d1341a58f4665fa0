"""Keeping the audit index up to date from the topics: `catch_up` reads each record topic's
partitions from the offset the index stored to the end they had when it began, and nothing else.

Its cost when nothing is new is one connection (whose bootstrap brings the metadata of every
topic) and one ListOffsets request for the ends: a partition whose end is the stored offset is not
read, and its log start is not even asked. The ends are taken in one request, so a record the
catch-up indexes was written before every end it reads to, and so was its cause (a service emits
an event after reading its cause): a chain stays whole within one catch-up on one broker. Records
written after the ends wait for the next catch-up.

A topic deleted and created again starts a new log at offset 0. Kafka names each topic's
incarnation by a topic id (Metadata v10+), but aiokafka 0.14 speaks Metadata up to v5 and never
sees it, so the catch-up tells a new log by the log itself: a log that ends below the stored
offset, or (for a partition it reads on) whose record just below the stored offset is not the one
the index read there (`ingest.witness`). Either is a gap (what the old log held past the stored
offset is lost, how much unknown), and the new log is read from its start, in a new epoch. Its
limits: a new log that has not grown past the stored offset reads as "nothing new" until it does
(then it is found, and read whole); one whose record below the stored offset was deleted
(delete_records) cannot be compared, and its missing start is the gap said instead.

It reads outside consumer groups, as shared.reader does, with the caller's principal (the operator
or a pipeline may read every record topic: shared/acl.py).
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from shared import signing, topics
from shared.admin import partitions_of
from shared.audit.index import Index
from shared.audit.ingest import DELETED_WHILE_READ, Progress, ingest, skip_to, witness
from shared.events import utcnow
from shared.kafka import KafkaAccess, unreachable

POLL_MS = 500


async def catch_up(kafka: KafkaAccess, keyring: signing.Keyring, index: Index,
                   topic_names: tuple[str, ...] = topics.EVENT_TOPICS, timeout: float = 300.0) -> Progress:
    """Index every record of `topic_names` the index has not read, up to their ends as of now.
    What was indexed stays indexed if it stops half-way (each batch commits with its offsets);
    TimeoutError after `timeout` seconds naming the partitions still behind."""
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        await consumer.start()
    except KafkaConnectionError:
        await consumer.stop()
        raise unreachable(kafka) from None
    try:
        partitions = [TopicPartition(t, p) for t in topic_names for p in sorted(await partitions_of(consumer, t))]
        end = await consumer.end_offsets(partitions)
        stored = index.offsets()
        behind = [tp for tp in partitions if end[tp] != stored.get((tp.topic, tp.partition), 0)]
        progress = await _read(consumer, keyring, index, behind, end, timeout) if behind else Progress()
        with index.transaction():
            index.note_caught_up(utcnow())
        return progress
    finally:
        await consumer.stop()


async def _read(consumer: AIOKafkaConsumer, keyring: signing.Keyring, index: Index,
                behind: list[TopicPartition], end: dict[TopicPartition, int], timeout: float) -> Progress:
    progress = Progress()
    start = await consumer.beginning_offsets(behind)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    stored = {tp: index.next_offset(tp.topic, tp.partition) for tp in behind}
    check = {tp: o - 1 for tp, o in stored.items() if start[tp] < o <= end[tp]
             and index.witness(tp.topic, tp.partition) is not None}
    found = await _records_at(consumer, check, deadline) if check else {}
    for tp in behind:
        if end[tp] < stored[tp]:
            progress.gaps += _recreated(index, tp, stored[tp], f"the log now ends at {end[tp]}")
        elif tp in found and found[tp] != index.witness(tp.topic, tp.partition):
            progress.gaps += _recreated(index, tp, stored[tp], f"another record is at offset {check[tp]}")
        progress.gaps += skip_to(index, tp.topic, tp.partition, start[tp])
    reading = [tp for tp in behind if index.next_offset(tp.topic, tp.partition) < end[tp]]
    consumer.assign(reading)
    for tp in reading:
        consumer.seek(tp, index.next_offset(tp.topic, tp.partition))
    while reading:
        if loop.time() > deadline:
            late = ", ".join(f"{t.topic}/{t.partition}" for t in reading)
            raise TimeoutError(f"the audit index is still behind on {late} after {timeout:.0f} s; what was "
                               "read is kept, run it again")
        batches = await consumer.getmany(*reading, timeout_ms=POLL_MS)
        for tp, records in batches.items():
            progress.fetched += len(records)
            progress.add(ingest(index, tp.topic, tp.partition, records, keyring, upto=end[tp]))
        for tp in list(reading):
            position = min(await consumer.position(tp), end[tp])
            if position >= end[tp] or index.next_offset(tp.topic, tp.partition) >= end[tp]:
                # The consumer jumps over records deleted while it read (auto_offset_reset): the
                # offsets it jumped over and no record showed are a gap.
                progress.gaps += skip_to(index, tp.topic, tp.partition, position, DELETED_WHILE_READ)
                reading.remove(tp)
    return progress


async def _records_at(consumer: AIOKafkaConsumer, at: dict[TopicPartition, int],
                      deadline: float) -> dict[TopicPartition, str]:
    """The witness of the record at offset `at[tp]` of each partition (absent: it is gone, or it
    did not come by the deadline, so nothing can be compared)."""
    consumer.assign(list(at))
    for tp, offset in at.items():
        consumer.seek(tp, offset)
    found: dict[TopicPartition, str] = {}
    loop = asyncio.get_running_loop()
    waiting = set(at)
    while waiting and loop.time() < deadline:
        batches = await consumer.getmany(*waiting, timeout_ms=POLL_MS)
        for tp, records in batches.items():
            if tp in waiting and records:
                if records[0].offset == at[tp]:  # otherwise it was deleted: the log starts later
                    found[tp] = witness(records[0])
                waiting.discard(tp)
    return found


def _recreated(index: Index, tp: TopicPartition, stored: int, how: str) -> bool:
    """The topic was deleted and created again: what the old log held from `stored` on is a gap
    (how many, unknown); the events indexed from it stay, and the new log is read from its start."""
    with index.transaction():
        index.add_gap(tp.topic, tp.partition, stored, -1,
                      f"were lost with the topic, deleted and created again ({how}, below the {stored} offsets "
                      "indexed): what was indexed from it stays, the new log is read from its start")
        index.set_offset(tp.topic, tp.partition, 0, epoch=index.epoch(tp.topic, tp.partition) + 1)
    return True
