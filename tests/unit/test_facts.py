"""The wait before a decision: done when the follower handled every record that was on the topic
when the wait began; NotYet (retried, never dead-lettered) when it does not get there in time."""

from __future__ import annotations

import asyncio

import pytest
from faststream.kafka import KafkaBroker

from shared import topics
from shared.broker import NotYet, transient
from shared.facts import Facts

TOPIC = topics.REVIEW_DECIDED


class Offsets:
    """What the broker says about the topic: two partitions, their start and end offsets."""

    def __init__(self, start: dict[int, int], end: dict[int, int]) -> None:
        self.start, self.end = start, end

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.end)

    asked_for_beginnings = 0

    async def beginning_offsets(self, partitions):
        self.asked_for_beginnings += 1
        return {tp: self.start[tp.partition] for tp in partitions}

    async def end_offsets(self, partitions):
        return {tp: self.end[tp.partition] for tp in partitions}


def facts(offsets: Offsets, timeout: float = 0.2) -> Facts:
    f = Facts(KafkaBroker(), TOPIC, lambda event: False, "127.0.0.1:1", timeout=timeout)

    async def known() -> Offsets:
        return offsets

    f._offsets = known  # type: ignore[method-assign]
    return f


async def test_done_once_every_record_below_the_end_was_handled():
    f = facts(Offsets(start={0: 0, 1: 0}, end={0: 3, 1: 1}))
    waiting = asyncio.create_task(f.caught_up())
    f.handled.update({0: 2})
    async with f._changed:
        f._changed.notify_all()
    await asyncio.sleep(0)  # let the waiter look: partition 1 is still behind
    assert not waiting.done()
    f.handled[1] = 0
    async with f._changed:
        f._changed.notify_all()
    await asyncio.wait_for(waiting, 5)


async def test_an_emptied_partition_is_done():
    """Retention or delete_records emptied it: start == end, nothing to wait for."""
    await asyncio.wait_for(facts(Offsets(start={0: 7, 1: 0}, end={0: 7, 1: 0})).caught_up(), 5)


async def test_a_current_follower_costs_one_offsets_request_per_decision():
    """Only the end offsets are asked for when the follower has read to them (the hot path)."""
    offsets = Offsets(start={0: 0, 1: 0}, end={0: 3, 1: 0})
    f = facts(offsets, timeout=5)
    f.handled.update({0: 2})
    await asyncio.wait_for(f.caught_up(), 5)
    assert offsets.asked_for_beginnings == 0


async def test_an_emptied_partition_is_done_after_the_empty_check_whatever_the_timeout():
    f = facts(Offsets(start={0: 7}, end={0: 7}), timeout=60)
    await asyncio.wait_for(f.caught_up(), 5)


async def test_not_there_in_time_is_not_yet_and_transient():
    f = facts(Offsets(start={0: 0}, end={0: 10}))
    f.handled[0] = 8
    with pytest.raises(NotYet, match="review.decided is not read to its end") as caught:
        await f.caught_up()
    assert transient(caught.value)  # retried without limit, never dead-lettered


async def test_in_memory_there_is_nothing_to_wait_for():
    f = facts(Offsets(start={0: 0}, end={0: 10}))
    f.in_memory = True
    await asyncio.wait_for(f.caught_up(), 1)
