"""The console's pages (every one needs a session: web.signed_in):

    GET  /reviews                      reviews waiting for me
    GET  /reviews/{id}                 the evidence; approve / reject buttons for its approvers only
    GET  /reviews/{id}/confirm         "Approve churn-model 1.2.0?": the confirmation form (reason)
    POST /reviews/{id}/vote            the vote, on the review API, as the person's own credential
    GET  /submissions                  filter by model, status, time; each with its timeline
    GET  /submissions/{id}
    GET  /models, /models/{name}       in production now, "at T", every release (shared.audit)
    GET  /dead-letters                 operators only: per topic, with reasons, of the last days (shared.dlq)
    POST /dead-letters/replay          operators only: re-drive one
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from services.console import evidence_view, letters
from services.console.feed import Feed
from services.console.projection import STATUSES, Projection, Submission
from services.console.reviews_api import ReviewApi
from services.console.sessions import Session
from services.console.web import Forbidden, check_csrf, render, see_other, signed_in, web_of
from services.review_notifier.auth import APPROVER, OPERATOR
from services.review_notifier.reviews import Review
from shared import topics
from shared.audit import queries
from shared.events import utcnow
from shared.kafka import KafkaAccess
from shared.signing import Keyring
from signoff.timeline import describe

log = structlog.get_logger()
router = APIRouter()
MODEL = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
DEFAULT_APPROVE_REASON = "approved in the web console after reviewing the evidence"
OUTCOMES = ("pending", "approved", "rejected")  # what the review API's answer to a vote may say


@dataclass
class Parts:
    projection: Projection
    feed: Feed
    api: ReviewApi
    kafka: KafkaAccess
    keyring: Keyring
    dead_letters_limit: int
    dead_letters_window: timedelta = timedelta(days=14)  # how far back the page reads the dead-letter topics


def parts_of(request: Request) -> Parts:
    return request.app.state.parts


def may_vote(session: Session, sub: Submission | None) -> bool:
    """Buttons only for someone the review asks, with an approver credential, while it is pending
    (the review API decides again when the vote arrives)."""
    return (sub is not None and sub.pending_review and APPROVER in session.roles
            and session.person in sub.approvers)


@router.get("/", response_class=HTMLResponse)
async def home(session: Session = Depends(signed_in)) -> Response:
    return see_other("/reviews")


@router.get("/reviews", response_class=HTMLResponse)
async def pending(request: Request, session: Session = Depends(signed_in)) -> Response:
    p = parts_of(request)
    assert session.person is not None
    mine = p.projection.pending_for(session.person)
    others = [s for s in p.projection.pending() if s not in mine]
    return render(request, "reviews.html", session, mine=mine, others=others, feed=p.feed)


@router.get("/reviews/{submission_id}", response_class=HTMLResponse)
async def review_page(request: Request, submission_id: uuid.UUID, session: Session = Depends(signed_in)) -> Response:
    p = parts_of(request)
    # What the vote just cast did: a one-time message of the session, never text from the URL.
    voted = web_of(request).sessions.take_note(session, f"voted {submission_id}")
    sub = p.feed.full(submission_id)
    assert session.credential is not None
    answer, review = await p.api.review(session.credential, submission_id)
    if review is None and sub is not None and sub.request is not None:
        # The review API did not answer: the evidence as the topics carry it (no votes so far).
        review = Review(request=sub.request, escalation=sub.escalation, decision=sub.decision)
    if review is None:
        return render(request, "error.html", session, status=404,
                      message=f"no review for submission {submission_id} ({answer.detail or 'not on the topics'})")
    return render(request, "review.html", session, sub=sub, ev=evidence_view.of(review), id=submission_id,
                  can_vote=may_vote(session, sub) and review.decision is None,
                  api_note=None if answer.ok else answer.detail, voted=voted)


@router.get("/reviews/{submission_id}/confirm", response_class=HTMLResponse)
async def confirm(request: Request, submission_id: uuid.UUID, decision: str = Query(pattern="^(approve|reject)$"),
                  session: Session = Depends(signed_in)) -> Response:
    sub = parts_of(request).feed.full(submission_id)
    if not may_vote(session, sub):
        raise Forbidden(f"{session.person} is not asked to vote on this review, or it is decided already")
    return render(request, "confirm.html", session, sub=sub, decision=decision, id=submission_id, error=None)


@router.post("/reviews/{submission_id}/vote", response_class=HTMLResponse)
async def vote(request: Request, submission_id: uuid.UUID, session: Session = Depends(signed_in),
               decision: str = Form(pattern="^(approve|reject)$"), reason: str = Form(default="", max_length=4000),
               confirmed: str = Form(default=""), csrf: str = Form(default="", max_length=128)) -> Response:
    check_csrf(session, csrf, "vote")
    p = parts_of(request)
    sub = p.feed.full(submission_id)
    if not may_vote(session, sub):
        raise Forbidden(f"{session.person} is not asked to vote on this review, or it is decided already")
    reason = reason.strip()
    error = None
    if confirmed != "yes":
        error = "confirm the vote: tick the box"
    elif decision == "reject" and not reason:
        error = "a rejection needs a reason: say what must change"
    if error:
        return render(request, "confirm.html", session, status=422, sub=sub, decision=decision, id=submission_id,
                      error=error)
    assert session.credential is not None
    answer = await p.api.vote(session.credential, submission_id, decision, reason or DEFAULT_APPROVE_REASON)
    log.info("console_vote", person=session.person, via=session.via, submission_id=str(submission_id),
             decision=decision, status=answer.status, unconfirmed=answer.unconfirmed)
    if not answer.ok:
        return render(request, "confirm.html", session, status=answer.status if answer.status >= 400 else 502,
                      sub=sub, decision=decision, id=submission_id,
                      error=f"the review API refused the vote: {answer.detail}" if answer.status else answer.detail)
    outcome = (answer.body or {}).get("outcome")
    web_of(request).sessions.note(session, f"voted {submission_id}",
                                  f"{decision}d ({outcome if outcome in OUTCOMES else 'outcome not reported'})")
    return see_other(f"/reviews/{submission_id}")


def _time(text: str | None, name: str) -> datetime | None:
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise Forbidden(f"{name}: {text[:40]!r} is not a time; write e.g. 2026-11-01T12:00Z") from None
    if at.tzinfo is None:
        raise Forbidden(f"{name}: {text[:40]!r} has no time zone; add Z for UTC") from None
    return at


@router.get("/submissions", response_class=HTMLResponse)
async def submissions(request: Request, session: Session = Depends(signed_in),
                      model: str = Query(default="", max_length=64), status: str = Query(default="", max_length=32),
                      since: str = Query(default="", max_length=40),
                      until: str = Query(default="", max_length=40)) -> Response:
    if status and status not in STATUSES:
        raise Forbidden(f"status {status[:32]!r}: one of {', '.join(STATUSES)}")
    p = parts_of(request)
    rows = p.projection.select(model or None, status or None, _time(since, "since"), _time(until, "until"))
    return render(request, "submissions.html", session, rows=rows, statuses=STATUSES,
                  filters={"model": model, "status": status, "since": since, "until": until})


@router.get("/submissions/{submission_id}", response_class=HTMLResponse)
async def submission(request: Request, submission_id: uuid.UUID, session: Session = Depends(signed_in)) -> Response:
    sub = parts_of(request).feed.full(submission_id)
    if sub is None:
        return render(request, "error.html", session, status=404, message=f"no submission {submission_id}")
    timeline = [(e.occurred_at, e.topic, describe(e)) for e in sorted(sub.events, key=lambda e: e.occurred_at)]
    return render(request, "submission.html", session, sub=sub, timeline=timeline)


@router.get("/models", response_class=HTMLResponse)
async def models(request: Request, session: Session = Depends(signed_in)) -> Response:
    return render(request, "models.html", session, models=parts_of(request).projection.models())


@router.get("/models/{model}", response_class=HTMLResponse)
async def model_page(request: Request, model: str, session: Session = Depends(signed_in),
                     at: str = Query(default="", max_length=40)) -> Response:
    if not MODEL.match(model):
        raise Forbidden(f"model {model[:64]!r}: lowercase letters, digits, '.', '_', '-'")
    index = parts_of(request).feed.index
    now = queries.production_at(index, model, utcnow())
    moment = _time(at, "at")
    then = queries.production_at(index, model, moment) if moment else None
    audit = queries.releases(index, model)
    return render(request, "model.html", session, model=model, now=now, then=then, at=at, history=_history(audit))


def _history(audit: Any) -> list[tuple[datetime, str, str, str]]:
    rows = []
    for release in audit.releases:
        entries = [*([release.submitted] if release.submitted else []), *release.checks, *release.reviews,
                   *release.decisions, *release.deployments, *release.revocations]
        rows += [(e.event.occurred_at, e.topic, release.version or "?", describe(e.event)) for e in entries]
    for op in audit.operations:
        entries = [*([op.request] if op.request else []), *op.outcomes]
        rows += [(e.event.occurred_at, e.topic, f"op {str(op.operation_id)[:8]}", describe(e.event))
                 for e in entries]
    return sorted(set(rows), key=lambda row: row[0], reverse=True)


@router.get("/dead-letters", response_class=HTMLResponse)
async def dead_letters(request: Request, session: Session = Depends(signed_in),
                       topic: str = Query(default="", max_length=64)) -> Response:
    _operator(session, "the dead letters are")
    p = parts_of(request)
    found, error = await letters.listed(p.kafka, topic or None, p.dead_letters_limit, utcnow() - p.dead_letters_window)
    return render(request, "dead_letters.html", session, letters=found, error=error, topic=topic,
                  topics=topics.CONSUMED_TOPICS, operator=True, days=p.dead_letters_window.days)


@router.post("/dead-letters/replay", response_class=HTMLResponse)
async def replay(request: Request, session: Session = Depends(signed_in), csrf: str = Form(default="", max_length=128),
                 topic: str = Form(max_length=64), partition: int = Form(ge=0, le=100_000),
                 offset: int = Form(ge=0)) -> Response:
    check_csrf(session, csrf, "re-drive")
    _operator(session, "re-driving a dead letter is")
    p = parts_of(request)
    assert session.person is not None
    message = await letters.redrive(p.kafka, topic, partition, offset, session.person)
    log.info("console_redrive", person=session.person, topic=topic, partition=partition, offset=offset,
             outcome=message)
    found, error = await letters.listed(p.kafka, None, p.dead_letters_limit, utcnow() - p.dead_letters_window)
    return render(request, "dead_letters.html", session, letters=found, error=error, topic="",
                  topics=topics.CONSUMED_TOPICS, operator=True, message=message, days=p.dead_letters_window.days)


def _operator(session: Session, what: str) -> None:
    """Dead letters hold whatever was sent, and each listing reads Kafka: operators only."""
    if OPERATOR not in session.roles:
        raise Forbidden(f"{what} for operators; {session.person}'s credential is not an operator's "
                        "(signoff token create NAME --role operator)")
