"""What the policy remembers, in SQLite: decisions made (so a redelivered checks event decides
nothing twice), rejected digests (a rejection is final), and the model in production per name."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import datetime
from pathlib import Path

from services.policy.rules import Rejection
from shared.events import DeploymentSucceeded, Production, ReviewDecided

SCHEMA = """
CREATE TABLE IF NOT EXISTS decided (submission_id TEXT PRIMARY KEY, event_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rejected (
    sha256 TEXT PRIMARY KEY, event_id TEXT NOT NULL, submission_id TEXT NOT NULL,
    decided_by TEXT NOT NULL, at TEXT NOT NULL, reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS production (model TEXT PRIMARY KEY, production TEXT NOT NULL, at TEXT NOT NULL);
"""


class PolicyStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

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

    def record_production(self, event: DeploymentSucceeded) -> None:
        """Latest deployment wins; an older one redelivered late does not overwrite a newer one."""
        production = Production(candidate=event.candidate, metrics=event.metrics,
                                submission_id=event.submission_id)
        self.db.execute(
            "INSERT INTO production VALUES (?, ?, ?) ON CONFLICT(model) DO UPDATE SET "
            "production = excluded.production, at = excluded.at WHERE excluded.at >= production.at",
            (event.candidate.model, production.model_dump_json(), event.occurred_at.isoformat()),
        )

    def production(self, model: str) -> Production | None:
        row = self.db.execute("SELECT production FROM production WHERE model = ?", (model,)).fetchone()
        return Production.model_validate_json(row[0]) if row else None

    def close(self) -> None:
        self.db.close()
