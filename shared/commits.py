"""Offset commits in batches, never past a record that was not handled (at-least-once kept).

FastStream acks each handled record by calling `consumer.commit()`, which waits for a broker
round trip before the next record is read: one OffsetCommit request per record per service, and
that round trip in every hop's latency. `BatchingConsumer.commit()` instead notes the positions
the consumer has handed out so far - with one record handled at a time, exactly the records
already handled - and returns; a flusher commits the highest noted position per partition
`interval` seconds later (or at once when `max_pending` acks wait). The noted positions are
committed, synchronously, before the partitions are revoked in a rebalance and before the
consumer stops.

Why at-least-once holds: only positions noted *after* their record's handler returned are ever
committed, so nothing is skipped. A crash loses only the noted-but-uncommitted positions: those
records are delivered again, and the consumers are idempotent (they must be anyway: a crash
between a handler and its commit always did this). A commit refused because the group moved on
(CommitFailedError) is dropped: the partition's new owner re-reads from the last commit.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError

log = structlog.get_logger()

INTERVAL_S = 0.25  # a crash re-delivers at most this long's handled records; each flush is one request
MAX_PENDING = 200  # acks noted before a flush is due regardless of the interval


class BatchingConsumer(AIOKafkaConsumer):
    """An AIOKafkaConsumer whose argument-less `commit()` is coalesced (see the module doc); a
    commit of explicit offsets first flushes what is noted, then commits at once."""

    def __init__(self, *topics: str, commit_interval_s: float | None = None, max_pending: int | None = None,
                 **options: Any) -> None:
        super().__init__(**options)
        if topics:  # subscribed here rather than by aiokafka's constructor, which takes no listener
            self.subscribe(topics=list(topics))
        self.commit_interval_s = INTERVAL_S if commit_interval_s is None else commit_interval_s
        self.max_pending = MAX_PENDING if max_pending is None else max_pending
        self._noted: dict[Any, Any] = {}  # TopicPartition -> OffsetAndMetadata: handled, not committed
        self._noted_for: Any = None  # the assignment the noted positions belong to
        self._acks = 0
        self._due = asyncio.Event()
        self._flusher: asyncio.Task | None = None
        self._flush_lock = asyncio.Lock()

    async def commit(self, offsets: Any = None) -> None:
        if offsets is not None or self._group_id is None:
            await self.flush()
            await super().commit(offsets)
            return
        subscription = self._subscription.subscription
        assignment = subscription.assignment if subscription is not None else None
        if assignment is None:
            await super().commit()  # raises what aiokafka raises without an assignment
            return
        if assignment is not self._noted_for:
            await self.flush()  # left by a failed flush at the revocation: committed (or dropped) first
            self._noted_for = assignment
        self._noted.update(assignment.all_consumed_offsets())
        self._acks += 1
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_later(), name="commit-flusher")
        if self._acks >= self.max_pending:
            self._due.set()

    async def _flush_later(self) -> None:
        """Flush after the interval, and again while positions are noted: an ack noted during a
        flush (which started no flusher of its own) or a flush that failed is committed by the
        next round, not left waiting for an ack that may never come (the end of a stream)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.wait(), self.commit_interval_s)
            self._due.clear()
            try:
                await self.flush()
            except KafkaError as exc:  # kept noted: tried again next round
                log.warning("offset_commit_failed_will_retry", error=repr(exc))
            if not self._noted:
                return  # no await between this test and the task's end: a new ack starts a new flusher

    async def flush(self) -> None:
        """Commit every noted position now (the flusher, a rebalance, stop)."""
        async with self._flush_lock:
            if not self._noted:
                return
            offsets, assignment = self._noted, self._noted_for
            self._noted, self._acks = {}, 0
            try:
                # What aiokafka's own auto-commit does with an assignment (also while it is revoked).
                await self._coordinator.commit_offsets(assignment, offsets)
            except CommitFailedError as exc:  # the group moved on: the new owner re-reads them
                log.warning("offset_commit_dropped_after_rebalance", error=repr(exc))
            except BaseException:
                if assignment is self._noted_for:  # put back, unless newer positions were noted since
                    for tp, meta in offsets.items():
                        self._noted.setdefault(tp, meta)
                raise

    async def getmany(self, *partitions: Any, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        """What a batch subscriber (a follower: shared.broker.follow) reads with. aiokafka answers as
        soon as records are fetched, or empty after `timeout_ms`; FastStream then sleeps as long
        again before asking, and a record fetched meanwhile would wait. So while the consumer runs,
        an empty answer is not returned: it asks again at once."""
        while True:
            records = await super().getmany(*partitions, timeout_ms=timeout_ms, max_records=max_records)
            if records or self._closed or timeout_ms <= 0:  # 0: "what is there now", never a loop
                return records

    def subscribe(self, topics: Any = (), pattern: Any = None, listener: Any = None) -> None:
        super().subscribe(topics=topics, pattern=pattern, listener=_FlushOnRevoke(self, listener))

    async def stop(self) -> None:
        if not self._closed:
            if self._flusher is not None and not self._flusher.done():
                self._flusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._flusher
            try:
                await self.flush()
            except KafkaError as exc:  # not committed: delivered again after the restart
                log.warning("offset_commit_at_stop_failed", error=repr(exc))
        await super().stop()


class _FlushOnRevoke(ConsumerRebalanceListener):
    """Commits the noted positions before a rebalance takes the partitions away, then calls the
    listener it wraps (FastStream's logging listener)."""

    def __init__(self, consumer: BatchingConsumer, inner: Any) -> None:
        self.consumer, self.inner = consumer, inner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        try:
            await self.consumer.flush()
        except KafkaError as exc:
            log.warning("offset_commit_before_rebalance_failed", error=repr(exc))
        if self.inner is not None:
            result = self.inner.on_partitions_revoked(revoked)
            if asyncio.iscoroutine(result):
                await result

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if self.inner is not None:
            result = self.inner.on_partitions_assigned(assigned)
            if asyncio.iscoroutine(result):
                await result
