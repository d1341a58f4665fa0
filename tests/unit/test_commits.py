"""shared/commits.py's flusher without a broker: an ack noted while a flush is on its way, or
left by a failed flush, is committed by the next round, never left for an ack that may not come."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka.errors import KafkaConnectionError

from shared.commits import BatchingConsumer


class Assignment:
    def __init__(self) -> None:
        self.position = 0

    def all_consumed_offsets(self) -> dict:
        return {"p0": self.position}


class Coordinator:
    """Commits that wait for `release` (a slow broker), or fail `failures` times first."""

    def __init__(self, failures: int = 0) -> None:
        self.committed: list[dict] = []
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.failures = failures

    async def commit_offsets(self, assignment, offsets) -> None:
        self.entered.set()
        await self.release.wait()
        if self.failures:
            self.failures -= 1
            raise KafkaConnectionError("broker away")
        self.committed.append(dict(offsets))


def consumer(coordinator: Coordinator, assignment: Assignment) -> BatchingConsumer:
    c = BatchingConsumer(bootstrap_servers="127.0.0.1:1", group_id="g", commit_interval_s=0.01)
    c._coordinator = coordinator
    c._subscription = SimpleNamespace(subscription=SimpleNamespace(assignment=assignment))
    return c


async def wait_for(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_an_ack_noted_while_a_flush_is_on_its_way_is_committed_by_the_next_round():
    coordinator, assignment = Coordinator(), Assignment()
    c = consumer(coordinator, assignment)
    assignment.position = 1
    await c.commit()
    await coordinator.entered.wait()  # the flusher is inside flush(), waiting on the broker
    assignment.position = 2
    await c.commit()  # the last record of the stream: no ack comes after it
    coordinator.release.set()
    await wait_for(lambda: coordinator.committed and coordinator.committed[-1] == {"p0": 2})
    assert coordinator.committed == [{"p0": 1}, {"p0": 2}]


async def test_a_failed_flush_is_tried_again_without_another_ack():
    coordinator, assignment = Coordinator(failures=2), Assignment()
    coordinator.release.set()
    c = consumer(coordinator, assignment)
    assignment.position = 5
    await c.commit()
    await wait_for(lambda: coordinator.committed == [{"p0": 5}])
