"""Dead letters read back (shared/dead_letter.py): the letter a record of `<topic>.dlq` holds, the
original record restored from it, and what a re-drive adds, which the consumer's checks (the
CloudEvents headers, the signature) do not mind, while an altered value still fails."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass

import pytest

from shared import acl, codec, dead_letter, signing, topics
from shared.events import RollbackRequested
from tests import keys

TOPIC = topics.ROLLBACK_REQUESTED
DLQ = topics.dlq(TOPIC)


def event() -> RollbackRequested:
    return RollbackRequested(submission_id=uuid.uuid4(), model="fraud", requested_by="oncall", reason="bad")


def as_letter(record: codec.Record, reason: str = "untrusted event: unknown key id", **extra: str,
              ) -> list[tuple[str, bytes]]:
    """The headers shared.broker.DeadLetters gives the letter of `record` (text, dlq_* added)."""
    headers = {**record.headers, "dlq_reason": reason, "dlq_topic": record.topic, "dlq_partition": "2",
               "dlq_offset": "41", **extra}
    return [(name, value.encode()) for name, value in headers.items()]


def keyring() -> signing.Keyring:
    return signing.load_trust(keys.keys().trust)


def test_a_letter_says_where_it_came_from_why_and_when_with_credentials_redacted() -> None:
    record = keys.sign(codec.encode(event(), "/test"), by="oncall")
    headers = as_letter(record, "handler failed 5 times: RuntimeError('x')", authorization="Bearer s3cret")
    headers.append(("trace.b64", base64.b64encode(b"\xff\x00").decode().encode()))
    letter = dead_letter.parse(DLQ, 0, 7, 1_700_000_000_000, b"fraud", record.value, headers)
    assert (letter.topic, letter.original_partition, letter.original_offset) == (TOPIC, 2, 41)
    assert (letter.dlq_topic, letter.partition, letter.offset, letter.key) == (DLQ, 0, 7, "fraud")
    assert letter.attempts == 5 and letter.reason.startswith("handler failed 5 times")
    assert letter.dead_lettered_at.timestamp() == 1_700_000_000
    assert letter.event_id == record.headers["ce_id"] and letter.event_type == "signoff.rollback.requested"
    assert letter.headers["authorization"] == dead_letter.REDACTED
    assert "s3cret" not in letter.model_dump_json()
    assert not any(name.startswith("dlq_") for name in letter.headers)
    assert letter.size == letter.original_size == len(record.value) and not letter.clipped


def test_a_record_without_dlq_reason_is_not_a_letter_and_topics_are_checked() -> None:
    with pytest.raises(dead_letter.NotALetter, match="no dlq_reason"):
        dead_letter.parse(DLQ, 0, 0, 0, b"k", b"{}", [("ce_id", b"x")])
    assert dead_letter.dlq_topic(TOPIC) == dead_letter.dlq_topic(DLQ) == DLQ
    with pytest.raises(dead_letter.NotALetter, match="no dead letters there"):
        dead_letter.dlq_topic(topics.DEPLOYMENT_FAILED)  # nobody consumes it: it has no .dlq
    with pytest.raises(dead_letter.NotALetter, match="0 or more"):
        dead_letter.coordinates(TOPIC, -1, 0)


def test_the_original_headers_come_back_binary_ones_decoded_dlq_and_added_ones_dropped() -> None:
    raw = [("ce_id", b"1"), ("dlq_reason", b"r"), ("trace.b64", base64.b64encode(b"\xff\x00")),
           ("content-type", b""), (dead_letter.REDRIVEN_FROM, b"old/0/1"), ("odd.b64", b"not base64!")]
    assert dead_letter.original_headers(raw) == [("ce_id", b"1"), ("trace", b"\xff\x00"), ("odd.b64", b"not base64!")]


def test_a_redriven_record_still_verifies_and_decodes_but_an_altered_one_does_not() -> None:
    original = event()
    record = keys.sign(codec.encode(original, "/test"), by="oncall")
    raw = as_letter(record)
    letter = dead_letter.parse(DLQ, 1, 3, 0, record.key, record.value, raw)
    sent = dead_letter.redrive_headers(raw, letter, "oncall", letter.dead_lettered_at)
    assert dict(sent)[dead_letter.REDRIVEN_FROM] == f"{DLQ}/1/3".encode()
    assert dict(sent)[dead_letter.REDRIVEN_BY] == b"oncall"
    signer = keyring().verify(TOPIC, record.key, sent, record.value)
    assert signer is not None and signer.name == "oncall"
    assert codec.decode_record(TOPIC, record.key, record.value, sent) == original
    altered = record.value.replace(b'"bad"', b'"worse"')
    with pytest.raises(signing.BadSignature):
        keyring().verify(TOPIC, record.key, sent, altered)
    assert dead_letter.shown(letter, record.value, keyring(), raw, record.key).signature == \
        "verifies: signed by oncall (role operator)"
    assert str(dead_letter.shown(letter, altered, keyring(), raw, record.key).signature).startswith(
        "does not verify: signature does not verify")


def test_a_clipped_letter_or_one_redriven_before_is_refused_unless_forced() -> None:
    record = keys.sign(codec.encode(event(), "/test"), by="oncall")
    clipped = dead_letter.parse(DLQ, 0, 9, 0, record.key, record.value[:10],
                                as_letter(record, **{dead_letter.TRUNCATED: "1200000"}))
    assert clipped.clipped and clipped.original_size == 1_200_000 and clipped.size == 10
    assert "holds only the first 10 of the original's 1200000 bytes" in str(dead_letter.refusal(clipped, [], True))
    whole = dead_letter.parse(DLQ, 0, 9, 0, record.key, record.value, as_letter(record))
    assert dead_letter.refusal(whole, [], False) is None
    assert "re-driven already (at T, header says by ops; who re-drove is in the log line" in str(
        dead_letter.refusal(whole, ["at T, header says by ops"], False))
    assert dead_letter.refusal(whole, ["at T, header says by ops"], True) is None


def test_only_the_letters_own_bytes_naming_it_count_as_an_earlier_redrive() -> None:
    """The re-drive headers are unsigned and any writer of the topic may set them: a record that
    names the letter but is not its record does not block a re-drive (nor name who re-drove)."""
    record = keys.sign(codec.encode(event(), "/test"), by="oncall")
    raw = as_letter(record, **{"content-type": ""})
    letter = dead_letter.parse(DLQ, 0, 9, 0, record.key, record.value, raw)
    held = Rec(record.key, record.value, raw)
    sent = dead_letter.redrive_headers(raw, letter, "oncall", letter.dead_lettered_at)
    assert dead_letter.is_redrive(letter, held, Rec(record.key, record.value, sent))
    other = keys.sign(codec.encode(event(), "/test"), by="oncall")
    naming = [(dead_letter.REDRIVEN_FROM, str(letter.coordinates).encode()), (dead_letter.REDRIVEN_BY, b"alice")]
    forged = [Rec(b"x", b"junk", naming),  # a pipeline's junk naming someone else's letter
              Rec(record.key, record.value, naming),  # its bytes without its headers (no ce_id, no signature)
              Rec(other.key, other.value, [*((n, v.encode()) for n, v in other.headers.items()), *naming]),
              Rec(b"other-model", record.value, sent),  # another key
              Rec(record.key, record.value, [(n, b"other" if n == "ce_id" else v) for n, v in sent]),
              Rec(record.key, record.value, dead_letter.redrive_headers(  # a re-drive of another letter
                  raw, letter.model_copy(update={"offset": 10}), "oncall", letter.dead_lettered_at))]
    assert not [r for r in forged if dead_letter.is_redrive(letter, held, r)]


@dataclass
class Rec:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def test_who_redrives_is_bounded_and_printable() -> None:
    assert dead_letter.check_by("oncall") == "oncall"
    for bad in ("", "a\nb", "x" * 201):
        with pytest.raises(ValueError, match="by: who re-drives"):
            dead_letter.check_by(bad)


def test_operators_may_write_each_consumed_topic_to_redrive_and_never_a_dead_letter_topic() -> None:
    table = acl.Table(operators=("oncall",))
    written = {t for t in topics.ALL_TOPICS if table.allows("oncall", acl.Operation.WRITE, t)}
    assert written == {rule.topic for rule in acl.RULES if rule.consumers}  # re-drive reaches every consumer
    assert not written & set(dead_letter.DLQ_TOPICS)  # planting a letter is a consumer's, never an operator's
