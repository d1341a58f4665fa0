"""Rejected artifact digests, as `review.decided` tells them: pure. The first final rejection of a
digest is the one later decisions cite; a rejection that is not final for the artifact (its bytes
were never verified, or nobody judged it: a review that timed out) bans nothing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from shared.events import Event, ReviewDecided


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
