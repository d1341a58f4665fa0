"""Events on the wire: JSON body, model-name key, CloudEvents binary-mode headers.

CloudEvents' Kafka binding puts the attributes in `ce_*` headers and the data in the value, so any
CloudEvents-aware consumer understands every Signoff event without knowing this code.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from pydantic import ValidationError

from shared.events import BY_TOPIC, Event
from shared.upcasting import UnknownSchemaVersion, upcast

CE_SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"


class BadEvent(ValueError):
    """An event that cannot be parsed or validated: it belongs in the dead-letter topic."""


class Record(NamedTuple):
    topic: str
    key: bytes
    value: bytes
    headers: dict[str, str]


def headers_for(event: Event, source: str) -> dict[str, str]:
    return {
        "ce_id": str(event.event_id),
        "ce_type": event.type,
        "ce_source": source,
        "ce_specversion": CE_SPECVERSION,
        "ce_time": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "ce_subject": str(event.submission_id),
        "content-type": CONTENT_TYPE,
    }


def encode(event: Event, source: str) -> Record:
    return Record(
        topic=event.topic,
        key=event.key.encode(),
        value=event.model_dump_json().encode(),
        headers=headers_for(event, source),
    )


def load(topic: str, value: bytes, ce_type: str | None = None) -> dict:
    """Parse and upcast the JSON object of an event read from `topic` (raises BadEvent).
    `ce_type`, the CloudEvents type header when present, must be the topic's event type."""
    cls = BY_TOPIC.get(topic)
    if cls is None:
        raise BadEvent(f"topic {topic!r} carries no Signoff event")
    if ce_type is not None and ce_type != cls.type:
        raise BadEvent(f"ce_type header is {ce_type!r}, but {topic} carries {cls.type!r}")
    try:
        data = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadEvent(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadEvent(f"expected a JSON object, got {type(data).__name__}")
    try:
        return upcast(cls.type, cls.class_version, data)
    except UnknownSchemaVersion as exc:
        raise BadEvent(str(exc)) from exc


def decode(topic: str, value: bytes) -> Event:
    """The event in `value`, validated against the contract of `topic` (raises BadEvent)."""
    data = load(topic, value)
    try:
        return BY_TOPIC[topic].model_validate(data)
    except ValidationError as exc:
        raise BadEvent(describe(exc)) from exc


def describe(exc: ValidationError) -> str:
    """One line per problem, naming the field: 'submission.candidate.artifact_sha256: ...'."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(event)'}: {err['msg']}" for err in exc.errors()
    )
