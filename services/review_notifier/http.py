"""The review-notifier's HTTP API: the core routes, and every channel's routes mounted beside.

GET  /healthz
GET  /reviews?pending=me      the open reviews waiting for the credential's person (pending.py)
GET  /reviews/{id}            the review: request, votes, decision (what `signoff watch` shows)
POST /reviews/{id}/decision   JSON {decision, reason, break_glass}; the voter is the credential's person
...                           each channel's own routes (channels/: /slack/actions, /email/...)

Every /reviews route needs `Authorization: Bearer <API token or OIDC token>` (auth.py); the vote
is cast as the person the credential proves, never as a name in the body. A body that still
names an `approver` other than that person is refused (403) rather than silently ignored, so an
old client learns why. Each person votes once (reviews.py), so one credential cannot meet a
quorum of two.

Built with the app and opening nothing: routes reach the use cases through `reviewer_of`, which
the app sets when it opens.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Annotated, Literal

import structlog
from fastapi import Depends, FastAPI, Header, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import StringConstraints

from services.review_notifier.auth import APPROVER, BREAK_GLASS, Authenticator, Person, Refusal, may
from services.review_notifier.channels import Channel
from services.review_notifier.channels.base import refused, reviewer_of
from services.review_notifier.pending import summary, waiting_for
from services.review_notifier.reviews import Refused
from services.review_notifier.service import Reviewer
from shared.body_limit import BodyLimit
from shared.events import Frozen, NonEmpty, Vote, utcnow
from shared.identity import normalise

CHANNEL = "http"  # Vote.channel of the decision API
# Bodies larger than this are refused (413) before they are parsed: a vote is a few KiB; Slack's
# interaction payloads carry the message's blocks (at most 50 of 3000 characters), form-encoded.
MAX_BODY = 1024 * 1024
log = structlog.get_logger()


class DecisionRequest(Frozen):
    decision: Literal["approve", "reject"]
    reason: NonEmpty
    break_glass: bool = False
    # No longer who votes (the credential is); accepted only to refuse a mismatch with a reason.
    approver: Annotated[str, StringConstraints(max_length=512)] | None = None


def make_api(channels: Iterable[Channel], auth: Authenticator) -> FastAPI:
    api = FastAPI(title="Signoff review-notifier")
    api.add_middleware(BodyLimit, limit=MAX_BODY)

    # A plain function: FastAPI runs it in its thread pool, where reading the token file or
    # fetching the issuer's JWKS blocks no request.
    def person(authorization: str | None = Header(default=None)) -> Person:
        try:
            return auth.person(authorization)
        except Refusal as r:
            log.info("credential_refused", channel=CHANNEL, status=r.status, why=r.message)
            raise HTTPException(r.status, r.message,
                                headers={"WWW-Authenticate": "Bearer"} if r.status == 401 else None) from None

    @api.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @api.get("/reviews")
    async def list_reviews(pending: Literal["me"] = Query(description="`me`: the reviews waiting for your vote"),
                           reader: Person = Depends(person), reviewer: Reviewer = Depends(reviewer_of)) -> dict:
        waiting = waiting_for(reviewer.store.pending(), reader.name)
        return {"person": reader.name, "reviews": [summary(r) for r in waiting]}

    @api.get("/reviews/{submission_id}")
    async def get_review(submission_id: uuid.UUID, reader: Person = Depends(person),
                         reviewer: Reviewer = Depends(reviewer_of)) -> dict:
        review = reviewer.store.get(submission_id)
        if review is None:
            raise HTTPException(404, "no review for this submission")
        return review.model_dump(mode="json")

    @api.post("/reviews/{submission_id}/decision", response_model=None)
    async def decide(submission_id: uuid.UUID, body: DecisionRequest, voter: Person = Depends(person),
                     reviewer: Reviewer = Depends(reviewer_of)) -> dict | JSONResponse:
        context = {"submission_id": str(submission_id), "approver": voter.name, "credential": voter.credential}
        if body.approver is not None and normalise(body.approver) != voter.name:
            return refused(CHANNEL, 403, f"votes are cast as the credential's person ({voter.name}), not as a name "
                                         "in the request: drop `approver`, or use that person's own credential",
                           **context)
        try:
            may(voter, BREAK_GLASS if body.break_glass else APPROVER)
        except Refusal as r:
            return refused(CHANNEL, r.status, r.message, **context)
        vote = Vote(approver=voter.name, decision=body.decision, reason=body.reason, channel=CHANNEL,
                    at=utcnow(), break_glass=body.break_glass)
        try:
            review, decision = await reviewer.vote(submission_id, vote)
        except Refused as r:
            return refused(CHANNEL, r.status, r.message, **context)
        return {"submission_id": str(submission_id), "approver": voter.name, "votes": len(review.votes),
                "outcome": decision.outcome if decision else "pending",
                "break_glass": bool(decision and decision.break_glass)}

    for channel in channels:
        api.include_router(channel.router())
    return api
