"""Dead letters read back: what a letter says, the original record it carries, and what a re-drive
adds. Pure; reading and writing Kafka is shared/dlq.py.

shared/broker.py's `DeadLetters.send` writes each letter to `<topic>.dlq` with the original key and
value (clipped to codec.MAX_EVENT_BYTES, `dlq_truncated_from` then saying how long it was), the
original headers as text (one that is not UTF-8 as base64 under `<name>.b64`), and `dlq_reason`,
`dlq_topic`, `dlq_partition`, `dlq_offset`.

A re-drive republishes the original record unchanged (value, key, every header, the signature
`signoff_kid`/`signoff_sig` included) and adds `signoff_redriven_from` (the letter's coordinates),
`signoff_redriven_by` and `signoff_redriven_at`. The signature covers only `ce_*` headers and
content-type (shared.signing.covered), so these do not change what verifies; the consumer checks
the original signer's signature again, and whoever re-drives cannot make a record of their own.
Unsigned, they are also no proof: any principal that may write the topic may write them, so an
earlier re-drive counts (`is_redrive`) only when it is the letter's record byte for byte, and the
name in `signoff_redriven_by` is shown as what the header says (the `dead_letter_redriven` log
line, with the Kafka principal, says who re-drove).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from shared import codec, signing, topics

DLQ_PREFIX = "dlq_"
TRUNCATED = "dlq_truncated_from"
REDRIVEN_FROM = "signoff_redriven_from"
REDRIVEN_BY = "signoff_redriven_by"
REDRIVEN_AT = "signoff_redriven_at"
REDRIVE_HEADERS = (REDRIVEN_FROM, REDRIVEN_BY, REDRIVEN_AT)
MAX_SHOWN_CHARS = 64_000  # of a letter's value in `show`: a page, not a megabyte
MAX_KEY_CHARS = 300
REDACTED = "<redacted>"
# Header names whose values may be credentials: shown redacted (a re-drive still sends them as they were).
_SECRET = re.compile(r"auth|token|secret|passw|cookie|api[-_]?key|credential|session", re.IGNORECASE)
_FAILED_TIMES = re.compile(r"^handler failed (\d+) times")
_BY = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")
DLQ_TOPICS = tuple(topics.dlq(t) for t in topics.CONSUMED_TOPICS)


class NotALetter(ValueError):
    """Coordinates or a record that are not a dead letter of Signoff; the message says why."""


class Coordinates(BaseModel):
    """Where a letter is: its dead-letter topic, partition and offset."""

    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int = Field(ge=0, le=100_000)
    offset: int = Field(ge=0)

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


def dlq_topic(topic: str) -> str:
    """The dead-letter topic named by `topic`: a consumed topic or its `.dlq` (NotALetter otherwise)."""
    name = topic if topic.endswith(".dlq") else topics.dlq(topic)
    if name not in DLQ_TOPICS:
        raise NotALetter(f"topic {topic[:100]!r}: no dead letters there; one of "
                         f"{', '.join(topics.CONSUMED_TOPICS)} (or its .dlq)")
    return name


def coordinates(topic: str, partition: int, offset: int) -> Coordinates:
    if partition < 0 or offset < 0:
        raise NotALetter(f"partition {partition}, offset {offset}: both are 0 or more (`signoff dlq list` shows them)")
    return Coordinates(topic=dlq_topic(topic), partition=partition, offset=offset)


class Letter(BaseModel):
    """One dead letter, as an operator or the console sees it (secrets in headers redacted)."""

    model_config = ConfigDict(frozen=True)

    dlq_topic: str
    partition: int
    offset: int
    topic: str = Field(description="The topic the original record was on")
    original_partition: int | None
    original_offset: int | None
    key: str | None = Field(description="The record key (the model name), as text")
    reason: str
    dead_lettered_at: datetime
    attempts: int = Field(description="Tries before it was dead-lettered (1 unless its handler kept failing)")
    size: int = Field(description="Bytes of the value the letter holds")
    original_size: int = Field(description="Bytes of the original value")
    clipped: bool = Field(description="The letter holds only the first bytes of the original value")
    event_id: str | None
    event_type: str | None
    submission_id: str | None
    headers: dict[str, str] = Field(description="The original headers, credentials redacted")
    redriven_from: str | None = Field(default=None, description="This record was itself a re-drive of that letter")
    redriven_by: str | None = Field(default=None, description="Who re-drove it, as the (unsigned) header says")
    value_text: str | None = Field(default=None, description="`show` only: the value (JSON indented), bounded")
    value_text_clipped: bool = False
    signature: str | None = Field(default=None, description="`show` with a trust file: who signed it, or why "
                                  "it does not verify")

    @property
    def coordinates(self) -> Coordinates:
        return Coordinates(topic=self.dlq_topic, partition=self.partition, offset=self.offset)


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _ints(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def letter_headers(raw: Iterable[tuple[str, bytes]] | None) -> dict[str, str]:
    """A letter's headers as text (the last of a repeated name)."""
    return {name: _text(value) or "" for name, value in raw or ()}


def parse(topic: str, partition: int, offset: int, timestamp_ms: int, key: bytes | None,
          value: bytes | None, raw_headers: Iterable[tuple[str, bytes]] | None) -> Letter:
    """The letter in a record of a dead-letter topic (NotALetter when it lacks dlq_reason)."""
    headers = letter_headers(raw_headers)
    if "dlq_reason" not in headers:
        raise NotALetter(f"{topic}/{partition}/{offset} has no dlq_reason header: not a letter Signoff wrote")
    size = len(value or b"")
    truncated = _ints(headers.get(TRUNCATED))
    failed = _FAILED_TIMES.match(headers["dlq_reason"])
    original = {n: v for n, v in headers.items() if not n.startswith(DLQ_PREFIX)}
    shown_key = _text(key)
    return Letter(
        dlq_topic=topic, partition=partition, offset=offset,
        topic=headers.get("dlq_topic") or topic.removesuffix(".dlq"),
        original_partition=_ints(headers.get("dlq_partition")), original_offset=_ints(headers.get("dlq_offset")),
        key=shown_key[:MAX_KEY_CHARS] if shown_key is not None else None,
        reason=headers["dlq_reason"],
        dead_lettered_at=datetime.fromtimestamp(timestamp_ms / 1000, UTC),
        attempts=int(failed.group(1)) if failed else 1,
        size=size, original_size=truncated if truncated is not None else size, clipped=truncated is not None,
        event_id=headers.get("ce_id"), event_type=headers.get("ce_type"), submission_id=headers.get("ce_subject"),
        headers={n: REDACTED if _SECRET.search(n) else v for n, v in original.items()
                 if n not in REDRIVE_HEADERS},
        redriven_from=headers.get(REDRIVEN_FROM), redriven_by=headers.get(REDRIVEN_BY),
    )


def shown(letter: Letter, value: bytes | None, keyring: signing.Keyring | None,
          raw_headers: Iterable[tuple[str, bytes]] | None, key: bytes | None) -> Letter:
    """`letter` with its value as text (bounded) and, given a keyring, whether its signature verifies."""
    try:
        text = json.dumps(codec.parse(value or b""), indent=2, ensure_ascii=False)
    except codec.BadEvent:
        text = (value or b"").decode(errors="replace")
    signature = None
    if keyring is not None:
        try:
            who = keyring.verify(letter.topic, key, original_headers(raw_headers), value)
            signature = f"verifies: signed by {who.name} (role {who.role})" if who else "unsigned (accepted unsigned)"
        except codec.BadEvent as exc:
            signature = f"does not verify: {exc}"
    return letter.model_copy(update={"value_text": text[:MAX_SHOWN_CHARS],
                                     "value_text_clipped": len(text) > MAX_SHOWN_CHARS, "signature": signature})


def original_headers(raw: Iterable[tuple[str, bytes]] | None) -> list[tuple[str, bytes]]:
    """The headers of the original record: the letter's without the dlq_* and re-drive ones,
    `<name>.b64` decoded back to `<name>`. An empty content-type is dropped: FastStream adds one
    to a letter whose original had none, and content-type is signed."""
    out: list[tuple[str, bytes]] = []
    for name, value in raw or ():
        if name.startswith(DLQ_PREFIX) or name in REDRIVE_HEADERS or (name == "content-type" and not value):
            continue
        if name.endswith(".b64"):
            try:
                out.append((name.removesuffix(".b64"), base64.b64decode(value, validate=True)))
                continue
            except (binascii.Error, ValueError):
                pass  # a header that merely ends in .b64: kept as it is
        out.append((name, bytes(value)))
    return out


class RecordLike(Protocol):
    """What is compared of a Kafka record (aiokafka's ConsumerRecord has these)."""

    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] | None


def is_redrive(letter: Letter, held: RecordLike, candidate: RecordLike) -> bool:
    """Whether `candidate`, a record of the letter's original topic, is a re-drive of `letter`
    (whose own record is `held`): it names the letter in `signoff_redriven_from` AND is the letter's
    original record byte for byte: key, value and every original header (ce_id and the signature
    among them). The re-drive headers are not signed, and every principal that may write a consumed
    topic may write them: a record that only names the letter is not a re-drive of it and never
    blocks one. One that is the same bytes was the letter's record delivered again (whoever sent
    it), so the consumer decided on it as on a re-drive: its signature verifies exactly when the
    letter's does."""
    candidate_headers = list(candidate.headers or ())
    if dict(candidate_headers).get(REDRIVEN_FROM) != str(letter.coordinates).encode():
        return False
    return (candidate.key == held.key and candidate.value == held.value
            and original_headers(candidate_headers) == original_headers(held.headers))


def check_by(by: str) -> str:
    """Who re-drives, as the header and the log record it: printable, 1-200 characters."""
    if not _BY.match(by):
        raise ValueError("by: who re-drives, 1-200 printable characters (an operator's name or principal)")
    return by


def redrive_headers(raw: Iterable[tuple[str, bytes]] | None, letter: Letter, by: str,
                    at: datetime) -> list[tuple[str, bytes]]:
    """The headers of the re-driven record: the original's, plus who re-drove which letter when."""
    return [*original_headers(raw), (REDRIVEN_FROM, str(letter.coordinates).encode()),
            (REDRIVEN_BY, check_by(by).encode()), (REDRIVEN_AT, at.isoformat().encode())]


def refusal(letter: Letter, earlier: Iterable[str], force: bool) -> str | None:
    """Why `letter` may not be re-driven, or None. `earlier`: when it was re-driven before."""
    if letter.clipped:
        return (f"letter {letter.coordinates} holds only the first {letter.size} of the original's "
                f"{letter.original_size} bytes: the rest is gone, and a clipped record would never verify or "
                "parse; publish the event again from its source")
    if letter.topic != letter.dlq_topic.removesuffix(".dlq"):
        return f"letter {letter.coordinates} names topic {letter.topic[:100]!r}, not the one its .dlq is for"
    done = list(earlier)
    if done and not force:
        return (f"letter {letter.coordinates} was re-driven already ({'; '.join(done[:3])}; who re-drove is in "
                "the log line dead_letter_redriven, the header is not signed); consumers absorb a duplicate of an "
                "event they handled (same event id), so --force is safe if it was dead-lettered again")
    return None
