"""Durable lifecycle state in SQLite: survives restarts, written before the offset is committed.

Writes happen without an `await` between read and write, so handlers on the one event loop never
interleave inside an update.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from services.deployer.lifecycle import Lifecycle

SCHEMA = """
CREATE TABLE IF NOT EXISTS lifecycle (
    submission_id TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected_digest (
    sha256 TEXT PRIMARY KEY,
    submission_id TEXT NOT NULL,
    reason TEXT NOT NULL
);
"""


class StateStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None)  # autocommit; WAL for durability
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def load(self, submission_id: uuid.UUID) -> Lifecycle:
        row = self.db.execute(
            "SELECT state FROM lifecycle WHERE submission_id = ?", (str(submission_id),)
        ).fetchone()
        return Lifecycle.model_validate_json(row[0]) if row else Lifecycle(submission_id=submission_id)

    def save(self, state: Lifecycle, rejected_digest: str | None = None) -> None:
        with self.db:  # one transaction: state and rejected digest together
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO lifecycle (submission_id, state) VALUES (?, ?) "
                "ON CONFLICT(submission_id) DO UPDATE SET state = excluded.state",
                (str(state.submission_id), state.model_dump_json()),
            )
            if rejected_digest:
                self.db.execute(
                    "INSERT OR IGNORE INTO rejected_digest VALUES (?, ?, ?)",
                    (rejected_digest, str(state.submission_id), state.note),
                )

    def is_rejected(self, sha256: str) -> bool:
        return self.db.execute(
            "SELECT 1 FROM rejected_digest WHERE sha256 = ?", (sha256,)
        ).fetchone() is not None

    def close(self) -> None:
        self.db.close()
