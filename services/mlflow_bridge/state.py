"""What the bridge remembers (SQLite, durable before it answers): the delivery ids it accepted
(a replay is refused), the versions it handled (submitted, or refused for good), the versions to
try again (a failure that may pass, with how often and since when the version itself failed), and
the poll cursor (the creation time up to which every version was handled or is to be tried again)."""

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
CREATE TABLE IF NOT EXISTS retries (
    name TEXT NOT NULL, version TEXT NOT NULL, attempts INTEGER NOT NULL, first_failed_at REAL,
    why TEXT NOT NULL, PRIMARY KEY (name, version));
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
        """The version is handled: submitted or refused for good (and no longer to be tried again)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("INSERT OR REPLACE INTO versions VALUES (?, ?, ?, ?)",
                                 (name, version, outcome[:2000], time.time()))
                self._db.execute("DELETE FROM retries WHERE name = ? AND version = ?", (name, version))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def failed(self, name: str, version: str, why: str, *, counted: bool,
               now: float | None = None) -> tuple[int, float | None]:
        """The version is to be tried again; a `counted` failure is the version's own (reading it,
        digesting its files), not Kafka's. Returns its counted attempts and when the first was."""
        now = time.time() if now is None else now
        step = 1 if counted else 0
        with self._lock:
            self._db.execute(
                "INSERT INTO retries VALUES (?, ?, ?, ?, ?) ON CONFLICT (name, version) DO UPDATE SET "
                "attempts = attempts + excluded.attempts, "
                "first_failed_at = COALESCE(first_failed_at, excluded.first_failed_at), why = excluded.why",
                (name, version, step, now if counted else None, why[:2000]))
            row = self._db.execute("SELECT attempts, first_failed_at FROM retries WHERE name = ? AND version = ?",
                                   (name, version)).fetchone()
        return int(row[0]), row[1]

    def retrying(self, name: str, version: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM retries WHERE name = ? AND version = ?",
                                    (name, version)).fetchone() is not None

    def retries(self) -> list[tuple[str, str]]:
        """The versions to try again, those that failed least often first."""
        with self._lock:
            rows = self._db.execute("SELECT name, version FROM retries ORDER BY attempts, name, version").fetchall()
        return [(str(name), str(version)) for name, version in rows]

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
