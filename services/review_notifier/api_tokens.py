"""Per-person API tokens, for teams without an identity provider.

    token = "so_" <id> "_" <secret>      id: 12 hex digits; secret: 32 random bytes, base64url

`signoff token create USER` writes one record to the token file and prints the token once; the
file keeps only the secret's SHA-256 (a 256-bit random secret needs no slow hash: nothing to
guess). The file is JSON, mode 600, replaced atomically under a lock, and the service re-reads
it whenever it changed (its size, mtime or inode), so the CLI and every replica share it with
no network call and a revocation holds at the next request. Whoever may write the file may
issue tokens: it lives with the service's state, not where reviewers can reach it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.values import UtcDatetime

# operator: the web console's dead-letter re-drive (services/console); it casts no vote.
Role = Literal["approver", "break-glass", "operator"]
ROLES: tuple[str, ...] = ("approver", "break-glass", "operator")
MAX_TTL = timedelta(days=366)
MAX_FILE_BYTES = 4 * 2**20
_TOKEN = re.compile(r"so_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


class TokenError(Exception):
    """Why a token (or the token file) is refused; never contains a secret."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class TokenRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[0-9a-f]{12}$")
    user: str = Field(min_length=1, max_length=128, description="Normalised, a known user when created")
    role: Role
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the secret, hex")
    created: UtcDatetime
    expires: UtcDatetime
    revoked: UtcDatetime | None = None


class TokenFileData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    tokens: list[TokenRecord] = Field(default_factory=list, max_length=10_000)


def issue(user: str, role: str, ttl: timedelta, now: datetime) -> tuple[str, TokenRecord]:
    """A new token and the record that proves it; `user` must already be a resolved identity."""
    if role not in ROLES:
        raise TokenError(f"role {role!r} does not exist; use one of: {', '.join(ROLES)}", 422)
    if not timedelta(0) < ttl <= MAX_TTL:
        raise TokenError(f"ttl must be more than 0 and at most {MAX_TTL.days}d", 422)
    token_id, secret = secrets.token_hex(6), base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    record = TokenRecord(id=token_id, user=user, role=role, sha256=_digest(secret), created=now, expires=now + ttl)
    return f"so_{token_id}_{secret}", record


def looks_like_token(credential: str) -> bool:
    return credential.startswith("so_")


def check(record: TokenRecord | None, token: str, now: datetime) -> TokenRecord:
    """The record `token` proves; TokenError (401) when unknown, wrong, revoked or expired."""
    match = _TOKEN.fullmatch(token)
    if match is None:
        raise TokenError("the API token is malformed (expected so_<id>_<secret>)")
    # One answer for an unknown id and a wrong secret: which ids exist is not told.
    expected = record.sha256 if record is not None and record.id == match[1] else "0" * 64
    if not hmac.compare_digest(expected, _digest(match[2])) or record is None:
        raise TokenError("the API token is not valid (not issued here, or altered)")
    if record.revoked is not None:
        raise TokenError(f"the API token {record.id} was revoked at {record.revoked.isoformat()}")
    if now >= record.expires:
        raise TokenError(f"the API token {record.id} expired at {record.expires.isoformat()}; "
                         "ask for a new one (signoff token create)")
    return record


def token_id(token: str) -> str | None:
    match = _TOKEN.fullmatch(token)
    return match[1] if match else None


class TokenFile:
    """The token file: read again whenever it changed; written whole, atomically, under a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._records: dict[str, TokenRecord] = {}

    def get(self, token_id: str) -> TokenRecord | None:
        self._refresh()
        return self._records.get(token_id)

    def records(self) -> list[TokenRecord]:
        self._refresh()
        return list(self._records.values())

    def verify(self, token: str, now: datetime) -> TokenRecord:
        return check(self.get(token_id(token) or ""), token, now)

    def add(self, record: TokenRecord) -> None:
        with self._locked() as data:
            data.tokens.append(record)

    def revoke(self, token_id: str, now: datetime) -> TokenRecord:
        with self._locked() as data:
            for i, record in enumerate(data.tokens):
                if record.id == token_id:
                    if record.revoked is None:
                        data.tokens[i] = record = record.model_copy(update={"revoked": now})
                    return record
        raise TokenError(f"no token {token_id!r} in {self.path}; `signoff token list` shows them", 404)

    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._seen, self._records = None, {}
            return
        signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if signature != self._seen:
            self._records = {r.id: r for r in _read(self.path).tokens}
            self._seen = signature

    @contextlib.contextmanager
    def _locked(self) -> Iterator[TokenFileData]:
        """Read, change, then replace the file atomically (mode 600), one writer at a time."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = _read(self.path) if self.path.exists() else TokenFileData()
            yield data
            _write(self.path, data)
        finally:
            os.close(lock)  # releases the lock


def _read(path: Path) -> TokenFileData:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise TokenError(f"cannot read the token file {path}: {exc.strerror}", 503) from None
    if len(raw) > MAX_FILE_BYTES:
        raise TokenError(f"the token file {path} is larger than {MAX_FILE_BYTES} bytes", 503)
    try:
        return TokenFileData.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        raise TokenError(f"the token file {path} is not valid ({type(exc).__name__}); "
                         "restore it or create tokens again", 503) from None


def _write(path: Path, data: TokenFileData) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp creates it mode 600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(data.model_dump_json(indent=2))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
