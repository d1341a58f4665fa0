"""The console's projection as a snapshot, so that a start applies only the events indexed after
it instead of every event the audit index holds. Pure: the row is `shared.snapshot_store`'s, the
reading and writing `feed.py`'s.

Why a summary and not the projection whole (options weighed for issue 15, "cost flat in history"):
a snapshot of every submission's timeline would hold every event again (as large as the index,
and as slow to decode as projecting it), and answering every page from audit queries instead
(no projection at start) would have to redo in SQL the projection's folding (statuses that only
move forward, the first model.submitted claiming an id, operations). What a start needs is what
the lists show (projection.py `partial`); a submission's own page reads its events from the index
(`projection.replay_one`), exact because a submission depends only on the events carrying its id.
So the snapshot holds one short row per submission (and a pending review's request and
escalation, few), and restoring it decodes no event but those.

It covers the index's events up to `seq` and names the event at `seq` (`witness`): an index
deleted and built again numbers other events so, and the snapshot, kept in the index's own file
(so it goes with it), is then refused. Events are not de-duplicated across it (the projection's
`_seen` would be as large as the index): the index holds each (topic, event_id) once and the feed
applies each seq once. A snapshot holds nothing that was not read from the index (every event
verified when indexed); what this version did not write raises ValueError naming the field, and
the console projects every event instead, as it did before snapshots.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from services.console.projection import STATUSES, Projection, Submission
from shared.events import ReviewEscalated, ReviewRequested

VERSION: Final = 1
NAME: Final = "console.projection"  # the snapshot row's name
Witness = tuple[str, str]  # (topic, event_id) of the event at `seq`


def to_snapshot(projection: Projection, seq: int, witness: Witness | None) -> dict[str, Any]:
    """The projection after the index's events up to `seq`, JSON-able."""
    return {"version": VERSION, "seq": seq, "witness": list(witness) if witness else None,
            "operations": sorted(str(op) for op in projection.operations),
            "submissions": [_row(sub) for sub in projection.submissions.values()]}


def _row(sub: Submission) -> list[Any]:
    pending = sub.pending_review
    return [str(sub.id), sub.model, sub.version, sub.submitter, sub.signed_by, _time(sub.submitted_at),
            _time(sub.first_seen or sub.first_at), sub.status, sub.decided,
            sub.request.model_dump(mode="json") if pending and sub.request else None,
            sub.escalation.model_dump(mode="json") if pending and sub.escalation else None]


def _time(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def restore(data: Mapping[str, Any]) -> tuple[Projection, int, Witness | None]:
    """The projection a snapshot holds, the seq it covers and its witness; ValueError, naming
    the field, for anything this version did not write."""
    if data.get("version") != VERSION:
        raise ValueError(f"console snapshot version {str(data.get('version'))[:20]!r}, this console reads {VERSION}")
    seq, witness = data.get("seq"), data.get("witness")
    if type(seq) is not int or seq < 0:
        raise ValueError("console snapshot seq: not a non-negative integer")
    if not (witness is None and seq == 0 or _strings(witness, 2)):
        raise ValueError("console snapshot witness: not [topic, event_id] (or null at seq 0)")
    projection = Projection()
    operations, rows = data.get("operations"), data.get("submissions")
    if not isinstance(operations, list) or not isinstance(rows, list):
        raise ValueError("console snapshot operations / submissions: not lists")
    projection.operations = {_uuid(op, "operations") for op in operations}
    for i, row in enumerate(rows):
        sub = _submission(row, f"submissions[{i}]")
        projection.submissions[sub.id] = sub
    return projection, seq, (witness[0], witness[1]) if witness else None


def _submission(row: Any, where: str) -> Submission:
    if not isinstance(row, list) or len(row) != 11:
        raise ValueError(f"console snapshot {where}: not a row of 11 fields")
    sid, model, version, submitter, signed_by, submitted_at, first_seen, status, decided, request, escalation = row
    if not _strings([model, version, submitter], 3) or not (signed_by is None or isinstance(signed_by, str)):
        raise ValueError(f"console snapshot {where}: model, version, submitter, signed_by not strings")
    if status not in STATUSES or type(decided) is not bool:
        raise ValueError(f"console snapshot {where}: status {str(status)[:30]!r} or decided {decided!r}")
    try:
        return Submission(
            _uuid(sid, where), model, version, submitter, signed_by, _at(submitted_at, where), status,
            request=ReviewRequested.model_validate(request) if request is not None else None,
            escalation=ReviewEscalated.model_validate(escalation) if escalation is not None else None,
            first_seen=_at(first_seen, where) or _missing(where), decided=decided, partial=True)
    except ValidationError as exc:
        raise ValueError(f"console snapshot {where}: a pending review's request or escalation: "
                         f"{exc.error_count()} errors") from None


def _missing(where: str) -> datetime:
    raise ValueError(f"console snapshot {where}: no first_seen time")


def _strings(items: Any, n: int) -> bool:
    return isinstance(items, list) and len(items) == n and all(isinstance(x, str) for x in items)


def _uuid(text: Any, where: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except (TypeError, ValueError, AttributeError):
        raise ValueError(f"console snapshot {where}: {str(text)[:40]!r} is not a UUID") from None


def _at(text: Any, where: str) -> datetime | None:
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(f"console snapshot {where}: {str(text)[:40]!r} is not a time") from None
    if at.tzinfo is None:
        raise ValueError(f"console snapshot {where}: {text[:40]!r} has no time zone")
    return at
