"""A test-side reader of every Signoff topic: collects records as they arrive, and waits, with a
deadline, until what a test expects has happened."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from shared import reader, topics
from shared.events import Event
from shared.kafka import KafkaAccess

WATCHED = topics.EVENT_TOPICS + tuple(topics.dlq(t) for t in topics.CONSUMED_TOPICS)


@dataclass(frozen=True)
class Seen:
    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, str]
    event: Event | None  # None for dead letters and anything that does not decode

    @property
    def subject(self) -> str | None:
        return self.headers.get("ce_subject")


class EventLog:
    def __init__(self, kafka: KafkaAccess) -> None:
        self.kafka = kafka
        self.records: list[Seen] = []
        self._changed = asyncio.Condition()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for r in reader.read(self.kafka, WATCHED, until=reader.FOREVER):
            headers = {k: v.decode(errors="replace") for k, v in r.headers}
            event = reader.decode(r) if r.topic in topics.EVENT_TOPICS else None
            self.records.append(Seen(r.topic, r.key, r.value, headers, event))
            async with self._changed:
                self._changed.notify_all()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def about(self, submission_id: object, topic: str | None = None) -> list[Seen]:
        """The records of one submission, in the order they happened (by their ce_time)."""
        sid = str(submission_id)
        mine = [s for s in self.records if s.subject == sid and (topic is None or s.topic == topic)]
        return sorted(mine, key=lambda s: s.event.occurred_at if s.event else s.headers.get("ce_time", ""))

    async def wait_for(self, predicate: Callable[[EventLog], object], timeout: float = 60.0,
                       what: str = "the expected events") -> object:
        """Wait until predicate(self) is truthy; fail with what was seen when the deadline passes."""
        async def until() -> object:
            async with self._changed:
                while not (result := predicate(self)):
                    await self._changed.wait()
                return result

        try:
            return await asyncio.wait_for(until(), timeout)
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                 f"{len(self.records)} records seen") from None

    async def wait_terminal(self, submission_id: object, timeout: float = 60.0) -> Seen:
        """The submission's first deployment.* or rejecting review.decided."""
        def terminal(log: EventLog) -> Seen | None:
            for s in log.about(submission_id):
                if s.topic in (topics.DEPLOYMENT_SUCCEEDED, topics.DEPLOYMENT_FAILED, topics.DEPLOYMENT_SUPERSEDED):
                    return s
                if s.topic == topics.REVIEW_DECIDED and s.event and s.event.outcome == "rejected":
                    return s
            return None

        return await self.wait_for(terminal, timeout, f"submission {submission_id} to end")  # type: ignore[return-value]
