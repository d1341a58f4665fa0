"""Telling people: the Slack message of each review (posted once, then kept current) and the emails
with signed links. Every send is recorded, so a restart or a retry never posts or mails twice, and
a failed send is retried by the deadline loop. Failures are logged without secrets, never raised:
a decision stands whether or not Slack or the mail server was reachable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine

import structlog

from services.review_notifier import emails, slack_blocks, tokens
from services.review_notifier.mail import Mailer
from services.review_notifier.reviews import Review
from services.review_notifier.slack import SlackClient
from services.review_notifier.state import ReviewStore
from shared.events import utcnow

log = structlog.get_logger()


class Notifier:
    def __init__(self, store: ReviewStore, slack: SlackClient | None = None, mailer: Mailer | None = None, *,
                 token_key: bytes | None = None, public_url: str = "", mail_from: str = "",
                 approver_emails: dict[str, str] | None = None, slack_users: dict[str, str] | None = None) -> None:
        self.store, self.slack, self.mailer = store, slack, mailer
        self.token_key, self.public_url, self.mail_from = token_key, public_url, mail_from
        self.approver_emails = approver_emails or {}
        self.slack_ids: dict[str, list[str]] = {}
        for user_id, approver in (slack_users or {}).items():
            self.slack_ids.setdefault(approver, []).append(user_id)
        self._tasks: set[asyncio.Task] = set()
        self._announcing = asyncio.Lock()
        self._refreshing = asyncio.Lock()

    def later(self, coro: Coroutine) -> None:
        """Run after the current answer; kept so shutdown can wait for it."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float = 10.0) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def announce(self, review: Review) -> None:
        """Post the review to Slack and mail its approvers, each at most once per stage."""
        async with self._announcing:
            stage = "escalated" if review.escalation else "requested"
            if self.slack and self.store.notice(review.submission_id, f"slack:{stage}") is None:
                try:
                    ref = await self.slack.post(slack_blocks.message(review))
                except Exception as exc:  # noqa: BLE001
                    _failed("slack_post_failed", review, exc)
                else:
                    self.store.record_notice(review.submission_id, f"slack:{stage}", ref)
                    if ref:
                        self.store.record_notice(review.submission_id, "slack", ref)
                    log.info("slack_posted", submission_id=str(review.submission_id), stage=stage)
            askees = review.escalation.approvers if review.escalation else review.request.approvers
            for approver in askees:
                kind = f"email:{stage}:{approver}"
                if self.store.notice(review.submission_id, kind) is None and await self._mail(review, approver):
                    self.store.record_notice(review.submission_id, kind, {})

    async def refresh(self, review: Review, response_url: str | None = None) -> None:
        """Show the review's current state in its Slack message: votes, outcome, buttons gone.
        One refresh at a time, each from the state as stored when it runs, so an update that
        finishes late can never show an older state than one before it."""
        if not self.slack:
            return
        async with self._refreshing:
            await self._refresh(self.store.get(review.submission_id) or review, response_url)

    async def _refresh(self, review: Review, response_url: str | None) -> None:
        message = slack_blocks.message(review)
        ref = self.store.notice(review.submission_id, "slack")
        try:
            if ref and self.slack.can_update:
                await self.slack.update(ref, message)
            elif response_url:
                await self.slack.respond(response_url, message)
            elif review.decision is not None or review.escalation is not None:
                await self.slack.post(message)  # a webhook message cannot change: say it anew
            else:
                return
        except Exception as exc:  # noqa: BLE001
            _failed("slack_update_failed", review, exc)
            return
        log.info("slack_updated", submission_id=str(review.submission_id),
                 outcome=review.decision.outcome if review.decision else "pending")

    async def escalated(self, review: Review) -> None:
        await self.refresh(review)
        await self.announce(review)

    async def remind(self, review: Review, approvers: tuple[str, ...]) -> None:
        if self.slack:
            mentions = [f"<@{uid}>" for a in approvers for uid in self.slack_ids.get(a, [])] or list(approvers)
            message = slack_blocks.reminder(review, mentions)
            ref = self.store.notice(review.submission_id, "slack")
            try:
                await self.slack.post({**message, "thread_ts": ref["ts"]} if ref and self.slack.can_update else message)
            except Exception as exc:  # noqa: BLE001
                _failed("slack_reminder_failed", review, exc)
        for approver in approvers:
            await self._mail(review, approver, reminder=True)

    async def answer(self, response_url: str | None, text: str) -> None:
        """Tell the one who clicked why their click changed nothing (only they see it)."""
        if self.slack and response_url:
            try:
                await self.slack.respond(response_url, {"text": text, "response_type": "ephemeral"},
                                         replace_original=False)
            except Exception as exc:  # noqa: BLE001
                log.warning("slack_answer_failed", error=type(exc).__name__)

    async def _mail(self, review: Review, approver: str, reminder: bool = False) -> bool:
        address = self.approver_emails.get(approver)
        if not (self.mailer and self.token_key and address) or approver == review.request.submission.submitter:
            return False
        links = {action: emails.link(self.public_url, tokens.issue(
                     self.token_key, review.submission_id, approver, action, review.deadline))
                 for action in ("approve", "reject")}
        message = emails.review_mail(review, self.mail_from, address, approver, links["approve"], links["reject"],
                                     reminder=reminder)
        try:
            await self.mailer.send(message)
        except Exception as exc:  # noqa: BLE001
            _failed("mail_failed", review, exc, approver=approver)
            return False
        log.info("mail_sent", submission_id=str(review.submission_id), approver=approver, reminder=reminder)
        return True


def _failed(what: str, review: Review, exc: Exception, **extra: str) -> None:
    # The exception's class and Slack's own error code, never a URL (a webhook URL is a secret).
    detail = str(exc) if exc.__class__.__name__ in ("SlackError", "SMTPException") else ""
    log.warning(what, submission_id=str(review.submission_id), error=type(exc).__name__, detail=detail,
                at=utcnow().isoformat(), **extra)
