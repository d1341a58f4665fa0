"""Slack request signing (v0), as Slack specifies it: pure, no I/O.

    basestring = "v0:" + X-Slack-Request-Timestamp + ":" + raw body
    X-Slack-Signature = "v0=" + hex(HMAC-SHA256(signing secret, basestring))

A request is genuine when the signature matches (compared in constant time) and its timestamp is
within five minutes of now, either way, so a captured request cannot be replayed later. Replays
inside the window are caught by the caller, which remembers the signatures it has counted.
"""

from __future__ import annotations

import hashlib
import hmac

VERSION = "v0"
MAX_AGE_SECONDS = 5 * 60


class SignatureError(Exception):
    """Why a request is not accepted as coming from Slack; never contains the secret."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    base = b"%s:%s:%s" % (VERSION.encode(), timestamp.encode(), body)
    return f"{VERSION}=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float) -> None:
    """Raise SignatureError unless `signature` signs `body` at `timestamp`, and `timestamp` is fresh."""
    if not timestamp or not signature:
        raise SignatureError("missing X-Slack-Request-Timestamp or X-Slack-Signature header")
    if not timestamp.isdigit():
        raise SignatureError("X-Slack-Request-Timestamp is not a Unix time in seconds")
    if abs(now - int(timestamp)) > MAX_AGE_SECONDS:
        raise SignatureError(f"request timestamp is more than {MAX_AGE_SECONDS // 60} minutes from now; "
                             "refused as a possible replay")
    if not hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.encode()):
        raise SignatureError("X-Slack-Signature does not match the request body")
