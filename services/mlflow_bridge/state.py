"""What the bridge remembers (SQLite, durable before it answers): the delivery ids it accepted
(a replay is refused), the versions it handled (submitted, or refused for good), and the poll
cursor (the creation time up to which every version was handled)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from shared.sqlite import open_durable

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (delivery_id TEXT PRIMARY KEY, received_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL, version TEXT NOT NULL, outcome TEXT NOT NULL, handled_at REAL NOT NULL,
    PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS cursor (id INTEGER PRIMARY KEY CHECK (id = 1), created_ms INTEGER NOT NULL);
"""


class BridgeState:
    """One connection, shared by the webhook route and the poller (each call takes the lock)."""

    def __init__(self, path: Path) -> None:
        self._db = open_durable(path, SCHEMA, check_same_thread=False)
        self._lock = threading.Lock()

    def claim(self, delivery_id: str, keep_seconds: float, now: float | None = None) -> bool:
        """Record a delivery id; False when it was seen before (a replay). Ids older than
        `keep_seconds` are forgotten: a delivery that old is refused as stale anyway."""
        now = time.time() if now is None else now
        with self._lock:
            self._db.execute("DELETE FROM deliveries WHERE received_at < ?", (now - keep_seconds,))
            cursor = self._db.execute("INSERT OR IGNORE INTO deliveries VALUES (?, ?)", (delivery_id, now))
            return cursor.rowcount == 1

    def handled(self, name: str, version: str) -> str | None:
        """How the version ended ('submitted <id>' or 'refused: ...'), None when not yet."""
        with self._lock:
            row = self._db.execute("SELECT outcome FROM versions WHERE name = ? AND version = ?",
                                   (name, version)).fetchone()
        return row[0] if row else None

    def record(self, name: str, version: str, outcome: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO versions VALUES (?, ?, ?, ?)",
                             (name, version, outcome[:2000], time.time()))

    def cursor(self, start_ms: int) -> int:
        """The poll cursor; the first time, `start_ms` is stored (versions created before the
        bridge first started are not submitted: submit those with `signoff submit --mlflow`)."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO cursor VALUES (1, ?)", (start_ms,))
            return int(self._db.execute("SELECT created_ms FROM cursor WHERE id = 1").fetchone()[0])

    def advance(self, created_ms: int) -> None:
        with self._lock:
            self._db.execute("UPDATE cursor SET created_ms = MAX(created_ms, ?) WHERE id = 1", (created_ms,))

    def close(self) -> None:
        self._db.close()
