"""Slack's Web API (chat.postMessage / chat.update with a bot token), an incoming webhook, and
interaction `response_url`s, over httpx. Failures raise SlackError; callers log and carry on."""

from __future__ import annotations

import httpx

from shared.transport import InsecureUrl, require_secure

ALLOW = "REVIEW_NOTIFIER_SLACK_ALLOW_HTTP_LOOPBACK"


class SlackError(Exception):
    pass


class SlackUrlRefused(SlackError):
    """A URL the bot token or a review's message must not go to (not https://)."""


class SlackClient:
    def __init__(self, http: httpx.AsyncClient, api_url: str, bot_token: str | None = None,
                 channel: str | None = None, webhook_url: str | None = None, *,
                 allow_http_loopback: bool = False) -> None:
        self.http = http
        self.allow_http_loopback = allow_http_loopback
        self.api_url = self._secure(api_url, "Slack API URL").rstrip("/")
        self.bot_token = bot_token
        self.channel = channel
        self.webhook_url = self._secure(webhook_url, "Slack webhook URL") if webhook_url else None

    def _secure(self, url: str, what: str) -> str:
        """Checked here too, not only in the settings: a response_url comes in a request."""
        try:
            return require_secure(url, what, self.allow_http_loopback, ALLOW)
        except InsecureUrl as exc:
            raise SlackUrlRefused(str(exc)) from None

    @property
    def can_update(self) -> bool:
        """Messages posted with a bot token can be changed later; webhook messages cannot."""
        return self.bot_token is not None

    async def post(self, message: dict) -> dict:
        """Post a new message; returns {'channel', 'ts'} with a bot token, {} through a webhook."""
        if self.bot_token:
            data = await self._api("chat.postMessage", {"channel": self.channel, **message})
            return {"channel": data["channel"], "ts": data["ts"]}
        if not self.webhook_url:
            raise SlackError("neither a bot token nor a webhook URL is configured")
        response = await self.http.post(self.webhook_url, json=message)
        if response.status_code != 200:
            raise SlackError(f"incoming webhook answered HTTP {response.status_code}: {response.text[:200]}")
        return {}

    async def update(self, ref: dict, message: dict) -> None:
        await self._api("chat.update", {"channel": ref["channel"], "ts": ref["ts"], **message})

    async def respond(self, response_url: str, message: dict, replace_original: bool = True) -> None:
        url = self._secure(response_url, "Slack response_url")
        response = await self.http.post(url, json={**message, "replace_original": replace_original})
        if response.status_code != 200:
            raise SlackError(f"response_url answered HTTP {response.status_code}")

    async def _api(self, method: str, body: dict) -> dict:
        response = await self.http.post(f"{self.api_url}/{method}", json=body,
                                         headers={"Authorization": f"Bearer {self.bot_token}"})
        if response.status_code != 200:
            raise SlackError(f"{method} answered HTTP {response.status_code}")
        data = response.json()
        if not data.get("ok"):
            raise SlackError(f"{method} failed: {data.get('error', 'unknown error')}")
        return data
