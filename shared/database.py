"""Where a service's state lives: an SQLite file on one machine (the default), or PostgreSQL when
SIGNOFF_DATABASE_URL is set, so that every replica of a service sees the same facts.

One small interface over both, so a store writes its SQL once: `?` placeholders, `INSERT ... ON
CONFLICT`, explicit transactions. What must happen once across replicas is decided by the database
(a unique constraint, or `locked_row`'s row lock held to the end of the transaction), never by a lock
in one process. A transaction opened inside another joins it, so a store's methods can run inside
a caller's locked transaction and commit with it.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import psycopg

from shared.sqlite import open_durable

# Raised when a unique constraint refuses a row, on either backend.
IntegrityError: tuple[type[Exception], ...] = (sqlite3.IntegrityError, psycopg.IntegrityError)

# How long a PostgreSQL statement waits for a row another replica holds before it fails (and the
# request is retried) rather than hanging the service.
LOCK_TIMEOUT = "10s"


class Database:
    """One connection, autocommit unless inside `transaction()`. Not shared across threads."""

    def __init__(self, conn: sqlite3.Connection | psycopg.Connection, dialect: Literal["sqlite", "postgresql"]) -> None:
        self.conn, self.dialect = conn, dialect
        self._depth = 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement with `?` placeholders; returns the cursor (fetchone, fetchall, rowcount)."""
        if self.dialect == "postgresql":
            return self.conn.execute(sql.replace("?", "%s"), params)
        return self.conn.execute(sql, params)

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
        self.conn.execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
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

    def close(self) -> None:
        self.conn.close()


def open_database(where: Path | str, schema: str) -> Database:
    """`where`: an SQLite file (a Path), or a postgresql:// URL. Runs `schema` (idempotent DDL);
    on PostgreSQL under an advisory lock, so replicas starting together do not race to create it."""
    if isinstance(where, Path):
        return Database(open_durable(where, schema, check_same_thread=False), "sqlite")
    if not where.startswith(("postgresql://", "postgres://")):
        raise ValueError("the database URL must start with postgresql:// (SIGNOFF_DATABASE_URL)")
    conn = psycopg.connect(where, autocommit=True)
    conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
    db = Database(conn, "postgresql")
    with db.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(schema.encode()),))
        conn.execute(schema.encode())  # several statements, no parameters: one simple query
    return db
