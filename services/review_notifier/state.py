"""Reviews, votes, deadlines, used email tokens, counted Slack requests and posted Slack messages
in SQLite, so all of it survives a restart (WAL, synchronous=FULL: also a `kill -9`).

A vote is saved together with the token or Slack request that carried it, in one transaction:
either both are recorded or neither, so a retried request is refused only when it really counted.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import datetime
from pathlib import Path

import structlog
from pydantic import ValidationError

from services.review_notifier.reviews import Review
from shared.events import ReviewRequested
from shared.sqlite import open_durable

log = structlog.get_logger()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS review (submission_id TEXT PRIMARY KEY, review TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pending (submission_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS used_token (token_id TEXT PRIMARY KEY, submission_id TEXT NOT NULL, used_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS slack_request (signature TEXT PRIMARY KEY, submission_id TEXT NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS notice (submission_id TEXT NOT NULL, kind TEXT NOT NULL, ref TEXT NOT NULL,
                                   PRIMARY KEY (submission_id, kind));
"""


class ReviewStore:
    def __init__(self, path: Path) -> None:
        self.db = open_durable(path, _SCHEMA, check_same_thread=False)
        # Reviews stored before the `pending` table existed: undecided ones are pending.
        for sid, text in self.db.execute(
                "SELECT submission_id, review FROM review WHERE submission_id NOT IN (SELECT submission_id FROM pending)"
                ).fetchall():
            review = _parse(text)
            if review is not None and review.decision is None:
                self.db.execute("INSERT OR IGNORE INTO pending VALUES (?)", (sid,))

    def open(self, request: ReviewRequested) -> bool:
        """Record a new review; False when it was already known (a redelivered request)."""
        with self._tx():
            cur = self.db.execute("INSERT OR IGNORE INTO review VALUES (?, ?)",
                                  (str(request.submission_id), Review(request=request).model_dump_json()))
            if cur.rowcount == 1:
                self.db.execute("INSERT OR IGNORE INTO pending VALUES (?)", (str(request.submission_id),))
        return cur.rowcount == 1

    def get(self, submission_id: uuid.UUID) -> Review | None:
        row = self.db.execute("SELECT review FROM review WHERE submission_id = ?", (str(submission_id),)).fetchone()
        return _parse(row[0]) if row else None

    def pending(self) -> list[Review]:
        """Every review not yet decided (what the deadline loop looks at)."""
        rows = self.db.execute("SELECT r.review FROM review r JOIN pending p USING (submission_id)").fetchall()
        return [review for (text,) in rows if (review := _parse(text)) is not None]

    def save(self, review: Review, *, token_id: str | None = None, slack_signature: str | None = None,
             at: datetime | None = None) -> None:
        """Save the review and, in the same transaction, the token or Slack request that voted."""
        sid = str(review.submission_id)
        with self._tx():
            self.db.execute("UPDATE review SET review = ? WHERE submission_id = ?", (review.model_dump_json(), sid))
            if review.decision is not None:
                self.db.execute("DELETE FROM pending WHERE submission_id = ?", (sid,))
            if token_id is not None:
                self.db.execute("INSERT INTO used_token VALUES (?, ?, ?)", (token_id, sid, _iso(at)))
            if slack_signature is not None:
                self.db.execute("INSERT INTO slack_request VALUES (?, ?, ?)", (slack_signature, sid, _iso(at)))

    def token_used(self, token_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM used_token WHERE token_id = ?", (token_id,)).fetchone() is not None

    def slack_request_seen(self, signature: str) -> bool:
        return self.db.execute("SELECT 1 FROM slack_request WHERE signature = ?", (signature,)).fetchone() is not None

    def notice(self, submission_id: uuid.UUID, kind: str) -> dict | None:
        """What was sent for a review ('slack': the message's channel and ts; 'email:<approver>:<stage>')."""
        row = self.db.execute("SELECT ref FROM notice WHERE submission_id = ? AND kind = ?",
                              (str(submission_id), kind)).fetchone()
        return json.loads(row[0]) if row else None

    def record_notice(self, submission_id: uuid.UUID, kind: str, ref: dict) -> None:
        self.db.execute("INSERT OR REPLACE INTO notice VALUES (?, ?, ?)", (str(submission_id), kind, json.dumps(ref)))

    def close(self) -> None:
        self.db.close()

    def _tx(self):
        return _Transaction(self.db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _parse(text: str) -> Review | None:
    """A stored review; None (and a warning) for one written under an older contract that lacks
    what reviews need now (a deadline): it is left alone rather than stopping the service."""
    try:
        return Review.model_validate_json(text)
    except ValidationError as exc:
        log.warning("stored_review_unreadable", error=exc.errors()[0]["msg"], field=str(exc.errors()[0]["loc"]))
        return None


def _iso(at: datetime | None) -> str:
    return at.isoformat() if at else ""
