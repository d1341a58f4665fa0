"""The one way Signoff services open their SQLite state: durable before an offset is committed."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_durable(path: Path, schema: str, check_same_thread: bool = True) -> sqlite3.Connection:
    """Autocommit connection (transactions are explicit), WAL and synchronous=FULL, so a write
    that returned survives `kill -9`; creates the folder and runs `schema` (idempotent DDL)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(schema)
    return db
