"""One runtime for every service: the Kafka broker, its subscribers and publishers, dead letters.

- Producers: acks=all and idempotence, so an acknowledged event is on every in-sync replica and a
  retried send is not written twice.
- Consumers: one consumer group per subscriber, offsets committed only after the handler returned
  (at-least-once): a crash means redelivery, never loss. Handlers must be idempotent. Commits are
  batched (shared/commits.py): a crash re-delivers at most the last ~0.25 s of handled records.
- Signed events (shared.signing): every Emitter signs with the service's key; every subscriber
  and follower verifies the signature against the trust file *before* parsing. An unsigned,
  unknown-key, bad-signature or wrong-role record is dead-lettered as "untrusted event: <why>"
  (followers skip it) and never reaches a handler, which reads its signer from
  `signing.verified_signer()`.
- Bad input: an event that cannot be parsed or validated goes to `<topic>.dlq` with its original
  bytes, headers and the reason, and the consumer carries on. So does an event whose outcome can
  never be published (larger than a Kafka record may be). An event whose handler keeps failing
  is retried with backoff and dead-lettered after `max_attempts`, so one poison event cannot stall
  its partition for ever; only Kafka errors that pass by themselves (`transient`) are retried
  without limit.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import logging
import weakref
from typing import Any

import aiokafka
import structlog
from aiokafka.errors import (
    BrokerNotAvailableError,
    KafkaError,
    KafkaTimeoutError,
    KafkaUnavailableError,
    MessageSizeTooLargeError,
    ProducerClosed,
    RebalanceInProgressError,
    RecordListTooLargeError,
    RecordTooLargeError,
    ReplicaNotAvailableError,
)
from faststream import AckPolicy, FastStream
from faststream._internal.context.context_type import Context
from faststream._internal.middlewares import BaseMiddleware
from faststream.exceptions import HandlerException
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from pydantic import ValidationError

from shared import codec, commits, observability, signing, topics
from shared.events import Event
from shared.settings import ServiceSettings

log = structlog.get_logger()


class Refused(Exception):
    """A valid event the service will not act on, for a reason of its domain (a rollback of a
    model it never deployed): dead-lettered at once with that reason, never retried. Raise it
    from a handler; a wire problem is `codec.BadEvent`."""


# Kafka errors that pass by themselves: the broker is unreachable or restarting, a leader is
# moving, a request timed out. aiokafka marks most as `retriable`; these few it does not. Any other
# KafkaError (a record too large, an invalid topic, an unsupported version, no authorization)
# fails the same way every time, so retrying it for ever would only stall the partition.
_TRANSIENT = (KafkaTimeoutError, KafkaUnavailableError, BrokerNotAvailableError, ReplicaNotAvailableError,
              RebalanceInProgressError, ProducerClosed)
# Errors meaning the outcome of an event can never be published: larger than a record may be.
_TOO_LARGE = (codec.TooLarge, MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)


class NotYet(Exception):
    """What a handler needs is not there yet, and will be (facts still being read after a long
    outage): retried without limit like a broker that is away, never dead-lettered."""


def transient(exc: BaseException) -> bool:
    """An error that a later try may not meet (retried without limit): a Kafka error that passes by
    itself, or NotYet."""
    return isinstance(exc, NotYet) or isinstance(exc, KafkaError) and (exc.retriable or isinstance(exc, _TRANSIENT))


# Each broker's consumer group prefix (settings.consumer_group_prefix), read by `subscribe`.
_GROUP_PREFIX: weakref.WeakKeyDictionary[KafkaBroker, str] = weakref.WeakKeyDictionary()
# Each broker's signing key and trusted keys (shared.signing), read by Emitter and the decoders.
_KEYS: weakref.WeakKeyDictionary[KafkaBroker, signing.ServiceKeys] = weakref.WeakKeyDictionary()
# Each broker's dead letters, whose per-topic count of records its followers skipped `skipped` keeps.
_DEAD_LETTERS: weakref.WeakKeyDictionary[KafkaBroker, DeadLetters] = weakref.WeakKeyDictionary()


def keys_of(broker: KafkaBroker) -> signing.ServiceKeys:
    """The service's keys; `open()` them at start-up, so a service without them does not start."""
    keys = _KEYS.get(broker)
    if keys is None:
        raise signing.KeyProblem("this broker was not made by make_broker: it has no signing keys")
    return keys


class _Broker(KafkaBroker):
    """FastStream's KafkaBroker whose subscribers' consumers batch their offset commits
    (shared/commits.py): one commit request per interval instead of one round trip per record."""

    async def _connect(self) -> Any:
        await super()._connect()
        config = self.config.broker_config
        built = config.builder  # set by connect(); the in-memory test broker puts a mock there
        if isinstance(built, functools.partial) and built.func is aiokafka.AIOKafkaConsumer:
            config.builder = functools.partial(commits.BatchingConsumer, *built.args, **built.keywords)
        return config.builder


def make_broker(settings: ServiceSettings, service: str) -> KafkaBroker:
    dead_letters = DeadLetters(max_attempts=settings.max_attempts)
    kafka = settings.kafka  # this service's own principal (shared/acl.py says what it may do)
    # Metrics, traces and readiness (shared/observability): `observability.of(broker)`.
    obs = observability.Observability(service, kafka, settings)
    broker = _Broker(
        # A list: FastStream takes a string as one host, so "a:1,b:2,c:3" (a cluster) would not connect.
        kafka.bootstrap_servers.split(","),
        security=kafka.security(),
        # Topics are created by the admin (`signoff topics create`), never by a subscriber's start:
        # a service may not create topics (shared/acl.py), and one created here would get defaults.
        allow_auto_create_topics=False,
        client_id=f"signoff-{service}",
        acks="all",
        enable_idempotence=True,
        middlewares=[*obs.middlewares(), LogContext, dead_letters],
        logger=log,
        # FastStream's own lines ("Received", "Processed" per record, "waiting for messages") at
        # DEBUG: two per record and handler, saying what the handler's lines (and LogContext's
        # submission_id, event_id, topic, offset on them) say; errors stay ERROR.
        log_level=logging.DEBUG,
        graceful_timeout=30.0,
    )
    dead_letters.broker = broker
    _DEAD_LETTERS[broker] = dead_letters
    obs.attach(broker)
    _GROUP_PREFIX[broker] = settings.consumer_group_prefix
    _KEYS[broker] = signing.ServiceKeys(
        settings.signing_key_file, settings.signing_key.get_secret_value() if settings.signing_key else None,
        settings.trusted_keys, settings.accept_unsigned_submissions, settings.model_config.get("env_prefix", ""))
    return broker


def make_app(broker: KafkaBroker, service: str, description: str, **hooks: Any) -> FastStream:
    """The FastStream app of a service, with its AsyncAPI title and description (`make asyncapi`)."""
    spec = AsyncAPI(broker, title=f"Signoff {service}", version="1", description=description.strip())
    return FastStream(broker, specification=spec, logger=log, **hooks)


class RawMessage(Context):
    """A handler's `message: Any = RawMessage()` parameter: FastStream's message (its `raw_message`
    the consumer record: topic, partition, offset, key, headers), as `Context("message")` gives it
    but resolved on the event loop. FastDepends runs a custom field's `use` in a worker thread when
    it is a plain function: a thread hop, and the GIL handed over and back, for every record a
    follower reads (a tenth of the policy's CPU in `make bench`'s profile)."""

    def __init__(self) -> None:
        super().__init__("message")

    async def use(self, /, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return super().use(**kwargs)


def subscribe(broker: KafkaBroker, topic: str, service: str, **options: Any):
    """A subscriber that commits after handling (NACK_ON_ERROR: a failure rewinds and retries).
    Each (service, topic) pair is its own consumer group, so one subscription never rebalances
    another."""
    return broker.subscriber(
        topic,
        group_id=f"{_GROUP_PREFIX.get(broker, 'signoff')}-{service}.{topic}",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        # Never answer a record's `reply_to` header: a sender would choose a topic this service
        # then writes to, as its own principal (the header is not signed).
        no_reply=True,
        **{"decoder": _decoder(broker), **options},
    )


# A follower takes what its fetches brought in batches of up to this many records.
FOLLOW_BATCH = 500
# How long a follower's idle poll waits for a record before asking again (shared.commits' getmany
# answers as soon as one is fetched: this bounds nothing but an idle loop's wake-ups).
FOLLOW_POLL_MS = 500


def follow(broker: KafkaBroker, *topics: str, **options: Any):
    """A subscriber outside any consumer group: it reads `topics` (one consumer for all) from the
    beginning at every start, unless a view restored from its snapshot moves it on from there
    (shared.replay.Kept.attach), and commits nothing. For state a service rebuilds from topics
    (and keeps current).

    It takes records in batches, as fetched (up to FOLLOW_BATCH): FastStream's path (its
    middlewares, dependency injection) runs once per batch rather than once per record, which
    costs about a millisecond of CPU per record against a fifth of that for the checks themselves
    (`python -m bench.run` measures both: bench/receive.py). The handler gets the consumer records
    (`records: list[Any]`) and checks each one itself with `verified` (signature, then decoding and
    validation), skipping what does not pass with `skipped`, so one bad record costs only itself."""
    return broker.subscriber(
        *topics,
        group_id=None,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        no_reply=True,  # as `subscribe`
        batch=True,
        max_records=FOLLOW_BATCH,
        batch_timeout_ms=FOLLOW_POLL_MS,
        **{"parser": _batch_parser, "decoder": _records, **options},
    )


async def _batch_parser(records: Any, original_parser: Any) -> Any:
    """FastStream's batch parser, given the records without their headers: it decodes every header
    value of every record as UTF-8, so one record with a header that is not (or a null one) would
    fail the whole batch before the handler sees it. The handler gets the records as they came, and
    checks each one's headers itself (`verified`: one bad record costs only itself)."""
    batch = tuple(records) if isinstance(records, (list, tuple)) else (records,)
    message = await original_parser(tuple(dataclasses.replace(r, headers=()) for r in batch))
    message.raw_message = batch
    return message


async def _records(msg: Any, original_decoder: Any = None) -> list[Any]:
    """A follower's batch as its consumer records (the in-memory broker hands over a list)."""
    raw = msg.raw_message
    return list(raw) if isinstance(raw, (list, tuple)) else [raw]


def verified(broker: KafkaBroker, record: Any) -> Event:
    """A follower's record as its event, checked as a subscriber's decoder checks one: the signature
    against the trust file first, then the CloudEvents headers, the body, the key and the event's
    own validation. Raises codec.BadEvent (signing.Untrusted is one) naming what is wrong."""
    keys_of(broker).keyring.verify(record.topic, record.key, record.headers, record.value)
    return codec.decode_record(record.topic, record.key, record.value, record.headers)


def skipped(broker: KafkaBroker, record: Any, reason: str) -> None:
    """A follower could not use `record`: logged and counted, and it reads on. A follower re-reads
    its topic at every start, so dead-lettering would repeat each time; the topic's own consumers
    (subscribers in a group) dead-letter it."""
    dead_letters = _DEAD_LETTERS.get(broker)
    count = 0
    if dead_letters is not None:
        count = dead_letters.skipped[record.topic] = dead_letters.skipped.get(record.topic, 0) + 1
    log.warning("follower_skipped_event", topic=record.topic, partition=record.partition,
                offset=getattr(record, "offset", None), reason=reason[:1000], skipped=count)


def bind_record(record: Any) -> None:
    """Log lines from here on name the record's submission, event, topic and offset."""
    headers = _headers(record)
    structlog.contextvars.bind_contextvars(
        submission_id=headers.get("ce_subject"),
        event_id=headers.get("ce_id"),
        topic=record.topic,
        offset=getattr(record, "offset", None),
    )


class Emitter:
    """Publishes events with their key and CloudEvents headers; one publisher per topic, so each
    service's AsyncAPI document lists what it emits."""

    def __init__(self, broker: KafkaBroker, source: str, *event_types: type[Event]) -> None:
        self.source = source
        self.broker = broker
        self.keys = keys_of(broker)  # signs every record (loaded at start-up)
        self.publishers = {
            cls: broker.publisher(cls.topic, schema=cls, title=f"{cls.topic}:publish",
                                  description=(cls.__doc__ or "").strip() or None)
            for cls in event_types
        }

    async def emit(self, event: Event) -> None:
        record = self.keys.signer.sign(codec.encode(event, self.source))
        obs = observability.of(self.broker)
        if obs is None:
            await self.publishers[type(event)].publish(record.value, key=record.key, headers=record.headers)
        else:  # in the submission's trace, with its time (shared/observability/tracing.py); then counted
            with observability.tracing.emitting(obs.memory, event.submission_id) as (extra, submitted):
                await self.publishers[type(event)].publish(record.value, key=record.key,
                                                           headers={**record.headers, **extra})
            obs.metrics.observe(event, submitted)
        log.info("emitted", topic=record.topic, emitted_id=str(event.event_id))


def _decoder(broker: KafkaBroker) -> Any:
    async def decode_body(msg: Any, original_decoder: Any) -> dict:
        """Verify the signature (shared.signing: raises Untrusted, a BadEvent), then parse and
        upcast the JSON body; pydantic then validates it against the handler's type. The verified
        signer is `signing.verified_signer()` for the handler."""
        signing.set_signer(None)
        raw = msg.raw_message
        codec.check_headers(msg.headers)  # no CloudEvents headers: refused as such, before anything else
        signing.set_signer(keys_of(broker).keyring.verify(raw.topic, raw.key, raw.headers, msg.body))
        data = codec.load(raw.topic, msg.body, msg.headers.get("ce_type"))
        codec.check_key(raw.topic, raw.key, data)  # the record key must be the event's model
        return data

    return decode_body


class LogContext(BaseMiddleware):
    """Binds submission_id and event_id (from the CloudEvents headers) to every log line of a message."""

    async def on_receive(self) -> None:
        assert self.msg is not None, "a consumed message; msg is None only when publishing"
        if not _batch(self.msg):  # a follower's batch: its handler binds each record (`bind_record`)
            bind_record(self.msg)

    async def after_processed(self, exc_type=None, exc_val=None, exc_tb=None) -> bool:
        structlog.contextvars.clear_contextvars()
        return False


class DeadLetters:
    """Middleware factory; holds the attempt counts of events that failed unexpectedly."""

    def __init__(self, max_attempts: int, backoff: float = 0.2, max_backoff: float = 2.0) -> None:
        self.broker: KafkaBroker | None = None
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.attempts: dict[tuple[str, int, int], int] = {}
        self.skipped: dict[str, int] = {}  # per topic: records its followers could not read

    def __call__(self, msg: Any, /, *, context: Any) -> _DeadLetterScope:
        return _DeadLetterScope(msg, context=context, owner=self)

    async def send(self, record: Any, reason: str) -> None:
        assert self.broker is not None, "DeadLetters.broker is set by make_broker"
        headers = {
            **_headers(record, keep_binary=True),
            "dlq_reason": reason[:4000],
            "dlq_topic": record.topic,
            "dlq_partition": str(record.partition),
            "dlq_offset": str(record.offset),
        }
        value = record.value
        if value is not None and len(value) > codec.MAX_EVENT_BYTES:
            # A broker set to accept larger records let it in; with our headers it would not fit
            # the dead-letter topic, so the letter keeps its first MAX_EVENT_BYTES and says so.
            headers["dlq_truncated_from"] = str(len(value))
            value = value[:codec.MAX_EVENT_BYTES]
        await self.broker.publish(value, topic=topics.dlq(record.topic), key=record.key, headers=headers)
        if (obs := observability.of(self.broker)) is not None:
            obs.metrics.dead_lettered(record.topic, reason)
        log.warning("dead_lettered", reason=reason, dlq=topics.dlq(record.topic))


class _DeadLetterScope(BaseMiddleware):
    def __init__(self, msg: Any, /, *, context: Any, owner: DeadLetters) -> None:
        super().__init__(msg, context=context)
        self.owner = owner

    async def after_processed(self, exc_type=None, exc_val=None, exc_tb=None) -> bool:
        assert self.msg is not None, "a consumed message; msg is None only when publishing"
        if _batch(self.msg):  # a follower's batch: its handler skips a bad record itself (`skipped`)
            if exc_val is not None and not isinstance(exc_val, (HandlerException, asyncio.CancelledError)):
                log.error("follower_batch_failed", error=repr(exc_val)[:1000], records=len(self.msg))
            return False
        where = (self.msg.topic, self.msg.partition, self.msg.offset)
        if exc_val is None or isinstance(exc_val, (HandlerException, asyncio.CancelledError)):
            self.owner.attempts.pop(where, None)
            return False
        if getattr(self.context.get_local("handler_"), "group_id", "") is None:
            # A follower (see `follow`) re-reads its topic at every start: dead-lettering would
            # repeat each time, and a retry changes nothing. The topic's own consumers judge it.
            reason = codec.describe(exc_val) if isinstance(exc_val, ValidationError) else str(exc_val)
            skipped = self.owner.skipped[self.msg.topic] = self.owner.skipped.get(self.msg.topic, 0) + 1
            log.warning("follower_skipped_event", reason=reason[:1000], skipped=skipped)
            return True
        if isinstance(exc_val, signing.Untrusted):  # never acted on: not from whom it must be
            await self.owner.send(self.msg, f"untrusted event: {exc_val}")
            return True
        if isinstance(exc_val, codec.BadEvent):
            await self.owner.send(self.msg, f"invalid event: {exc_val}")
            return True  # handled: the offset is committed and the consumer moves on
        if isinstance(exc_val, Refused):
            await self.owner.send(self.msg, f"refused: {exc_val}")
            return True
        if isinstance(exc_val, ValidationError):
            await self.owner.send(self.msg, f"invalid event: {codec.describe(exc_val)}")
            return True
        if isinstance(exc_val, _TOO_LARGE):
            # What the event leads to can never be published: retrying would stall the partition.
            await self.owner.send(self.msg, f"undeliverable: what this event leads to is too large "
                                            f"for a Kafka record: {exc_val}")
            return True
        if transient(exc_val):
            # The broker is unreachable or busy: not the event's fault. Retry for as long as it
            # takes, never dead-letter a good event because Kafka restarted.
            log.warning("kafka_unavailable_will_retry", error=repr(exc_val))
            await asyncio.sleep(self.owner.max_backoff)
            return False
        attempt = self.owner.attempts.get(where, 0) + 1
        if attempt >= self.owner.max_attempts:
            self.owner.attempts.pop(where, None)
            await self.owner.send(self.msg, f"handler failed {attempt} times: {exc_val!r}")
            return True
        self.owner.attempts[where] = attempt
        log.warning("handler_failed_will_retry", attempt=attempt, error=repr(exc_val))
        await asyncio.sleep(min(self.owner.backoff * 2 ** (attempt - 1), self.owner.max_backoff))
        return False  # NACK_ON_ERROR rewinds to this offset: the event is delivered again


def _batch(msg: Any) -> bool:
    """Whether a middleware's message is a batch (a follower's records), not one record."""
    return isinstance(msg, (list, tuple))


def _headers(record: Any, keep_binary: bool = False) -> dict[str, str]:
    """Kafka headers as text; with keep_binary, a header that is not UTF-8 is kept as base64
    under `<name>.b64`, so a dead letter carries the original headers without loss."""
    out: dict[str, str] = {}
    for name, value in record.headers or ():
        try:
            out[name] = value.decode() if isinstance(value, bytes) else str(value)
        except UnicodeDecodeError:
            if keep_binary:
                out[f"{name}.b64"] = base64.b64encode(value).decode()
    return out
