"""Rejected artifact digests, as `review.decided` tells them: pure. The first final rejection of a
digest is the one later decisions cite; a rejection that is not final for the artifact (its bytes
were never verified, or nobody judged it: a review that timed out) bans nothing."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.events import Event, ReviewDecided

# The version of `Rejections.to_snapshot`'s data (shared.snapshot); another is not restored.
SNAPSHOT_VERSION = 1


@dataclass(frozen=True)
class Rejection:
    """An earlier rejection of an artifact digest."""

    event_id: uuid.UUID
    submission_id: uuid.UUID
    decided_by: str
    at: datetime
    reason: str

    @classmethod
    def of(cls, decision: ReviewDecided) -> Rejection:
        return cls(decision.event_id, decision.submission_id, decision.decided_by, decision.occurred_at,
                   decision.reason)


def bans(event: Event) -> bool:
    """Whether `event` rejects its artifact digest for good."""
    return isinstance(event, ReviewDecided) and event.outcome == "rejected" and event.final_for_artifact


class Rejections:
    def __init__(self) -> None:
        self._first: dict[str, Rejection] = {}

    def apply(self, event: Event) -> bool:
        """Take `event` into account; True when it banned a digest not banned before."""
        if not bans(event):
            return False
        assert isinstance(event, ReviewDecided)
        digest = event.candidate.artifact_sha256
        earlier = self._first.get(digest)
        if earlier is not None and (earlier.at, str(earlier.event_id)) <= (event.occurred_at, str(event.event_id)):
            return False
        self._first[digest] = Rejection.of(event)
        return earlier is None

    def get(self, sha256: str) -> Rejection | None:
        return self._first.get(sha256)

    def to_snapshot(self) -> dict[str, Any]:
        """Every first rejection, as JSON-able data (shared.snapshot)."""
        return {"version": SNAPSHOT_VERSION, "first": {
            digest: {"event_id": str(r.event_id), "submission_id": str(r.submission_id),
                     "decided_by": r.decided_by, "at": r.at.isoformat(), "reason": r.reason}
            for digest, r in self._first.items()}}

    def restore(self, data: Mapping[str, Any]) -> None:
        """Replace the content with a snapshot's; ValueError naming the digest when it is not what
        `to_snapshot` of this version wrote (then nothing is changed)."""
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"rejections snapshot version {data.get('version')!r}, this reads {SNAPSHOT_VERSION}")
        first: dict[str, Rejection] = {}
        items = data.get("first")
        if not isinstance(items, dict):
            raise ValueError("rejections snapshot: 'first' is not an object")
        for digest, r in items.items():
            try:
                at = datetime.fromisoformat(r["at"])
                if at.tzinfo is None:
                    raise ValueError("'at' has no zone")
                first[str(digest)] = Rejection(uuid.UUID(r["event_id"]), uuid.UUID(r["submission_id"]),
                                               str(r["decided_by"]), at, str(r["reason"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"rejections snapshot: the rejection of {str(digest)[:80]!r} is unreadable "
                                 f"({str(exc)[:200]})") from None
        self._first = first
