"""Facts a decision must not miss, read to their end before each decision.

A `Facts` keeps a pure view (such as `shared.rejections.Rejections`) current from a topic with a
group-less follower, and `caught_up()` waits until the follower has handled every record that
was on the topic when the wait began. A service that calls it before deciding therefore decides
with every fact Kafka acknowledged before that moment, whatever partition it is on and however
far its own consumer groups lag: true by construction, not by timing (docs/decisions.md).

In memory (FastStream's TestKafkaBroker) a publish is handled before it returns, so there is
nothing to wait for: `caught_up` is a no-op there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream import Context
from faststream.kafka import KafkaBroker

from shared import codec
from shared.admin import partitions_of
from shared.broker import NotYet, follow, keys_of
from shared.events import Event
from shared.kafka import KafkaAccess

log = structlog.get_logger()


async def _raw(msg: Any, original_decoder: Any = None) -> bytes:
    return msg.body


class Facts:
    def __init__(self, broker: KafkaBroker, topic: str, apply: Callable[[Event], object],
                 kafka: KafkaAccess, timeout: float = 60.0) -> None:
        self.topic, self.apply, self.kafka, self.timeout = topic, apply, kafka, timeout
        self.handled: dict[int, int] = {}  # partition -> the highest offset handled (applied or skipped)
        self.skipped = 0
        self.in_memory = False  # set by the component tests' in-memory broker
        self._changed = asyncio.Condition()
        self._consumer: AIOKafkaConsumer | None = None

        # Raw bytes: a record that does not decode is counted as handled (and skipped) here, so
        # one bad record can never hold the barrier; the topic's consumers dead-letter it.
        @follow(broker, topic, decoder=_raw)
        async def on_fact(body: bytes, message: Any = Context("message")) -> None:
            raw = message.raw_message
            try:  # verified first: a forged rejection (or approval) is never a fact
                keys_of(broker).keyring.verify(raw.topic, raw.key, raw.headers, body)
                event = codec.decode_record(raw.topic, raw.key, body, raw.headers)
            except codec.BadEvent as exc:
                self.skipped += 1
                log.warning("fact_skipped", topic=raw.topic, offset=raw.offset, reason=str(exc)[:200])
            else:
                if self.apply(event):
                    log.info("fact_learnt", topic=raw.topic, event_type=event.type)
            async with self._changed:
                self.handled[raw.partition] = max(self.handled.get(raw.partition, -1), raw.offset)
                self._changed.notify_all()

        self.follower = on_fact

    async def caught_up(self) -> None:
        """Return once every record on the topic now has been handled; NotYet after `timeout`
        seconds (the caller's event is then retried until they are, never decided without them)."""
        if self.in_memory:
            return
        consumer = await self._offsets()
        partitions = [TopicPartition(self.topic, p) for p in await partitions_of(consumer, self.topic)]
        start = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        wanted = {tp.partition: end[tp] - 1 for tp in partitions if end[tp] > start[tp]}

        def done() -> bool:
            return all(self.handled.get(p, -1) >= last for p, last in wanted.items())

        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(done), self.timeout)
        except TimeoutError:
            raise NotYet(f"{self.topic} is not read to its end after {self.timeout} s "
                         f"(read up to {self.handled}, wanted {wanted})") from None

    async def _offsets(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(**self.kafka.client_kwargs(), enable_auto_commit=False)
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
