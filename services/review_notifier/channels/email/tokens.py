"""Signed email-link tokens: bound to one submission, one approver, one action, and an expiry.

    token = base64url(claims JSON) "." base64url(HMAC-SHA256(key, "signoff-email-v1." + claims part))

Pure: no clock, no storage. Single use is the caller's part: `Claims.token_id` (a hash of what the
token decides and its nonce) is the receipt key of the vote a token carried, and a token whose
receipt was seen is refused. The receipt is keyed on the token's meaning, not its spelling, and
the spelling is strict too: each part canonical unpadded base64url, nothing before, between or
after, so `token + "=="` or a re-encoded part is not a second, unused token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

_CONTEXT = b"signoff-email-v1."
MAX_TOKEN_CHARS = 1024  # an issued token is about 200 characters
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_MALFORMED = "the link is malformed: it has no valid token"


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

    @property
    def token_id(self) -> str:
        """What is stored to make a token single-use: a hash of what it decides and its nonce,
        never the token itself, and the same however the token was spelt."""
        bound = "\n".join((str(self.submission_id), self.approver, self.action, self.nonce))
        return hashlib.sha256(b"signoff-email-token-id-v1\n" + bound.encode()).hexdigest()


def issue(key: bytes, submission_id: uuid.UUID, approver: str, action: str, expires: datetime,
          nonce: str | None = None) -> str:
    claims = {"s": str(submission_id), "a": approver, "d": action,
              "e": int(expires.timestamp()), "n": nonce or secrets.token_urlsafe(12)}
    part = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{part}.{_b64(_mac(key, part))}"


def verify(key: bytes, token: str, now: datetime) -> Claims:
    """The token's claims; TokenError when it is malformed, tampered with or expired."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise TokenError(400, _MALFORMED)
    part, dot, mac = token.partition(".")
    raw_part, given = _strict_b64(part), _strict_b64(mac)
    if not dot or raw_part is None or given is None or len(given) != hashlib.sha256().digest_size:
        raise TokenError(400, _MALFORMED)
    if not hmac.compare_digest(given, _mac(key, part)):
        raise TokenError(403, "the link's signature does not match: it was altered or not issued here")
    try:
        data = json.loads(raw_part)
        claims = Claims(uuid.UUID(data["s"]), str(data["a"]), data["d"],
                        datetime.fromtimestamp(int(data["e"]), UTC), str(data["n"]))
    except (ValueError, KeyError, TypeError):
        raise TokenError(400, "the link is malformed: it has no valid token") from None
    if claims.action not in ("approve", "reject"):
        raise TokenError(400, "the link names no known action")
    if now >= claims.expires:
        raise TokenError(410, f"the link expired at {claims.expires.isoformat()}")
    return claims


def legacy_id(token: str) -> str:
    """The receipt key of links used before receipts were keyed on `Claims.token_id`: the hash of
    the token's text. Still looked up, so an upgrade does not make a used link usable again."""
    return hashlib.sha256(token.encode()).hexdigest()


def _strict_b64(text: str) -> bytes | None:
    """The bytes of canonical unpadded base64url `text`, or None: no padding, no other
    characters, and no spare bits set (so exactly one spelling decodes to given bytes)."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        return None
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return raw if _b64(raw) == text else None


def _mac(key: bytes, part: str) -> bytes:
    return hmac.new(key, _CONTEXT + part.encode(), hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
