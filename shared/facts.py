"""Facts a decision must not miss, read to their end before each decision.

A `Facts` keeps a pure view (such as `shared.rejections.Rejections`) current from a topic with a
group-less follower, and `caught_up()` waits until the follower has handled every record that
was on the topic when the wait began. A service that calls it before deciding therefore decides
with every fact Kafka acknowledged before that moment, whatever partition it is on and however
far its own consumer groups lag: true by construction, not by timing (docs/decisions.md).

Across restarts (`restore` at start, before the broker starts; `close`): given a snapshot-able
view and a name, the view is restored from its snapshot and the topic read from the snapshot's
offsets, and the follower goes on from there (`shared.replay.Kept`), so a start does not read the
topic from offset 0. The barrier holds the same: what the restore read counts as handled.

In memory (FastStream's TestKafkaBroker) a publish is handled before it returns, so there is
nothing to wait for: `caught_up` is a no-op there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream.kafka import KafkaBroker

from shared import codec
from shared.admin import partitions_of
from shared.broker import NotYet, RawMessage, follow, keys_of
from shared.events import Event
from shared.kafka import KafkaAccess
from shared.replay import Kept
from shared.signing import Keyring
from shared.snapshot import View
from shared.snapshot_store import SnapshotStore

log = structlog.get_logger()

EMPTY_CHECK_S = 1.0  # how long `caught_up` waits before asking whether a partition is empty


async def _raw(msg: Any, original_decoder: Any = None) -> bytes:
    return msg.body


class Facts:
    def __init__(self, broker: KafkaBroker, topic: str, apply: Callable[[Event], object],
                 kafka: KafkaAccess, timeout: float = 60.0, *, view: View | None = None,
                 name: str | None = None) -> None:
        self.topic, self.apply, self.kafka, self.timeout = topic, apply, kafka, timeout
        self.handled: dict[int, int] = {}  # partition -> the highest offset handled (applied or skipped)
        self.skipped = 0
        self.in_memory = False  # set by the component tests' in-memory broker
        self._changed = asyncio.Condition()
        self._consumer: AIOKafkaConsumer | None = None
        # With a view and a name: restored from its snapshot at start (`restore`), not re-read.
        self.kept = Kept(name, view, apply, [topic]) if view is not None and name is not None else None

        # Raw bytes: a record that does not decode is counted as handled (and skipped) here, so
        # one bad record can never hold the barrier; the topic's consumers dead-letter it.
        subscriber = follow(broker, topic, decoder=_raw)
        if self.kept is not None:
            self.kept.attach(subscriber)  # after `restore`, it goes on from where that ended

        @subscriber
        async def on_fact(body: bytes, message: Any = RawMessage()) -> None:
            raw = message.raw_message
            try:  # verified first: a forged rejection (or approval) is never a fact
                keys_of(broker).keyring.verify(raw.topic, raw.key, raw.headers, body)
                event = codec.decode_record(raw.topic, raw.key, body, raw.headers)
            except codec.BadEvent as exc:  # handled for the barrier; the snapshot lists it, to read again
                self.skipped += 1
                log.warning("fact_skipped", topic=raw.topic, offset=raw.offset, reason=str(exc)[:200])
                if self.kept is not None:
                    self.kept.skip(raw.topic, raw.partition, raw.offset)
            else:
                if self.apply(event):
                    log.info("fact_learnt", topic=raw.topic, event_type=event.type)
                if self.kept is not None:
                    self.kept.note(raw.topic, raw.partition, raw.offset)
            async with self._changed:
                self.handled[raw.partition] = max(self.handled.get(raw.partition, -1), raw.offset)
                self._changed.notify_all()

        self.follower = on_fact

    async def restore(self, keyring: Keyring, store: SnapshotStore | None) -> int:
        """At start, before deciding: the view from its snapshot and the topic from there to its
        end (every record verified with `keyring`); what was read counts as handled. Returns the
        events applied; without a view, nothing to do (the follower reads from the beginning)."""
        if self.kept is None:
            return 0
        applied = await self.kept.restore(self.kafka, keyring, store)
        async with self._changed:
            for (_, partition), after in self.kept.cursor.next.items():
                self.handled[partition] = max(self.handled.get(partition, -1), after - 1)
            self._changed.notify_all()
        return applied

    async def caught_up(self) -> None:
        """Return once every record on the topic now has been handled; NotYet after `timeout`
        seconds (the caller's event is then retried until they are, never decided without them)."""
        if self.in_memory:
            return
        consumer = await self._offsets()
        partitions = [TopicPartition(self.topic, p) for p in await partitions_of(consumer, self.topic)]
        # One ListOffsets request per decision: the end offsets. A partition whose records were
        # all deleted has nothing to read although its end is past 0; only its beginning offset
        # says so, asked for only when the wait outlasts EMPTY_CHECK_S (a current follower needs
        # milliseconds), not before every decision.
        end = await consumer.end_offsets(partitions)
        wanted = {tp.partition: end[tp] - 1 for tp in partitions if end[tp] > 0}

        def done() -> bool:
            return all(self.handled.get(p, -1) >= last for p, last in wanted.items())

        first = min(EMPTY_CHECK_S, self.timeout)
        if await self._wait(done, first):
            return
        start = await consumer.beginning_offsets([tp for tp in partitions if tp.partition in wanted])
        wanted = {tp.partition: last for tp, last in ((tp, wanted[tp.partition]) for tp in start)
                  if end[tp] > start[tp]}
        if not await self._wait(done, self.timeout - first):
            raise NotYet(f"{self.topic} is not read to its end after {self.timeout} s "
                         f"(read up to {self.handled}, wanted {wanted})")

    async def _wait(self, done: Callable[[], bool], seconds: float) -> bool:
        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(done), max(seconds, 0.0))
        except TimeoutError:
            return done()
        return True

    async def _offsets(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(**self.kafka.client_kwargs(), enable_auto_commit=False)
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        if self.kept is not None:  # after the broker stopped: the last records handled are in it
            self.kept.save()
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
