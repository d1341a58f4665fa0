"""Slack's Web API (chat.postMessage / chat.update with a bot token), an incoming webhook, and
interaction `response_url`s, over httpx. Failures raise SlackError; callers log and carry on."""

from __future__ import annotations

import httpx


class SlackError(Exception):
    pass


class SlackClient:
    def __init__(self, http: httpx.AsyncClient, api_url: str, bot_token: str | None = None,
                 channel: str | None = None, webhook_url: str | None = None) -> None:
        self.http = http
        self.api_url = api_url.rstrip("/")
        self.bot_token = bot_token
        self.channel = channel
        self.webhook_url = webhook_url

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
        response = await self.http.post(response_url, json={**message, "replace_original": replace_original})
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
