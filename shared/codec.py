"""Events on the wire: JSON body, model-name key, CloudEvents binary-mode headers.

CloudEvents' Kafka binding puts the attributes in `ce_*` headers and the data in the value, so any
CloudEvents-aware consumer understands every Signoff event without knowing this code.

Reading is bounded, so no record can stop a service: a record over MAX_EVENT_BYTES, JSON nested
deeper than MAX_DEPTH, a number literal longer than MAX_NUMBER_CHARS (a 5,000-digit integer would
otherwise raise ValueError, 10,000 nested arrays RecursionError) or NaN/Infinity is a BadEvent,
like any other record that does not parse or validate. Writing is bounded too: an event whose
record would not fit under the broker's default limit raises TooLarge instead of being retried.

A record is more than its body (`check_record`, `decode_record`): it must carry the `ce_id` and
`ce_type` headers, its body `event_id` and `occurred_at` (never filled in on the way in), and its
key must be the model its event is about. Every reader applies the same rules, so a record is
either an event everywhere or a BadEvent everywhere.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from pydantic import ValidationError

from shared.events import BY_TOPIC, Event
from shared.upcasting import UnknownSchemaVersion, upcast

CE_SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"

# Kafka's default message.max.bytes is 1 MiB + 12; key, headers and batch overhead fit in the rest.
MAX_EVENT_BYTES = 1_000_000
MAX_DEPTH = 32          # events nest four levels deep at most (a submission's group metrics)
MAX_NUMBER_CHARS = 32   # a double's shortest form has at most 24 characters, an int64 20
_MAX_PROBLEMS = 10      # problems listed by `describe`, so a reason stays readable
REQUIRED_FIELDS = ("event_id", "occurred_at")  # envelope fields a record must carry (not defaulted)
REQUIRED_HEADERS = ("ce_id", "ce_type")        # CloudEvents headers a record must carry


class BadEvent(ValueError):
    """An event that cannot be parsed or validated: it belongs in the dead-letter topic."""


class TooLarge(Exception):
    """An event whose record would exceed MAX_EVENT_BYTES: no broker with default settings accepts
    it, so publishing it can never succeed (the input that led to it is dead-lettered)."""


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
    """The record of `event` (raises TooLarge when its value exceeds MAX_EVENT_BYTES)."""
    value = event.model_dump_json().encode()
    if len(value) > MAX_EVENT_BYTES:
        raise TooLarge(f"{event.type} {event.event_id} would be {len(value)} bytes, over the limit of "
                       f"{MAX_EVENT_BYTES} bytes of a Kafka record: shorten what the submission carries "
                       "(metrics, group_metrics, texts)")
    return Record(topic=event.topic, key=event.key.encode(), value=value, headers=headers_for(event, source))


def load(topic: str, value: bytes, ce_type: str | None = None) -> dict:
    """Parse and upcast the JSON object of an event read from `topic` (raises BadEvent).
    `ce_type`, the CloudEvents type header when present, must be the topic's event type."""
    cls = BY_TOPIC.get(topic)
    if cls is None:
        raise BadEvent(f"topic {topic!r} carries no Signoff event")
    if ce_type is not None and ce_type != cls.type:
        raise BadEvent(f"ce_type header is {ce_type!r}, but {topic} carries {cls.type!r}")
    data = parse(value)
    if not isinstance(data, dict):
        raise BadEvent(f"expected a JSON object, got {type(data).__name__}")
    if missing := [name for name in REQUIRED_FIELDS if name not in data]:
        # The envelope's defaults are for events built in code; one read off the wire without its
        # id or time would get a fresh one here, and each reader a different one.
        raise BadEvent(f"missing envelope field {', '.join(missing)}: every event on the wire carries "
                       f"{' and '.join(REQUIRED_FIELDS)}; the producer must set them")
    try:
        return upcast(cls.type, cls.class_version, data)
    except UnknownSchemaVersion as exc:
        raise BadEvent(str(exc)) from exc
    except (LookupError, TypeError, ValueError) as exc:  # an upcaster meeting data it cannot read
        raise BadEvent(f"cannot upcast to version {cls.class_version}: {exc!r}") from exc


def check_headers(headers: Mapping[str, str | bytes] | Iterable[tuple[str, bytes]] | None) -> None:
    """Refuse a record without the CloudEvents headers every Signoff producer writes (and signs):
    one rule for every reader, so a header-less record is never half-supported (shown by one
    reader, ignored by another). `headers` as FastStream (a dict) or aiokafka (pairs) gives them."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    present = {name for name, value in pairs if value}
    if missing := [name for name in REQUIRED_HEADERS if name not in present]:
        raise BadEvent(f"no CloudEvents headers ({', '.join(REQUIRED_HEADERS)}): {', '.join(missing)} "
                       "missing; publish events with shared.codec.encode (or `signoff submit`), which sets them")


def check_key(topic: str, key: bytes | str | None, data: dict) -> None:
    """Refuse a record whose key is not the model its event is about (`Event.key`): the key picks
    the partition, and every event of one model must stay in order on one. `data` is the event as
    `load` returned it; when it lacks the model name, validating it says so."""
    subject = _model_of(topic, data)
    if subject is None:
        return
    given = key.decode(errors="replace") if isinstance(key, bytes) else key
    if given != subject:
        shown = "no key" if given is None else f"key {given[:80]!r}"
        raise BadEvent(f"record has {shown}, but its event is about model {subject[:80]!r}: the key must be the "
                       "model name (Event.key), so every event of a model stays in order on one partition")


def check_record(topic: str, key: bytes | str | None,
                 headers: Mapping[str, str | bytes] | Iterable[tuple[str, bytes]] | None, data: dict) -> None:
    """What a record must be beyond its body: CloudEvents headers, and the model name as its key."""
    check_headers(headers)
    check_key(topic, key, data)


def decode_record(topic: str, key: bytes | str | None, value: bytes,
                  headers: Mapping[str, str | bytes] | Iterable[tuple[str, bytes]] | None) -> Event:
    """The event of a whole record (headers, key, value), as every subscriber reads it."""
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
    check_headers(pairs)
    ce_type = next((v for n, v in pairs if n == "ce_type"), None)
    data = load(topic, value, ce_type.decode(errors="replace") if isinstance(ce_type, bytes) else ce_type)
    check_key(topic, key, data)
    try:
        return BY_TOPIC[topic].model_validate(data)
    except ValidationError as exc:
        raise BadEvent(describe(exc)) from exc


def _model_of(topic: str, data: dict) -> str | None:
    """The model name in an event's data, where its type keeps it (the same as `Event.key`:
    tests/unit/test_hardening_contract.py holds them together); None when it is not there."""
    cls = BY_TOPIC.get(topic)
    if cls is None:
        return None
    fields = cls.model_fields
    path = (("submission", "candidate", "model") if "submission" in fields
            else ("candidate", "model") if "candidate" in fields else ("model",))
    node: object = data
    for name in path:
        node = node.get(name) if isinstance(node, dict) else None
    return node if isinstance(node, str) else None


def parse(value: bytes) -> object:
    """JSON within the bounds above, or BadEvent naming where it is not."""
    if len(value) > MAX_EVENT_BYTES:
        raise BadEvent(f"the record is {len(value)} bytes; an event is at most {MAX_EVENT_BYTES} bytes")
    try:
        data = json.loads(value, parse_int=_integer, parse_float=_float, parse_constant=_constant)
    except RecursionError as exc:
        raise BadEvent(f"JSON nested far deeper than {MAX_DEPTH} levels: not an event") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise BadEvent(f"not JSON: {exc}") from exc
    _check(data)
    return data


class _Unfit(NamedTuple):
    """What the parser leaves where a number does not fit; `_check` reports it with its place."""

    why: str


def _integer(text: str) -> int | _Unfit:
    return int(text) if len(text) <= MAX_NUMBER_CHARS else _too_long(text)


def _float(text: str) -> float | _Unfit:
    if len(text) > MAX_NUMBER_CHARS:
        return _too_long(text)
    number = float(text)
    return number if math.isfinite(number) else _Unfit(f"{text} is not a finite number (out of range)")


def _constant(text: str) -> _Unfit:
    return _Unfit(f"{text} is not a finite number (and not JSON)")


def _too_long(text: str) -> _Unfit:
    return _Unfit(f"a number of {len(text)} characters ({text[:12]}...); at most {MAX_NUMBER_CHARS}: "
                  "write it with at most 17 significant digits, large ones in exponent form (1.5e30)")


def _check(data: object) -> None:
    """Raise BadEvent at the first number that did not fit, or container nested deeper than MAX_DEPTH."""
    stack: list[tuple[object, tuple[object, ...]]] = [(data, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _Unfit):
            raise BadEvent(f"{_where(path)}: {node.why}")
        if isinstance(node, dict):
            items = list(node.items())
        elif isinstance(node, list):
            items = list(enumerate(node))
        else:
            continue
        if len(path) >= MAX_DEPTH:
            raise BadEvent(f"{_where(path)}: nested deeper than {MAX_DEPTH} levels; no event nests that deep")
        stack.extend((value, (*path, key)) for key, value in reversed(items)
                     if isinstance(value, dict | list | _Unfit))  # other scalars are fine


def decode(topic: str, value: bytes) -> Event:
    """The event in `value`, validated against the contract of `topic` (raises BadEvent)."""
    data = load(topic, value)
    try:
        return BY_TOPIC[topic].model_validate(data)
    except ValidationError as exc:
        raise BadEvent(describe(exc)) from exc


def describe(exc: ValidationError) -> str:
    """One line per problem, naming the field: 'submission.candidate.artifact_sha256: ...' (the
    first ten, and how many more)."""
    errors = exc.errors()
    shown = "; ".join(f"{_where(err['loc'])}: {err['msg']}" for err in errors[:_MAX_PROBLEMS])
    more = len(errors) - _MAX_PROBLEMS
    return shown + (f"; and {more} more" if more > 0 else "")


def _where(path: tuple | list) -> str:
    return ".".join(str(p) for p in path) or "(event)"
