"""The console's reading side: its own audit index (shared.audit: every event verified against
the trust file, offsets stored), caught up from the topics at start and every `refresh_seconds`,
and each newly indexed event handed to the projection. The model pages ask the index itself
(shared.audit.queries): a model's releases, and what was in production at a time.

The index is read and written on the event loop's thread only (SQLite connections are not shared
across threads): a catch-up and a page never interleave their use of it.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

import structlog
from aiokafka.errors import KafkaError

from services.console.projection import Projection
from shared.audit.feed import catch_up
from shared.audit.index import Index
from shared.events import BY_TOPIC, Event, utcnow
from shared.kafka import KafkaAccess
from shared.signing import Keyring

log = structlog.get_logger()


class Feed:
    def __init__(self, kafka: KafkaAccess, keyring: Keyring, index: Index, projection: Projection) -> None:
        self.kafka, self.keyring, self.index, self.projection = kafka, keyring, index, projection
        self.last_seq = 0
        self.caught_up_at: datetime | None = None  # the last catch-up that reached the topics' ends
        self.error: str | None = None  # why the last catch-up failed, for /readyz and the pages
        self._lock = asyncio.Lock()

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
            return self._project()

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
