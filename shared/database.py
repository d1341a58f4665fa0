"""Where a service's state lives: an SQLite file on one machine (the default), or PostgreSQL when
SIGNOFF_DATABASE_URL is set, so that every replica of a service sees the same facts.

One small interface over both, so a store writes its SQL once: `?` placeholders, `INSERT ... ON
CONFLICT`, explicit transactions. What must happen once across replicas is decided by the database
(a unique constraint, or `locked_row`'s row lock held to the end of the transaction), never by a lock
in one process. A transaction opened inside another joins it, so a store's methods can run inside
a caller's locked transaction and commit with it.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sqlite3
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import psycopg
import structlog

from shared.sqlite import open_durable

log = structlog.get_logger()

# Raised when a unique constraint refuses a row, on either backend.
IntegrityError: tuple[type[Exception], ...] = (sqlite3.IntegrityError, psycopg.IntegrityError)

# How long a PostgreSQL statement waits for a row another replica holds before it fails (and the
# request is retried) rather than hanging the service.
LOCK_TIMEOUT = "10s"
KEEPALIVE = (("tcp_keepalives_idle", 10), ("tcp_keepalives_interval", 5), ("tcp_keepalives_count", 3))


class Database:
    """One connection, autocommit unless inside `transaction()`. Not shared across threads."""

    def __init__(self, conn: sqlite3.Connection | psycopg.Connection, dialect: Literal["sqlite", "postgresql"],
                 namespace: str = "", reconnect: Callable[[], psycopg.Connection] | None = None) -> None:
        self.conn, self.dialect = conn, dialect
        self._reconnect = reconnect
        self._depth = 0
        self._namespace = namespace  # PostgreSQL: the schema, so claims in one schema never block another's
        self._claims: set[str] = set()  # what this connection holds (`claim`)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement with `?` placeholders; returns the cursor (fetchone, fetchall, rowcount)."""
        if self.dialect == "postgresql":
            return self._live().execute(sql.replace("?", "%s"), params)
        return self.conn.execute(sql, params)

    def _live(self) -> Any:
        """The connection, opened again if PostgreSQL dropped it (a restart, a failover, a network
        cut): the statement that met the broken connection failed, and with it the event being
        handled (it is retried); the next one reconnects. Never inside a transaction or while a
        claim is held: what they held went with the old connection, so the step fails instead of
        going on as if it still held it."""
        conn = self.conn
        if isinstance(conn, psycopg.Connection) and (conn.closed or conn.broken) and self._reconnect:
            if self._depth or self._claims:  # emptied only by each holder's own `release`
                raise psycopg.OperationalError("the connection to PostgreSQL was lost in the middle of a step "
                                               "(its locks with it): the step is retried")
            log.warning("database_reconnecting")
            self.conn = conn = self._reconnect()
        return conn

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing. SQLite takes the write lock at once (BEGIN IMMEDIATE: one writer, so a
        read-then-write cannot interleave with another's); PostgreSQL locks rows as they are
        written or `locked_row` reads them. Nested: joins the outer transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self.conn.execute("ROLLBACK")
            raise
        self._depth = 0
        self.conn.execute("COMMIT")

    def locked_row(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """SELECT one row and hold it until the transaction ends: another replica reading it the
        same way waits for this one's commit and then sees what it wrote (SQLite: the write lock
        BEGIN IMMEDIATE took already covers it)."""
        assert self._depth, "locked_row holds a row only inside transaction()"
        suffix = " FOR UPDATE" if self.dialect == "postgresql" else ""
        return self.execute(sql + suffix, params).fetchone()

    def claim(self, key: str) -> bool:
        """Take `key` unless someone holds it: False when another replica (another connection) or
        another task of this process holds it. For work that must be done by one replica at a time
        and must not be lost if that replica dies mid-way.

        On PostgreSQL a session advisory lock: the server drops it when the holder's connection
        ends, so a replica killed mid-step frees what it held at once (no lease to expire, no
        clock), and the redelivered step is taken up by another replica. It outlives transactions
        (nothing is held open across an `await`). SQLite is one replica on one machine: the claim
        is this process's only. (Not through a transaction-pooling proxy: session locks need the
        session.)"""
        if key in self._claims:
            return False
        if self.dialect == "postgresql":
            row = self.execute("SELECT pg_try_advisory_lock(?)", (self._lock_id(key),)).fetchone()
            if not (row and row[0]):
                return False
        self._claims.add(key)
        return True

    def release(self, key: str) -> None:
        """Give `key` back (nothing when not held). A broken connection has dropped it already."""
        if key not in self._claims:
            return
        self._claims.discard(key)
        if isinstance(self.conn, psycopg.Connection) and not self.conn.closed:
            try:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (self._lock_id(key),))
            except psycopg.OperationalError:
                pass  # the connection is gone, and with it the lock

    @asynccontextmanager
    async def held(self, key: str, poll: float = 0.01, max_poll: float = 0.25) -> AsyncIterator[None]:
        """Hold `key` for the block, waiting first while another holds it (the event loop keeps
        serving meanwhile). The wait ends when the holder finishes its step or its connection
        ends, whichever comes first."""
        while not self.claim(key):
            await asyncio.sleep(poll)
            poll = min(poll * 2, max_poll)
        try:
            yield
        finally:
            self.release(key)

    def _lock_id(self, key: str) -> int:
        digest = hashlib.blake2b(f"{self._namespace}\0{key}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)  # PostgreSQL's advisory keys are bigint

    def close(self) -> None:
        self.conn.close()


def open_database(where: Path | str, schema: str) -> Database:
    """`where`: an SQLite file (a Path), or a postgresql:// URL. Runs `schema` (idempotent DDL);
    on PostgreSQL under an advisory lock, so replicas starting together do not race to create it."""
    if isinstance(where, Path):
        return Database(open_durable(where, schema, check_same_thread=False), "sqlite")
    if not where.startswith(("postgresql://", "postgres://")):
        raise ValueError("the database URL must start with postgresql:// (SIGNOFF_DATABASE_URL)")
    url = where
    conn = _connect(url)
    (schema_name,) = conn.execute("SELECT current_schema()").fetchone() or ("",)
    db = Database(conn, "postgresql", namespace=schema_name or "", reconnect=lambda: _connect(url))
    with db.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(schema.encode()),))
        conn.execute(schema.encode())  # several statements, no parameters: one simple query
    return db


def _connect(url: str) -> psycopg.Connection:
    """A session with the settings every statement relies on. The client's keepalives (and
    tcp_user_timeout) end a statement blocked on a cut network in about 25 s instead of the
    kernel's quarter of an hour; the error never repeats the URL (its password)."""
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10, keepalives=1, keepalives_idle=10,
                               keepalives_interval=5, keepalives_count=3, tcp_user_timeout=25_000)
    except psycopg.Error as exc:
        raise psycopg.OperationalError(f"cannot connect to PostgreSQL: {redacted(str(exc), url)} (check "
                                       "SIGNOFF_DATABASE_URL: host, port, user, database, password)") from None
    conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
    # A replica whose machine vanished (no FIN sent) is found dead by the server in about 25 s
    # rather than the system's 2 h, and what it held (`claim`) is free again (no-op on a socket file).
    for setting, value in KEEPALIVE:
        conn.execute(f"SET {setting} = {value}")
    return conn


def redacted(text: str, url: str) -> str:
    """`text` without the URL's password (libpq's messages can quote the part they could not
    parse, password included), however it is spelt there."""
    match = re.match(r"^[a-z]+://[^:/@]*:([^@]*)@", url)
    secrets_in_url = [match.group(1), unquote(match.group(1))] if match and match.group(1) else []
    for secret in secrets_in_url:
        text = text.replace(secret, "***")
    return text
