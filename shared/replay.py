"""Reading a topic from its beginning up to where it ends now: for state a service rebuilds at start."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared import codec
from shared.admin import partitions_of
from shared.events import Event


async def replay(bootstrap_servers: str, topic: str) -> AsyncIterator[Event]:
    """Every valid event on `topic` up to its end offsets at the time of the call (bad records are
    skipped: the topic's consumers dead-letter them)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await partitions_of(consumer, topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if end[tp] > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    try:
                        yield codec.decode(record.topic, record.value)
                    except codec.BadEvent:
                        pass
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()

