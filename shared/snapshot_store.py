"""Where snapshots (`shared.snapshot`) are kept: a table in the service's state database, the SQLite
file or the replicas' PostgreSQL (`shared.database.open_database`). One row per view name, state
and offsets written together, so whichever replica wrote last, the row is self-consistent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


class SnapshotStore:
    def __init__(self, where: Path | str) -> None:
        """`where`: the SQLite file, or a postgresql:// URL."""
        self.db = open_database(where, _SCHEMA)

    def load(self, name: str) -> snapshot.Snapshot | None:
        """The snapshot kept under `name`, None if there is none; Unusable if it cannot be read."""
        row = self.db.execute("SELECT offsets, state FROM snapshot WHERE name = ?", (name,)).fetchone()
        return None if row is None else snapshot.decode(row[0], row[1])

    def save(self, name: str, offsets: Mapping[snapshot.Partition, int], state: Mapping[str, Any],
             at: str, skipped: Sequence[tuple[snapshot.Partition, int]] = ()) -> None:
        """Replace the snapshot under `name` (Unusable, nothing written, when it is too large)."""
        encoded_offsets, encoded_state = snapshot.encode(offsets, state, skipped)
        self.db.execute(
            "INSERT INTO snapshot (name, offsets, state, at) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE "
            "SET offsets = excluded.offsets, state = excluded.state, at = excluded.at",
            (name, encoded_offsets, encoded_state, at))

    def close(self) -> None:
        self.db.close()
