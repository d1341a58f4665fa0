"""POST /slack/actions: Slack's interactivity requests (a click on a review's button), signed v0.

The request is verified before anything is read from it; the clicker is the Slack user the signed
payload names, mapped to an approver by REVIEW_NOTIFIER_SLACK_USERS; the request's signature is
the vote's receipt, so a replay (or Slack's retry of a request that counted) is refused. Slack is
answered at once; its API is called afterwards, in the background (Slack wants an answer in 3s).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from services.review_notifier.channels.base import Receipt, refused, reviewer_of
from services.review_notifier.channels.slack import blocks, signing
from services.review_notifier.reviews import Refused
from shared.events import Vote, utcnow

if TYPE_CHECKING:
    from services.review_notifier.channels.slack import SlackChannel
    from services.review_notifier.service import Reviewer

REPLAYED = "this Slack request was already counted, or refused because production had changed (a replay or a retry)"


def router(channel: SlackChannel) -> APIRouter:
    routes, name = APIRouter(), channel.name

    @routes.post("/slack/actions")
    async def slack_actions(request: Request, reviewer: Reviewer = Depends(reviewer_of)) -> JSONResponse:
        if not channel.signing_secret:
            return refused(name, 503, "Slack is not configured: REVIEW_NOTIFIER_SLACK_SIGNING_SECRET is not set")
        body = await request.body()
        signature = request.headers.get("x-slack-signature")
        try:
            signing.verify(channel.signing_secret, request.headers.get("x-slack-request-timestamp"),
                           signature, body, now=time.time())
        except signing.SignatureError as exc:
            return refused(name, 401, f"not a genuine Slack request: {exc}")
        try:
            payload = json.loads(parse_qs(body.decode(), strict_parsing=False)["payload"][0])
            action = next(a for a in payload.get("actions", []) if a.get("action_id") in blocks.ACTIONS)
            submission_id = uuid.UUID(str(action.get("value")))
            user_id = str(payload["user"]["id"])
        except KeyError:
            return refused(name, 400, "the request has no `payload` form field, or it lacks the user")
        except (ValueError, TypeError, AttributeError, StopIteration):
            return refused(name, 400, "the payload is not a Signoff review button click (block_actions)")
        response_url = payload.get("response_url")
        approver = channel.users.get(user_id)
        if approver is None:
            reviewer.notifier.later(
                channel.answer(response_url, "Your Slack account is not mapped to a Signoff approver."))
            return refused(name, 403, f"Slack user {user_id} is not mapped to an approver "
                                      "(REVIEW_NOTIFIER_SLACK_USERS)", submission_id=str(submission_id))
        action_id = action["action_id"]
        decision = blocks.ACTIONS[action_id]
        try:
            vote = Vote(approver=approver, decision=decision, reason=_reason(payload) or f"{decision}d in Slack",
                        channel=name, at=utcnow(), break_glass=action_id == blocks.BREAK_GLASS)
        except ValidationError as exc:
            error = exc.errors()[0]
            return refused(name, 422, f"the vote is not valid: {error['loc'][0]}: {error['msg']}")
        receipt = Receipt(name, signature or "", REPLAYED, per_request=True)
        try:
            review, decided = await reviewer.vote(submission_id, vote, receipt=receipt, reply_to=response_url)
        except Refused as r:
            reviewer.notifier.later(channel.answer(response_url, f"Not counted: {r.message}"))
            return refused(name, r.status, r.message, submission_id=str(submission_id), approver=approver)
        return JSONResponse({"ok": True, "outcome": decided.outcome if decided else "pending",
                             "votes": len(review.votes)})

    return routes


def _reason(payload: dict) -> str:
    """The text typed in the message's reason box (Slack sends the box's state with the click)."""
    values = ((payload.get("state") or {}).get("values") or {}).get(blocks.REASON_BLOCK) or {}
    return str((values.get(blocks.REASON_INPUT) or {}).get("value") or "").strip()
