"""What the policy remembers: decisions made (so a redelivered checks event decides nothing twice)
and rejected digests (a rejection is final), in an SQLite file on one machine, or in PostgreSQL
shared by every replica (SIGNOFF_DATABASE_URL; shared/database.py), behind the same methods. The
model in production is not kept here: the deployment topics are its record (`shared.production`,
rebuilt at every start)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

from shared.database import Database, open_database
from shared.events import ReviewDecided
from shared.rejections import Rejection

SCHEMA = """
CREATE TABLE IF NOT EXISTS decided (submission_id TEXT PRIMARY KEY, event_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rejected (
    sha256 TEXT PRIMARY KEY, event_id TEXT NOT NULL, submission_id TEXT NOT NULL,
    decided_by TEXT NOT NULL, at TEXT NOT NULL, reason TEXT NOT NULL
);
"""
# The upgrade of a state file written by an earlier version: the policy kept a copy of production
# there, which went stale after a rollback or revocation. SQLite only: on PostgreSQL the policy
# never had it, and a `production` table found there is another service's (the deployer's, if
# both were given one schema), so dropping it there would erase production and revocations.
_SQLITE_UPGRADE = "DROP TABLE IF EXISTS production"


class PolicyStore:
    def __init__(self, where: Path | str) -> None:
        """`where`: the SQLite file, or a postgresql:// URL (the replicas' shared database)."""
        self.db: Database = open_database(where, SCHEMA)
        if self.db.dialect == "sqlite":  # files written by earlier versions; PostgreSQL starts new
            self.db.execute(_SQLITE_UPGRADE)

    def has_decided(self, submission_id: uuid.UUID) -> bool:
        return self.db.execute("SELECT 1 FROM decided WHERE submission_id = ?",
                               (str(submission_id),)).fetchone() is not None

    @asynccontextmanager
    async def deciding(self, submission_id: uuid.UUID) -> AsyncIterator[bool]:
        """The right to decide `submission_id`, for the block: yields True when it is this
        replica's to decide (decide, emit, `record_decision`, all inside the block), False when it
        was decided meanwhile (nothing to do). Another replica handling the same checks event
        waits here until this one's block ends, then finds it decided.

        Why a claim held for the block (`Database.claim`: a PostgreSQL session lock) rather than
        claiming with the `decided` row before emitting: a row written before the emit would say
        "decided" for a decision that a crash then never emitted, and the redelivery would skip it
        (a lost decision); written after, as it is, two replicas could both emit. The claim is held
        by the connection: if this replica dies between claim and emit, the server drops it, and
        the redelivered event is decided by whichever replica takes it (at-least-once kept; a
        death between emit and record re-emits the same event id, as before replicas)."""
        async with self.db.held(f"policy.decide:{submission_id}"):
            yield not self.has_decided(submission_id)

    def record_decision(self, submission_id: uuid.UUID, event_id: uuid.UUID) -> bool:
        """False when a decision was recorded before (the first one stays)."""
        cur = self.db.execute("INSERT INTO decided VALUES (?, ?) ON CONFLICT DO NOTHING",
                              (str(submission_id), str(event_id)))
        return bool(cur.rowcount == 1)

    def record_rejection(self, decision: ReviewDecided) -> None:
        """The first rejection of a digest is the one later decisions cite."""
        self.db.execute(
            "INSERT INTO rejected VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
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
