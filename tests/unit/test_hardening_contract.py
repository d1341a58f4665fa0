"""The contract is strict (issue 16, item 4), written as the attacks: metrics that are strings or
booleans, an event without occurred_at or event_id, a record keyed by another model, a record
without the CloudEvents headers. Each is refused with a reason; a well-formed record still decodes."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from shared import codec, reader, topics
from shared.codec import BadEvent
from shared.events import EVENT_TYPES, Submission
from tests.unit import factories as f

SOURCE = "/test"


def body(**changes: object) -> bytes:
    """A model.submitted body with `changes` applied (a value None removes the key)."""
    data = json.loads(codec.encode(f.submitted(), SOURCE).value)
    for name, value in changes.items():
        if value is None:
            data.pop(name)
        else:
            data[name] = value
    return json.dumps(data).encode()


def record(event=None, *, key: bytes | None = None, headers: dict | None = None, value: bytes | None = None):
    """An aiokafka-like ConsumerRecord of `event` (headers as (name, bytes) pairs, as aiokafka has them)."""
    encoded = codec.encode(event or f.submitted(), SOURCE)
    pairs = [(k, v.encode()) for k, v in (encoded.headers if headers is None else headers).items()]
    return SimpleNamespace(topic=encoded.topic, key=encoded.key if key is None else key,
                           value=encoded.value if value is None else value, headers=pairs)


# --- metrics are JSON numbers ---------------------------------------------------------------------

@pytest.mark.parametrize(("value", "says"), [("0.9", "not a string"), (True, "not a boolean"),
                                             (False, "not a boolean"), (None, "not a null"),
                                             ([0.9], "not a array")])
def test_a_metric_that_is_not_a_json_number_is_refused(value, says):
    data = f.submission().model_dump(mode="json")
    data["metrics"]["accuracy"] = value
    with pytest.raises(ValidationError, match=f"metrics.accuracy\n.*must be a JSON number such as 0.93 "
                                              rf"\(unquoted\), {says}"):
        Submission.model_validate(data)


def test_a_group_metric_that_is_a_string_is_refused_on_the_wire():
    sub = f.submission().model_dump(mode="json")
    sub["group_metrics"] = {"a": {"selection_rate": "0.5"}, "b": {"selection_rate": 0.5}}
    with pytest.raises(BadEvent, match="submission.group_metrics.a.selection_rate: .*not a string"):
        codec.decode(topics.MODEL_SUBMITTED, body(submission=sub))


def test_integers_and_floats_are_metrics():
    sub = f.submission(metrics={"accuracy": 1, "auc": 0.97})
    assert sub.metrics == {"accuracy": 1.0, "auc": 0.97}


# --- the envelope is not filled in ----------------------------------------------------------------

@pytest.mark.parametrize("field", ["occurred_at", "event_id"])
def test_an_event_without_its_time_or_id_is_a_bad_event(field):
    with pytest.raises(BadEvent, match=f"missing envelope field {field}: every event on the wire carries "
                                       "event_id and occurred_at"):
        codec.decode(topics.MODEL_SUBMITTED, body(**{field: None}))


def test_an_event_built_in_code_still_gets_its_id_and_time():
    event = f.submitted()
    assert codec.decode(event.topic, codec.encode(event, SOURCE).value) == event


# --- the record key is the model name -------------------------------------------------------------

@pytest.mark.parametrize("event", f.every_event(), ids=lambda e: e.type)
def test_the_codec_finds_the_model_name_where_every_event_type_keys_it(event):
    data = codec.load(event.topic, codec.encode(event, SOURCE).value)
    assert codec._model_of(event.topic, data) == event.key
    codec.check_key(event.topic, event.key.encode(), data)  # its own key passes


def test_every_event_type_is_covered_by_the_key_check():
    assert {type(e) for e in f.every_event()} == set(EVENT_TYPES)


@pytest.mark.parametrize("event", f.every_event(), ids=lambda e: e.type)
def test_a_record_keyed_by_another_model_is_a_bad_event(event):
    data = codec.load(event.topic, codec.encode(event, SOURCE).value)
    with pytest.raises(BadEvent, match=f"record has key 'credit-scorer', but its event is about model "
                                       f"'{event.key}': the key must be the model name"):
        codec.check_key(event.topic, b"credit-scorer", data)


def test_a_record_without_a_key_is_a_bad_event():
    event = f.submitted()
    with pytest.raises(BadEvent, match="record has no key, but its event is about model 'fraud-detector'"):
        codec.check_key(event.topic, None, codec.load(event.topic, codec.encode(event, SOURCE).value))


def test_an_event_lacking_its_model_is_left_to_validation_to_refuse():
    data = json.loads(body())
    del data["submission"]["candidate"]["model"]
    codec.check_key(topics.MODEL_SUBMITTED, b"anything", data)  # no subject to compare: no refusal here
    with pytest.raises(BadEvent, match="submission.candidate.model: Field required"):
        codec.decode_record(topics.MODEL_SUBMITTED, b"anything", json.dumps(data).encode(),
                            {"ce_id": "1", "ce_type": "signoff.model.submitted"})


# --- the CloudEvents headers are required everywhere a record is decoded ---------------------------

@pytest.mark.parametrize("missing", [("ce_id",), ("ce_type",), ("ce_id", "ce_type")])
def test_a_record_without_cloudevents_headers_is_a_bad_event(missing):
    encoded = codec.encode(f.submitted(), SOURCE)
    headers = {k: v for k, v in encoded.headers.items() if k not in missing}
    with pytest.raises(BadEvent, match=rf"no CloudEvents headers \(ce_id, ce_type\): {', '.join(missing)} missing"):
        codec.check_headers(headers)
    with pytest.raises(BadEvent, match=r"no CloudEvents headers \(ce_id, ce_type\)"):
        codec.decode_record(encoded.topic, encoded.key, encoded.value, headers)


def test_an_empty_header_counts_as_missing():
    with pytest.raises(BadEvent, match="ce_type missing"):
        codec.check_headers([("ce_id", b"1"), ("ce_type", b"")])


def test_readers_skip_a_headerless_record_a_wrongly_keyed_one_and_read_a_good_one():
    """What `signoff watch`, `history`, revoke's lookup and the services' replays read through."""
    event = f.submitted()
    assert reader.decode(record(event, headers={})) is None
    assert reader.decode(record(event, key=b"credit-scorer")) is None
    assert reader.decode(record(event)) == event


def test_a_record_whose_ce_type_is_another_topics_is_refused():
    encoded = codec.encode(f.submitted(), SOURCE)
    with pytest.raises(BadEvent, match="ce_type header is 'signoff.checks.passed'"):
        codec.decode_record(encoded.topic, encoded.key, encoded.value,
                            {**encoded.headers, "ce_type": "signoff.checks.passed"})
