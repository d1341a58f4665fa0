"""Where snapshots (`shared.snapshot`) are kept: a table in the service's state database, the SQLite
file or the replicas' PostgreSQL (`shared.database.open_database`). One row per view name, state
and offsets written together, so whichever replica wrote last, the row is self-consistent.

A row can be encoded on the event loop (`encode`, while the view cannot change) and written from
another thread (`write`, so the loop does not wait for the database): the connection is opened for
any thread (shared.database: SQLite with check_same_thread=False, a psycopg connection), and a lock
lets one statement at a time use it. A row encoded before another is never written after it."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared import snapshot
from shared.database import open_database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshot (
    name TEXT PRIMARY KEY,
    offsets TEXT NOT NULL,
    state TEXT NOT NULL,
    at TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Row:
    """A snapshot encoded (`SnapshotStore.encode`), to be written; `number` orders rows by encoding."""

    name: str
    offsets: str
    state: str
    at: str
    number: int


class SnapshotStore:
    def __init__(self, where: Path | str) -> None:
        """`where`: the SQLite file, or a postgresql:// URL."""
        self.db = open_database(where, _SCHEMA)
        self._lock = threading.Lock()  # one statement at a time on the connection, whichever thread
        self._numbers = itertools.count()
        self._written: dict[str, int] = {}  # name -> the number of the last row written
        self._closed = False

    def load(self, name: str) -> snapshot.Snapshot | None:
        """The snapshot kept under `name`, None if there is none; Unusable if it cannot be read."""
        with self._lock:
            row = self.db.execute("SELECT offsets, state FROM snapshot WHERE name = ?", (name,)).fetchone()
        return None if row is None else snapshot.decode(row[0], row[1])

    def save(self, name: str, offsets: Mapping[snapshot.Partition, int], state: Mapping[str, Any],
             at: str, skipped: Sequence[tuple[snapshot.Partition, int]] = ()) -> None:
        """Replace the snapshot under `name` (Unusable, nothing written, when it is too large)."""
        self.write(self.encode(name, offsets, state, at, skipped))

    def encode(self, name: str, offsets: Mapping[snapshot.Partition, int], state: Mapping[str, Any],
               at: str, skipped: Sequence[tuple[snapshot.Partition, int]] = ()) -> Row:
        """The row to write (Unusable when it is too large); numbered after every row encoded before."""
        encoded_offsets, encoded_state = snapshot.encode(offsets, state, skipped)
        return Row(name, encoded_offsets, encoded_state, at, next(self._numbers))

    def write(self, row: Row) -> bool:
        """Replace the snapshot under the row's name, from any thread; False, nothing written, when
        a row encoded later was written already (or the store is closed)."""
        with self._lock:
            if self._closed or row.number < self._written.get(row.name, -1):
                return False
            self.db.execute(
                "INSERT INTO snapshot (name, offsets, state, at) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE "
                "SET offsets = excluded.offsets, state = excluded.state, at = excluded.at",
                (row.name, row.offsets, row.state, row.at))
            self._written[row.name] = row.number
            return True

    def close(self) -> None:
        """After any write under way (a later one writes nothing)."""
        with self._lock:
            self._closed = True
            self.db.close()
