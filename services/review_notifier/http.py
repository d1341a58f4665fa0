"""The HTTP entry points reviewers answer through; each turns a request into a Vote for `Reviewer`.

POST /reviews/{id}/decision   JSON, `Authorization: Bearer <REVIEW_NOTIFIER_API_TOKEN>` (channel http)
POST /slack/actions           Slack's interactivity requests, signed v0 (channel slack)
GET  /email/confirm?token=    the page an email link opens; changes nothing
POST /email/decide            that page's form: token and reason (channel email)
"""

from __future__ import annotations

import hmac
import json
import time
import uuid
from typing import Literal
from urllib.parse import parse_qs

import structlog
from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import ValidationError

from services.review_notifier import emails, slack_blocks, slack_signing, tokens
from services.review_notifier.reviews import Refused
from services.review_notifier.service import Reviewer
from shared.events import Frozen, NonEmpty, Vote, utcnow

log = structlog.get_logger()


class DecisionRequest(Frozen):
    decision: Literal["approve", "reject"]
    approver: NonEmpty
    reason: NonEmpty
    break_glass: bool = False


def make_api(reviewer: Reviewer, api_token: str | None, *, slack_signing_secret: str | None = None,
             slack_users: dict[str, str] | None = None, token_key: bytes | None = None) -> FastAPI:
    api = FastAPI(title="Signoff review-notifier")
    store, users = reviewer.store, slack_users or {}

    def authorize(authorization: str | None) -> None:
        if not api_token:
            raise HTTPException(503, "decisions are disabled: REVIEW_NOTIFIER_API_TOKEN is not set")
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), api_token.encode()):
            raise HTTPException(401, "missing or wrong bearer token in the Authorization header")

    def refused(channel: str, status: int, message: str, **context: object) -> JSONResponse:
        log.info("vote_refused", channel=channel, status=status, why=message, **context)
        return JSONResponse({"detail": message}, status_code=status)

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
        vote = Vote(approver=body.approver, decision=body.decision, reason=body.reason, channel="http",
                    at=utcnow(), break_glass=body.break_glass)
        try:
            review, decision = await reviewer.vote(submission_id, vote)
        except Refused as r:
            return refused("http", r.status, r.message, submission_id=str(submission_id), approver=body.approver)
        return {"submission_id": str(submission_id), "votes": len(review.votes),
                "outcome": decision.outcome if decision else "pending",
                "break_glass": bool(decision and decision.break_glass)}

    @api.post("/slack/actions")
    async def slack_actions(request: Request) -> JSONResponse:
        if not slack_signing_secret:
            return refused("slack", 503, "Slack is not configured: REVIEW_NOTIFIER_SLACK_SIGNING_SECRET is not set")
        body = await request.body()
        signature = request.headers.get("x-slack-signature")
        try:
            slack_signing.verify(slack_signing_secret, request.headers.get("x-slack-request-timestamp"),
                                 signature, body, now=time.time())
        except slack_signing.SignatureError as exc:
            return refused("slack", 401, f"not a genuine Slack request: {exc}")
        try:
            payload = json.loads(parse_qs(body.decode(), strict_parsing=False)["payload"][0])
            action = next(a for a in payload.get("actions", []) if a.get("action_id") in slack_blocks.ACTIONS)
            submission_id = uuid.UUID(str(action.get("value")))
            user_id = str(payload["user"]["id"])
        except KeyError:
            return refused("slack", 400, "the request has no `payload` form field, or it lacks the user")
        except (ValueError, TypeError, AttributeError, StopIteration):
            return refused("slack", 400, "the payload is not a Signoff review button click (block_actions)")
        response_url = payload.get("response_url")
        approver = users.get(user_id)
        if approver is None:
            reviewer.notifier.later(reviewer.notifier.answer(
                response_url, "Your Slack account is not mapped to a Signoff approver."))
            return refused("slack", 403, f"Slack user {user_id} is not mapped to an approver "
                                         "(REVIEW_NOTIFIER_SLACK_USERS)", submission_id=str(submission_id))
        action_id = action["action_id"]
        typed = _slack_reason(payload)
        decision = slack_blocks.ACTIONS[action_id]
        try:
            vote = Vote(approver=approver, decision=decision, reason=typed or f"{decision}d in Slack",
                        channel="slack", at=utcnow(), break_glass=action_id == slack_blocks.BREAK_GLASS)
            review, decided = await reviewer.vote(submission_id, vote, slack_signature=signature,
                                                  response_url=response_url)
        except ValidationError:
            return refused("slack", 422, "the reason is too long (at most 512 characters)")
        except Refused as r:
            reviewer.notifier.later(reviewer.notifier.answer(response_url, f"Not counted: {r.message}"))
            return refused("slack", r.status, r.message, submission_id=str(submission_id), approver=approver)
        return JSONResponse({"ok": True, "outcome": decided.outcome if decided else "pending",
                             "votes": len(review.votes)})

    @api.get(emails.CONFIRM_PATH, response_class=HTMLResponse)
    async def email_confirm(token: str = "") -> HTMLResponse:
        try:
            claims = _claims(token)
            review = store.get(claims.submission_id)
            if review is None:
                raise Refused(404, "no review is pending for this submission")
            if review.decision is not None:
                raise Refused(409, f"the review is already decided: {review.decision.outcome}")
        except (tokens.TokenError, Refused) as r:
            log.info("email_link_refused", status=r.status, why=r.message)
            return HTMLResponse(emails.result_page("Link refused", r.message), status_code=r.status)
        return HTMLResponse(emails.confirm_page(review, claims.approver, claims.action, token))

    @api.post(emails.DECIDE_PATH, response_class=HTMLResponse)
    async def email_decide(request: Request) -> HTMLResponse:
        form = parse_qs((await request.body()).decode(errors="replace"))
        token = (form.get("token") or [""])[0]
        reason = (form.get("reason") or [""])[0].strip()
        try:
            claims = _claims(token)
            vote = Vote(approver=claims.approver, decision=claims.action,
                        reason=reason[:512] or f"{claims.action}d by email", channel="email", at=utcnow())
            _, decided = await reviewer.vote(claims.submission_id, vote, token_id=tokens.token_id(token))
        except (tokens.TokenError, Refused) as r:
            log.info("email_vote_refused", status=r.status, why=r.message)
            return HTMLResponse(emails.result_page("Not counted", r.message), status_code=r.status)
        outcome = decided.outcome if decided else "still pending (more approvals are needed)"
        return HTMLResponse(emails.result_page("Vote recorded", f"Your {claims.action} is recorded. "
                                                              f"The review is {outcome}."))

    def _claims(token: str) -> tokens.Claims:
        if token_key is None:
            raise tokens.TokenError(503, "email decisions are not configured (REVIEW_NOTIFIER_TOKEN_KEY)")
        claims = tokens.verify(token_key, token, utcnow())
        if store.token_used(tokens.token_id(token)):
            raise tokens.TokenError(409, "this link was already used: each link decides once")
        return claims

    return api


def _slack_reason(payload: dict) -> str:
    """The text typed in the message's reason box (Slack sends the box's state with the click)."""
    values = ((payload.get("state") or {}).get("values") or {}).get(slack_blocks.REASON_BLOCK) or {}
    return str((values.get(slack_blocks.REASON_INPUT) or {}).get("value") or "").strip()
