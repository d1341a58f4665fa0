"""The event contract on the wire: what goes out decodes to the same event, what is wrong is refused by name."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared import codec, topics
from shared.codec import BadEvent
from shared.events import EVENT_TYPES, ChecksFailed, ChecksPassed, ModelSubmitted, ReviewDecided
from tests.unit import factories as f

SOURCE = "/signoff/test"


def body(event) -> dict:
    return json.loads(codec.encode(event, SOURCE).value)


@pytest.mark.parametrize("event", f.every_event(), ids=lambda e: type(e).__name__)
def test_every_event_type_round_trips(event):
    record = codec.encode(event, SOURCE)
    assert record.topic == event.topic
    assert codec.decode(record.topic, record.value) == event


def test_every_event_type_is_covered():
    assert {type(e) for e in f.every_event()} == set(EVENT_TYPES)


@pytest.mark.parametrize("event", f.every_event(), ids=lambda e: type(e).__name__)
def test_cloudevents_headers_and_key(event):
    record = codec.encode(event, SOURCE)
    h = record.headers
    assert h["ce_id"] == str(event.event_id)
    assert h["ce_type"] == event.type and h["ce_type"].startswith("signoff.")
    assert h["ce_source"] == SOURCE
    assert h["ce_specversion"] == "1.0"
    assert h["ce_subject"] == str(event.submission_id)
    assert h["content-type"] == "application/json"
    assert h["ce_time"].endswith("Z") and "+" not in h["ce_time"]
    assert datetime.fromisoformat(h["ce_time"]) == event.occurred_at
    assert record.key == b"fraud-detector"


metric_values = st.floats(allow_nan=False, allow_infinity=False)
metric_names = st.text(min_size=1, max_size=64)
model_names = st.from_regex(r"\A[a-z0-9][a-z0-9._-]{0,63}\Z")
versions = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._+-]{0,63}\Z")


@settings(max_examples=60, deadline=None, database=None)
@given(model=model_names, version=versions, metrics=st.dictionaries(metric_names, metric_values, max_size=5),
       submitter=st.text(min_size=1, max_size=40).filter(lambda s: s.strip()),
       offset_minutes=st.integers(-14 * 60, 14 * 60))
def test_model_submitted_round_trips_for_varied_inputs(model, version, metrics, submitter, offset_minutes):
    when = datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(minutes=offset_minutes)))
    event = f.submitted(f.submission(f.candidate(model=model, version=version), metrics=metrics,
                                     submitter=submitter), occurred_at=when)
    record = codec.encode(event, SOURCE)
    back = codec.decode(topics.MODEL_SUBMITTED, record.value)
    assert back == event
    assert record.key == model.encode()
    assert back.occurred_at.utcoffset() == timedelta(0)
    assert back.occurred_at == when


def test_occurred_at_is_normalised_to_utc():
    event = f.submitted(occurred_at=datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))))
    assert event.occurred_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert event.occurred_at.tzinfo == UTC
    assert codec.headers_for(event, SOURCE)["ce_time"] == "2026-03-01T12:00:00Z"


def test_naive_datetime_is_refused():
    with pytest.raises(ValidationError, match="occurred_at"):
        f.submitted(occurred_at=datetime(2026, 3, 1, 12, 0))
    data = body(f.submitted())
    data["occurred_at"] = "2026-03-01T12:00:00"
    with pytest.raises(BadEvent, match="occurred_at"):
        codec.decode(topics.MODEL_SUBMITTED, json.dumps(data).encode())


def test_unknown_field_is_refused():
    data = body(f.submitted())
    data["submission"]["candidate"]["colour"] = "blue"
    with pytest.raises(BadEvent, match=r"submission\.candidate\.colour"):
        codec.decode(topics.MODEL_SUBMITTED, json.dumps(data).encode())


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_metrics_are_refused(value):
    with pytest.raises(ValidationError, match="finite"):
        f.submission(metrics={"accuracy": value})
    data = body(f.submitted())
    data["submission"]["metrics"]["accuracy"] = value  # json.dumps writes NaN / Infinity
    with pytest.raises(BadEvent, match=r"submission\.metrics\.accuracy.*finite"):
        codec.decode(topics.MODEL_SUBMITTED, json.dumps(data).encode())


@pytest.mark.parametrize(("field", "value"), [
    ("model", ".."), ("model", "a/b"), ("model", "/abs"), ("model", "Fraud"), ("model", ""),
    ("model", ".hidden"), ("version", ".."), ("version", "a/b"), ("version", "/abs"), ("version", ""),
    ("artifact_sha256", "A" * 64), ("artifact_sha256", "abc"), ("code_commit", "xyz"),
])
def test_unsafe_names_and_bad_digests_are_refused_naming_the_field(field, value):
    data = body(f.submitted())
    data["submission"]["candidate"][field] = value
    with pytest.raises(BadEvent, match=rf"submission\.candidate\.{field}:"):
        codec.decode(topics.MODEL_SUBMITTED, json.dumps(data).encode())


@pytest.mark.parametrize(("value", "reason"), [
    (b"{not json", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "expected a JSON object, got list"),
    (b'"text"', "expected a JSON object, got str"),
    (b"null", "expected a JSON object, got NoneType"),
])
def test_malformed_json_is_a_bad_event(value, reason):
    with pytest.raises(BadEvent, match=reason):
        codec.decode(topics.MODEL_SUBMITTED, value)


def test_missing_field_is_named():
    data = body(f.submitted())
    del data["submission"]["submitter"]
    with pytest.raises(BadEvent, match=r"submission\.submitter: Field required"):
        codec.decode(topics.MODEL_SUBMITTED, json.dumps(data).encode())


def test_wrong_type_is_named():
    data = body(f.submitted())
    data["submission_id"] = 42
    with pytest.raises(BadEvent, match=r"submission_id: "):
        codec.decode(topics.MODEL_SUBMITTED, json.dumps(data).encode())


@pytest.mark.parametrize(("version", "reason"), [
    (2, "schema_version 2 is newer than this service understands"),
    (99, "schema_version 99 is newer"),
    (0, "schema_version 0 of signoff.model.submitted has no upcaster to 1"),
    (None, "schema_version must be an integer, got None"),
    ("1", "schema_version must be an integer, got '1'"),
    (True, "schema_version must be an integer, got True"),
])
def test_unknown_schema_version_is_a_bad_event(version, reason):
    data = body(f.submitted())
    data["schema_version"] = version
    with pytest.raises(BadEvent, match=reason):
        codec.decode(topics.MODEL_SUBMITTED, json.dumps(data).encode())


def test_missing_schema_version_is_a_bad_event():
    data = body(f.submitted())
    del data["schema_version"]
    with pytest.raises(BadEvent, match="schema_version must be an integer"):
        codec.decode(topics.MODEL_SUBMITTED, json.dumps(data).encode())


def test_unknown_topic_is_a_bad_event():
    """An unknown topic is a BadEvent (not a KeyError)."""
    with pytest.raises(BadEvent, match="carries no Signoff event"):
        codec.decode("some.other.topic", codec.encode(f.submitted(), SOURCE).value)


def test_event_of_another_topic_is_refused():
    """A deployment.failed body on model.submitted fails the model.submitted contract."""
    value = codec.encode(f.deployment_failed(), SOURCE).value
    with pytest.raises(BadEvent, match="submission: Field required"):
        codec.decode(topics.MODEL_SUBMITTED, value)


def test_events_are_frozen():
    event = f.submitted()
    with pytest.raises(ValidationError):
        event.submission_id = uuid.uuid4()


def test_caused_by_is_idempotent_and_links_the_cause():
    cause = f.submitted()
    first = ChecksPassed.caused_by(cause, submission=cause.submission, results=f.results())
    again = ChecksPassed.caused_by(cause, submission=cause.submission, results=f.results())
    assert first.event_id == again.event_id
    assert first.causation_id == cause.event_id
    assert first.submission_id == cause.submission_id


def test_caused_by_differs_for_other_causes_types_and_salts():
    cause, other = f.submitted(), f.submitted()
    ids = {
        ChecksPassed.caused_by(cause, submission=cause.submission, results=()).event_id,
        ChecksFailed.caused_by(cause, submission=cause.submission, results=()).event_id,
        ChecksPassed.caused_by(other, submission=other.submission, results=()).event_id,
        ChecksPassed.caused_by(cause, salt="x", submission=cause.submission, results=()).event_id,
        cause.event_id,
    }
    assert len(ids) == 5


def test_key_is_the_model_name_for_every_event():
    cause = f.submitted(f.submission(f.candidate(model="churn")))
    assert {e.key for e in f.every_event(cause)} == {"churn"}
    assert isinstance(f.decided(cause), ReviewDecided)
    assert isinstance(cause, ModelSubmitted)


def test_ce_type_header_must_match_the_topic():
    """A checks.failed body published on checks.passed would validate as ChecksPassed; the
    CloudEvents type header gives it away."""
    record = codec.encode(f.checks_failed(), "test")
    with pytest.raises(BadEvent, match="ce_type header is 'signoff.checks.failed'"):
        codec.load(topics.CHECKS_PASSED, record.value, record.headers["ce_type"])
    assert codec.load(topics.CHECKS_FAILED, record.value, record.headers["ce_type"])["results"]
