"""The review-notifier's HTTP API: the core routes, and every channel's routes mounted beside.

GET  /healthz
GET  /reviews/{id}            the review: request, votes, decision (what `signoff watch` shows)
POST /reviews/{id}/decision   JSON, `Authorization: Bearer <REVIEW_NOTIFIER_API_TOKEN>` (channel http)
...                           each channel's own routes (channels/: /slack/actions, /email/...)

Built with the app and opening nothing: routes reach the use cases through `reviewer_of`, which
the app sets when it opens.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Iterable
from typing import Literal

from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse

from services.review_notifier.channels import Channel
from services.review_notifier.channels.base import refused, reviewer_of
from services.review_notifier.reviews import Refused
from services.review_notifier.service import Reviewer
from shared.events import Frozen, NonEmpty, Vote, utcnow

CHANNEL = "http"  # Vote.channel of the decision API


class DecisionRequest(Frozen):
    decision: Literal["approve", "reject"]
    approver: NonEmpty
    reason: NonEmpty
    break_glass: bool = False


def make_api(channels: Iterable[Channel], api_token: str | None) -> FastAPI:
    api = FastAPI(title="Signoff review-notifier")

    def authorize(authorization: str | None = Header(default=None)) -> None:
        if not api_token:
            raise HTTPException(503, "decisions are disabled: REVIEW_NOTIFIER_API_TOKEN is not set")
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), api_token.encode()):
            raise HTTPException(401, "missing or wrong bearer token in the Authorization header")

    @api.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @api.get("/reviews/{submission_id}")
    async def get_review(submission_id: uuid.UUID, reviewer: Reviewer = Depends(reviewer_of)) -> dict:
        review = reviewer.store.get(submission_id)
        if review is None:
            raise HTTPException(404, "no review for this submission")
        return review.model_dump(mode="json")

    @api.post("/reviews/{submission_id}/decision", dependencies=[Depends(authorize)], response_model=None)
    async def decide(submission_id: uuid.UUID, body: DecisionRequest,
                     reviewer: Reviewer = Depends(reviewer_of)) -> dict | JSONResponse:
        vote = Vote(approver=body.approver, decision=body.decision, reason=body.reason, channel=CHANNEL,
                    at=utcnow(), break_glass=body.break_glass)
        try:
            review, decision = await reviewer.vote(submission_id, vote)
        except Refused as r:
            return refused(CHANNEL, r.status, r.message, submission_id=str(submission_id), approver=body.approver)
        return {"submission_id": str(submission_id), "votes": len(review.votes),
                "outcome": decision.outcome if decision else "pending",
                "break_glass": bool(decision and decision.break_glass)}

    for channel in channels:
        api.include_router(channel.router())
    return api
