"""One partition's records into the audit index, knowing nothing of Kafka: whatever read them
(shared.audit.feed, a test) hands over records with topic, partition, offset, key, value, headers.

Each batch is one transaction: its rows, its problems, its gaps and the partition's next offset
commit together. A record below the stored offset was indexed already (by another catch-up that
got there first) and is passed over; one above it means the records in between were deleted while
the log was read: a gap. A log that starts after the stored offset (`skip_to`) is a gap too,
including on a first index of a topic that no longer starts at 0.

A record is an event only if its signature verifies against the keyring, it decodes as the
services decode it, its signer may make it (an approval is the policy's or the review-notifier's
to sign, as the deployer requires: shared.signing.approval_refusal), and it does not conflict with
an indexed event (shared.audit.index); otherwise it is a problem, with the reason, and never an
event. A decision carrying its policy texts gets them stored under their digest, and a digest that
does not match the one the decision names is a problem too (the event itself stays: its signature
holds).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from shared import codec, signing
from shared.audit.index import Index
from shared.events import Event, ReviewDecided

DELETED_WHILE_READ = "deleted while the index read the partition (retention or delete_records)"
DELETED_BEFORE = "deleted before they were indexed (retention or delete_records)"


class Record(Protocol):
    """What is read of a record (read-only: aiokafka's records and the tests' are frozen); and,
    when present, `timestamp` (the record's timestamp, milliseconds)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass
class Progress:
    """What a catch-up did: records fetched from the broker, read (fetched and not indexed before),
    events indexed, redelivered copies, problems, gaps."""

    fetched: int = 0
    read: int = 0
    indexed: int = 0
    duplicates: int = 0
    problems: int = 0
    gaps: int = 0

    def add(self, other: Progress) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def skip_to(index: Index, topic: str, partition: int, start: int, why: str = DELETED_BEFORE) -> bool:
    """The partition's log starts at `start`: offsets the index never read below it are a gap
    (recorded, and the stored offset moved to `start`). True if there was one."""
    with index.transaction():
        expected = index.next_offset(topic, partition)
        if start <= expected:
            return False
        index.add_gap(topic, partition, expected, start - 1, why)
        index.set_offset(topic, partition, start)
        return True


def ingest(index: Index, topic: str, partition: int, records: Iterable[Record], keyring: signing.Keyring,
           upto: int | None = None) -> Progress:
    """Index `records` of one partition, in offset order, below `upto` (when given), in one transaction."""
    progress = Progress()
    with index.transaction():
        expected, last = index.next_offset(topic, partition), None
        for record in records:
            if upto is not None and record.offset >= upto:
                break
            if record.offset < expected:
                continue
            if record.offset > expected:
                index.add_gap(topic, partition, expected, record.offset - 1, DELETED_WHILE_READ)
                progress.gaps += 1
            progress.read += 1
            outcome = take(index, record, keyring)
            setattr(progress, outcome, getattr(progress, outcome) + 1)
            expected, last = record.offset + 1, record
        if last is not None:
            index.set_offset(topic, partition, expected, witness(last))
    return progress


def witness(record: Record) -> str:
    """What identifies a record of a log: its timestamp, key and value. The record just below the
    stored offset is read again before a catch-up reads on (shared.audit.feed): another record
    there means the topic was deleted and created again. Value bytes carry an event_id and a
    signed occurred_at, and the timestamp is the producer's send time, so the same bytes at the
    same offset are the same record, unless someone wrote that very record again on purpose."""
    digest = hashlib.sha256()
    for part in (str(getattr(record, "timestamp", None)).encode(), record.key, record.value):
        digest.update(b"-" if part is None else len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()[:32]


def take(index: Index, record: Record, keyring: signing.Keyring) -> str:
    """One record: 'indexed', 'duplicates' (its event_id is indexed) or 'problems'."""
    key = record.key.decode(errors="replace")[:200] if record.key is not None else None
    where = (record.topic, record.partition, record.offset)
    try:
        signer = keyring.verify(record.topic, record.key, record.headers, record.value)
    except signing.Untrusted as exc:
        index.add_problem(*where, "untrusted", str(exc), key)
        return "problems"
    except codec.BadEvent as exc:
        index.add_problem(*where, "undecodable", str(exc), key)
        return "problems"
    try:
        event = codec.decode_record(record.topic, record.key, record.value or b"", record.headers)
    except codec.BadEvent as exc:
        index.add_problem(*where, "undecodable", str(exc), key)
        return "problems"
    if isinstance(event, ReviewDecided) and (
            refusal := signing.approval_refusal(event.outcome, event.mode, signer)) is not None:
        index.add_problem(*where, "untrusted", f"{event.type} {event.event_id}: {refusal}", key)
        return "problems"
    kid = next((v.decode(errors="replace") for n, v in record.headers if n == signing.KID_HEADER), None)
    outcome = index.add_event(*where, event, signer, kid if signer else None)
    if outcome != "problems":  # a redelivery too: its body is compared without the texts
        _policy_texts(index, record, event, key)
    return outcome


def _policy_texts(index: Index, record: Record, event: Event, key: str | None) -> None:
    """Store the policy texts a decision carries (PolicyRef.documents), one copy per digest, and
    report texts that do not hash to the digest the decision names."""
    for name in ("policy", "workflow"):
        ref = getattr(event, name, None)
        documents = getattr(ref, "documents", None)
        if ref is None or documents is None:
            continue
        digest = documents.digest()
        index.add_policy(digest, documents.workflow, documents.groups)
        if digest != ref.digest:
            index.add_problem(record.topic, record.partition, record.offset, "policy",
                              f"{event.type} {event.event_id}: {name}.documents hash to {digest}, but "
                              f"{name}.digest is {ref.digest}: the texts it carries are not the policy it names",
                              key)
