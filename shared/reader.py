"""The one way Signoff reads topics outside a consumer group: services rebuilding state at start,
the CLI (watch, history), and the tests' event log.

    read(kafka, topics)                            from the beginning until the end (as of now)
    read(kafka, topics, since=t)                   from the first record at or after time t
    read(kafka, topics, start={tp: offset})        from those offsets (a snapshot's), others from
                                                   the beginning; `bounds` tells where logs start
    read(kafka, topics, until=pred, timeout=s)     on past the end, until pred() holds (and the
                                                   end as of the start was reached) or s seconds
    read(kafka, topics, until=FOREVER)             until cancelled (a live tail)
    find_newest(kafka, topics, match)              the newest record `match` accepts, read from
                                                   the end backwards, so a recent one costs little
    read_at(kafka, topic, partition, offset)       the one record at that offset, or None

`kafka` is a shared.kafka.KafkaAccess: the reader reads as that principal, which needs READ on
the topics (shared/acl.py). Records come as aiokafka `ConsumerRecord`s; `decode` turns one into
its event (None when it does not decode, or, given a keyring, is not signed by a key trusted for
its type (shared.signing): the topic's consumers dead-letter it, a reader skips it, and
`read_events` counts it).

A read "until the end" ends: a partition with nothing between its start and its end (never
written, or emptied by retention or `delete_records`) is done before it is read. (Records deleted
while they are read move the consumer to the new start, `auto_offset_reset="earliest"`.)
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from shared import codec, signing
from shared.admin import partitions_of
from shared.events import Event
from shared.kafka import KafkaAccess, unreachable

Record = Any  # aiokafka.structs.ConsumerRecord
FOREVER: Final = "forever"
POLL_MS = 500
FETCH_WAIT_MS = 50
_WINDOW = 500  # records per partition read at a time by find_newest, doubling as it goes back


def decode(record: Record, keyring: signing.Keyring | None = None) -> Event | None:
    """The event in a record of one of Signoff's event topics, or None if it does not decode (any
    parse failure, however deep or large the record: `codec` bounds what it reads). With a
    keyring, the signature is verified first: an untrusted record is None too."""
    try:
        if keyring is not None:
            keyring.verify(record.topic, record.key, record.headers, record.value)
        return codec.decode_record(record.topic, record.key, record.value, record.headers)
    except codec.BadEvent:
        return None


async def read(kafka: KafkaAccess, topics: Sequence[str], *, since: datetime | None = None,
               until: Callable[[], object] | str | None = None, timeout: float | None = None,
               start: Mapping[TopicPartition, int] | None = None) -> AsyncIterator[Record]:
    """The records of `topics` (see the module's table). With `until`, a `timeout` ends the read
    quietly: the caller tells a timeout from the predicate by asking the predicate."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    from_offsets = start
    async with _consumer(kafka) as consumer:
        partitions = await _assign(consumer, topics)
        first = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        if from_offsets is not None:  # each at least the log's start: what retention left
            first = {**first, **{tp: max(first[tp], o) for tp, o in from_offsets.items() if tp in first}}
        await _seek(consumer, partitions, since, first, end)
        behind = {tp for tp in partitions if first[tp] < end[tp] and await consumer.position(tp) < end[tp]}
        while True:
            if until is None and not behind:
                return
            if callable(until) and not behind and until():
                return
            # Rounded up: a remainder under a millisecond is still waited for, so the read never ends
            # before its deadline (int() made it end up to 1 ms early).
            wait = POLL_MS if deadline is None else math.ceil(min(POLL_MS, max(deadline - loop.time(), 0) * 1000))
            if deadline is not None and wait <= 0:
                return
            batches = await consumer.getmany(*partitions, timeout_ms=wait)
            # Each poll's records in the order they were written, across topics and partitions.
            for record in sorted((r for rs in batches.values() for r in rs), key=lambda r: r.timestamp):
                yield record
            for tp in list(behind):
                if await consumer.position(tp) >= end[tp]:
                    behind.discard(tp)


async def bounds(kafka: KafkaAccess, topics: Sequence[str]) -> tuple[dict[TopicPartition, int],
                                                                      dict[TopicPartition, int]]:
    """Where each partition of `topics` starts and ends now."""
    async with _consumer(kafka) as consumer:
        partitions = await _assign(consumer, topics)
        return await consumer.beginning_offsets(partitions), await consumer.end_offsets(partitions)


async def read_events(kafka: KafkaAccess, topics: Sequence[str], *, since: datetime | None = None,
                      keep: Callable[[Record], bool] | None = None,
                      skipped: Counter[str] | None = None,
                      keyring: signing.Keyring | None = None,
                      start: Mapping[TopicPartition, int] | None = None,
                      seen: Callable[[Record, bool], object] | None = None) -> list[Event]:
    """Every valid event of `topics` up to their end now (from `since`), whose record `keep`
    accepts, in the order they happened (`occurred_at`, ties by event_id): what is built from
    them does not depend on which topic or partition was read first. Duplicates are kept: a step
    the deployer repeated after a crash has the same event_id and a later occurred_at, and a
    service's followers see both copies too. Records that do not decode are counted by topic in
    `skipped`, when given. With a keyring, only events signed by a key trusted for their type.
    `start`: as `read`'s; `seen` is called with every record kept, and whether it decoded (a
    snapshot's cursor: a skipped record is a gap in it, read again at the next start)."""
    events = []
    async for record in read(kafka, topics, since=since, start=start):
        if keep is not None and not keep(record):
            continue
        event = decode(record, keyring)
        if event is not None:
            events.append(event)
        elif skipped is not None:
            skipped[record.topic] += 1
        if seen is not None:
            seen(record, event is not None)
    return sorted(events, key=lambda e: (e.occurred_at, str(e.event_id)))


async def find_newest(kafka: KafkaAccess, topics: Sequence[str],
                      match: Callable[[Record], bool]) -> Record | None:
    """The newest record of `topics` that `match` accepts, or None; reads backwards from the end
    in growing windows, so finding something recent does not read the whole history."""
    async with _consumer(kafka) as consumer:
        partitions = await _assign(consumer, topics)
        start = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        upper, window, found = dict(end), _WINDOW, None
        while any(upper[tp] > start[tp] for tp in partitions):
            for tp in partitions:
                lower = max(start[tp], upper[tp] - window)
                if lower < upper[tp]:
                    for record in await _slice(consumer, tp, lower, upper[tp]):
                        if match(record) and (found is None or record.timestamp > found.timestamp):
                            found = record
                upper[tp] = lower
            if found is not None:
                return found
            window *= 2
        return None


async def read_at(kafka: KafkaAccess, topic: str, partition: int, offset: int) -> Record | None:
    """The record at one offset of `topic`, or None when there is none there (no such partition,
    not written yet, or deleted by retention). For a dead letter named by its coordinates."""
    async with _consumer(kafka) as consumer:
        if partition not in await partitions_of(consumer, topic):
            return None
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        start, end = (await consumer.beginning_offsets([tp]))[tp], (await consumer.end_offsets([tp]))[tp]
        if not start <= offset < end:
            return None
        return next((r for r in await _slice(consumer, tp, offset, offset + 1) if r.offset == offset), None)


async def _slice(consumer: AIOKafkaConsumer, tp: TopicPartition, lower: int, upper: int) -> list[Record]:
    """The records of one partition at offsets [lower, upper)."""
    consumer.seek(tp, lower)
    out: list[Record] = []
    while await consumer.position(tp) < upper:
        batch = await consumer.getmany(tp, timeout_ms=POLL_MS)
        out += [r for r in batch.get(tp, []) if r.offset < upper]
    return out


class _consumer:
    """A group-less consumer that commits nothing, stopped whatever happens."""

    def __init__(self, kafka: KafkaAccess) -> None:
        self.kafka = kafka
        # fetch_max_wait_ms: the broker holds a fetch of an empty partition this long, and stop()
        # waits for the fetch in flight, so a read of empty topics cost 0.5 s at the default.
        self.consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False,
                                         auto_offset_reset="earliest", fetch_max_wait_ms=FETCH_WAIT_MS)

    async def __aenter__(self) -> AIOKafkaConsumer:
        try:
            await self.consumer.start()
        except KafkaConnectionError:
            await self.consumer.stop()
            raise unreachable(self.kafka) from None
        return self.consumer

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()


async def _assign(consumer: AIOKafkaConsumer, topics: Sequence[str]) -> list[TopicPartition]:
    partitions = [TopicPartition(t, p) for t in topics for p in sorted(await partitions_of(consumer, t))]
    consumer.assign(partitions)
    return partitions


async def _seek(consumer: AIOKafkaConsumer, partitions: list[TopicPartition], since: datetime | None,
                start: dict[TopicPartition, int], end: dict[TopicPartition, int]) -> None:
    """Explicit offsets for every partition: `seek_to_beginning` races the consumer's own reset
    to the end after `assign` (seen here: one read in three started at the end)."""
    if since is None:
        for tp in partitions:
            consumer.seek(tp, start[tp])
        return
    found = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in partitions})
    for tp in partitions:
        at = found.get(tp)
        consumer.seek(tp, at.offset if at is not None else end[tp])  # none that late: from the end
