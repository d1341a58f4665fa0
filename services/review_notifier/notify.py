"""Telling people, through every channel configured to send (channels/): announce a review,
refresh it after a change, remind those who have not voted.

Each channel records what it sent, so a restart or a retry never posts or mails twice, and the
deadline loop retries what failed. Failures are logged without secrets and never raised: a
decision stands whether or not Slack or the mail server was reachable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING

import structlog

from services.review_notifier.reviews import Review

if TYPE_CHECKING:
    from services.review_notifier.channels import Channel
    from services.review_notifier.state import ReviewStore

log = structlog.get_logger()


class Notifier:
    def __init__(self, store: ReviewStore, channels: Sequence[Channel]) -> None:
        self.store = store
        self.channels = [channel for channel in channels if channel.sends]
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
        """Ask the approvers of the review's current stage, each channel at most once per stage."""
        async with self._announcing:
            for channel in self.channels:
                await self._each(channel, "announce", channel.announce(review), review)

    async def refresh(self, review: Review, origin: str | None = None, reply_to: str | None = None) -> None:
        """Show the review's current state. One refresh at a time, each from the state as stored
        when it runs, so an update that finishes late can never show an older state than one
        before it. `reply_to` goes to the channel the change came from (`origin`) only."""
        async with self._refreshing:
            current = self.store.get(review.submission_id) or review
            for channel in self.channels:
                await self._each(channel, "refresh",
                                 channel.refresh(current, reply_to if channel.name == origin else None), review)

    async def escalated(self, review: Review) -> None:
        await self.refresh(review)
        await self.announce(review)

    async def remind(self, review: Review, approvers: tuple[str, ...]) -> None:
        for channel in self.channels:
            await self._each(channel, "remind", channel.remind(review, approvers), review)

    @staticmethod
    async def _each(channel: Channel, step: str, work: Coroutine, review: Review) -> None:
        """One channel's step; a channel that fails in a way it did not handle stops no other."""
        try:
            await work
        except Exception as exc:  # noqa: BLE001
            log.warning("notify_failed", channel=channel.name, step=step, submission_id=str(review.submission_id),
                        error=type(exc).__name__)
