"""Every topic of a chaos run, as records with their offsets: followed live while the run goes (to
know when a review opened, a rejection landed, a submission ended), and read once more to its end
after the drain, which is what the figures are computed from.

Like tests/eventlog.py, with what the figures need besides: partition and offset (production is
replayed in offset order), and the records indexed by submission as they arrive, so waiting on
hundreds of submissions does not rescan the log at every record.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from shared import reader, topics
from shared.events import Event
from shared.kafka import KafkaAccess

# Every topic: the events (a topic added to the contract is watched too) and the dead letters.
WATCHED = topics.ALL_TOPICS


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: dict[str, str]
    event: Event | None  # None for dead letters and anything that does not decode

    @property
    def subject(self) -> str | None:
        return self.headers.get("ce_subject")

    @classmethod
    def of(cls, record: reader.Record) -> Rec:
        event = reader.decode(record) if record.topic in topics.EVENT_TOPICS else None
        headers = {k: v.decode(errors="replace") for k, v in record.headers}
        return cls(record.topic, record.partition, record.offset, record.key, headers, event)


async def read_all(kafka: KafkaAccess) -> list[Rec]:
    """Every record of every topic, from the beginning to the end as of now."""
    return [Rec.of(r) async for r in reader.read(kafka, WATCHED)]


class Tail:
    """A live reader of every topic; `wait` until a predicate over it holds, with a deadline."""

    def __init__(self, kafka: KafkaAccess) -> None:
        self.kafka = kafka
        self.records: list[Rec] = []
        self.about: defaultdict[str, list[Rec]] = defaultdict(list)
        self._changed = asyncio.Condition()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for record in reader.read(self.kafka, WATCHED, until=reader.FOREVER):
            rec = Rec.of(record)
            self.records.append(rec)
            if rec.subject:
                self.about[rec.subject].append(rec)
            async with self._changed:
                self._changed.notify_all()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def has(self, submission_id: str, topic: str, when: Callable[[Rec], bool] = lambda r: True) -> Rec | None:
        return next((r for r in self.about.get(submission_id, ()) if r.topic == topic and when(r)), None)

    async def wait(self, predicate: Callable[[], object], timeout: float) -> bool:
        """Wait until predicate() holds (True), or the deadline passes (False). The tail dying
        (it should not: the reader rides out a broker restart) raises here instead of a silent wait."""
        async def until() -> None:
            async with self._changed:
                while not predicate():
                    if self._task is not None and self._task.done():
                        self._task.result()
                        raise RuntimeError("the topic reader ended")
                    try:  # woken by each record, and every second to look at the reader task
                        await asyncio.wait_for(self._changed.wait(), 1.0)
                    except TimeoutError:
                        pass

        try:
            await asyncio.wait_for(until(), timeout)
            return True
        except TimeoutError:
            return False
