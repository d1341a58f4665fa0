"""`signoff` run as a person runs it (a subprocess of the installed entry point) against what is
not there: each failure is one line on stderr naming the fix, with its own documented exit code
(signoff/errors.py), and no traceback unless SIGNOFF_DEBUG=1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from signoff import errors

SIGNOFF = Path(sys.executable).with_name("signoff")
SUBMISSION = str(uuid.uuid4())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def signoff(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SIGNOFF_"))}
    return subprocess.run([str(SIGNOFF), *args], capture_output=True, text=True, timeout=60,
                          env={**clean, "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT", **env})


def one_line(result: subprocess.CompletedProcess[str], code: int, *says: str) -> None:
    lines = [line for line in result.stderr.splitlines() if "kafka_plaintext" not in line]  # the laptop warning
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for text in says:
        assert text in lines[0], lines[0]


@pytest.fixture
def accepting_then_closing() -> Iterator[int]:
    """A port that accepts connections and closes them: a broker that refuses the client."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.close()
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


@pytest.fixture
def http_answering(request) -> Iterator[str]:
    """A review API that answers every request with `status`, or never answers (status 0)."""
    status = request.param
    never = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.answer()

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.answer()

        def answer(self) -> None:
            if status == 0:
                never.wait(5)  # read, never answered: the vote may have counted
                return
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"detail": "no valid credential"}')

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    never.set()
    server.shutdown()
    server.server_close()


def test_broker_down_is_one_line_with_its_exit_code():
    port = free_port()
    result = signoff("history", "churn-model", KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}")
    one_line(result, errors.KAFKA_DOWN, f"127.0.0.1:{port}", "KAFKA_BOOTSTRAP_SERVERS", "make up")


def test_debug_shows_the_traceback():
    result = signoff("history", "churn-model", KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}", SIGNOFF_DEBUG="1")
    assert result.returncode != 0 and "Traceback" in result.stderr and "KafkaConnectionError" in result.stderr


def test_a_broker_that_refuses_the_client_says_to_check_the_credentials(accepting_then_closing):
    result = signoff("history", "churn-model", KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{accepting_then_closing}")
    one_line(result, errors.BAD_CREDENTIALS, "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD_FILE")


def test_review_notifier_down_is_one_line_with_its_exit_code():
    url = f"http://127.0.0.1:{free_port()}"
    for args in (("review", SUBMISSION, "approve", "--reason", "fine"), ("pending",)):
        result = signoff(*args, SIGNOFF_REVIEW_URL=url, SIGNOFF_API_TOKEN="so_x")
        one_line(result, errors.REVIEW_API_DOWN, url, "SIGNOFF_REVIEW_URL")


@pytest.mark.parametrize("http_answering", [401], indirect=True)
def test_bad_credentials_at_the_review_api_have_their_exit_code(http_answering):
    for args in (("review", SUBMISSION, "approve", "--reason", "fine"), ("pending",)):
        result = signoff(*args, SIGNOFF_REVIEW_URL=http_answering, SIGNOFF_API_TOKEN="so_wrong")
        assert result.returncode == errors.BAD_CREDENTIALS, result.stderr
        assert result.stderr.strip() == "refused: HTTP 401: no valid credential"


@pytest.mark.parametrize("http_answering", [0], indirect=True)
def test_a_vote_sent_but_not_answered_is_unconfirmed_and_says_how_to_check(http_answering):
    result = signoff("review", SUBMISSION, "approve", "--reason", "fine", SIGNOFF_REVIEW_URL=http_answering,
                     SIGNOFF_API_TOKEN="so_x", SIGNOFF_REVIEW_TIMEOUT="0.5")
    one_line(result, errors.UNCONFIRMED, "not confirmed", "signoff pending", f"signoff watch {SUBMISSION}")


def test_no_credential_says_how_to_get_one():
    result = signoff("pending")
    one_line(result, errors.INVALID, "SIGNOFF_API_TOKEN", "signoff token create")


def test_an_acl_refusal_names_the_principal_and_where_the_acls_are():
    failure = errors.explain(TopicAuthorizationFailedError("rollback.requested"))
    assert failure is not None and failure.code == errors.NOT_AUTHORIZED
    assert "KAFKA_SASL_USERNAME" in failure.message and "signoff acl show" in failure.message


def test_exit_codes_are_distinct():
    codes = [errors.OK, errors.INVALID, errors.PENDING, errors.REJECTED, errors.FAILED, errors.SUPERSEDED,
             errors.GAPS, errors.UNCONFIRMED, errors.KAFKA_DOWN, errors.REVIEW_API_DOWN, errors.BAD_CREDENTIALS,
             errors.NOT_AUTHORIZED]
    assert len(set(codes)) == len(codes)
    assert errors.explain(KafkaConnectionError("x"), probe=False).code == errors.KAFKA_DOWN
    assert errors.explain(ValueError("a bug")) is None


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ReadTimeout])
def test_the_review_url_is_shown_without_its_credentials_path_or_query(error):
    request = httpx.Request("GET", "https://ci-bot:s3cr3t-proxy-pass@reviews.example:8443/tok_abc/reviews?pending=me")
    failure = errors.explain(error("refused", request=request))
    assert failure is not None and failure.code == errors.REVIEW_API_DOWN
    assert "https://reviews.example:8443" in failure.message
    for secret in ("ci-bot", "s3cr3t", "tok_abc", "pending"):
        assert secret not in failure.message, failure.message
