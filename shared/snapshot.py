"""Snapshots of the views a service keeps from topics, so that a start reads what was written since
the last snapshot instead of every topic from offset 0. Pure: no Kafka, no database (the row is
`shared.snapshot_store`'s, the reading `shared.replay`'s).

Why a stale snapshot is safe: each view (`shared.production.ProductionBook`,
`shared.rejections.Rejections`) is a function of the *set* of events applied: any order, any
repetition gives the same view. A snapshot holds a view's state with, per partition, the offset
before which every record was applied (`Cursor`). Restoring it and reading each partition from
that offset therefore gives the view a full read would; a snapshot older than the newest merely
costs the records read again. (The production book is bounded, KEEP releases per model: there
the answer is the full read's or, for a release it no longer keeps, Unknown, in any order, so a
restored book is as exact.) State and offsets are encoded together in one row, so a snapshot is
always self-consistent, whichever replica wrote it last.

What cannot be used (not JSON, another version, a wrong shape, too large) raises `Unusable`; the
service then reads from the beginning and says so. A partition whose log now starts after the
snapshot's offset (retention deleted records the snapshot had not read) is read from its beginning,
the snapshot's state kept (it holds what retention dropped: more than a full read would know). A
log that ends before the snapshot's offset is another history (the topic was recreated): the
snapshot is Unusable. Both in `resume_offsets`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

# Offsets and state are refused beyond this size when read (a snapshot is local state, but a
# damaged row must not make a service allocate without bound) and not written beyond it.
MAX_BYTES: Final = 256 * 2**20
FORMAT: Final = 1  # of the row's envelope: the offsets' encoding; each view versions its own state

Partition = tuple[str, int]  # (topic, partition)


class Unusable(ValueError):
    """A snapshot that cannot be restored; the view is read from the beginning instead."""


class View(Protocol):
    """A pure view that can be snapshotted: `to_snapshot` returns JSON-able data carrying the
    view's own version, `restore` replaces the view's content with it (raising ValueError, naming
    the field, when the data is not what this version wrote)."""

    def to_snapshot(self) -> dict[str, Any]: ...

    def restore(self, data: Mapping[str, Any]) -> None: ...


# Records read but not applied that a snapshot lists, to read again one by one at the next start;
# beyond this many, it resumes at the first of them instead (every record after it read again).
MAX_SKIPPED: Final = 100


class Cursor:
    """Per partition, the offset before which every record has been read (`next`), and the
    records read but not applied (`skipped`: a signature not trusted yet, a version this code
    cannot read).

    `note(tp, offset)` after a record was applied. A skipped record is not noted: its offset stays
    a gap (a record topic's offsets are contiguous: never compacted, never transactional), kept
    in `skipped`, and a snapshot lists it, so the next start reads that record again (once the
    trust file or the code is fixed it counts: a rejection skipped once is not lost for good),
    without reading everything after it again. Only correct when the records of a partition are
    noted as a follower delivers them: in offset order, from a position at or before the cursor
    (the start of the log, or where the restore ended)."""

    def __init__(self, offsets: Mapping[Partition, int] | None = None,
                 skipped: set[tuple[Partition, int]] | None = None) -> None:
        self.next: dict[Partition, int] = dict(offsets or {})
        self.skipped: set[tuple[Partition, int]] = set(skipped or ())

    def note(self, tp: Partition, offset: int) -> None:
        known = self.next.get(tp)
        if known is not None and offset > known:  # records known..offset-1 were read and skipped
            self.skipped.update((tp, o) for o in range(known, min(offset, known + MAX_SKIPPED + 1)))
        self.skipped.discard((tp, offset))  # applied after all (noted late, or read again)
        self.next[tp] = max(known or 0, offset + 1)

    def skip(self, tp: Partition, offset: int) -> None:
        """A record read and skipped (known as such: the start-up read, the facts follower)."""
        self.note(tp, offset)
        self.skipped.add((tp, offset))

    def reached(self, tp: Partition, offset: int) -> bool:
        """Whether the record at `offset` was read."""
        return self.next.get(tp, 0) > offset

    def saved(self) -> tuple[dict[Partition, int], list[tuple[Partition, int]]]:
        """Where a snapshot resumes, and the skipped records it lists; when there are more than
        MAX_SKIPPED, it resumes at the first skipped record of each partition and lists none."""
        if len(self.skipped) <= MAX_SKIPPED:
            return dict(self.next), sorted(self.skipped)
        first: dict[Partition, int] = {}
        for tp, offset in self.skipped:
            first[tp] = min(first.get(tp, offset), offset)
        return {tp: min(at, first.get(tp, at)) for tp, at in self.next.items()}, []

@dataclass(frozen=True)
class Snapshot:
    offsets: dict[Partition, int]
    state: dict[str, Any]
    skipped: tuple[tuple[Partition, int], ...] = ()  # records to read again (Cursor)


def encode(offsets: Mapping[Partition, int], state: Mapping[str, Any],
           skipped: Sequence[tuple[Partition, int]] = ()) -> tuple[str, str]:
    """The row's two columns: offsets and state as JSON. Raises Unusable when too large to keep."""
    encoded_offsets = json.dumps({"format": FORMAT, "offsets": [[t, p, o] for (t, p), o in sorted(offsets.items())],
                                  "skipped": [[t, p, o] for (t, p), o in skipped]})
    encoded_state = json.dumps(state, separators=(",", ":"))
    if len(encoded_state) + len(encoded_offsets) > MAX_BYTES:
        raise Unusable(f"the snapshot is over {MAX_BYTES} bytes: not kept (the service reads from the beginning)")
    return encoded_offsets, encoded_state


def decode(offsets: str, state: str) -> Snapshot:
    """The snapshot in a row; Unusable, with the reason, for anything this version did not write."""
    if len(offsets) + len(state) > MAX_BYTES:
        raise Unusable(f"snapshot over {MAX_BYTES} bytes")
    try:
        head, body = json.loads(offsets), json.loads(state)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the parser goes
        raise Unusable(f"snapshot is not JSON: {type(exc).__name__}") from None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise Unusable(f"snapshot offsets: format {head.get('format') if isinstance(head, dict) else None!r}, "
                       f"this version reads {FORMAT}")
    if not isinstance(body, dict):
        raise Unusable("snapshot state: not a JSON object")
    found = dict(_coordinates(head.get("offsets", None) or []))
    skipped = _coordinates(head.get("skipped", None) or [])
    if len(skipped) > MAX_SKIPPED:
        raise Unusable(f"snapshot lists {len(skipped)} skipped records, more than {MAX_SKIPPED}")
    return Snapshot(found, body, tuple(skipped))


def _coordinates(items: Any) -> list[tuple[Partition, int]]:
    if not isinstance(items, list):
        raise Unusable("snapshot offsets: not a list")
    found = []
    for item in items:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                and all(type(n) is int and n >= 0 for n in item[1:])):
            raise Unusable(f"snapshot offsets: {str(item)[:80]!r} is not [topic, partition, offset]")
        found.append(((item[0], item[1]), item[2]))
    return found


def resume_offsets(saved: Mapping[Partition, int], beginning: Mapping[Partition, int],
                   end: Mapping[Partition, int]) -> tuple[dict[Partition, int], list[str]]:
    """Where to read each partition from: the snapshot's offset when the log still holds
    everything from there, else the log's beginning (a new partition, retention past the
    snapshot). Returns the offsets and why any partition starts over; Unusable when a log ends
    before the snapshot's offset (a recreated topic: the state is of another history)."""
    start, why = {}, []
    for tp, first in beginning.items():
        at = saved.get(tp)
        if at is None:
            start[tp] = first
        elif at < first:
            start[tp] = first
            why.append(f"{tp[0]}[{tp[1]}]: the log starts at {first}, after the snapshot's {at} (retention)")
        elif at > end[tp]:
            raise Unusable(f"{tp[0]}[{tp[1]}] ends at {end[tp]}, before the snapshot's offset {at}: "
                           "the topic was recreated since")
        else:
            start[tp] = at
    return start, why
