"""Durable deployer state, written before the offset is committed: an SQLite file on one machine
(WAL, synchronous=FULL: it survives `kill -9`), or PostgreSQL shared by every replica
(SIGNOFF_DATABASE_URL; shared/database.py), behind the same methods. The tables are the same on
both, so a state file written by an earlier version opens as it is.

- lifecycle: each submission's state machine (lifecycle.py)
- rejected_digest, revoked: what may never be deployed again
- release, production: what was prepared on a target, and what is in production per model
- schedule: canary stages waiting for their bake time, picked up by the scheduler (also after a restart)
- operation: rollback and revocation requests already carried out (redeliveries do nothing)
- sequence: each model's last production sequence number and the event that got it (what
  `shared.production` orders by: see `number`)
- delivery: webhook requests a receiver acknowledged (a restart does not send them again)

Writes happen without an `await` between read and write, so handlers on the one event loop never
interleave inside an update; `atomic()` groups the writes of one step in one transaction. Across
replicas, the steps about one model are serialised by the service's model claim
(`Database.claim`, services/deployer/service.py); the counters (`number`, promotions) also lock
their row, so they never hand out a number twice whoever calls them.

Types valid on both: BIGINT (sequence numbers are at least the clock in milliseconds: beyond a
32-bit INTEGER on PostgreSQL; INTEGER affinity on SQLite) and DOUBLE PRECISION (PostgreSQL's REAL
is 4 bytes: a due time in epoch seconds would be rounded by minutes; REAL affinity on SQLite).
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

from services.deployer import lifecycle
from services.deployer.lifecycle import Lifecycle
from services.deployer.rollout import Health, Release
from shared.database import Database, open_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS lifecycle (
    submission_id TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS unfinished (   -- deployments started, not finished (lifecycle.started_unfinished)
    submission_id TEXT PRIMARY KEY,
    model TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS unfinished_model ON unfinished (model);
CREATE TABLE IF NOT EXISTS migration (   -- one-off fills of new tables from older data, done once
    name TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS rejected_digest (
    sha256 TEXT PRIMARY KEY,
    submission_id TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS release (
    submission_id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS release_model ON release (model);
CREATE TABLE IF NOT EXISTS production (
    model TEXT PRIMARY KEY,
    submission_id TEXT
);
CREATE TABLE IF NOT EXISTS promotion (
    model TEXT PRIMARY KEY,
    last BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS schedule (
    submission_id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    due DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS revoked (
    what TEXT PRIMARY KEY,          -- 'submission:<id>', 'sha256:<hex>', 'version:<model>/<version>'
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS operation (
    event_id TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS delivery (
    idempotency_key TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS sequence (
    model TEXT PRIMARY KEY,
    last BIGINT NOT NULL,
    event_id TEXT NOT NULL
);
"""


class StateStore:
    def __init__(self, where: Path | str) -> None:
        """`where`: the SQLite file, or a postgresql:// URL (the replicas' shared database)."""
        self.db: Database = open_database(where, SCHEMA)
        self._fill_unfinished()

    def _fill_unfinished(self) -> None:
        """Once per database: list in `unfinished` the deployments a state written before that
        table existed left started and not finished (a crash mid-way), so that a revocation and the
        drift check see them before their approval comes back."""
        if self.db.execute("SELECT 1 FROM migration WHERE name = 'unfinished'").fetchone() is not None:
            return
        with self.atomic():
            rows = self.db.execute("SELECT state FROM lifecycle WHERE state LIKE ?",
                                   ('%"status":"deploying"%',)).fetchall()
            for (raw,) in rows:
                state = Lifecycle.model_validate_json(raw)
                if lifecycle.started_unfinished(state) and state.candidate is not None:
                    self.db.execute("INSERT INTO unfinished VALUES (?, ?) ON CONFLICT DO NOTHING",
                                    (str(state.submission_id), state.candidate.model))
            self.db.execute("INSERT INTO migration VALUES ('unfinished') ON CONFLICT DO NOTHING")

    def atomic(self) -> contextlib.AbstractContextManager[None]:
        """One transaction for everything written inside (nested calls join the outer one)."""
        return self.db.transaction()

    # --- lifecycle ------------------------------------------------------------------------------

    def load(self, submission_id: uuid.UUID) -> Lifecycle:
        row = self.db.execute(
            "SELECT state FROM lifecycle WHERE submission_id = ?", (str(submission_id),)
        ).fetchone()
        return Lifecycle.model_validate_json(row[0]) if row else Lifecycle(submission_id=submission_id)

    def save(self, state: Lifecycle, rejected_digest: str | None = None) -> None:
        with self.atomic():  # state and rejected digest together
            self.db.execute(
                "INSERT INTO lifecycle (submission_id, state) VALUES (?, ?) "
                "ON CONFLICT(submission_id) DO UPDATE SET state = excluded.state",
                (str(state.submission_id), state.model_dump_json()),
            )
            if lifecycle.started_unfinished(state):
                assert state.candidate is not None, "a started deployment has its approval"
                self.db.execute("INSERT INTO unfinished VALUES (?, ?) ON CONFLICT DO NOTHING",
                                (str(state.submission_id), state.candidate.model))
            else:
                self.db.execute("DELETE FROM unfinished WHERE submission_id = ?", (str(state.submission_id),))
            if rejected_digest:
                self.db.execute(
                    "INSERT INTO rejected_digest VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    (rejected_digest, str(state.submission_id), state.note),
                )

    def is_rejected(self, sha256: str) -> bool:
        return self.db.execute(
            "SELECT 1 FROM rejected_digest WHERE sha256 = ?", (sha256,)
        ).fetchone() is not None

    # --- releases and production ----------------------------------------------------------------

    def save_release(self, release: Release) -> None:
        self.db.execute(
            "INSERT INTO release VALUES (?, ?, ?) ON CONFLICT(submission_id) DO UPDATE SET record = excluded.record",
            (str(release.submission_id), release.candidate.model, release.model_dump_json()))

    def release(self, submission_id: uuid.UUID | None) -> Release | None:
        if submission_id is None:
            return None
        row = self.db.execute("SELECT record FROM release WHERE submission_id = ?", (str(submission_id),)).fetchone()
        return Release.model_validate_json(row[0]) if row else None

    def releases(self, model: str) -> list[Release]:
        rows = self.db.execute("SELECT record FROM release WHERE model = ?", (model,)).fetchall()
        return [Release.model_validate_json(r[0]) for r in rows]

    def set_health(self, submission_id: uuid.UUID, health: Health) -> None:
        release = self.release(submission_id)
        if release is not None:
            self.save_release(release.model_copy(update={"health": health}))

    def production(self, model: str) -> Release | None:
        row = self.db.execute("SELECT submission_id FROM production WHERE model = ?", (model,)).fetchone()
        return self.release(uuid.UUID(row[0])) if row and row[0] else None

    def production_models(self) -> list[str]:
        """Every model that has been in production (also those a revocation left with none)."""
        return [r[0] for r in self.db.execute("SELECT model FROM production ORDER BY model").fetchall()]

    def promote(self, model: str, submission_id: uuid.UUID | None) -> None:
        """`submission_id` is now in production for `model` (None: nothing is)."""
        with self.atomic():
            if submission_id is not None:
                release = self.release(submission_id)
                assert release is not None, "only a prepared release can be promoted"
                self.save_release(release.model_copy(update={"promoted": self._next_promotion(model)}))
            self.db.execute(
                "INSERT INTO production VALUES (?, ?) "
                "ON CONFLICT(model) DO UPDATE SET submission_id = excluded.submission_id",
                (model, str(submission_id) if submission_id else None))

    def _next_promotion(self, model: str) -> int:
        """The order number of the next promotion of `model`: one row read, not every release
        (a state file from before this counter existed is counted once). The row is locked to the
        end of the caller's transaction, so two callers never get the same number."""
        with self.atomic():
            row = self.db.locked_row("SELECT last FROM promotion WHERE model = ?", (model,))
            if row is None:
                first = max((r.promoted for r in self.releases(model)), default=0)
                self.db.execute("INSERT INTO promotion VALUES (?, ?) ON CONFLICT DO NOTHING", (model, first))
                row = self.db.locked_row("SELECT last FROM promotion WHERE model = ?", (model,))
            last = int(row[0]) + 1
            self.db.execute("UPDATE promotion SET last = ? WHERE model = ?", (last, model))
        return last

    # --- canary schedule --------------------------------------------------------------------------

    def schedule(self, submission_id: uuid.UUID, model: str, due: float) -> None:
        self.db.execute(
            "INSERT INTO schedule VALUES (?, ?, ?) ON CONFLICT(submission_id) DO UPDATE SET due = excluded.due",
            (str(submission_id), model, due))

    def unschedule(self, submission_id: uuid.UUID) -> None:
        self.db.execute("DELETE FROM schedule WHERE submission_id = ?", (str(submission_id),))

    def due(self, now: float) -> list[tuple[uuid.UUID, str]]:
        rows = self.db.execute("SELECT submission_id, model FROM schedule WHERE due <= ? ORDER BY due", (now,))
        return [(uuid.UUID(sid), model) for sid, model in rows.fetchall()]

    def is_due(self, submission_id: uuid.UUID, now: float) -> bool:
        """Whether the stage listed by `due` is due still: read again under the model's claim, since
        another replica may have moved it on (its next stage is due later) in between."""
        return self.db.execute("SELECT 1 FROM schedule WHERE submission_id = ? AND due <= ?",
                               (str(submission_id), now)).fetchone() is not None

    def scheduled(self, model: str) -> list[uuid.UUID]:
        rows = self.db.execute("SELECT submission_id FROM schedule WHERE model = ?", (model,)).fetchall()
        return [uuid.UUID(r[0]) for r in rows]

    # --- the order of production changes ---------------------------------------------------------

    def number(self, event_id: uuid.UUID, model: str, at_least: int = 0) -> int:
        """The sequence number of the event `event_id` that changes `model`'s production: above
        every number given before, and at least `at_least` (the deployer passes its clock in
        milliseconds, so a deployer started on an empty state file still numbers after what it
        emitted before; a clock that jumps only makes the numbers larger). The same event emitted
        again gets the same number while nothing else was numbered since (a redelivery repeating
        its step); after another change of the model it gets a new, larger number, since emitting
        it again moves production again. The model's row is locked from read to write: two
        replicas never give one number to two events. An event numbered already (a retry, or a
        number kept ahead by the step that emits it: `Service.number`) is read without a write."""
        row = self.db.execute("SELECT last, event_id FROM sequence WHERE model = ?", (model,)).fetchone()
        if row is not None and row[1] == str(event_id):
            return int(row[0])
        with self.atomic():
            self.db.execute("INSERT INTO sequence VALUES (?, 0, '') ON CONFLICT DO NOTHING", (model,))
            last, numbered = self.db.locked_row("SELECT last, event_id FROM sequence WHERE model = ?", (model,))
            if numbered == str(event_id):
                return int(last)
            number = max(int(last) + 1, at_least)
            self.db.execute("UPDATE sequence SET last = ?, event_id = ? WHERE model = ?",
                            (number, str(event_id), model))
        return number

    # --- revocations, operations, deliveries ------------------------------------------------------

    def revoke(self, reason: str, submission_id: uuid.UUID, sha256: str | None = None,
               model: str | None = None, version: str | None = None) -> None:
        keys = [f"submission:{submission_id}"]
        keys += [f"sha256:{sha256}"] if sha256 else []
        keys += [f"version:{model}/{version}"] if model and version else []
        with self.atomic():
            for key in keys:
                self.db.execute("INSERT INTO revoked VALUES (?, ?) ON CONFLICT DO NOTHING", (key, reason))

    def revocation(self, submission_id: uuid.UUID, sha256: str, model: str, version: str) -> str | None:
        """Why this submission, its artifact digest or its model version was revoked, if it was."""
        for key, what in ((f"submission:{submission_id}", f"submission {submission_id}"),
                          (f"sha256:{sha256}", f"artifact {sha256}"),
                          (f"version:{model}/{version}", f"{model} {version}")):
            row = self.db.execute("SELECT reason FROM revoked WHERE what = ?", (key,)).fetchone()
            if row:
                return f"{what} was revoked ({row[0]})"
        return None

    def banned(self, releases: list[Release]) -> dict[uuid.UUID, str]:
        """Why each of `releases` may never serve again (its submission, digest or model version was
        revoked), by submission id; the others are not in it."""
        found = {r.submission_id: self.revocation(r.submission_id, r.candidate.artifact_sha256,
                                                  r.candidate.model, r.version) for r in releases}
        return {sid: why for sid, why in found.items() if why is not None}

    def serving_models(self) -> list[str]:
        """Every model with a release in production, a rollout scheduled or a deployment a crash
        stopped half-way: what a new ban may have to take out."""
        rows = self.db.execute("SELECT model FROM production WHERE submission_id IS NOT NULL "
                               "UNION SELECT model FROM schedule UNION SELECT model FROM unfinished "
                               "ORDER BY model").fetchall()
        return [r[0] for r in rows]

    def unfinished(self, model: str) -> list[uuid.UUID]:
        """The model's deployments started and not finished (`lifecycle.started_unfinished`)."""
        rows = self.db.execute("SELECT submission_id FROM unfinished WHERE model = ?", (model,)).fetchall()
        return [uuid.UUID(r[0]) for r in rows]

    def operation_done(self, event_id: uuid.UUID) -> bool:
        return self.db.execute("SELECT 1 FROM operation WHERE event_id = ?", (str(event_id),)).fetchone() is not None

    def finish_operation(self, event_id: uuid.UUID) -> None:
        self.db.execute("INSERT INTO operation VALUES (?) ON CONFLICT DO NOTHING", (str(event_id),))

    def delivered(self, key: str) -> bool:
        return self.db.execute("SELECT 1 FROM delivery WHERE idempotency_key = ?", (key,)).fetchone() is not None

    def record_delivery(self, key: str) -> None:
        self.db.execute("INSERT INTO delivery VALUES (?) ON CONFLICT DO NOTHING", (key,))

    def close(self) -> None:
        self.db.close()
