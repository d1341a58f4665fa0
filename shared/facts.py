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
from shared.broker import NotYet, bind_record, follow, verified
from shared.events import Event
from shared.kafka import KafkaAccess
from shared.replay import Kept
from shared.signing import Keyring
from shared.snapshot import View
from shared.snapshot_store import SnapshotStore

log = structlog.get_logger()

YIELD_EVERY = 100  # records of a batch between two yields to the event loop
EMPTY_CHECK_S = 1.0  # how long `caught_up` waits before asking whether a partition is empty


class Facts:
    def __init__(self, broker: KafkaBroker, topic: str, apply: Callable[[Event], object],
                 kafka: KafkaAccess, timeout: float = 60.0, *, view: View | None = None,
                 name: str | None = None) -> None:
        self.topic, self.apply, self.kafka, self.timeout = topic, apply, kafka, timeout
        self.handled: dict[int, int] = {}  # partition -> the highest offset handled (applied or skipped)
        self.skipped = 0
        # Verified facts the view failed to take (its store was down), in the order read, each with
        # its (topic, partition, offset): retried in that order, and no barrier passes while one
        # waits, so no decision is made without it. Facts read behind one wait their turn.
        self.pending: list[tuple[str, int, int, Event]] = []
        self.failures = 0  # tries that failed since the view last took a fact
        self.in_memory = False  # set by the component tests' in-memory broker
        self._changed = asyncio.Condition()
        self._consumer: AIOKafkaConsumer | None = None
        # With a view and a name: restored from its snapshot at start (`restore`), not re-read.
        self.kept = Kept(name, view, apply, [topic]) if view is not None and name is not None else None

        # Each record checked here: one that does not decode is counted as handled (and skipped),
        # so one bad record can never hold the barrier; the topic's consumers dead-letter it.
        subscriber = follow(broker, topic)
        if self.kept is not None:
            self.kept.attach(subscriber)  # after `restore`, it goes on from where that ended

        @subscriber
        async def on_fact(records: list[Any]) -> None:
            self._apply_pending()
            for n, raw in enumerate(records, 1):
                try:  # verified first: a forged rejection (or approval) is never a fact
                    bind_record(raw)
                    event = verified(broker, raw)
                except Exception as exc:  # noqa: BLE001 - handled for the barrier; the snapshot lists it, to read again
                    self.skipped += 1
                    log.warning("fact_skipped", topic=raw.topic, offset=raw.offset,
                                reason=(str(exc) if isinstance(exc, codec.BadEvent) else repr(exc))[:200])
                    if self.kept is not None:
                        self.kept.skip(raw.topic, raw.partition, raw.offset)
                else:
                    self._apply(raw.topic, raw.partition, raw.offset, event)
                self.handled[raw.partition] = max(self.handled.get(raw.partition, -1), raw.offset)
                if n % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # a long batch (a catch-up) does not hold the loop
            structlog.contextvars.clear_contextvars()
            async with self._changed:
                self._changed.notify_all()

        self.follower = on_fact

    def _apply(self, topic: str, partition: int, offset: int, event: Event) -> None:
        """Apply a verified fact, after those still pending (`_apply_pending`): one the view could
        not take (its store failed) waits with the ones read after it, and until they are taken no
        barrier passes (`caught_up`)."""
        self.pending.append((topic, partition, offset, event))
        if len(self.pending) == 1:
            self._apply_pending()

    def _apply_pending(self) -> None:
        """Try the waiting facts in the order read; stop at the first the view refuses (a failing
        store is not asked again for each of the others)."""
        while self.pending:
            topic, partition, offset, event = self.pending[0]
            try:
                if self.apply(event):
                    log.info("fact_learnt", topic=topic, event_type=event.type)
            except Exception as exc:  # noqa: BLE001 - kept, retried, and the barrier held meanwhile
                self.failures += 1
                log.error("fact_not_applied_will_retry", topic=topic, offset=offset, waiting=len(self.pending),
                          failures=self.failures, error=repr(exc)[:300])
                return
            self.pending.pop(0)
            self.failures = 0
            if self.kept is not None:
                self.kept.note(topic, partition, offset)

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
        self._apply_pending()
        if self.pending:  # retried: the event is delivered again after a back-off, never decided without it
            raise NotYet(f"{len(self.pending)} fact(s) of {self.topic} read but not applied yet "
                         f"(the view's store failed {self.failures} time(s))")
        if self.in_memory:  # each publish was handled before it returned
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
            return not self.pending and all(self.handled.get(p, -1) >= last for p, last in wanted.items())

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
