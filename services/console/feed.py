"""The console's reading side: its own audit index (shared.audit: every event verified against
the trust file, offsets stored), caught up from the topics at start and every `refresh_seconds`,
and each newly indexed event handed to the projection. The model pages ask the index itself
(shared.audit.queries): a model's releases, and what was in production at a time.

The index is read and written on the event loop's thread only (SQLite connections are not shared
across threads): a catch-up and a page never interleave their use of it.

A start restores the projection from its snapshot (projection_snapshot.py, kept in the index's
own file) and applies only the events indexed after it, so it costs about the same with 100,000
indexed events as with none; without a usable snapshot it projects every event, as before, and
says why. The snapshot is saved at shutdown and after every `SAVE_EVERY` events applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import datetime

import structlog
from aiokafka.errors import KafkaError

from services.console import projection_snapshot
from services.console.projection import Projection, Submission, replay_one
from shared import snapshot
from shared.audit.feed import catch_up
from shared.audit.index import Index
from shared.events import BY_TOPIC, Event, utcnow
from shared.kafka import KafkaAccess
from shared.replay import bulk_load
from shared.signing import Keyring
from shared.snapshot_store import SnapshotStore

log = structlog.get_logger()
SAVE_EVERY = 5000  # events applied between two snapshots (and one at shutdown)


class Feed:
    def __init__(self, kafka: KafkaAccess, keyring: Keyring, index: Index, projection: Projection) -> None:
        self.kafka, self.keyring, self.index, self.projection = kafka, keyring, index, projection
        self.last_seq = 0
        self.caught_up_at: datetime | None = None  # the last catch-up that reached the topics' ends
        self.error: str | None = None  # why the last catch-up failed, for /readyz and the pages
        self._lock = asyncio.Lock()
        self.store: SnapshotStore | None = None
        self.restored_from = 0  # the seq the snapshot covered at start (0: projected from the first event)
        self._unsaved = 0

    def restore(self, store: SnapshotStore | None) -> None:
        """Take the projection from the snapshot in `store` when it is usable for this index
        (logged why not, then every event is projected at the first refresh); keep `store` for saves."""
        self.store = store
        if store is None:
            return
        try:
            with bulk_load():  # all kept: no collector passes over them while they are made
                saved = store.load(projection_snapshot.NAME)
                if saved is None:
                    log.info("console_snapshot_none", project_from="the first event")
                    return
                projection, seq, witness = projection_snapshot.restore(saved.state)
            if seq > 0 and self._witness(seq) != witness:
                raise ValueError(f"the index's event at seq {seq} is not the one the snapshot covers (the index "
                                 "was built again)")
        except (snapshot.Unusable, ValueError, RecursionError, MemoryError) as exc:
            log.warning("console_snapshot_unusable", reason=str(exc)[:300], project_from="the first event")
            return
        self.projection.submissions, self.projection.operations = projection.submissions, projection.operations
        self.last_seq = self.restored_from = seq
        log.info("console_snapshot_restored", seq=seq, submissions=len(projection.submissions))

    def save(self) -> None:
        """Keep the projection with the seq it covers (a snapshot is an optimisation: a failure is logged)."""
        if self.store is None:
            return
        try:
            state = projection_snapshot.to_snapshot(self.projection, self.last_seq, self._witness(self.last_seq))
            self.store.save(projection_snapshot.NAME, {}, state, utcnow().isoformat())
        except Exception as exc:  # never stop serving pages for a snapshot
            log.warning("console_snapshot_not_saved", reason=str(exc)[:300])
        else:
            self._unsaved = 0

    def _witness(self, seq: int) -> tuple[str, str] | None:
        row = self.index.db.execute("SELECT topic, event_id FROM events WHERE seq = ?", (seq,)).fetchone()
        return (row[0], row[1]) if row else None

    def full(self, submission_id: uuid.UUID) -> Submission | None:
        """The submission with its timeline and review: the projection's, or when it was restored
        from a snapshot (`partial`), replayed from the index's events carrying its id."""
        sub = self.projection.get(submission_id)
        if sub is None or not sub.partial:
            return sub
        rows = self.index.db.execute("SELECT topic, body FROM events WHERE submission_id = ? AND seq <= ? "
                                     "ORDER BY seq", (str(submission_id), self.last_seq)).fetchall()
        return replay_one(submission_id, (BY_TOPIC[topic].model_validate_json(body) for topic, body in rows))

    async def refresh(self) -> int:
        """Read what is new on the topics into the index, then into the projection; how many
        events the projection took. A failure is kept (`error`) and the pages say so."""
        async with self._lock:
            try:
                await catch_up(self.kafka, self.keyring, self.index, timeout=60.0)
            except (KafkaError, TimeoutError, RuntimeError, OSError) as exc:
                self.error = f"{type(exc).__name__}: {exc}"[:500]
                log.warning("console_catch_up_failed", error=self.error)
            else:
                self.error, self.caught_up_at = None, utcnow()
            applied = self._project()
            self._unsaved += applied
            if self._unsaved >= SAVE_EVERY:
                self.save()
            return applied

    def _project(self) -> int:
        applied = 0
        rows = self.index.db.execute("SELECT seq, topic, body FROM events WHERE seq > ? ORDER BY seq",
                                     (self.last_seq,)).fetchall()
        for seq, topic, body in rows:
            event: Event = BY_TOPIC[topic].model_validate_json(body)
            applied += bool(self.projection.apply(event))
            self.last_seq = seq
        return applied

    async def run(self, every: float) -> None:
        """Refresh forever, `every` seconds apart (cancelled at shutdown)."""
        while True:
            await self.refresh()
            await asyncio.sleep(every)  # a polling interval, not a wait for a condition


async def start_feed(feed: Feed, every: float) -> asyncio.Task:
    """The first catch-up (the pages have something to show), then the loop in the background."""
    await feed.refresh()
    log.info("console_index_caught_up", events=feed.index.count(), error=feed.error)
    return asyncio.create_task(feed.run(every))


async def stop_feed(task: asyncio.Task | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
