"""The review-notifier's use cases: open a review, take a vote from any channel, let time pass.

Each reads state, asks `reviews` (pure) what follows, emits the resulting event, then saves. The
event goes out before the state is saved: if publishing fails, nothing changed and the vote can
be retried; if saving fails after publishing, a retry emits the same event id, which readers drop.
Notifications (every channel's) run after the answer, in the background, and never undo a decision.

A vote is judged against the model in production now (`production`: the app's ProductionBook). One
refused because that changed since the review was shown saves the review showing it, and every
channel refreshes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from services.review_notifier import reviews
from services.review_notifier.reviews import UNKNOWN, CurrentProduction, Refused, Reshown, Review
from shared.events import Event, Production, ReviewDecided, ReviewRequested, Vote, utcnow
from shared.identity import Directory, IdentityError

# Channels whose credential carries the break-glass role (the review API's tokens and OIDC roles):
# a Slack click or an email link proves a person, not that they act in the break-glass role.
BREAK_GLASS_CHANNELS = frozenset({"http"})

if TYPE_CHECKING:
    from services.review_notifier.channels import Receipt
    from services.review_notifier.notify import Notifier
    from services.review_notifier.state import ReviewStore

log = structlog.get_logger()


class Reviewer:
    def __init__(self, store: ReviewStore, emit: Callable[[Event], Awaitable[None]], notifier: Notifier,
                 clock: Callable[[], datetime] = utcnow, production: Callable[[str], object] | None = None,
                 people: Directory | None = None) -> None:
        """`production`: the model in production for a name (ProductionBook.get); without it, or
        when it answers neither a release nor None, votes are judged as if production never changed.
        `people`: the known users; every channel's voter is normalised and must be one of them."""
        self.store, self.emit, self.notifier, self.clock = store, emit, notifier, clock
        self.production, self.people = production, people
        self.lock = asyncio.Lock()  # one change at a time: read, decide, emit, save
        self.wake = asyncio.Event()

    async def open(self, request: ReviewRequested) -> bool:
        async with self.lock:
            opened = self.store.open(request)
        if opened:
            log.info("review_opened", submission_id=str(request.submission_id), approvers=list(request.approvers),
                     quorum=request.quorum, deadline=request.deadline.isoformat())
        self.wake.set()  # its deadline may be the nearest
        review = self.store.get(request.submission_id)
        if review is not None and review.decision is None:
            await self.notifier.announce(review)
        return opened

    async def vote(self, submission_id: uuid.UUID, vote: Vote, *, receipt: Receipt | None = None,
                   reply_to: str | None = None) -> tuple[Review, ReviewDecided | None]:
        """Count one vote; Refused when it may not count (and then nothing changed). `receipt`:
        what carried the vote, saved with it, refused when seen before (409). `reply_to`: where
        the vote's channel may answer the voter (Slack's response_url)."""
        if vote.break_glass and vote.channel not in BREAK_GLASS_CHANNELS:
            raise Refused(403, f"break-glass is not taken from {vote.channel}: it needs the break-glass "
                               "role's own credential, through the review API (`signoff review ID approve "
                               "--break-glass --reason ...` with your break-glass token)")
        if self.people is not None:  # one identity rule for every channel (shared/identity.py)
            try:
                vote = vote.model_copy(update={"approver": self.people.resolve(vote.approver)})
            except IdentityError as exc:
                raise Refused(403, str(exc)) from None
        # The asyncio lock orders this replica's changes; the store's row lock orders them with
        # every other replica's (PostgreSQL), from the receipt check to the save.
        async with self.lock:
            with self.store.locked(submission_id) as current:
                if receipt is not None and self.store.receipt_seen(receipt):
                    raise Refused(409, receipt.replayed)
                try:
                    review, decision = reviews.cast(current, vote, self._production_of(current), people=self.people)
                except Reshown as reshown:
                    # Not counted; the request that carried it is spent when it names only itself (a
                    # Slack click), so it cannot count later against evidence its voter never saw.
                    self.store.save(reshown.review, receipt=receipt if receipt and receipt.per_request else None,
                                    at=vote.at)
                    stale: Reshown | None = reshown
                else:
                    stale = None
                    if decision is not None:
                        await self.emit(decision)
                    self.store.save(review, receipt=receipt, at=vote.at)
            if stale is not None:  # raised once the refreshed review is committed
                log.info("evidence_refreshed", submission_id=str(submission_id), approver=vote.approver,
                         channel=vote.channel, production=_version(stale.review.shown))
                self.notifier.later(self.notifier.refresh(stale.review, origin=vote.channel, reply_to=reply_to))
                raise stale
        log.info("vote_recorded", submission_id=str(submission_id), approver=vote.approver,
                 decision=vote.decision, channel=vote.channel, break_glass=vote.break_glass,
                 outcome=decision.outcome if decision else "pending")
        self.notifier.later(self.notifier.refresh(review, origin=vote.channel, reply_to=reply_to))
        return review, decision

    def _production_of(self, review: Review | None) -> CurrentProduction:
        if review is None or self.production is None:
            return UNKNOWN
        now = self.production(review.request.submission.candidate.model)
        return now if now is None or isinstance(now, Production) else UNKNOWN

    async def tick(self) -> datetime | None:
        """Apply every deadline and reminder that is due; returns when the next one is."""
        nearest: datetime | None = None
        for review in self.store.pending():
            await self.notifier.announce(review)  # retries a notification that failed earlier
            async with self.lock:
                with self.store.locked(review.submission_id) as current:  # every replica runs this loop
                    if current is None:
                        continue
                    step = reviews.due(current, self.clock())
                    for event in (step.escalation, step.decision):
                        if event is not None:
                            await self.emit(event)
                    if step.review != current:
                        self.store.save(step.review)
            if step.decision is not None:
                log.info("review_timed_out", submission_id=str(review.submission_id),
                         outcome=step.decision.outcome, decided_by=step.decision.decided_by)
                self.notifier.later(self.notifier.refresh(step.review))
            if step.escalation is not None:
                log.info("review_escalated", submission_id=str(review.submission_id),
                         approvers=list(step.escalation.approvers), deadline=step.escalation.deadline.isoformat())
                self.notifier.later(self.notifier.escalated(step.review))
            if step.remind:
                log.info("review_reminder", submission_id=str(review.submission_id), pending=list(step.remind))
                self.notifier.later(self.notifier.remind(step.review, step.remind))
            upcoming = reviews.next_due(step.review)
            if upcoming is not None and (nearest is None or upcoming < nearest):
                nearest = upcoming
        return nearest

    async def run(self, tick_seconds: float) -> None:
        """The deadline loop: applies what is due at start (a restart after a deadline applies the
        timeout), then sleeps until the next due time, at most `tick_seconds`, or a new review."""
        while True:
            self.wake.clear()
            try:
                nearest = await self.tick()
            except Exception as exc:  # noqa: BLE001 - a bad moment (Kafka away) must not end the loop
                log.warning("deadline_tick_failed", error=repr(exc))
                nearest = None
            wait = tick_seconds
            if nearest is not None:
                wait = min(wait, max((nearest - self.clock()).total_seconds(), 0.05))
            try:
                await asyncio.wait_for(self.wake.wait(), wait)
            except TimeoutError:
                pass


def _version(production: Production | None) -> str | None:
    return production.candidate.version if production else None
