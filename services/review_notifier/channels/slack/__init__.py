"""The Slack channel: one message per review (posted once per stage, then kept current), reminders
in its thread, and votes from its buttons (`routes`: signed interactivity requests).

    client.py   Slack's Web API, an incoming webhook and response_urls, over httpx
    blocks.py   pure: the message as Block Kit
    signing.py  pure: Slack's v0 request signature
    routes.py   POST /slack/actions
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import structlog
from fastapi import APIRouter
from pydantic import BaseModel, Field, SecretStr, model_validator

from services.review_notifier.channels.base import Notices, failed, secret, stage, unset_when_empty
from services.review_notifier.channels.slack import blocks, routes
from services.review_notifier.channels.slack.client import SlackClient, SlackError
from services.review_notifier.reviews import Review
from shared.transport import require_secure

if TYPE_CHECKING:
    import httpx

    from services.review_notifier.settings import ReviewNotifierSettings

log = structlog.get_logger()


ALLOW_HTTP_LOOPBACK = "REVIEW_NOTIFIER_SLACK_ALLOW_HTTP_LOOPBACK"


class SlackSettings(BaseModel):
    """The Web API with a bot token (messages are updated in place), or an incoming webhook."""

    slack_signing_secret: SecretStr | None = Field(
        default=None, description="Verifies POST /slack/actions; without it Slack clicks are refused (503)")
    slack_bot_token: SecretStr | None = Field(default=None, description="xoxb- token for chat.postMessage/update")
    slack_webhook_url: SecretStr | None = Field(default=None, description="Incoming webhook, when no bot token")
    slack_api_url: str = Field(default="https://slack.com/api", description="Base URL of Slack's Web API")
    slack_channel: str | None = Field(default=None, description="Channel id reviews are posted to (bot token)")
    slack_users: dict[str, str] = Field(default_factory=dict,
                                        description="Slack user id -> approver identity, JSON")
    slack_allow_http_loopback: bool = Field(
        default=False, description="Development only: allow http:// Slack URLs (API, webhook, response_url) "
        "to a loopback address, for a local stand-in; otherwise only https:// is used")

    # A validator, not a field: the pydantic plugin recognizes only field_validator(...)(f) written out.
    unset_slack = unset_when_empty(  # type: ignore[pydantic-field]
        "slack_signing_secret", "slack_bot_token", "slack_webhook_url", "slack_channel")

    @model_validator(mode="after")
    def _https_only(self) -> SlackSettings:
        """The bot token and the votes' messages go to these URLs: refused at start-up unless https."""
        urls = [("REVIEW_NOTIFIER_SLACK_API_URL", self.slack_api_url)]
        if self.slack_webhook_url is not None:
            urls.append(("REVIEW_NOTIFIER_SLACK_WEBHOOK_URL", self.slack_webhook_url.get_secret_value()))
        for name, url in urls:
            require_secure(url, name, self.slack_allow_http_loopback, ALLOW_HTTP_LOOPBACK)
        return self


class SlackChannel:
    name: ClassVar[str] = "slack"
    Settings: ClassVar[type[BaseModel]] = SlackSettings

    def __init__(self, *, signing_secret: str | None = None, bot_token: str | None = None,
                 channel: str | None = None, webhook_url: str | None = None,
                 api_url: str = "https://slack.com/api", users: dict[str, str] | None = None,
                 allow_http_loopback: bool = False) -> None:
        self.signing_secret, self.users = signing_secret, users or {}
        self.allow_http_loopback = allow_http_loopback
        self._bot_token, self._channel, self._webhook_url, self._api_url = bot_token, channel, webhook_url, api_url
        self.ids: dict[str, list[str]] = {}  # approver -> Slack user ids, for mentions
        for user_id, approver in self.users.items():
            self.ids.setdefault(approver, []).append(user_id)
        self.client: SlackClient | None = None
        self.notices: Notices | None = None

    @classmethod
    def from_settings(cls, settings: ReviewNotifierSettings) -> SlackChannel:
        if settings.slack_bot_token and not settings.slack_channel:
            log.warning("slack_disabled",
                        why="REVIEW_NOTIFIER_SLACK_BOT_TOKEN is set without REVIEW_NOTIFIER_SLACK_CHANNEL")
        return cls(signing_secret=secret(settings.slack_signing_secret), bot_token=secret(settings.slack_bot_token),
                   channel=settings.slack_channel, webhook_url=secret(settings.slack_webhook_url),
                   api_url=settings.slack_api_url, users=settings.slack_users,
                   allow_http_loopback=settings.slack_allow_http_loopback)

    @property
    def sends(self) -> bool:
        """A bot token needs the channel to post to; a webhook posts to its own channel."""
        return bool(self._bot_token and self._channel) or self._webhook_url is not None

    def open(self, http: httpx.AsyncClient, notices: Notices) -> None:
        self.notices = notices
        if self.sends:
            self.client = SlackClient(http, self._api_url, self._bot_token if self._channel else None,
                                      self._channel, self._webhook_url, allow_http_loopback=self.allow_http_loopback)

    def router(self) -> APIRouter:
        return routes.router(self)

    async def announce(self, review: Review) -> None:
        """Post the review's message, once per stage (requested, escalated)."""
        at = stage(review)
        if self.client is None:
            return
        assert self.notices is not None, "open() sets the notices before the client"
        if not self.notices.claim(review, at):  # posted already, or another replica is posting it
            return
        try:
            ref = await self.client.post(blocks.message(review))
        except Exception as exc:  # noqa: BLE001 - a notification never undoes a decision
            self.notices.release(review, at)
            failed("slack_post_failed", review, exc, safe=(SlackError,))
            return
        self.notices.record(review, at, ref)
        log.info("slack_posted", submission_id=str(review.submission_id), stage=at)

    async def refresh(self, review: Review, reply_to: str | None = None) -> None:
        """Show the review's current state: votes, outcome, buttons gone, the production it shows
        now. In place with a bot token; through the click's response_url, or as a new message, with
        a webhook (which cannot edit)."""
        if self.client is None:
            return
        assert self.notices is not None, "open() sets the notices before the client"
        message, ref = blocks.message(review), self._message(review)
        try:
            if ref and self.client.can_update:
                await self.client.update(ref, message)
            elif reply_to:
                await self.client.respond(reply_to, message)
            elif review.decision is not None or review.escalation is not None or self._new_production(review):
                await self.client.post(message)  # a webhook message cannot change: say it anew
            else:
                return
        except Exception as exc:  # noqa: BLE001
            failed("slack_update_failed", review, exc, safe=(SlackError,))
            return
        self.notices.record(review, "production", {"shown": _release(review)})
        log.info("slack_updated", submission_id=str(review.submission_id),
                 outcome=review.decision.outcome if review.decision else "pending")

    async def remind(self, review: Review, approvers: tuple[str, ...]) -> None:
        """A reply in the message's thread mentioning those who have not voted."""
        if self.client is None:
            return
        mentions = [f"<@{uid}>" for a in approvers for uid in self.ids.get(a, [])] or list(approvers)
        message, ref = blocks.reminder(review, mentions), self._message(review)
        try:
            await self.client.post({**message, "thread_ts": ref["ts"]} if ref and self.client.can_update else message)
        except Exception as exc:  # noqa: BLE001
            failed("slack_reminder_failed", review, exc, safe=(SlackError,))

    async def answer(self, response_url: str | None, text: str) -> None:
        """Tell the one who clicked why their click changed nothing (only they see it)."""
        if self.client is None or not response_url:
            return
        try:
            await self.client.respond(response_url, {"text": blocks.escape(text), "response_type": "ephemeral"},
                                      replace_original=False)
        except Exception as exc:  # noqa: BLE001
            log.warning("slack_answer_failed", error=type(exc).__name__)

    def _new_production(self, review: Review) -> bool:
        """Whether the review shows another production than Slack was last shown (the request's
        until a refresh recorded one): a webhook's message must then be said anew."""
        assert self.notices is not None, "called once open() set the client, after the notices"
        last = self.notices.get(review, "production")
        if last is not None:
            return _release(review) != last["shown"]
        asked = review.request.production
        return _release(review) != (str(asked.submission_id) if asked else None)

    def _message(self, review: Review) -> dict | None:
        """The review's current message ({'channel', 'ts'}): the escalation's once posted, else the
        first. None through a webhook, whose messages have no reference."""
        assert self.notices is not None, "called once open() set the client, after the notices"
        return self.notices.get(review, "escalated") or self.notices.get(review, "requested") or None


def _release(review: Review) -> str | None:
    return str(review.shown.submission_id) if review.shown else None


CHANNEL = SlackChannel  # what the registry (channels/__init__.py) lists
