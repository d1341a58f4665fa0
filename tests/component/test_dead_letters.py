"""The shared runtime's dead letters, on a bare subscriber: what can never be published is
dead-lettered at once with the reason, not retried for ever (which stalled its partition)."""

from __future__ import annotations

import pytest
from aiokafka.errors import MessageSizeTooLargeError

from shared import codec, topics
from shared.broker import Emitter, make_broker, subscribe
from shared.codec import MAX_EVENT_BYTES
from shared.events import CheckResult, ChecksPassed, ModelSubmitted
from shared.settings import ServiceSettings
from shared.values import MAX_TEXT
from tests import keys
from tests.component import modes
from tests.component.conftest import DLQ, capture, publish, publish_raw, running
from tests.unit import factories as f

SERVICE = "probe"


@pytest.fixture
def broker(broker_mode, unique):
    if broker_mode == "kafka":
        modes.truncate_now()  # empty topics: the probe's new consumer group reads from the beginning
    settings = ServiceSettings(**modes.kafka_fields(),
                               consumer_group_prefix=f"test-{unique}", max_attempts=5,
                               **keys.service_fields("validator"))
    return make_broker(settings, SERVICE)


async def test_a_message_too_large_for_the_broker_is_dead_lettered_at_once_with_the_reason(broker):
    """aiokafka's MessageSizeTooLargeError fails the same way on every try: it is not 'Kafka
    unavailable' (retried every 2 s for ever), the input is dead-lettered saying why."""
    calls = []

    @subscribe(broker, topics.MODEL_SUBMITTED, SERVICE)
    async def handle(event: ModelSubmitted) -> None:
        calls.append(event.event_id)
        raise MessageSizeTooLargeError("The message is 1200000 bytes when serialized which is larger than "
                                       "the maximum request size you have configured")

    dead = capture(broker, DLQ(topics.MODEL_SUBMITTED))
    event = f.submitted()
    async with running(broker) as br:
        await publish(br, event)
    assert calls == [event.event_id]  # once: never retried
    [letter] = dead.records
    assert letter.value == codec.encode(event, "/test").value
    reason = dead.headers()["dlq_reason"]
    assert reason.startswith("undeliverable: what this event leads to is too large for a Kafka record: ")
    assert "1200000 bytes" in reason


async def test_an_outcome_over_the_record_limit_is_never_sent_and_its_input_is_dead_lettered(broker):
    """The emitter checks the size itself: a record that no default broker accepts is not sent."""
    emitter = Emitter(broker, f"/signoff/{SERVICE}", ChecksPassed)
    calls = []

    @subscribe(broker, topics.MODEL_SUBMITTED, SERVICE)
    async def handle(event: ModelSubmitted) -> None:
        calls.append(event.event_id)
        results = tuple(CheckResult(name=f"c{i}", passed=True, message="m" * MAX_TEXT) for i in range(300))
        await emitter.emit(ChecksPassed.caused_by(event, submission=event.submission, results=results))

    dead = capture(broker, DLQ(topics.MODEL_SUBMITTED))
    event = f.submitted()
    async with running(broker) as br:
        await publish(br, event)
        emitter.publishers[ChecksPassed].mock.assert_not_called()
    assert calls == [event.event_id]
    [letter] = dead.records
    assert letter.value == codec.encode(event, "/test").value
    reason = dead.headers()["dlq_reason"]
    assert reason.startswith("undeliverable: what this event leads to is too large for a Kafka record: "
                             "signoff.checks.passed ")
    assert f"over the limit of {MAX_EVENT_BYTES} bytes" in reason


async def test_a_record_over_the_limit_is_dead_lettered_keeping_what_fits(broker):
    """A broker set to accept larger records let it in; the letter (with its headers) must still
    fit the dead-letter topic, so it keeps the first MAX_EVENT_BYTES and says how long it was."""
    calls = []

    @subscribe(broker, topics.MODEL_SUBMITTED, SERVICE)
    async def handle(event: ModelSubmitted) -> None:
        calls.append(event)

    dead = capture(broker, DLQ(topics.MODEL_SUBMITTED))
    value = b'{"padding": "' + b"p" * MAX_EVENT_BYTES + b'"}'
    async with running(broker) as br:
        await publish_raw(br, topics.MODEL_SUBMITTED, value)
    assert calls == []
    [letter] = dead.records
    assert letter.value == value[:MAX_EVENT_BYTES]
    headers = dead.headers()
    assert headers["dlq_truncated_from"] == str(len(value))
    assert headers["dlq_reason"] == (f"invalid event: the record is {len(value)} bytes; an event is at most "
                                     f"{MAX_EVENT_BYTES} bytes")
