"""RawMessage gives a handler FastStream's message on the event loop, with no worker thread: the
followers of shared.replay and shared.facts read every record of their topics through it."""

from __future__ import annotations

from typing import Any

import fast_depends.utils
import pytest
from faststream import Context
from faststream.kafka import KafkaBroker, TestKafkaBroker

from shared.broker import RawMessage


@pytest.fixture
def no_worker_threads(monkeypatch):
    async def refused(func, *args, **kwargs):
        raise AssertionError(f"{func} ran in a worker thread")

    monkeypatch.setattr(fast_depends.utils, "run_in_threadpool", refused)


async def test_the_message_reaches_the_handler_without_a_worker_thread(no_worker_threads):
    broker, seen = KafkaBroker(), []

    @broker.subscriber("raw-message-test")
    async def handle(body: dict[str, Any], message: Any = RawMessage()) -> None:
        seen.append((body, message.raw_message.topic))

    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish({"a": 1}, "raw-message-test")
    assert seen == [({"a": 1}, "raw-message-test")]


async def test_faststreams_own_context_would_take_a_worker_thread(no_worker_threads):
    # What RawMessage is for: without it the same handler needs a thread per record.
    broker = KafkaBroker()

    @broker.subscriber("context-test")
    async def handle(body: dict[str, Any], message: Any = Context("message")) -> None:
        raise AssertionError("not reached")

    async with TestKafkaBroker(broker) as test_broker:
        with pytest.raises(AssertionError, match="worker thread"):
            await test_broker.publish({"a": 1}, "context-test")
