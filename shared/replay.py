"""State a service rebuilds from topics: read them from the beginning up to where they end now at
start (`rebuild`, with `shared.reader`), then keep it current with group-less followers
(`follow_into`, FastStream subscribers)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog
from faststream.kafka import KafkaBroker

from shared.broker import follow
from shared.events import Event
from shared.kafka import KafkaAccess
from shared.reader import read_events
from shared.signing import Keyring

log = structlog.get_logger()


async def rebuild(kafka: KafkaAccess, apply: Callable[[Event], object],
                  *event_types: type[Event], keyring: Keyring) -> int:
    """Apply every event of these types that is on their topics now, once each, in the order they
    happened (`shared.reader.read_events`); returns how many. Run at start, before
    `follow_into`'s subscribers start (they read the same events again: applying one twice
    changes nothing). A record that does not decode is skipped and counted (logged), never
    allowed to stop the service: the topic's consumers dead-letter it. So is a record not signed
    by a key `keyring` trusts for its type: a forged deployment never enters the state."""
    skipped: Counter[str] = Counter()
    events = await read_events(kafka, [cls.topic for cls in event_types], skipped=skipped,
                               keyring=keyring)
    for event in events:
        apply(event)
    if skipped:
        log.warning("replay_skipped_records", skipped=sum(skipped.values()), by_topic=dict(skipped))
    return len(events)


def follow_into(broker: KafkaBroker, apply: Callable[[Event], object],
                *event_types: type[Event]) -> dict[type[Event], Any]:
    """Keep a state rebuilt by `rebuild` current: one `follow` subscriber per event type (its
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
