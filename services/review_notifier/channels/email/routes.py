"""The pages an email link leads to. GET changes nothing (mail scanners open links): it shows the
evidence and a form; the form's POST decides. The voter is the approver the signed token was
issued to; the token's id (`Claims.token_id`) is the vote's receipt, so a link decides once,
however it is spelt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from services.review_notifier.channels.base import Receipt, reviewer_of
from services.review_notifier.channels.email import messages, tokens
from services.review_notifier.reviews import Refused
from shared.events import Vote, utcnow

if TYPE_CHECKING:
    from services.review_notifier.channels.email import EmailChannel
    from services.review_notifier.service import Reviewer

log = structlog.get_logger()

USED = "this link was already used: each link decides once"


def router(channel: EmailChannel) -> APIRouter:
    routes = APIRouter()

    def claims_of(token: str, reviewer: Reviewer) -> tokens.Claims:
        if channel.token_key is None:
            raise tokens.TokenError(503, "email decisions are not configured (REVIEW_NOTIFIER_TOKEN_KEY)")
        claims = tokens.verify(channel.token_key, token, utcnow())
        if (reviewer.store.receipt_seen(receipt_of(claims))
                or reviewer.store.receipt_seen(Receipt(channel.name, tokens.legacy_id(token), USED))):
            raise tokens.TokenError(409, USED)
        return claims

    def receipt_of(claims: tokens.Claims) -> Receipt:
        return Receipt(channel.name, claims.token_id, USED)

    @routes.get(messages.CONFIRM_PATH, response_class=HTMLResponse)
    async def email_confirm(token: str = "", reviewer: Reviewer = Depends(reviewer_of)) -> HTMLResponse:
        try:
            claims = claims_of(token, reviewer)
            review = reviewer.store.get(claims.submission_id)
            if review is None:
                raise Refused(404, "no review is pending for this submission")
            if review.decision is not None:
                raise Refused(409, f"the review is already decided: {review.decision.outcome}")
        except (tokens.TokenError, Refused) as r:
            log.info("email_link_refused", status=r.status, why=r.message)
            return HTMLResponse(messages.result_page("Link refused", r.message), status_code=r.status)
        return HTMLResponse(messages.confirm_page(review, claims.approver, claims.action, token))

    @routes.post(messages.DECIDE_PATH, response_class=HTMLResponse)
    async def email_decide(request: Request, reviewer: Reviewer = Depends(reviewer_of)) -> HTMLResponse:
        form = parse_qs((await request.body()).decode(errors="replace"))
        token = (form.get("token") or [""])[0]
        reason = (form.get("reason") or [""])[0].strip()
        try:
            claims = claims_of(token, reviewer)
            vote = Vote(approver=claims.approver, decision=claims.action,
                        reason=reason[:512] or f"{claims.action}d by email", channel=channel.name, at=utcnow())
            _, decided = await reviewer.vote(claims.submission_id, vote, receipt=receipt_of(claims))
        except (tokens.TokenError, Refused) as r:
            log.info("email_vote_refused", status=r.status, why=r.message)
            return HTMLResponse(messages.result_page("Not counted", r.message), status_code=r.status)
        outcome = decided.outcome if decided else "still pending (more approvals are needed)"
        return HTMLResponse(messages.result_page("Vote recorded", f"Your {claims.action} is recorded. "
                                                                f"The review is {outcome}."))

    return routes
