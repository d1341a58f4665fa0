"""Local stand-ins for Slack and a mail server, for `make demo` and the tests, and the builder of
Slack interactivity requests exactly as Slack sends them (form-encoded `payload`, signed v0).

- SlackStandIn: a small HTTP server answering chat.postMessage / chat.update like Slack's Web API
  (and incoming-webhook and response_url posts), recording every request it received.
- MailSink: a real SMTP server (aiosmtpd) keeping every message; `links(to)` finds the links.
"""

from __future__ import annotations

import email
import json
import re
import threading
import time
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

from services.review_notifier.channels.slack import blocks as slack_blocks
from services.review_notifier.channels.slack.signing import sign
from signoff.devstack import free_port


class SlackStandIn:
    def __init__(self, delay: float = 0.0) -> None:
        self.posted: list[dict] = []  # {"path", "headers", "body", "answer"}
        self.delay = delay
        self._lock = threading.Lock()
        self._ts = 1_700_000_000
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"raw": raw.decode(errors="replace")}
                if stand_in.delay:
                    time.sleep(stand_in.delay)
                answer = stand_in._record(self.path, dict(self.headers), body)
                data = json.dumps(answer).encode() if isinstance(answer, dict) else answer.encode()
                self.send_response(200)
                self.send_header("content-type", "application/json" if isinstance(answer, dict) else "text/plain")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.api_url = f"{self.url}/api"
        self.webhook_url = f"{self.url}/webhook/T000/B000/XXXX"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _record(self, path: str, headers: dict, body: dict) -> dict | str:
        with self._lock:
            answer: dict | str = "ok"
            if path.endswith("/chat.postMessage"):
                self._ts += 1
                answer = {"ok": True, "channel": body.get("channel"), "ts": f"{self._ts}.000100",
                          "message": {"text": body.get("text")}}
            elif path.endswith("/chat.update"):
                answer = {"ok": True, "channel": body.get("channel"), "ts": body.get("ts")}
            self.posted.append({"path": path, "headers": headers, "body": body, "answer": answer})
            return answer

    def requests(self, method: str | None = None, about: str | None = None) -> list[dict]:
        """Recorded requests to a method path ('chat.postMessage', 'response', 'webhook'), whose
        body mentions `about` (a submission id)."""
        with self._lock:
            posted = list(self.posted)
        return [p for p in posted if (method is None or method in p["path"])
                and (about is None or about in json.dumps(p["body"]))]

    def wait_for(self, method: str, about: str, timeout: float = 30.0, count: int = 1,
                 where=lambda body: True) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [p for p in self.requests(method, about) if where(p["body"])]
            if len(found) >= count:
                return found
            time.sleep(0.05)  # polling a recorder, bounded by the deadline
        raise AssertionError(f"no {method} about {about} within {timeout}s; saw {self.requests(about=about)}")

    def __enter__(self) -> SlackStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class MailSink:
    """A real SMTP server on a free local port (aiosmtpd, in its own thread)."""

    def __init__(self, port: int = 0, auth: tuple[str, str] | None = None) -> None:
        from aiosmtpd.controller import Controller  # dev dependency: tests and the demo only
        from aiosmtpd.smtp import AuthResult

        self.messages: list[Message] = []
        self.logins: list[str] = []
        self._lock = threading.Lock()
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's naming
                with sink._lock:
                    sink.messages.append(email.message_from_bytes(envelope.original_content or envelope.content))
                return "250 Message accepted for delivery"

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = auth is not None and (auth_data.login.decode(), auth_data.password.decode()) == auth
            if ok:
                sink.logins.append(auth_data.login.decode())
            return AuthResult(success=ok)

        options: dict[str, Any] = (
            dict(authenticator=authenticator, auth_required=True, auth_require_tls=False) if auth else {})
        port = port or free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=port, **options)
        self.host, self.port = "127.0.0.1", port

    def to(self, address: str, about: str | None = None) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if address in (m["To"] or "")
                    and (about is None or about == m["X-Signoff-Submission"])]

    def wait_for(self, address: str, about: str, timeout: float = 30.0, count: int = 1) -> list[Message]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(found := self.to(address, about)) >= count:
                return found
            time.sleep(0.05)  # polling a mailbox, bounded by the deadline
        raise AssertionError(f"no mail to {address} about {about} within {timeout}s")

    def __enter__(self) -> MailSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def body_of(message: Message, subtype: str = "plain") -> str:
    for part in message.walk():
        if part.get_content_type() == f"text/{subtype}":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes), "a decoded text part is bytes"
            return payload.decode(part.get_content_charset() or "utf-8")
    raise AssertionError(f"no text/{subtype} part")


def links(message: Message) -> dict[str, str]:
    """{'approve': url, 'reject': url} from a review mail's text part."""
    text = body_of(message)
    return {m[1].lower(): m[2] for m in re.finditer(r"^(Approve|Reject):[ \t]+(\S+)\s*$", text, re.MULTILINE)}


def block_actions(user_id: str, action_id: str, submission_id: str, *, channel: str = "C0REVIEWS",
                  message_ts: str = "1700000001.000100", response_url: str | None = None,
                  reason: str = "") -> dict:
    """A block_actions payload as Slack sends it when a user clicks one of the review buttons."""
    return {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": "T0SIGNOFF"},
        "api_app_id": "A0SIGNOFF", "token": "verification-token-unused", "trigger_id": "1.2.3",
        "team": {"id": "T0SIGNOFF", "domain": "signoff"},
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
        "channel": {"id": channel, "name": "model-reviews"},
        "message": {"type": "message", "ts": message_ts, "text": "Review requested"},
        "state": {"values": {slack_blocks.REASON_BLOCK: {slack_blocks.REASON_INPUT: {
            "type": "plain_text_input", "value": reason or None}}}},
        "response_url": response_url or "https://hooks.slack.com/actions/T0SIGNOFF/1/abc",
        "actions": [{"type": "button", "action_id": action_id, "block_id": f"signoff_vote:{submission_id}",
                     "value": submission_id, "action_ts": f"{time.time():.6f}",
                     "text": {"type": "plain_text", "text": action_id}}],
    }


def signed_request(secret: str, payload: dict, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers Slack would POST to the interactivity URL for `payload`."""
    body = urlencode({"payload": json.dumps(payload)}).encode()
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return body, {"content-type": "application/x-www-form-urlencoded", "x-slack-request-timestamp": ts,
                  "x-slack-signature": sign(secret, ts, body)}

