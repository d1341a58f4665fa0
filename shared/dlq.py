"""Dead letters on Kafka: list them, show one, re-drive one. `signoff dlq` and the console call these.

    list_letters(kafka, topic=None, limit=100, since=None)   the newest letters, newest first
    show(kafka, topic, partition, offset, keyring=None)      one letter, its value (bounded), its signature
    replay(kafka, letter_or_coordinates, by=..., force=False) re-drive it to its original topic

What a letter holds, and what a re-drive adds, is shared/dead_letter.py. A re-drive republishes
the original record unchanged, so the consumer verifies the original signer's signature again: a
principal allowed to re-drive (operators, shared/acl.py) can put back what a service wrote, never
make an event of its own. It refuses a clipped letter (the original bytes are gone) and a letter
re-driven before, unless forced: the services absorb a duplicate (an event's outcome has an id
derived from it, the policy decides a submission once, the deployer's steps are idempotent), so
forcing is safe, but a second re-drive is usually a mistake. Earlier re-drives are found by reading
the original topic from the letter's time for records that name the letter in
`signoff_redriven_from` and are its record byte for byte (dead_letter.is_redrive: the header alone
is unsigned, and a record of someone else's naming the letter must not block its re-drive). Who
re-drove is in the log line `dead_letter_redriven` (with the Kafka principal); `signoff_redriven_by`
is what the re-driver said, shown as such.

Two re-drives of one letter in one process (two people on the console) take turns: the second
looks for earlier re-drives after the first has published, so it is refused. Two processes (the
console and `signoff dlq replay` at the same moment) can both publish; the consumers absorb the
duplicate (above).
"""

from __future__ import annotations

import asyncio
import heapq
import weakref
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from pydantic import BaseModel, ConfigDict

from shared import reader, signing
from shared.admin import NotAuthorized
from shared.dead_letter import (
    DLQ_TOPICS,
    REDRIVEN_BY,
    Coordinates,
    Letter,
    NotALetter,
    check_by,
    coordinates,
    dlq_topic,
    is_redrive,
    parse,
    redrive_headers,
    refusal,
    shown,
)
from shared.kafka import KafkaAccess, unreachable

__all__ = ["MAX_LIMIT", "Coordinates", "Letter", "NotALetter", "ReplayRefused", "ReplayResult", "coordinates",
           "list_letters", "redrives", "replay", "show"]

log = structlog.get_logger()
MAX_LIMIT = 10_000
# Clocks of the service that dead-lettered and of whoever re-drove may disagree: look back this much more.
CLOCK_SKEW = timedelta(minutes=10)
# One lock per letter being re-driven in this process; gone when no re-drive of it waits or runs.
_LOCKS: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


class ReplayRefused(Exception):
    """A letter that is not re-driven; the message says why and what to do instead."""


class ReplayResult(BaseModel):
    """What a re-drive did: which letter went where, by whom."""

    model_config = ConfigDict(frozen=True)

    letter: str
    topic: str
    partition: int
    offset: int
    key: str | None
    event_id: str | None
    by: str
    at: datetime
    forced: bool


async def list_letters(kafka: KafkaAccess, topic: str | None = None, *, limit: int = 100,
                       since: datetime | None = None) -> list[Letter]:
    """The newest `limit` letters of one dead-letter topic (a consumed topic or its .dlq) or of
    all, from `since`, newest first. Values are not kept: `show` reads one."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit: 1 to {MAX_LIMIT}, not {limit}")
    names = [dlq_topic(topic)] if topic is not None else list(DLQ_TOPICS)
    newest: list[tuple[int, str, int, int, Letter]] = []  # a heap of the newest `limit`
    async for record in reader.read(kafka, names, since=since):
        try:
            letter = parse(record.topic, record.partition, record.offset, record.timestamp, record.key,
                           record.value, record.headers)
        except NotALetter:
            continue  # written by something else than Signoff's dead letters: not a letter to list
        item = (record.timestamp, record.topic, record.partition, record.offset, letter)
        if len(newest) < limit:
            heapq.heappush(newest, item)
        elif item[:4] > newest[0][:4]:
            heapq.heapreplace(newest, item)
    return [item[-1] for item in sorted(newest, key=lambda i: i[:4], reverse=True)]


async def _record(kafka: KafkaAccess, where: Coordinates) -> reader.Record:
    record = await reader.read_at(kafka, where.topic, where.partition, where.offset)
    if record is None:
        raise NotALetter(f"no letter at {where}: never written, or deleted by retention (`signoff dlq list` "
                         "shows the letters there are)")
    return record


async def show(kafka: KafkaAccess, topic: str, partition: int, offset: int,
               keyring: signing.Keyring | None = None) -> Letter:
    """The letter at those coordinates with its value as text (bounded) and, given the trust
    file's keyring, whether its signature verifies now (what its consumer will decide on re-drive)."""
    record = await _record(kafka, coordinates(topic, partition, offset))
    letter = parse(record.topic, record.partition, record.offset, record.timestamp, record.key,
                   record.value, record.headers)
    return shown(letter, record.value, keyring, record.headers, record.key)


async def redrives(kafka: KafkaAccess, letter: Letter, held: reader.Record) -> list[str]:
    """The earlier re-drives of `letter` (its record: `held`), as 'at T (topic/partition/offset;
    header says by X)': records naming the letter that are its record byte for byte."""
    found = []
    async for record in reader.read(kafka, [letter.topic], since=letter.dead_lettered_at - CLOCK_SKEW):
        if is_redrive(letter, held, record):
            by = (dict(record.headers or ()).get(REDRIVEN_BY) or b"?")[:200].decode(errors="replace")
            at = datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(timespec="seconds")
            found.append(f"at {at} ({record.topic}/{record.partition}/{record.offset}; header says by {by!r})")
    return found


def _lock(where: Coordinates) -> asyncio.Lock:
    lock = _LOCKS.get(str(where))
    if lock is None:
        lock = _LOCKS[str(where)] = asyncio.Lock()
    return lock


async def replay(kafka: KafkaAccess, letter_or_coordinates: Letter | Coordinates, *, by: str,
                 force: bool = False) -> ReplayResult:
    """Re-drive a letter: its original record, unchanged, to its original topic with its original
    key, plus who re-drove which letter when. Raises ReplayRefused (clipped, re-driven before and
    not `force`), NotALetter (nothing there), NotAuthorized (this principal may not write the topic)."""
    check_by(by)
    where = letter_or_coordinates if isinstance(letter_or_coordinates, Coordinates) \
        else letter_or_coordinates.coordinates
    where = coordinates(where.topic, where.partition, where.offset)
    # One re-drive of a letter at a time here: the look for earlier re-drives and the publish are
    # one step, so a second one (a double click, two operators) finds the first and is refused.
    async with _lock(where):
        record = await _record(kafka, where)  # read again: what is re-driven is what the topic holds
        letter = parse(record.topic, record.partition, record.offset, record.timestamp, record.key,
                       record.value, record.headers)
        earlier = [] if letter.clipped else await redrives(kafka, letter, record)
        if (why := refusal(letter, earlier, force)) is not None:
            raise ReplayRefused(why)
        at = datetime.now(UTC)
        sent = await _publish(kafka, letter.topic, record.key, record.value,
                              redrive_headers(record.headers, letter, by, at))
    result = ReplayResult(letter=str(where), topic=letter.topic, partition=sent.partition, offset=sent.offset,
                          key=letter.key, event_id=letter.event_id, by=by, at=at, forced=bool(earlier))
    log.info("dead_letter_redriven", letter=str(where), to=f"{result.topic}/{result.partition}/{result.offset}",
             event_id=letter.event_id, by=by, reason=letter.reason[:200], forced=result.forced,
             principal=kafka.sasl_username)
    return result


async def _publish(kafka: KafkaAccess, topic: str, key: bytes | None, value: bytes | None,
                   headers: Sequence[tuple[str, bytes]]):
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all", enable_idempotence=True)
    try:
        await producer.start()
    except KafkaConnectionError:
        await producer.stop()
        raise unreachable(kafka) from None
    try:
        return await producer.send_and_wait(topic, value, key=key, headers=list(headers))
    except TopicAuthorizationFailedError:
        raise NotAuthorized(f"{kafka.sasl_username or 'this principal'} may not write {topic}: re-drive is for "
                            "operators (shared/acl.py; `signoff acl apply` grants it)") from None
    finally:
        await producer.stop()
