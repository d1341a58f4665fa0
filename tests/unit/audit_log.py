"""An in-memory stand-in for the topics, for the audit index's unit tests: records appended per
(topic, partition) with increasing offsets, fed to `shared.audit.ingest` as the catch-up would."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from shared import codec, signing
from shared.audit.index import Index
from shared.audit.ingest import Progress, ingest, skip_to
from shared.events import Event
from tests import keys


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def keyring() -> signing.Keyring:
    """The tests' trust file, as `signoff audit` loads it (unsigned submissions accepted)."""
    return signing.load_trust(keys.keys().trust, accept_unsigned=(signing.SUBMITTED,))


def index(folder: Path) -> Index:
    return Index.open(folder / "audit.sqlite")


class Log:
    def __init__(self) -> None:
        self.partitions: dict[tuple[str, int], list[Rec]] = defaultdict(list)
        self.ends: dict[tuple[str, int], int] = defaultdict(int)

    def append(self, record: codec.Record, partition: int = 0) -> Rec:
        where = (record.topic, partition)
        rec = Rec(record.topic, partition, self.ends[where], record.key, record.value,
                  tuple((k, v.encode()) for k, v in record.headers.items()))
        self.partitions[where].append(rec)
        self.ends[where] += 1
        return rec

    def write(self, *events: Event, by: str | None = None) -> list[Rec]:
        """Each event signed by its owner (or `by`), as its producer would have."""
        return [self.append(keys.signed(event, by=by)) for event in events]

    def delete_up_to(self, topic: str, offset: int, partition: int = 0) -> None:
        """What the admin's delete_records does: the log starts at `offset`."""
        where = (topic, partition)
        self.partitions[where] = [r for r in self.partitions[where] if r.offset >= offset]

    def start(self, topic: str, partition: int = 0) -> int:
        records = self.partitions[(topic, partition)]
        return records[0].offset if records else self.ends[(topic, partition)]

    def feed(self, idx: Index, ring: signing.Keyring | None = None) -> Progress:
        """Everything the index has not read, as catch_up reads it: from the stored offset, a log
        that starts later being a gap."""
        progress = Progress()
        for (topic, partition), records in self.partitions.items():
            progress.gaps += skip_to(idx, topic, partition, self.start(topic, partition))
            stored = idx.next_offset(topic, partition)
            progress.add(ingest(idx, topic, partition, [r for r in records if r.offset >= stored], ring or keyring()))
        return progress
