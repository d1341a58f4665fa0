"""Signed email-link tokens: bound to one submission, one approver, one action, and an expiry.

    token = base64url(claims JSON) "." base64url(HMAC-SHA256(key, "signoff-email-v1." + claims part))

Pure: no clock, no storage. Single use is the caller's part: `token_id` (a hash) is the receipt
key of the vote a token carried, and a token whose receipt was seen is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

_CONTEXT = b"signoff-email-v1."


class TokenError(Exception):
    """Why a token is refused, with the HTTP status that fits; never contains the token or key."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Claims:
    submission_id: uuid.UUID
    approver: str
    action: Literal["approve", "reject"]
    expires: datetime
    nonce: str


def issue(key: bytes, submission_id: uuid.UUID, approver: str, action: str, expires: datetime,
          nonce: str | None = None) -> str:
    claims = {"s": str(submission_id), "a": approver, "d": action,
              "e": int(expires.timestamp()), "n": nonce or secrets.token_urlsafe(12)}
    part = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{part}.{_b64(_mac(key, part))}"


def verify(key: bytes, token: str, now: datetime) -> Claims:
    """The token's claims; TokenError when it is malformed, tampered with or expired."""
    part, dot, mac = (token or "").strip().partition(".")
    if not dot or not part or not mac:
        raise TokenError(400, "the link is malformed: it has no valid token")
    try:
        given = base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))
    except ValueError:
        raise TokenError(400, "the link is malformed: it has no valid token") from None
    if not hmac.compare_digest(given, _mac(key, part)):
        raise TokenError(403, "the link's signature does not match: it was altered or not issued here")
    try:
        data = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        claims = Claims(uuid.UUID(data["s"]), str(data["a"]), data["d"],
                        datetime.fromtimestamp(int(data["e"]), UTC), str(data["n"]))
    except (ValueError, KeyError, TypeError):
        raise TokenError(400, "the link is malformed: it has no valid token") from None
    if claims.action not in ("approve", "reject"):
        raise TokenError(400, "the link names no known action")
    if now >= claims.expires:
        raise TokenError(410, f"the link expired at {claims.expires.isoformat()}")
    return claims


def token_id(token: str) -> str:
    """What is stored to make a token single-use: its hash, never the token itself."""
    return hashlib.sha256(token.strip().encode()).hexdigest()


def _mac(key: bytes, part: str) -> bytes:
    return hmac.new(key, _CONTEXT + part.encode(), hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
