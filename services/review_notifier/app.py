"""Wiring of the review-notifier: review.requested in; review.decided and review.escalated out;
the HTTP API (decision API and each channel's routes) and the deadline loop beside.

`build(settings)` wires everything and opens nothing (no SQLite, no HTTP client, no socket). The
app's hooks open the store and clients and create the topics (on start-up), serve HTTP and run the
deadline loop (after start-up), stop them (on shutdown) and close (after shutdown). Run it with
`faststream run --factory services.review_notifier.app:create_app`.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import uvicorn
from faststream import FastStream

from services.review_notifier import SERVICE
from services.review_notifier import __doc__ as ABOUT
from services.review_notifier.channels import CHANNELS, Notices
from services.review_notifier.channels.base import secret
from services.review_notifier.http import make_api
from services.review_notifier.notify import Notifier
from services.review_notifier.service import Reviewer
from services.review_notifier.settings import ReviewNotifierSettings
from services.review_notifier.state import ReviewStore
from shared import topics
from shared.admin import ensure_topics
from shared.broker import Emitter, make_app, make_broker, subscribe
from shared.events import ReviewDecided, ReviewEscalated, ReviewRequested
from shared.logging import configure


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the FastStream app: FastStream owns SIGTERM/SIGINT and stops us."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


class ReviewNotifier:
    def __init__(self, settings: ReviewNotifierSettings) -> None:
        self.settings = settings
        self.log = configure(settings.log_level)
        self.broker = make_broker(settings, SERVICE)
        self.emitter = Emitter(self.broker, f"/signoff/{SERVICE}", ReviewDecided, ReviewEscalated)
        self.channels = [channel.from_settings(settings) for channel in CHANNELS]
        self.api = make_api(self.channels, secret(settings.api_token))
        self.server = _EmbeddedServer(uvicorn.Config(self.api, host=settings.http_host, port=settings.http_port,
                                                     log_config=None, access_log=False))
        # Set by open():
        self.store: ReviewStore | None = None
        self.http: httpx.AsyncClient | None = None
        self.notifier: Notifier | None = None
        self.reviewer: Reviewer | None = None
        self._running: list[asyncio.Task] = []

        @subscribe(self.broker, topics.REVIEW_REQUESTED, SERVICE)
        async def on_review_requested(event: ReviewRequested) -> None:
            assert self.reviewer is not None, "start() opens it before the broker consumes"
            await self.reviewer.open(event)

        self.on_review_requested = on_review_requested
        self.app = make_app(self.broker, SERVICE, ABOUT, on_startup=[self.start], after_startup=[self.serve],
                            on_shutdown=[self.stop], after_shutdown=[self.close])

    def open(self) -> None:
        """Open the store, the HTTP client and each channel's clients; the API reaches them now."""
        self.store = ReviewStore(self.settings.state_db)
        self.http = httpx.AsyncClient(timeout=10.0)
        for channel in self.channels:
            channel.open(self.http, Notices(self.store, channel.name))
        self.notifier = Notifier(self.store, self.channels)
        self.reviewer = Reviewer(self.store, self.emitter.emit, self.notifier)
        self.api.state.reviewer = self.reviewer

    async def start(self) -> None:
        self.open()
        await ensure_topics(self.settings.kafka_bootstrap_servers, self.settings.topic_partitions)

    async def serve(self) -> None:
        """Serve HTTP and run the deadline loop beside the broker."""
        assert self.reviewer is not None and self.notifier is not None, "start() opened them"
        self._running = [asyncio.create_task(self.server.serve()),
                         asyncio.create_task(self.reviewer.run(self.settings.tick_seconds))]
        self.log.info("http_listening", host=self.settings.http_host, port=self.settings.http_port,
                      decisions_enabled=self.settings.api_token is not None,
                      channels=[c.name for c in self.notifier.channels])

    async def stop(self) -> None:
        self.server.should_exit = True  # first: no new decisions while the broker shuts down
        for task in self._running[1:]:
            task.cancel()  # the deadline loop: cancelled between steps, each step saved whole
        await asyncio.gather(*self._running, return_exceptions=True)
        self._running = []
        if self.notifier is not None:
            await self.notifier.drain()

    async def close(self) -> None:
        if self.notifier is not None:
            await self.notifier.drain()  # what is still being sent reads the store
        if self.http is not None:
            await self.http.aclose()
        if self.store is not None:
            self.store.close()
        self.api.state.reviewer = None
        self.store = self.http = self.notifier = self.reviewer = None


def build(settings: ReviewNotifierSettings) -> ReviewNotifier:
    return ReviewNotifier(settings)


def create_app(settings: ReviewNotifierSettings | None = None) -> FastStream:
    """The app factory: `faststream run --factory services.review_notifier.app:create_app`."""
    return build(settings or ReviewNotifierSettings()).app
