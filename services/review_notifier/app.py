"""Wiring of the review-notifier: review.requested in, review.decided out, HTTP API beside."""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn
from services.review_notifier import SERVICE, __doc__ as ABOUT
from services.review_notifier.http import make_api
from services.review_notifier.settings import ReviewNotifierSettings
from services.review_notifier.state import ReviewStore
from shared import topics
from shared.admin import ensure_topics
from shared.broker import Emitter, make_app, make_broker, subscribe
from shared.events import ReviewDecided, ReviewRequested
from shared.logging import configure

settings = ReviewNotifierSettings()
log = configure(settings.log_level)
broker = make_broker(settings, SERVICE)
emitter = Emitter(broker, f"/signoff/{SERVICE}", ReviewDecided)
store = ReviewStore(settings.state_db)
token = settings.api_token.get_secret_value() if settings.api_token else None
api = make_api(store, emitter.emit, token)


@subscribe(broker, topics.REVIEW_REQUESTED, SERVICE)
async def on_review_requested(event: ReviewRequested) -> None:
    if store.open(event):
        log.info("review_opened", approvers=list(event.approvers), quorum=event.quorum)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the FastStream app: FastStream owns SIGTERM/SIGINT and stops us."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


server = _EmbeddedServer(uvicorn.Config(api, host=settings.http_host, port=settings.http_port,
                                        log_config=None, access_log=False))
_serving: list[asyncio.Task] = []


async def _start() -> None:
    await ensure_topics(settings.kafka_bootstrap_servers, settings.topic_partitions)


async def _serve_http() -> None:
    _serving.append(asyncio.create_task(server.serve()))
    log.info("http_listening", host=settings.http_host, port=settings.http_port,
             decisions_enabled=token is not None)


async def _stop_http() -> None:
    server.should_exit = True  # first: no new decisions while the broker shuts down
    await asyncio.gather(*_serving)


async def _close() -> None:
    store.close()


app = make_app(broker, SERVICE, ABOUT, on_startup=[_start], after_startup=[_serve_http],
               on_shutdown=[_stop_http], after_shutdown=[_close])
