"""The HTTP API reviewers (and `signoff review`) answer through.

POST /reviews/{submission_id}/decision  {"decision": "approve"|"reject", "approver": ..., "reason": ...}
with `Authorization: Bearer <REVIEW_NOTIFIER_API_TOKEN>`.
"""

from __future__ import annotations

import asyncio
import hmac
import uuid
from collections.abc import Awaitable, Callable
from typing import Literal

import structlog
from fastapi import FastAPI, Header, HTTPException

from services.review_notifier import reviews
from services.review_notifier.state import ReviewStore
from shared.events import Frozen, NonEmpty, ReviewDecided, utcnow

log = structlog.get_logger()


class DecisionRequest(Frozen):
    decision: Literal["approve", "reject"]
    approver: NonEmpty
    reason: NonEmpty


def make_api(store: ReviewStore, emit: Callable[[ReviewDecided], Awaitable[None]],
             api_token: str | None) -> FastAPI:
    api = FastAPI(title="Signoff review-notifier")
    lock = asyncio.Lock()  # one vote at a time: read, decide, emit, save

    def authorize(authorization: str | None) -> None:
        if not api_token:
            raise HTTPException(503, "decisions are disabled: REVIEW_NOTIFIER_API_TOKEN is not set")
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), api_token.encode()):
            raise HTTPException(401, "missing or wrong bearer token in the Authorization header")

    @api.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @api.get("/reviews/{submission_id}")
    async def get_review(submission_id: uuid.UUID) -> dict:
        review = store.get(submission_id)
        if review is None:
            raise HTTPException(404, "no review for this submission")
        return review.model_dump(mode="json")

    @api.post("/reviews/{submission_id}/decision")
    async def decide(submission_id: uuid.UUID, body: DecisionRequest,
                     authorization: str | None = Header(default=None)) -> dict:
        authorize(authorization)
        vote = reviews.Vote(approver=body.approver, decision=body.decision, reason=body.reason,
                            channel="http", at=utcnow())
        async with lock:
            try:
                review, decision = reviews.cast(store.get(submission_id), vote)
            except reviews.Refused as refused:
                log.info("vote_refused", submission_id=str(submission_id),
                         approver=body.approver, status=refused.status, why=refused.message)
                raise HTTPException(refused.status, refused.message) from None
            if decision is not None:
                await emit(decision)  # before saving: if this fails, nothing changed
            store.save(review)
        log.info("vote_recorded", submission_id=str(submission_id), approver=body.approver,
                 decision=body.decision, settled=decision is not None)
        return {
            "submission_id": str(submission_id),
            "votes": len(review.votes),
            "outcome": decision.outcome if decision else "pending",
        }

    return api
