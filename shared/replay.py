"""State a service rebuilds from topics: read them from the beginning up to where they end now at
start (`rebuild`, `replay_many`), then keep it current with group-less followers (`follow_into`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream.kafka import KafkaBroker

from shared import codec
from shared.admin import partitions_of
from shared.broker import follow
from shared.events import Event

log = structlog.get_logger()


async def replay_many(bootstrap_servers: str, topics: Iterable[str]) -> list[Event]:
    """Every valid event on `topics` up to their end offsets now, in the order they happened
    (`occurred_at`, ties by event_id): the state built from them does not depend on which topic or
    partition was read first. Bad records are skipped (consumers dead-letter them). Duplicates are
    kept: a step the deployer repeated after a crash has the same event_id and a later occurred_at,
    and the followers see both copies too."""
    events = [event async for event in read_to_end(bootstrap_servers, tuple(topics))]
    return sorted(events, key=lambda e: (e.occurred_at, str(e.event_id)))


async def rebuild(bootstrap_servers: str, apply: Callable[[Event], object],
                  *event_types: type[Event]) -> int:
    """Apply every event of these types that is on their topics now, in the order they happened
    (`replay_many`); returns how many. Run at start, before `follow_into`'s subscribers start."""
    events = await replay_many(bootstrap_servers, [cls.topic for cls in event_types])
    for event in events:
        apply(event)
    return len(events)


def follow_into(broker: KafkaBroker, apply: Callable[[Event], object],
                *event_types: type[Event]) -> dict[type[Event], Any]:
    """Keep a state rebuilt by `replay_many` current: one `follow` subscriber per event type (its
    topic, read from the beginning at every start), each handing its validated event to `apply`;
    a truthy result means the state changed and is logged. Returns the subscribers by event type."""
    return {cls: follow(broker, cls.topic)(_handler(cls, apply)) for cls in event_types}


def _handler(cls: type[Event], apply: Callable[[Event], object]) -> Callable[..., Any]:
    async def handle(event: Event) -> None:
        if apply(event):
            log.info("state_changed", event_type=cls.type)

    # FastStream validates the payload against the parameter's annotation: this topic's event.
    handle.__annotations__ = {"event": cls, "return": None}
    handle.__name__ = handle.__qualname__ = f"follow_{cls.topic.replace('.', '_')}"
    return handle


async def read_to_end(bootstrap_servers: str, topics: tuple[str, ...],
                      keep: Callable[[Any], bool] | None = None) -> AsyncIterator[Event]:
    """The valid events of `topics` from their beginning up to their end offsets at the time of
    the call, without a consumer group; `keep` filters on the raw record before it is decoded.
    Bad records are skipped: the topics' consumers dead-letter them."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in await partitions_of(consumer, t)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if end[tp] > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    if keep is not None and not keep(record):
                        continue
                    try:
                        yield codec.decode(record.topic, record.value)
                    except codec.BadEvent:
                        pass
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
