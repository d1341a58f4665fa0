"""State a service keeps from topics: at start, restore its snapshot and read from the snapshot's
offsets (or the beginning) up to where the topics end now; then keep it current with group-less
followers that continue from there, not from offset 0.

    kept, followers = keep(broker, "validator.production", book, book.apply, *EVENTS)  # at build
    await kept.restore(kafka, keyring, store)  # on start-up, before the service decides anything
    kept.save()                                # at shutdown (and every `every` records / `seconds` s,
                                               # then written off the loop: `save_soon`)

Why this is exact: see `shared.snapshot` (views are functions of the set of events applied). The
followers are FastStream subscribers (`shared.broker.follow`, so the in-memory TestKafkaBroker
drives them as it drives the rest). Their consumer would start at the beginning; once `restore`
ran, each follower's start is followed at once (before its consume loop first runs: `attach`) by a
seek of every partition to where the restore ended. aiokafka drops what it fetched for the old
position, so no record before the cursor is handled again; a partition created since the restore
is read from its beginning. Every record read, at start or after, is signature-verified before it
reaches the view; a snapshot is local state, trusted like the service's database.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from aiokafka import TopicPartition
from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from shared import codec, snapshot
from shared.broker import bind_record, follow, skipped, verified
from shared.events import Event
from shared.kafka import KafkaAccess
from shared.reader import Record, bounds, decode, read_at, read_events
from shared.signing import Keyring
from shared.snapshot_store import Row, SnapshotStore

log = structlog.get_logger()

# A kept view's follower lets the broker gather records for up to GATHER_MS (or GATHER_BYTES)
# before answering a fetch, so under load it takes them in batches (FastStream's path once a batch:
# shared.broker.follow) rather than one fetch and one pass a record. Kept views decide nothing
# that must be current to the millisecond (the deployer enforces production's order, a barrier the
# rejections): they lag by up to this much more.
GATHER_MS = 100
YIELD_EVERY = 100  # records of a batch between two yields to the event loop
GATHER_BYTES = 256 * 1024
Noted = Callable[[str, int, int], object]  # (topic, partition, offset) of a record handled


async def rebuild(kafka: KafkaAccess, apply: Callable[[Event], object],
                  *event_types: type[Event], keyring: Keyring,
                  start: dict[TopicPartition, int] | None = None,
                  seen: Callable[[Record, bool], object] | None = None) -> int:
    """Apply every event of these types that is on their topics now (from `start`'s offsets, when
    given), once each, in the order they happened (`shared.reader.read_events`); returns how many.
    A record that does not decode is skipped and counted (logged), never allowed to stop the
    service: the topic's consumers dead-letter it. So is a record not signed by a key `keyring`
    trusts for its type: a forged deployment never enters the state. `seen`: every record read,
    and whether it decoded."""
    return await _replay(kafka, apply, [cls.topic for cls in event_types], keyring, start, seen)


def follow_into(broker: KafkaBroker, apply: Callable[[Event], object],
                *event_types: type[Event], noted: Noted | None = None) -> dict[type[Event], Any]:
    """Keep a state current: one `follow` subscriber over the event types' topics, handing each
    verified event to `apply` (a truthy result means the state changed and is logged), then
    telling `noted` which record it handled. Returns the handler by event type (the same one for
    every type: `.mock` in tests)."""
    handler = follow(broker, *[cls.topic for cls in event_types])(_handler(broker, event_types, apply, noted))
    return dict.fromkeys(event_types, handler)


def _handler(broker: KafkaBroker, event_types: Sequence[type[Event]], apply: Callable[[Event], object],
             noted: Noted | None) -> Callable[..., Any]:
    """One handler for several topics (one consumer and one fetch loop, not one per topic), taking
    the records of a batch (`shared.broker.follow`) in order: each is verified and validated as its
    own topic's event; one that fails, or that `apply` fails on, is skipped (logged, counted) and
    the batch reads on. A skipped record is not `noted`."""
    by_topic = {cls.topic: cls for cls in event_types}

    async def handle(records: list[Any]) -> None:
        for n, raw in enumerate(records, 1):
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a long batch (a catch-up) does not hold the loop
            try:
                bind_record(raw)
                event = verified(broker, raw)  # its topic's event type, or BadEvent
                if apply(event):
                    log.info("state_changed", event_type=event.type)
            except Exception as exc:  # noqa: BLE001 - this record only: a follower never stops on one
                skipped(broker, raw, codec.describe(exc) if isinstance(exc, ValidationError) else str(exc))
                continue
            if noted is not None and hasattr(raw, "offset"):
                noted(raw.topic, raw.partition, raw.offset)
        structlog.contextvars.clear_contextvars()

    handle.__name__ = handle.__qualname__ = "follow_" + "_".join(t.replace(".", "_") for t in by_topic)
    return handle


class Kept:
    """A pure view (`shared.snapshot.View`) kept from `topics` across restarts: see the module."""

    def __init__(self, name: str, view: snapshot.View, apply: Callable[[Event], object],
                 topics: Sequence[str], every: int = 1000, seconds: float = 60.0) -> None:
        self.name, self.view, self.apply, self.topics = name, view, apply, tuple(topics)
        self.every, self.seconds = every, seconds
        self.cursor = snapshot.Cursor()
        self.restored = False  # until then the followers read from the beginning
        self.store: SnapshotStore | None = None
        self.read_at_start = 0  # records read by `restore` from the snapshot's offsets: what a start cost
        self.read_again = 0  # and the skipped records the snapshot listed, read again one by one
        self.followed = 0  # records the followers handled since
        self._unsaved, self._saved_at = 0, time.monotonic()
        self._writing: asyncio.Future[None] | None = None  # `save_soon`'s write under way

    def note(self, topic: str, partition: int, offset: int) -> None:
        """A follower handled this record (applied, or skipped as invalid); saves now and then."""
        self.cursor.note((topic, partition), offset)
        self.followed += 1
        self._unsaved += 1
        if self._unsaved >= self.every or time.monotonic() - self._saved_at >= self.seconds:
            self.save_soon()

    def skip(self, topic: str, partition: int, offset: int) -> None:
        """A follower read this record and skipped it (invalid): listed, to be read again."""
        self.cursor.skip((topic, partition), offset)

    async def restore(self, kafka: KafkaAccess, keyring: Keyring, store: SnapshotStore | None) -> int:
        """Load the snapshot (or start empty, logged, when it cannot be used) and read every
        partition from its offset to the end now; returns the events applied. Saves at the end.
        Without a store (it could not be opened), reads from the beginning and keeps nothing."""
        self.store = store
        with bulk_load():
            saved = self._load(store) if store is not None else None
        first, end = await bounds(kafka, self.topics)
        start = {(tp.topic, tp.partition): o for tp, o in first.items()}
        resumed = False  # from a snapshot, every partition from its offset
        if saved is not None:
            try:
                start, why = snapshot.resume_offsets(saved.offsets, start,
                                                     {(tp.topic, tp.partition): o for tp, o in end.items()})
                with bulk_load():
                    self.view.restore(saved.state)
            except ValueError as exc:  # Unusable is one: the state is left as it was (empty)
                log.warning("snapshot_unusable", name=self.name, reason=str(exc)[:300], read_from="beginning")
                start = {(tp.topic, tp.partition): o for tp, o in first.items()}
            else:
                resumed = not why
                for reason in why:
                    log.warning("snapshot_partition_from_beginning", name=self.name, reason=reason)
        self.cursor = snapshot.Cursor(start)
        self.read_at_start = self.read_again = 0
        applied = 0
        if saved is not None and saved.skipped:  # read again, one by one, what the last run skipped
            applied += await self._read_again(kafka, keyring, saved, start)

        def seen(record: Record, decoded: bool) -> None:
            self.read_at_start += 1
            (self.cursor.note if decoded else self.cursor.skip)((record.topic, record.partition), record.offset)

        applied += await _replay(kafka, self.apply, self.topics, keyring,
                                 {TopicPartition(t, p): o for (t, p), o in start.items()}, seen)
        self.restored = True
        log.info("view_restored", name=self.name, snapshot=saved is not None, records_read=self.read_at_start,
                 read_again=self.read_again, still_skipped=len(self.cursor.skipped), events=applied)
        if not resumed or self.read_at_start or self.read_again:
            # Not when the snapshot was taken up as it is: encoding a large view again is most of a
            # restart's cost (shared.production: 0.4 s for 20,000 releases) and would keep the same.
            self.save_soon()
        return applied

    async def _read_again(self, kafka: KafkaAccess, keyring: Keyring, saved: snapshot.Snapshot,
                          start: dict[snapshot.Partition, int]) -> int:
        """The records the snapshot lists as skipped, of partitions resumed from it: applied when
        they decode now (the trust file or the code was fixed), else skipped again; gone (retention)
        ones are dropped. Returns how many were applied."""
        applied = 0
        for tp, offset in saved.skipped:
            if start.get(tp) != saved.offsets.get(tp) or offset >= start[tp]:
                continue  # that partition is read from before the record anyway
            record = await read_at(kafka, tp[0], tp[1], offset)
            self.read_again += record is not None
            event = decode(record, keyring) if record is not None else None
            if event is not None:
                self.apply(event)
                applied += 1
                log.info("skipped_record_applied", name=self.name, topic=tp[0], partition=tp[1], offset=offset)
            elif record is not None:
                self.cursor.skipped.add((tp, offset))
        return applied

    def attach(self, subscriber: Any) -> None:
        """Make a follower (a FastStream subscriber) go on from the cursor rather than from the
        beginning: its `start` is followed, before anything else runs, by a seek of each of its
        partitions to the cursor (when `restore` ran; a partition it did not see is left alone)."""
        started = subscriber.start

        async def start(*args: Any, **kwargs: Any) -> Any:
            result = await started(*args, **kwargs)
            consumer = getattr(subscriber, "consumer", None)
            if self.restored and consumer is not None:
                for tp in consumer.assignment():
                    at = self.cursor.next.get((tp.topic, tp.partition))
                    if at is not None:
                        consumer.seek(tp, at)
            return result

        subscriber.start = start

    def save(self) -> None:
        """Keep the view and its cursor now (taken together, between two records: consistent),
        waiting for the database: at shutdown. A row `save_soon` encoded before is not written
        over it (shared.snapshot_store)."""
        row = self._encode()
        if row is not None and self.store is not None:
            _write(self.store, row)

    def save_soon(self) -> None:
        """Encode the view and its cursor now, on the loop (no record changes them meanwhile), and
        write the row from a thread: the loop goes on handling records and requests while the
        database writes (an fsync, or a round trip to PostgreSQL). One write at a time: while one
        is under way the records go on counting, and a later `note` saves. Without a running loop
        (a synchronous caller), as `save`."""
        if self.store is None or self._writing is not None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.save()
            return
        row = self._encode()
        if row is not None:
            self._writing = asyncio.ensure_future(asyncio.to_thread(_write, self.store, row))
            self._writing.add_done_callback(self._written)

    def _written(self, _: asyncio.Future[None]) -> None:
        self._writing = None

    def _encode(self) -> Row | None:
        """The snapshot's row, or None (logged); either way the count to the next save starts over
        (a view too large to keep is not encoded again at every record)."""
        if self.store is None:
            return None
        try:
            offsets, skipped = self.cursor.saved()
            return self.store.encode(self.name, offsets, self.view.to_snapshot(), datetime.now(UTC).isoformat(),
                                     skipped)
        except Exception as exc:  # a snapshot is an optimisation: never stop following for it
            log.warning("snapshot_not_saved", name=self.name, reason=str(exc)[:300])
            return None
        finally:
            self._unsaved, self._saved_at = 0, time.monotonic()

    def _load(self, store: SnapshotStore) -> snapshot.Snapshot | None:
        try:
            return store.load(self.name)
        except (snapshot.Unusable, RecursionError, MemoryError) as exc:  # a damaged row: never a crash loop
            log.warning("snapshot_unusable", name=self.name, reason=str(exc)[:300], read_from="beginning")
            return None


@contextlib.contextmanager
def bulk_load() -> Iterator[None]:
    """Building a large view from its snapshot, with the garbage collector paused: every object
    made is kept, and the collections its allocations set off cost more than the building (for a
    20,000-release production book, 0.56 s with them, 0.24 s without). A cycle left meanwhile is
    collected later, as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _write(store: SnapshotStore, row: Row) -> None:
    """On the loop or in a thread: never raises (a snapshot is an optimisation)."""
    try:
        store.write(row)
    except Exception as exc:  # sqlite3 / psycopg / a closed store: the reason is in the message
        log.warning("snapshot_not_saved", name=row.name, reason=str(exc)[:300])


async def _replay(kafka: KafkaAccess, apply: Callable[[Event], object], topics: Iterable[str],
                  keyring: Keyring, start: dict[TopicPartition, int] | None,
                  seen: Callable[[Record, bool], object] | None) -> int:
    skipped: Counter[str] = Counter()
    events = await read_events(kafka, list(topics), skipped=skipped, keyring=keyring, start=start, seen=seen)
    for event in events:
        apply(event)
    if skipped:
        log.warning("replay_skipped_records", skipped=sum(skipped.values()), by_topic=dict(skipped))
    return len(events)


def keep(broker: KafkaBroker, name: str, view: snapshot.View, apply: Callable[[Event], object],
         *event_types: type[Event], every: int = 1000, seconds: float = 60.0) -> tuple[Kept, dict[type[Event], Any]]:
    """A `Kept` view with its follower (one subscriber over the types' topics, as `follow_into`);
    returns both, the follower's handler by event type."""
    kept = Kept(name, view, apply, [cls.topic for cls in event_types], every, seconds)
    subscriber = follow(broker, *kept.topics, fetch_max_wait_ms=GATHER_MS, fetch_min_bytes=GATHER_BYTES)
    kept.attach(subscriber)
    handler = subscriber(_handler(broker, event_types, apply, kept.note))
    return kept, dict.fromkeys(event_types, handler)


def open_snapshots(where: Path | str | None) -> SnapshotStore | None:
    """The snapshot store in the service's database; None, logged, when it cannot be opened (a
    read-only folder): the service then reads its topics from the beginning, as before snapshots."""
    if where is None:
        return None
    try:
        return SnapshotStore(where)
    except Exception as exc:  # sqlite3 / psycopg / OSError: the reason is in the message
        log.warning("snapshots_unavailable", reason=str(exc)[:300], read_from="beginning")
        return None
