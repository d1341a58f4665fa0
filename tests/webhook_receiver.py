"""A webhook receiver for the deployer's tests: a local HTTP server on 127.0.0.1 that verifies the
signature of every request, records it, and answers with planned failures first (to exercise
retries), then 200."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from services.deployer.targets.webhook import IDEMPOTENCY_KEY, SIGNATURE, TIMESTAMP, verify


@dataclass
class Received:
    headers: dict[str, str]
    raw: bytes
    signed: bool  # the signature verified with the receiver's secret

    @property
    def body(self) -> dict:
        return json.loads(self.raw)

    @property
    def key(self) -> str:
        return self.headers[IDEMPOTENCY_KEY.lower()]


@dataclass
class Receiver:
    secret: bytes
    failures: list[int] = field(default_factory=list)  # statuses to answer first, in order
    requests: list[Received] = field(default_factory=list)  # every request, failed ones included
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/deploy"

    @property
    def accepted(self) -> list[Received]:
        """The requests answered 200."""
        return [r for r in self.requests if r.headers.get("x-test-status") == "200"]

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                signature = headers.get(SIGNATURE.lower(), "")
                signed = verify(receiver.secret, raw, signature) and TIMESTAMP.lower() in headers
                status = receiver.failures.pop(0) if receiver.failures else (200 if signed else 401)
                headers["x-test-status"] = str(status)
                receiver.requests.append(Received(headers, raw, signed))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
