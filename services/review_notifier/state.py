"""Reviews, votes, deadlines, receipts and what each channel sent, in SQLite (WAL,
synchronous=FULL: it survives a `kill -9`), or in PostgreSQL shared by every replica
(SIGNOFF_DATABASE_URL; shared/database.py), behind the same methods.

A vote is saved together with its receipt (what carried it: an email token's hash, a Slack
request's signature) in one transaction: either both are recorded or neither, so a retried
request is refused as already counted only when it really counted. The receipt's primary key makes
a request count once whichever replica it reaches; `locked` holds the review's row from read to
save, so two replicas counting two votes at once both count (neither overwrites the other).
"""

from __future__ import annotations

import contextlib
import json
import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import structlog
from pydantic import ValidationError

from services.review_notifier.channels.base import Receipt
from services.review_notifier.reviews import Review
from shared.database import Database, open_database
from shared.events import ReviewRequested

log = structlog.get_logger()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS review (submission_id TEXT PRIMARY KEY, review TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pending (submission_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS receipt (channel TEXT NOT NULL, key TEXT NOT NULL, submission_id TEXT NOT NULL,
                                    at TEXT NOT NULL, PRIMARY KEY (channel, key));
CREATE TABLE IF NOT EXISTS notice (submission_id TEXT NOT NULL, kind TEXT NOT NULL, ref TEXT NOT NULL,
                                   PRIMARY KEY (submission_id, kind));
"""

# The key of a notice row that is a claim to send it (its value: when the claim lapses, epoch seconds).
_CLAIM = "claimed_until"

# Receipts kept per channel before there was one receipt table: (old table, channel, key, time).
_OLD_RECEIPTS = (("used_token", "email", "token_id", "used_at"), ("slack_request", "slack", "signature", "at"))


class ReviewStore:
    def __init__(self, where: Path | str) -> None:
        """`where`: the SQLite file, or a postgresql:// URL (the replicas' shared database)."""
        self.db: Database = open_database(where, _SCHEMA)
        # What channels sent, on a connection of its own on PostgreSQL: a notifier task running
        # while a vote's transaction waits for its emit must not join that transaction (and be
        # rolled back with it, or abort it). SQLite is one process, whose one writer is this
        # connection (a second one would wait on the vote's write lock, on the same event loop).
        self.notices_db: Database = open_database(where, _SCHEMA) if isinstance(where, str) else self.db
        if self.db.dialect == "sqlite":  # files written by earlier versions; PostgreSQL starts new
            with self._tx():
                self._upgrade()

    def open(self, request: ReviewRequested) -> bool:
        """Record a new review; False when it was already known (a redelivered request)."""
        with self._tx():
            cur = self.db.execute("INSERT INTO review VALUES (?, ?) ON CONFLICT DO NOTHING",
                                  (str(request.submission_id), Review(request=request).model_dump_json()))
            if cur.rowcount == 1:
                self.db.execute("INSERT INTO pending VALUES (?) ON CONFLICT DO NOTHING",
                                (str(request.submission_id),))
        return cur.rowcount == 1

    def get(self, submission_id: uuid.UUID) -> Review | None:
        row = self.db.execute("SELECT submission_id, review FROM review WHERE submission_id = ?",
                              (str(submission_id),)).fetchone()
        return _parse(*row) if row else None

    @contextmanager
    def locked(self, submission_id: uuid.UUID) -> Iterator[Review | None]:
        """A transaction holding the review until it ends: read it, decide, `save` (which joins
        this transaction), and it commits on leaving the block; an exception rolls all of it back.
        Another replica's `locked` of the same review waits until then and reads what was saved."""
        with self._tx():
            row = self.db.locked_row("SELECT submission_id, review FROM review WHERE submission_id = ?",
                                     (str(submission_id),))
            yield _parse(*row) if row else None

    def pending(self) -> list[Review]:
        """Every review not yet decided (what the deadline loop looks at)."""
        rows = self.db.execute("SELECT submission_id, r.review FROM review r JOIN pending p USING (submission_id)")
        return [review for row in rows.fetchall() if (review := _parse(*row)) is not None]

    def save(self, review: Review, receipt: Receipt | None = None, at: datetime | None = None) -> None:
        """Save the review and, in the same transaction, the receipt of the request that voted
        (an IntegrityError, and nothing saved, when that receipt was seen before)."""
        sid = str(review.submission_id)
        with self._tx():
            self.db.execute("UPDATE review SET review = ? WHERE submission_id = ?", (review.model_dump_json(), sid))
            if review.decision is not None:
                self.db.execute("DELETE FROM pending WHERE submission_id = ?", (sid,))
            if receipt is not None:
                self.db.execute("INSERT INTO receipt VALUES (?, ?, ?, ?)",
                                (receipt.channel, receipt.key, sid, at.isoformat() if at else ""))

    def receipt_seen(self, receipt: Receipt) -> bool:
        return self.db.execute("SELECT 1 FROM receipt WHERE channel = ? AND key = ?",
                               (receipt.channel, receipt.key)).fetchone() is not None

    def notice(self, submission_id: uuid.UUID, kind: str) -> dict | None:
        """What a channel recorded as sent for a review, under `<channel>:<what>`: 'slack:requested'
        and 'slack:escalated' hold the posted message's channel and ts ({} through a webhook);
        'email:<stage>:<approver>' ({}) says that approver was mailed at that stage. A claim
        (`claim_notice`) is not a notice: None until the sender records what it sent."""
        row = self.notices_db.execute("SELECT ref FROM notice WHERE submission_id = ? AND kind = ?",
                                      (str(submission_id), kind)).fetchone()
        ref = json.loads(row[0]) if row else None
        return None if ref is None or _CLAIM in ref else ref

    def claim_notice(self, submission_id: uuid.UUID, kind: str, now: float, lease: float) -> float | None:
        """Take the right to send `kind` for this review: one replica gets it, until it records
        the notice, releases the claim (the send failed), or `lease` seconds pass (it died while
        sending: another replica may then send, so a notice is sent at least once, and twice only
        when a replica dies between sending and recording). Returns when the claim lapses (what
        `release_notice` takes), None when sent or claimed already."""
        claim = (str(submission_id), kind, json.dumps({_CLAIM: now + lease}))
        with self.notices_db.transaction():  # the primary key decides between replicas inserting at once
            inserted = self.notices_db.execute("INSERT INTO notice VALUES (?, ?, ?) ON CONFLICT DO NOTHING", claim)
            if inserted.rowcount == 1:
                return now + lease
            row = self.notices_db.locked_row("SELECT ref FROM notice WHERE submission_id = ? AND kind = ?", claim[:2])
            if row is None or json.loads(row[0]).get(_CLAIM, math.inf) > now:
                return None  # recorded (no claim in it), or claimed and not lapsed
            self.notices_db.execute("UPDATE notice SET ref = ? WHERE submission_id = ? AND kind = ?",
                                    (claim[2], *claim[:2]))
        return now + lease

    def release_notice(self, submission_id: uuid.UUID, kind: str, until: float) -> None:
        """Give back the claim that lapses at `until` (the send failed): the next attempt, on any
        replica, may claim it. A claim another replica took since (this one's had lapsed) stays."""
        self.notices_db.execute("DELETE FROM notice WHERE submission_id = ? AND kind = ? AND ref = ?",
                                (str(submission_id), kind, json.dumps({_CLAIM: until})))

    def record_notice(self, submission_id: uuid.UUID, kind: str, ref: dict) -> None:
        self.notices_db.execute("INSERT INTO notice VALUES (?, ?, ?) ON CONFLICT (submission_id, kind) "
                                "DO UPDATE SET ref = excluded.ref", (str(submission_id), kind, json.dumps(ref)))

    def close(self) -> None:
        if self.notices_db is not self.db:
            self.notices_db.close()
        self.db.close()

    def _tx(self) -> contextlib.AbstractContextManager[None]:
        return self.db.transaction()

    def _upgrade(self) -> None:
        """Bring a state file written by an earlier version up to date; idempotent."""
        tables = {name for (name,) in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        # Receipts of the per-channel tables: a link used before the upgrade stays used.
        for table, channel, key, at in _OLD_RECEIPTS:
            if table in tables:
                self.db.execute(f"INSERT INTO receipt SELECT ?, {key}, submission_id, {at} FROM {table} "
                                "WHERE true ON CONFLICT DO NOTHING", (channel,))
        # Reviews stored before the `pending` table existed: undecided ones are pending.
        for row in self.db.execute("SELECT submission_id, review FROM review "
                                   "WHERE submission_id NOT IN (SELECT submission_id FROM pending)").fetchall():
            review = _parse(*row)
            if review is not None and review.decision is None:
                self.db.execute("INSERT INTO pending VALUES (?) ON CONFLICT DO NOTHING", (row[0],))


def _parse(submission_id: str, text: str) -> Review | None:
    """A stored review. Events nested in it that were written under an older version of their type
    are upcast as they are read (shared.upcasting). A row that still does not validate is corrupt:
    it is skipped with a warning rather than stopping the service."""
    try:
        return Review.model_validate_json(text)
    except ValidationError as exc:
        error = exc.errors()[0]
        log.warning("stored_review_unreadable", submission_id=submission_id, error=error["msg"],
                    field=".".join(str(part) for part in error["loc"]))
        return None
