"""What a notification channel is, and the few things every channel shares.

A channel asks people for their vote and takes it back: Slack, email, ... Each is one module (or
small package) under `channels/` and one line in `CHANNELS` (channels/__init__.py); nothing else
names it. A channel owns:

- `name`: how its votes are marked (`Vote.channel`), and the prefix of its receipts and notices;
- `Settings`: a pydantic model of its configuration, mixed into `ReviewNotifierSettings`, so a
  field `slack_bot_token` is read from `REVIEW_NOTIFIER_SLACK_BOT_TOKEN`;
- `from_settings(settings)`: builds it from those settings, opening nothing;
- `open(http, notices)`: hands it the shared HTTP client and its own record of what it sent;
- `sends`: whether it is configured to notify; only then does the Notifier call `announce`
  (post a review, once per stage), `refresh` (show the review's current state after a change) and
  `remind` (those who have not voted);
- `router()`: the HTTP routes its votes arrive through. Each turns a request into a `Vote` whose
  approver is the identity the channel's credential proves (a signed Slack user, an email link's
  approver), and a `Receipt` that makes the request count at most once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import structlog
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, SecretStr, field_validator

from services.review_notifier.reviews import Review
from shared.events import utcnow

if TYPE_CHECKING:
    import httpx

    from services.review_notifier.service import Reviewer
    from services.review_notifier.state import ReviewStore

log = structlog.get_logger()

# How long a claim to send a notification holds (Notices.claim): longer than a send can take (the
# HTTP client's and SMTP's timeouts are shorter), so only a replica that died mid-send loses it.
SEND_LEASE = 120.0


@dataclass(frozen=True)
class Receipt:
    """What carried a vote (an email token's hash, a Slack request's signature), saved with the vote
    in one transaction: a request whose receipt was seen is refused (409), so it counts once."""

    channel: str
    key: str
    replayed: str = "this request was already counted"  # the refusal when it comes again
    # True when the key names one request (a Slack click's signature), not a credential used again
    # (an email link): a request refused because production changed is then spent as well.
    per_request: bool = False


class Notices:
    """What one channel sent for each review, kept in the store as `<channel>:<what>`, so a restart
    or a retry never posts or mails twice."""

    def __init__(self, store: ReviewStore, channel: str) -> None:
        self.store, self.channel = store, channel
        self._claims: dict[tuple[str, str], float] = {}  # (submission id, kind) -> when this one's claim lapses

    def get(self, review: Review, what: str) -> dict | None:
        return self.store.notice(review.submission_id, f"{self.channel}:{what}")

    def record(self, review: Review, what: str, ref: dict) -> None:
        self._claims.pop((str(review.submission_id), f"{self.channel}:{what}"), None)
        self.store.record_notice(review.submission_id, f"{self.channel}:{what}", ref)

    def claim(self, review: Review, what: str) -> bool:
        """The right to send `what` now, held by one replica (the store decides: shared by replicas);
        `record` what was sent, or `release` when sending failed."""
        kind = f"{self.channel}:{what}"
        until = self.store.claim_notice(review.submission_id, kind, time.time(), SEND_LEASE)
        if until is None:
            return False
        self._claims[(str(review.submission_id), kind)] = until
        return True

    def release(self, review: Review, what: str) -> None:
        kind = f"{self.channel}:{what}"
        until = self._claims.pop((str(review.submission_id), kind), None)
        if until is not None:
            self.store.release_notice(review.submission_id, kind, until)


class Channel(Protocol):
    name: ClassVar[str]
    Settings: ClassVar[type[BaseModel]]

    @classmethod
    def from_settings(cls, settings: Any) -> Channel: ...

    @property
    def sends(self) -> bool: ...

    def open(self, http: httpx.AsyncClient, notices: Notices) -> None: ...

    def router(self) -> APIRouter: ...

    async def announce(self, review: Review) -> None: ...

    async def refresh(self, review: Review, reply_to: str | None = None) -> None:
        """`reply_to`: where this channel may answer the vote that caused the change (Slack's
        response_url), given only to the channel the vote came through."""

    async def remind(self, review: Review, approvers: tuple[str, ...]) -> None: ...


def stage(review: Review) -> str:
    """Which announcement a review is at: 'requested', or 'escalated' once it was escalated."""
    return "escalated" if review.escalation else "requested"


def reviewer_of(request: Request) -> Reviewer:
    """The use cases, for a route (FastAPI dependency); the app sets them when it opens."""
    reviewer = getattr(request.app.state, "reviewer", None)
    if reviewer is None:
        raise HTTPException(503, "the review-notifier is not open yet")
    return reviewer


def refused(channel: str, status: int, message: str, **context: object) -> JSONResponse:
    """Answer a vote that changes nothing, and log why (never a secret, token or request body)."""
    log.info("vote_refused", channel=channel, status=status, why=message, **context)
    return JSONResponse({"detail": message}, status_code=status)


def failed(what: str, review: Review, exc: Exception, safe: tuple[type[Exception], ...] = (), **extra: str) -> None:
    """Log a failed notification: the exception's class, and its text only for the error types the
    channel names as safe (Slack's own error code), never a URL: a webhook URL is a secret."""
    log.warning(what, submission_id=str(review.submission_id), error=type(exc).__name__,
                detail=str(exc) if isinstance(exc, safe) else "", at=utcnow().isoformat(), **extra)


def unset_when_empty(*fields: str) -> Any:
    """A settings validator: an empty value counts as unset, so Compose's `${SLACK_BOT_TOKEN}` with
    nothing exported leaves the channel off."""
    def unset(cls: type, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value
    return field_validator(*fields, mode="before")(classmethod(unset))


def secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None
