"""Where the console's sessions are kept: one table in a database every replica opens
(shared/database.py: PostgreSQL when SIGNOFF_DATABASE_URL is set, else an SQLite file, else an
SQLite database in this process's memory), so whichever replica a request lands on finds the session.

A row holds what sessions.py sealed, never anything usable on its own: the key is the SHA-256 of
the session id (the cookie), and the person, roles, CSRF token and credential are encrypted under
the console's session key (sessions.py). The `expires` column is a plain copy for the store to
enforce: a read finds nothing past it, and sign-in sweeps what is past it.

The calls are synchronous and short (one indexed statement each), made from the event loop: the
console serves people, not traffic, and a thread per call would cost more than the statement. A
PostgreSQL connection that broke (a server restart) is opened again once, on the next call.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psycopg

from shared.database import Database, open_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS console_sessions (
    id_hash TEXT PRIMARY KEY,
    expires BIGINT NOT NULL,
    created BIGINT NOT NULL,
    sealed TEXT NOT NULL,
    note_about TEXT,
    note_text TEXT
);
CREATE INDEX IF NOT EXISTS console_sessions_expires ON console_sessions (expires);
"""
MEMORY = Path(":memory:")  # an SQLite database of this process only: one replica
KEY_BYTES = 32
_T = TypeVar("_T")


class SessionStore:
    """The rows of console_sessions. `expires` and `now` are microseconds since the epoch."""

    def __init__(self, where: Path | str = MEMORY) -> None:
        self._where = where
        self._db: Database | None = None  # opened at first use: create_app opens nothing

    @property
    def shared(self) -> bool:
        """Whether other processes can see these sessions (anything but this process's memory)."""
        return self._where != MEMORY

    def put(self, id_hash: str, expires: int, sealed: str) -> None:
        created = time.time_ns()  # orders sessions of one expiry for `trim`: the first made goes first
        self._run(lambda db: db.execute("INSERT INTO console_sessions (id_hash, expires, created, sealed) "
                                        "VALUES (?, ?, ?, ?)", (id_hash, expires, created, sealed)))

    def get(self, id_hash: str, now: int) -> str | None:
        """The sealed session of this id, if it has not expired."""
        row = self._run(lambda db: db.execute(
            "SELECT sealed FROM console_sessions WHERE id_hash = ? AND expires > ?", (id_hash, now)).fetchone())
        return row[0] if row else None

    def delete(self, id_hash: str) -> None:
        self._run(lambda db: db.execute("DELETE FROM console_sessions WHERE id_hash = ?", (id_hash,)))

    def sweep(self, now: int) -> None:
        self._run(lambda db: db.execute("DELETE FROM console_sessions WHERE expires <= ?", (now,)))

    def trim(self, keep: int) -> None:
        """Beyond `keep` rows, the ones expiring first go (every session lives as long: the oldest)."""
        def trim_in(db: Database) -> None:
            count = db.execute("SELECT COUNT(*) FROM console_sessions").fetchone()[0]
            if count > keep:
                db.execute("DELETE FROM console_sessions WHERE id_hash IN (SELECT id_hash FROM console_sessions "
                           "ORDER BY expires, created LIMIT ?)", (count - keep,))
        self._run(trim_in)

    def note(self, id_hash: str, about: str, text: str) -> None:
        self._run(lambda db: db.execute(
            "UPDATE console_sessions SET note_about = ?, note_text = ? WHERE id_hash = ?", (about, text, id_hash)))

    def take_note(self, id_hash: str, about: str) -> str | None:
        """The note about `about`, once: the UPDATE that clears it is the one that returns it, so
        two replicas taking it at once cannot both show it."""
        def take(db: Database) -> str | None:
            with db.transaction():
                row = db.execute("SELECT note_text FROM console_sessions WHERE id_hash = ? AND note_about = ?",
                                 (id_hash, about)).fetchone()
                if row is None:
                    return None
                cleared = db.execute("UPDATE console_sessions SET note_about = NULL, note_text = NULL "
                                     "WHERE id_hash = ? AND note_about = ?", (id_hash, about)).rowcount
                return row[0] if cleared else None
        return self._run(take)

    def count(self) -> int:
        return int(self._run(lambda db: db.execute("SELECT COUNT(*) FROM console_sessions").fetchone()[0]))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _run(self, statement: Callable[[Database], _T]) -> _T:
        try:
            return statement(self._open())
        except psycopg.OperationalError:  # the server restarted or the connection dropped: once more
            self.close()
            return statement(self._open())

    def _open(self) -> Database:
        if self._db is None:
            self._db = open_database(self._where, SCHEMA)
        return self._db


def where_sessions_live(database_url: str | None, sessions_db: Path | None) -> Path | str:
    """PostgreSQL when configured (every replica anywhere), else the SQLite file (replicas on one
    machine), else this process's memory (one replica)."""
    return database_url or sessions_db or MEMORY


def read_session_key(path: Path) -> bytes:
    """The console's session key from CONSOLE_SESSION_KEY_FILE: urlsafe base64 of 32 random bytes
    on the first line (padded or not). Errors name the variable, never the content."""
    try:
        raw = path.read_bytes()[:1024]
    except OSError as exc:
        raise ValueError(f"CONSOLE_SESSION_KEY_FILE: cannot read {path}: {exc.strerror}") from None
    lines = raw.decode(errors="replace").splitlines()
    text = lines[0].strip() if lines else ""
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise ValueError(f"CONSOLE_SESSION_KEY_FILE: {path} must hold urlsafe base64 of {KEY_BYTES} random bytes "
                         "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return key

