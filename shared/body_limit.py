"""A cap on HTTP request bodies, for Signoff's FastAPI apps (the console, the review-notifier).

Starlette parses a whole form or JSON body into memory before a route runs (a form of 1000 fields
of 1 MiB each is accepted by default), so a route's own bounds on its fields come too late: an
anonymous client could make the process hold gigabytes. This middleware reads the body first, up
to `limit` bytes, and answers 413 past it: at once when Content-Length says so, or as soon as a
streamed (chunked) body goes past it. A body within the limit is handed to the app unchanged.

A pure ASGI middleware (not `@app.middleware("http")`, whose request body is the app's own stream).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    def __init__(self, app: App, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit: at least 1 byte, not {limit}")
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._too_large(send)
            return
        body, more, first = bytearray(), True, None
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                first = message
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                await self._too_large(send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first or {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # after the body: a disconnect, when it comes

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        text = json.dumps({"detail": f"the request body is larger than {self.limit} bytes: send less"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(text)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": text})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # malformed: the body is counted as it comes instead
    return None
