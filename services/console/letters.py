"""Dead letters for the console, through shared.dlq (the same list and re-drive as `signoff dlq`):
the answers as values a page shows, an error as a sentence, never an exception."""

from __future__ import annotations

from datetime import datetime

from aiokafka.errors import KafkaError

from shared import dlq
from shared.admin import NotAuthorized
from shared.kafka import KafkaAccess


async def listed(kafka: KafkaAccess, topic: str | None, limit: int,
                 since: datetime) -> tuple[list[dlq.Letter], str | None]:
    """The newest letters since `since` (of `topic`'s dead-letter topic, or of all), newest
    first; or why not. Reading from `since`, not from the topics' beginnings, bounds what a page load reads."""
    try:
        return await dlq.list_letters(kafka, topic, limit=limit, since=since), None
    except (ValueError, RuntimeError, NotAuthorized, KafkaError, TimeoutError, OSError) as exc:
        return [], f"cannot list the dead letters: {exc}"[:500]


async def redrive(kafka: KafkaAccess, topic: str, partition: int, offset: int, by: str) -> str:
    """Re-drive one letter into its original topic as `by`; what happened, in a sentence."""
    try:
        result = await dlq.replay(kafka, dlq.coordinates(topic, partition, offset), by=by)
    except (dlq.ReplayRefused, ValueError, RuntimeError, NotAuthorized, KafkaError, TimeoutError, OSError) as exc:
        return f"not re-driven: {exc}"[:500]
    return (f"re-driven {result.letter} to {result.topic}/{result.partition}/{result.offset} "
            f"(event {result.event_id or '?'}) by {result.by}")
