"""The component tests' two brokers, one set of test bodies (as FastStream's `with_real=True` and
temporal's `--workflow-environment` do it):

- `memory` (default): FastStream's in-memory TestKafkaBroker; a publish is handled before it returns.
- `kafka` (`pytest tests/component --broker=kafka`): the same apps on the real broker. Each test
  starts on empty topics (`truncate` deletes what earlier tests left), with consumer groups of its
  own, and `settle` waits, with a deadline, until every subscriber of the app has handled every
  record on its topics, including what the handlers emitted meanwhile: a handler emits before it
  returns, so its output is on the log before its input counts as handled.

On the real broker the apps connect as the admin (a super user), not as their own principals: a
component test publishes the app's input and observes its output through the app's own broker
object, which as the service's principal could do neither. Who may write and read what is proven
by tests/integration/test_acl.py on the same broker, and the end-to-end tests run each service as
its own principal.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from faststream._internal.middlewares import BaseMiddleware
from faststream.kafka import KafkaBroker, TestKafkaBroker

from shared.admin import partitions_of
from shared.kafka import KafkaAccess
from shared.topics import ALL_TOPICS

MODE = "memory"
KAFKA: KafkaAccess | None = None  # kafka mode: the cluster as the admin
# In memory nothing is contacted (TestKafkaBroker fakes the connection): any credentials do.
_MEMORY = KafkaAccess(bootstrap_servers="127.0.0.1:1", sasl_username="memory", sasl_password="unused")
SETTLE_SECONDS = 60.0

# (subscriber, topic, partition) -> the highest offset a group-less subscriber finished with.
_done: dict[tuple[int, str, int], int] = {}


class _Tracker(BaseMiddleware):
    """Outermost middleware in kafka mode: notes each record a subscriber finished with."""

    async def after_processed(self, exc_type=None, exc_val=None, exc_tb=None) -> bool:
        handler = self.context.get_local("handler_")
        # One record, or a follower's batch of them (shared.broker.follow).
        records = self.msg if isinstance(self.msg, (list, tuple)) else [self.msg]
        for msg in records:
            if handler is not None and hasattr(msg, "offset"):
                key = (id(handler), msg.topic, msg.partition)
                _done[key] = max(_done.get(key, -1), msg.offset)
        return False


def access() -> KafkaAccess:
    """Where the apps connect: the real broker as the admin, or nowhere (in memory)."""
    return KAFKA if MODE == "kafka" and KAFKA is not None else _MEMORY


def kafka_fields() -> dict[str, object]:
    """`access()` as settings fields (ServiceSettings(**kafka_fields(), ...))."""
    kafka = access()
    return {"kafka_bootstrap_servers": kafka.bootstrap_servers, "kafka_security_protocol": kafka.security_protocol,
            "kafka_sasl_username": kafka.sasl_username, "kafka_sasl_password": kafka.sasl_password,
            "kafka_ssl_cafile": kafka.ssl_cafile}


async def truncate() -> None:
    """Delete every record of Signoff's topics: the test starts on empty logs."""
    admin = AIOKafkaAdminClient(**access().client_kwargs())
    consumer = AIOKafkaConsumer(**access().client_kwargs(), enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in ALL_TOPICS for p in await partitions_of(consumer, t)]
        end = await consumer.end_offsets(partitions)
        await admin.delete_records({tp: RecordsToDelete(offset) for tp, offset in end.items() if offset})
    finally:
        await consumer.stop()
        await admin.close()


def truncate_now() -> None:
    """`truncate` from synchronous code (a fixture's builder), on a loop of its own."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, truncate()).result()


@asynccontextmanager
async def running(*brokers: KafkaBroker) -> AsyncIterator[Any]:
    """`TestKafkaBroker(broker)` in memory, or the real broker in kafka mode."""
    if MODE == "memory":
        async with TestKafkaBroker(*brokers) as br:
            yield br
        return
    for broker in brokers:
        if not getattr(broker, "_signoff_tracked", False):
            broker.insert_middleware(_Tracker)
            broker._signoff_tracked = True  # type: ignore[attr-defined]
        _listen_to_publishers(broker)
    async with TestKafkaBroker(*brokers, with_real=True) as br:
        await settle(*brokers)  # every subscriber has joined and read what the log holds
        yield br


def _listen_to_publishers(broker: KafkaBroker) -> None:
    """A publisher's test record (`publisher.mock`) comes from a subscriber of its topic; where
    the app has none, add one reading from the (truncated) beginning, so nothing is missed."""
    subscribed = {t for sub in broker.subscribers for t in getattr(sub, "topic_names", [])}
    for publisher in broker.publishers:
        if publisher.topic not in subscribed:
            async def listen(body: Any) -> None:
                pass
            listen.__name__ = f"listen_{publisher.topic.replace('.', '_')}"
            broker.subscriber(publisher.topic, group_id=None, auto_offset_reset="earliest")(listen)
            subscribed.add(publisher.topic)


async def settle(*brokers: KafkaBroker, timeout: float = SETTLE_SECONDS) -> None:
    """Kafka mode: wait until each subscriber has handled every record now on its topics, and
    again after what that produced. Memory mode: nothing to wait for."""
    if MODE == "memory":
        return
    consumer = AIOKafkaConsumer(**access().client_kwargs(), enable_auto_commit=False)
    admin = AIOKafkaAdminClient(**access().client_kwargs())
    await consumer.start()
    await admin.start()
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while (behind := await _behind(consumer, admin, brokers)):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the app did not handle every record within {timeout}s: {behind[:5]}")
            await asyncio.sleep(0.05)  # polling offsets, bounded by the deadline
    finally:
        await consumer.stop()
        await admin.close()


async def _behind(consumer: AIOKafkaConsumer, admin: AIOKafkaAdminClient,
                  brokers: tuple[KafkaBroker, ...]) -> list[str]:
    out = []
    for broker in brokers:
        for sub in broker.subscribers:
            names = getattr(sub, "topic_names", [])
            if not names:
                continue
            partitions = [TopicPartition(t, p) for t in names for p in await partitions_of(consumer, t)]
            start = await consumer.beginning_offsets(partitions)
            end = await consumer.end_offsets(partitions)
            committed = (await admin.list_consumer_group_offsets(sub.group_id, partitions=partitions)
                         if sub.group_id else {})
            for tp in partitions:
                if end[tp] <= start[tp]:
                    continue  # nothing on this partition since the test began
                if sub.group_id:
                    meta = committed.get(tp)
                    handled = meta.offset if meta is not None and meta.offset >= 0 else start[tp]
                else:
                    handled = _done.get((id(sub), tp.topic, tp.partition), start[tp] - 1) + 1
                if handled < end[tp]:
                    out.append(f"{sub.group_id or 'follower'} on {tp.topic}[{tp.partition}] at {handled} of {end[tp]}")
    return out
