"""Wiring of the review-notifier: review.requested in; review.decided and review.escalated out;
the HTTP API (decision API, Slack interactivity, email links) and the deadline loop beside."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import uvicorn

from services.review_notifier import SERVICE, __doc__ as ABOUT
from services.review_notifier.http import make_api
from services.review_notifier.mail import Mailer
from services.review_notifier.notify import Notifier
from services.review_notifier.service import Reviewer
from services.review_notifier.settings import ReviewNotifierSettings
from services.review_notifier.slack import SlackClient
from services.review_notifier.state import ReviewStore
from shared import topics
from shared.admin import ensure_topics
from shared.broker import Emitter, make_app, make_broker, subscribe
from shared.events import ReviewDecided, ReviewEscalated, ReviewRequested
from shared.logging import configure


def _secret(value) -> str | None:
    return value.get_secret_value() if value is not None else None


settings = ReviewNotifierSettings()
log = configure(settings.log_level)
broker = make_broker(settings, SERVICE)
emitter = Emitter(broker, f"/signoff/{SERVICE}", ReviewDecided, ReviewEscalated)
store = ReviewStore(settings.state_db)
http_client = httpx.AsyncClient(timeout=10.0)
slack = SlackClient(http_client, settings.slack_api_url, _secret(settings.slack_bot_token), settings.slack_channel,
                    _secret(settings.slack_webhook_url)) if settings.slack_enabled else None
mailer = Mailer(settings.smtp_host, settings.smtp_port, settings.smtp_starttls, settings.smtp_username,
                _secret(settings.smtp_password)) if settings.email_enabled else None
token_key = _secret(settings.token_key).encode() if settings.token_key else None
notifier = Notifier(store, slack, mailer, token_key=token_key, public_url=settings.public_url,
                    mail_from=settings.mail_from, approver_emails=settings.approver_emails,
                    slack_users=settings.slack_users)
reviewer = Reviewer(store, emitter.emit, notifier)
token = _secret(settings.api_token)
api = make_api(reviewer, token, slack_signing_secret=_secret(settings.slack_signing_secret),
               slack_users=settings.slack_users, token_key=token_key)


@subscribe(broker, topics.REVIEW_REQUESTED, SERVICE)
async def on_review_requested(event: ReviewRequested) -> None:
    await reviewer.open(event)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the FastStream app: FastStream owns SIGTERM/SIGINT and stops us."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


server = _EmbeddedServer(uvicorn.Config(api, host=settings.http_host, port=settings.http_port,
                                        log_config=None, access_log=False))
_running: list[asyncio.Task] = []


async def _start() -> None:
    await ensure_topics(settings.kafka_bootstrap_servers, settings.topic_partitions)


async def _serve() -> None:
    _running.append(asyncio.create_task(server.serve()))
    _running.append(asyncio.create_task(reviewer.run(settings.tick_seconds)))
    log.info("http_listening", host=settings.http_host, port=settings.http_port,
             decisions_enabled=token is not None, slack=settings.slack_enabled,
             slack_actions=settings.slack_signing_secret is not None, email=settings.email_enabled)
    if settings.slack_bot_token and not settings.slack_channel:
        log.warning("slack_disabled", why="REVIEW_NOTIFIER_SLACK_BOT_TOKEN is set without REVIEW_NOTIFIER_SLACK_CHANNEL")


async def _stop() -> None:
    server.should_exit = True  # first: no new decisions while the broker shuts down
    _running[1].cancel()  # the deadline loop: cancelled between steps, each step saved whole
    await asyncio.gather(*_running, return_exceptions=True)
    await notifier.drain()


async def _close() -> None:
    await http_client.aclose()
    store.close()


app = make_app(broker, SERVICE, ABOUT, on_startup=[_start], after_startup=[_serve],
               on_shutdown=[_stop], after_shutdown=[_close])
