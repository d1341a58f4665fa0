"""What the CLI says when something outside it fails: one line naming the fix, and an exit code
per kind of failure, never a traceback (SIGNOFF_DEBUG=1 shows it).

The exit codes are the CLI's contract with scripts and CI (README, "Exit codes"):
0 ok; 1 invalid input or a refused request; 2 still pending at the timeout; 3 rejected;
4 deployment failed or refused; 5 superseded; 6 the audit index has gaps; 7 sent but not
confirmed (it may still happen: check it); 8 Kafka unreachable; 9 the review-notifier
unreachable; 10 credentials refused (Kafka's, or the review API's token); 11 not authorized by
Kafka (an ACL).
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

import httpx
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaTimeoutError,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
)
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import codec

OK, INVALID, PENDING, REJECTED, FAILED, SUPERSEDED, GAPS = 0, 1, 2, 3, 4, 5, 6
UNCONFIRMED, KAFKA_DOWN, REVIEW_API_DOWN, BAD_CREDENTIALS, NOT_AUTHORIZED = 7, 8, 9, 10, 11


class DebugSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIGNOFF_", extra="ignore")

    debug: bool = Field(default=False, description="SIGNOFF_DEBUG=1: show the traceback of a failure")


@dataclass(frozen=True)
class Failure:
    """One line for the person at the terminal, and the exit code for their script."""

    message: str
    code: int


class Unconfirmed(Exception):
    """A request was sent but its effect could not be confirmed: it may still happen."""

    def __init__(self, what: str, check: str) -> None:
        super().__init__(f"{what} was sent but not confirmed: it may still take effect; check with {check}")


class ReviewApiDown(Exception):
    """The review-notifier did not answer (nothing was sent)."""


def quiet_clients() -> None:
    """aiokafka logs every failed connection attempt at ERROR; the CLI says it once, its own way."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def explain(exc: BaseException, probe: bool = True) -> Failure | None:
    """The line and exit code for a failure the CLI knows; None for a bug (shown as one)."""
    if isinstance(exc, Unconfirmed):
        return Failure(str(exc), UNCONFIRMED)
    if isinstance(exc, ReviewApiDown):
        return Failure(str(exc), REVIEW_API_DOWN)
    if isinstance(exc, (TopicAuthorizationFailedError, GroupAuthorizationFailedError,
                        ClusterAuthorizationFailedError)):
        return Failure(f"Kafka refused: {type(exc).__name__} ({exc}): this principal (KAFKA_SASL_USERNAME) "
                       "may not do that; `signoff acl show` lists who may, run it as the principal that may",
                       NOT_AUTHORIZED)
    if isinstance(exc, KafkaConnectionError):
        return _kafka_down(exc, probe)
    if isinstance(exc, (KafkaTimeoutError, RequestTimedOutError)):
        return Failure("Kafka did not answer in time: what was being sent may or may not have been written; "
                       "check the broker (KAFKA_BOOTSTRAP_SERVERS), then `signoff watch ID` or "
                       "`signoff history MODEL`", UNCONFIRMED)
    if isinstance(exc, httpx.TimeoutException):
        return Failure(f"the review-notifier did not answer in time ({type(exc).__name__}) at "
                       f"{_url(exc)}: check it is up (GET /healthz) and SIGNOFF_REVIEW_URL", REVIEW_API_DOWN)
    if isinstance(exc, httpx.TransportError):
        return Failure(f"cannot reach the review-notifier at {_url(exc)}: it is not running there; start it "
                       "(`make up`) or set SIGNOFF_REVIEW_URL", REVIEW_API_DOWN)
    if isinstance(exc, ValidationError):
        return Failure(f"invalid input: {codec.describe(exc)}", INVALID)
    if isinstance(exc, OSError) and exc.filename:
        return Failure(f"cannot use {exc.filename}: {exc.strerror}", INVALID)
    return None


def _url(exc: httpx.HTTPError) -> str:
    """Where the review API was asked: scheme, host and port only. SIGNOFF_REVIEW_URL may hold a
    proxy's user:password, and a path or query a token: an error line ends up in CI logs."""
    try:
        url = exc.request.url
    except RuntimeError:  # an error raised before it had a request
        return "SIGNOFF_REVIEW_URL"
    return f"{url.scheme}://{url.netloc.decode(errors='replace')}"


def _kafka_down(exc: KafkaConnectionError, probe: bool) -> Failure:
    """aiokafka says "Unable to bootstrap" whether the broker is away or refused the password: a
    TCP connection to the first bootstrap server tells which, so the line names the right fix."""
    text = str(exc).removeprefix(f"{type(exc).__name__}: ")  # aiokafka's errors repeat their name
    target = _first_server(text)
    if probe and target is not None and _listening(*target):
        return Failure(f"Kafka at {target[0]}:{target[1]} answers but refused this client: check "
                       "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD_FILE (the principal's own password file), "
                       "KAFKA_SECURITY_PROTOCOL and, with SASL_SSL, KAFKA_SSL_CAFILE", BAD_CREDENTIALS)
    where = f" at {target[0]}:{target[1]}" if target else ""
    return Failure(f"cannot connect to Kafka{where}: nothing answers there; start it (`make up`) or set "
                   "KAFKA_BOOTSTRAP_SERVERS", KAFKA_DOWN)


def _first_server(text: str) -> tuple[str, int] | None:
    """The first host:port in the error's text (shared.kafka.unreachable names them)."""
    for word in text.replace(",", " ").split():
        host, sep, port = word.rpartition(":")
        if sep and host and port.isdigit():
            return host.strip("[]"), int(port)
    return None


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2.0):
            return True
    except OSError:
        return False
