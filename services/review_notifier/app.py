"""Wiring of the review-notifier: review.requested in; review.decided and review.escalated out;
the HTTP API (decision API and each channel's routes) and the deadline loop beside;
deployment.succeeded / .rolled_back / .revoked followed, to know each model in production (a vote
counts only against the production its reviewers were shown).

`build(settings)` wires everything and opens nothing (no SQLite, no HTTP client, no socket). The
app's hooks take the HTTP port first (a port already taken stops the process, non-zero, before
anything is opened), open the store and clients, check the topics and restore production from its
snapshot and what was written since (on start-up), serve HTTP and run the deadline loop (after
start-up: FastStream reports the app started only once HTTP is served), stop them (on shutdown)
and close (after shutdown). Run it with
`faststream run --factory services.review_notifier.app:create_app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import httpx
import structlog
import uvicorn
from faststream import FastStream

from services.review_notifier import SERVICE
from services.review_notifier import __doc__ as ABOUT
from services.review_notifier.auth import Authenticator
from services.review_notifier.channels import CHANNELS, Notices
from services.review_notifier.http import make_api
from services.review_notifier.notify import Notifier
from services.review_notifier.service import Reviewer
from services.review_notifier.settings import ReviewNotifierSettings
from services.review_notifier.state import ReviewStore
from shared import observability, topics
from shared.broker import Emitter, keys_of, make_app, make_broker, subscribe
from shared.events import ReviewDecided, ReviewEscalated, ReviewRequested, utcnow
from shared.logging import configure
from shared.observability import http as observability_http
from shared.observability.metrics import ReviewGauges
from shared.production import EVENTS, ProductionBook
from shared.replay import keep, open_snapshots
from shared.snapshot_store import SnapshotStore
from shared.topic_admin import check_topics


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
        self.production = ProductionBook()
        # Restored from its snapshot at start and followed from there (shared/replay.py), not from offset 0.
        self.kept, self.followers = keep(self.broker, f"{SERVICE}.production", self.production,
                                         self.production.apply, *EVENTS)
        self.snapshots: SnapshotStore | None = None
        self.channels = [channel.from_settings(settings) for channel in CHANNELS]
        self.auth = Authenticator.from_settings(settings)  # who may call the API: people, by credential
        self.api = make_api(self.channels, self.auth)
        # /readyz and /metrics beside the API's own /healthz (alive only: 200 with Kafka stopped).
        self.obs = observability.required(self.broker)
        self.obs.ready_when("state", lambda: None if self.store is not None else "review store not open yet")
        self.obs.collect(ReviewGauges(self._pending_since, utcnow))
        self.api.include_router(observability_http.router(self.obs, healthz=False))
        self.server = _EmbeddedServer(uvicorn.Config(self.api, host=settings.http_host, port=settings.http_port,
                                                     log_config=None, access_log=False))
        # Set by open():
        self.store: ReviewStore | None = None
        self.http: httpx.AsyncClient | None = None
        self.notifier: Notifier | None = None
        self.reviewer: Reviewer | None = None
        self._socket: socket.socket | None = None  # listening from start() on
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
        keys_of(self.broker).open()  # no key or trust file: the service does not start
        url = self.settings.database_url
        self.store = ReviewStore(url.get_secret_value() if url is not None else self.settings.state_db)
        self.http = httpx.AsyncClient(timeout=10.0)
        for channel in self.channels:
            channel.open(self.http, Notices(self.store, channel.name))
        self.notifier = Notifier(self.store, self.channels)
        self.reviewer = Reviewer(self.store, self.emitter.emit, self.notifier, production=self.production.get,
                                 people=self.auth.people)
        self.api.state.reviewer = self.reviewer

    async def start(self) -> None:
        self._socket = listen(self.settings.http_host, self.settings.http_port, self.log)
        self.open()
        await check_topics(self.settings.kafka, self.settings.topic_layout, self.log)
        # Know what is in production before the first vote is judged (HTTP is served after
        # start-up): the snapshot and what was written since; the followers go on from there.
        url = self.settings.database_url
        self.snapshots = open_snapshots(url.get_secret_value() if url is not None else self.settings.state_db)
        events = await self.kept.restore(self.settings.kafka, keys_of(self.broker).keyring, self.snapshots)
        self.log.info("production_rebuilt", events=events, records_read=self.kept.read_at_start,
                      models=len(self.production))

    async def serve(self) -> None:
        """Serve HTTP and run the deadline loop beside the broker; return once HTTP is served."""
        assert self.reviewer is not None and self.notifier is not None, "start() opened them"
        assert self._socket is not None, "start() listens"
        http = asyncio.create_task(self.server.serve(sockets=[self._socket]))
        self._running = [http, asyncio.create_task(self.reviewer.run(self.settings.tick_seconds))]
        await self._serving(http)
        self.log.info("http_listening", host=self.settings.http_host, port=self.settings.http_port,
                      api_tokens=self.settings.tokens_file is not None, oidc=self.settings.oidc_issuer is not None,
                      channels=[c.name for c in self.notifier.channels])

    async def _serving(self, http: asyncio.Task, timeout: float = 30.0) -> None:
        """Wait, with a deadline, until uvicorn serves on the socket; raise if it ended instead."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.server.started:
            if http.done() or loop.time() > deadline:
                reason = repr(http.exception()) if http.done() else f"not serving after {timeout}s"
                self.log.error("http_failed", reason=reason)
                raise RuntimeError(f"the review-notifier's HTTP API did not start: {reason}")
            await asyncio.sleep(0.01)  # uvicorn sets `started` and has nothing to await

    async def stop(self) -> None:
        self.server.should_exit = True  # first: no new decisions while the broker shuts down
        for task in self._running[1:]:
            task.cancel()  # the deadline loop: cancelled between steps, each step saved whole
        await asyncio.gather(*self._running, return_exceptions=True)
        self._running = []
        if self.notifier is not None:
            await self.notifier.drain()

    def _pending_since(self) -> list:
        """When each pending review was requested (signoff_reviews_pending and the oldest's age)."""
        return [review.request.occurred_at for review in self.store.pending()] if self.store is not None else []

    async def close(self) -> None:
        await self.obs.close()
        if self._socket is not None:
            self._socket.close()  # uvicorn closed it when it served; not if start-up stopped early
            self._socket = None
        if self.notifier is not None:
            await self.notifier.drain()  # what is still being sent reads the store
        if self.http is not None:
            await self.http.aclose()
        if self.store is not None:
            self.store.close()
        self.kept.save()  # after the broker stopped: the followers' last records are in
        if self.snapshots is not None:
            self.snapshots.close()
            self.snapshots = self.kept.store = None
        self.api.state.reviewer = None
        self.store = self.http = self.notifier = self.reviewer = None


def listen(host: str, port: int, log: structlog.stdlib.BoundLogger) -> socket.socket:
    """A socket listening on host:port for the HTTP API. When the port is taken (or the address
    unusable) it logs `http_port_unavailable` and raises: the service exits non-zero instead of
    running, and reporting itself started, without its API."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)  # uvicorn's default backlog
    except OSError as exc:
        sock.close()
        log.error("http_port_unavailable", host=host, port=port, error=str(exc))
        raise PortUnavailable(f"cannot listen on {host}:{port} ({exc.strerror}): stop what holds the "
                              "port, or set REVIEW_NOTIFIER_HTTP_PORT / REVIEW_NOTIFIER_HTTP_HOST") from exc
    return sock


class PortUnavailable(RuntimeError):
    """The HTTP API's address cannot be listened on."""


def build(settings: ReviewNotifierSettings) -> ReviewNotifier:
    return ReviewNotifier(settings)


def create_app(settings: ReviewNotifierSettings | None = None) -> FastStream:
    """The app factory: `faststream run --factory services.review_notifier.app:create_app`."""
    return build(settings or ReviewNotifierSettings()).app
