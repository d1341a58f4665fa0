"""Creates Signoff's topics explicitly (idempotent), with a configurable partition count."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from shared.topics import ALL_TOPICS


async def ensure_topics(
    bootstrap_servers: str,
    partitions: int,
    replication_factor: int = 1,
    topics: tuple[str, ...] = ALL_TOPICS,
    timeout: float = 60.0,
) -> list[str]:
    """Create the topics that do not exist yet; returns the ones it created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=15_000)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:  # the broker may still be starting: retry until the deadline
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(t, num_partitions=partitions, replication_factor=replication_factor)
                     for t in missing]
                )
            except TopicAlreadyExistsError:
                pass  # created concurrently by another service: that is the goal
        return missing
    finally:
        await admin.close()


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    """The partitions of `topic`, refreshing the consumer's metadata once if it does not know them."""
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public call
        parts = consumer.partitions_for_topic(topic)
    if not parts:
        raise RuntimeError(f"topic {topic!r} does not exist: run `signoff topics create` first")
    return parts
