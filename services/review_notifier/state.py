"""Pending reviews and their votes in SQLite, so they survive a restart."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from services.review_notifier.reviews import Review
from shared.events import ReviewRequested


class ReviewStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS review (submission_id TEXT PRIMARY KEY, review TEXT NOT NULL)"
        )

    def open(self, request: ReviewRequested) -> bool:
        """Record a new review; False when it was already known (a redelivered request)."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO review VALUES (?, ?)",
            (str(request.submission_id), Review(request=request).model_dump_json()),
        )
        return cur.rowcount == 1

    def get(self, submission_id: uuid.UUID) -> Review | None:
        row = self.db.execute(
            "SELECT review FROM review WHERE submission_id = ?", (str(submission_id),)
        ).fetchone()
        return Review.model_validate_json(row[0]) if row else None

    def save(self, review: Review) -> None:
        self.db.execute(
            "UPDATE review SET review = ? WHERE submission_id = ?",
            (review.model_dump_json(), str(review.request.submission_id)),
        )

    def close(self) -> None:
        self.db.close()
