"""What the policy remembers, in SQLite: decisions made (so a redelivered checks event decides
nothing twice) and rejected digests (a rejection is final). The model in production is not kept
here: the deployment topics are its record (`shared.production`, rebuilt at every start)."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

from shared.events import ReviewDecided
from shared.rejections import Rejection
from shared.sqlite import open_durable

SCHEMA = """
CREATE TABLE IF NOT EXISTS decided (submission_id TEXT PRIMARY KEY, event_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rejected (
    sha256 TEXT PRIMARY KEY, event_id TEXT NOT NULL, submission_id TEXT NOT NULL,
    decided_by TEXT NOT NULL, at TEXT NOT NULL, reason TEXT NOT NULL
);
DROP TABLE IF EXISTS production; -- kept here before; it went stale after a rollback or revocation
"""


class PolicyStore:
    def __init__(self, path: Path) -> None:
        self.db = open_durable(path, SCHEMA)

    def has_decided(self, submission_id: uuid.UUID) -> bool:
        return self.db.execute("SELECT 1 FROM decided WHERE submission_id = ?",
                               (str(submission_id),)).fetchone() is not None

    def record_decision(self, submission_id: uuid.UUID, event_id: uuid.UUID) -> None:
        self.db.execute("INSERT OR IGNORE INTO decided VALUES (?, ?)", (str(submission_id), str(event_id)))

    def record_rejection(self, decision: ReviewDecided) -> None:
        """The first rejection of a digest is the one later decisions cite."""
        self.db.execute(
            "INSERT OR IGNORE INTO rejected VALUES (?, ?, ?, ?, ?, ?)",
            (decision.candidate.artifact_sha256, str(decision.event_id), str(decision.submission_id),
             decision.decided_by, decision.occurred_at.isoformat(), decision.reason),
        )

    def rejection(self, sha256: str) -> Rejection | None:
        row = self.db.execute("SELECT event_id, submission_id, decided_by, at, reason FROM rejected "
                              "WHERE sha256 = ?", (sha256,)).fetchone()
        if row is None:
            return None
        return Rejection(uuid.UUID(row[0]), uuid.UUID(row[1]), row[2], datetime.fromisoformat(row[3]), row[4])

    def close(self) -> None:
        self.db.close()
