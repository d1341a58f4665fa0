"""The audit index's SQLite file (opened like every service's state: shared.sqlite, WAL, synchronous
FULL). One row per verified event, with who signed it and where it was read; the book-keeping of
shared.audit.ledger (next offset per partition, written in the same transaction as the rows it
covers, so a crash never indexes a record twice or skips one; gaps, problems, acknowledgments);
the chain links still open; and the policy texts, one copy per digest.

An event is known by its topic *and* its event_id. Services derive ids predictably
(uuid5(cause, type)) and a pipeline may write model.submitted, so an id alone names nothing: a
record claiming an id indexed on another topic is indexed on its own topic and reported as a
conflict, and every lookup names the topic it expects. The same id again on the same topic is a
redelivery only if its signer and its body agree, up to what a service re-emitting it after a
crash changes (`occurred_at`, and the deployer's `sequence`); otherwise it is a conflict and the
first copy stays.

The event's JSON is stored as decoded (upcast to the current version), without the policy texts a
decision may carry: those are stored once under their digest in `policies`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared import topics
from shared.audit.chain import differs, references
from shared.audit.ledger import LEDGER_SCHEMA, Ledger
from shared.audit.views import Entry, PolicyTexts, Signed
from shared.events import (
    BY_TOPIC,
    Event,
)
from shared.signing import Principal
from shared.sqlite import open_durable

UNSIGNED = "unsigned"
SCHEMA_VERSION = "2"  # 2: events keyed by (topic, event_id); epochs, witnesses, acknowledgments
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    topic TEXT NOT NULL, partition INTEGER NOT NULL, "offset" INTEGER NOT NULL,
    type TEXT NOT NULL, model TEXT NOT NULL, submission_id TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,  -- microseconds since 1970-01-01 UTC
    signer TEXT NOT NULL, signer_role TEXT, signer_owner TEXT, signer_team TEXT, signer_kid TEXT,
    body TEXT NOT NULL,
    UNIQUE (topic, event_id));
CREATE INDEX IF NOT EXISTS events_id ON events (event_id);
CREATE INDEX IF NOT EXISTS events_model ON events (model, occurred_at);
CREATE INDEX IF NOT EXISTS events_submission ON events (submission_id, topic);
CREATE INDEX IF NOT EXISTS events_time ON events (occurred_at);
CREATE TABLE IF NOT EXISTS links (
    kind TEXT NOT NULL, target TEXT NOT NULL,
    target_topics TEXT NOT NULL,  -- ',topic,topic,': where an 'event' target may be; '' for the others
    model TEXT NOT NULL,          -- the citing event's model: a submission or deployment must be of it
    event_topic TEXT NOT NULL, event_id TEXT NOT NULL, why TEXT NOT NULL,
    PRIMARY KEY (kind, target, event_topic, event_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS policies (
    digest TEXT PRIMARY KEY, workflow TEXT NOT NULL, groups_yaml TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
""" + LEDGER_SCHEMA
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_COLUMNS = 'topic, partition, "offset", signer, signer_role, signer_owner, signer_team, signer_kid, body'
# Links to a submission close when an event of this topic about it, of the same model, is indexed.
_CLOSED_BY = {"submission": topics.MODEL_SUBMITTED, "deployed": topics.DEPLOYMENT_SUCCEEDED}
class IndexTooOld(RuntimeError):
    """An index file of an earlier schema: it is rebuilt from the topics, not migrated."""


def micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


class Index(Ledger):
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    @classmethod
    def open(cls, path: Path) -> Index:
        db = open_durable(path, "")
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() if "meta" in tables else None
        if "events" in tables and (version is None or version[0] != SCHEMA_VERSION):
            db.close()
            raise IndexTooOld(f"the audit index {path} was built by an earlier signoff (schema "
                              f"{version[0] if version else 1}, this one reads {SCHEMA_VERSION}): delete it, and "
                              "the next `signoff audit` builds it again from the topics")
        db.executescript(SCHEMA)
        db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        return cls(db)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (taken at once: two catch-ups never interleave their rows)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def add_policy(self, digest: str, workflow: str, groups: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO policies VALUES (?, ?, ?)", (digest, workflow, groups))

    def note_caught_up(self, at: datetime) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('caught_up_at', ?)", (at.isoformat(),))

    def caught_up_at(self) -> datetime | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'caught_up_at'").fetchone()
        return datetime.fromisoformat(row[0]) if row else None

    # -- events --------------------------------------------------------------------------------

    def add_event(self, topic: str, partition: int, offset: int, event: Event, signer: Principal | None,
                  kid: str | None) -> str:
        """Index `event`: 'indexed' (and the links that waited for it closed, those it needs
        opened), 'duplicates' (a redelivered copy), or 'problems' (a conflicting copy, not indexed)."""
        who, body, key = signer or Principal(UNSIGNED, role=""), _body(event), event.key
        where = (topic, partition, offset)
        first = self.db.execute("SELECT signer, body, partition, \"offset\" FROM events WHERE topic = ? AND "
                                "event_id = ?", (topic, str(event.event_id))).fetchone()
        if first is not None:
            changed = differs(first[0], first[1], who.name, body)
            if not changed:
                return "duplicates"
            self.add_problem(*where, "conflict", f"{event.type} {event.event_id} was indexed already (partition "
                             f"{first[2]} offset {first[3]}); this copy differs in {changed}, which a service "
                             "emitting it again never changes: the first copy stays, this one is not a fact", key)
            return "problems"
        self._conflicts(topic, partition, offset, event)
        self.db.execute(
            "INSERT INTO events (event_id, topic, partition, \"offset\", type, model, submission_id, "
            "occurred_at, signer, signer_role, signer_owner, signer_team, signer_kid, body) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (str(event.event_id), topic, partition, offset, event.type, key, str(event.submission_id),
             micros(event.occurred_at), who.name, who.role or None, who.owner, who.team, kid, body))
        self.db.execute("DELETE FROM links WHERE kind = 'event' AND target = ? AND instr(target_topics, ?) > 0",
                        (str(event.event_id), f",{topic},"))
        for kind, closes in _CLOSED_BY.items():
            if topic == closes:
                self.db.execute("DELETE FROM links WHERE kind = ? AND target = ? AND model = ?",
                                (kind, str(event.submission_id), key))
        for kind, target, on, why in references(event):
            if not self._holds(kind, target, on, key):
                self.db.execute("INSERT OR IGNORE INTO links VALUES (?, ?, ?, ?, ?, ?, ?)",
                                (kind, target, f",{','.join(on)}," if kind == "event" else "", key, topic,
                                 str(event.event_id), why))
        return "indexed"

    def _conflicts(self, topic: str, partition: int, offset: int, event: Event) -> None:
        """Report what `event` claims that another indexed event claimed first: its event_id (on
        another topic: no service makes that), or, for a model.submitted, its submission_id."""
        found = [(f"its event_id is also {t}'s at partition {p} offset {o} ({m})", m) for t, p, o, m in
                 self.db.execute('SELECT topic, partition, "offset", model FROM events WHERE event_id = ? '
                                 "AND topic != ?", (str(event.event_id), topic))]
        if topic == topics.MODEL_SUBMITTED:
            found += [(f"its submission_id {event.submission_id} was claimed first by model.submitted {e} at "
                       f"partition {p} offset {o} ({m})", m) for e, p, o, m in self.db.execute(
                           'SELECT event_id, partition, "offset", model FROM events WHERE topic = ? AND '
                           "submission_id = ?", (topic, str(event.submission_id)))]
        if found:
            self.add_problem(topic, partition, offset, "conflict",
                             f"{event.type} {event.event_id} ({event.key}): " + "; ".join(r for r, _ in found)
                             + ": ids are not shared, so one of them is not what it claims to be", event.key,
                             other_key=next((m for _, m in found if m != event.key), found[0][1]))

    def _holds(self, kind: str, target: str, on: tuple[str, ...], model: str) -> bool:
        if kind == "event":
            return self.db.execute(f"SELECT 1 FROM events WHERE event_id = ? AND topic IN ({', '.join('?' * len(on))})",
                                   (target, *on)).fetchone() is not None
        return self.db.execute("SELECT 1 FROM events WHERE submission_id = ? AND topic = ? AND model = ?",
                               (target, _CLOSED_BY[kind], model)).fetchone() is not None

    def entries(self, model: str, on: tuple[str, ...] = (), until: datetime | None = None) -> list[Entry]:
        """The events of `model` (on the topics `on`, that occurred at or before `until`), oldest first."""
        args: list[object]
        query, args = f"SELECT {_COLUMNS} FROM events WHERE model = ?", [model]
        if until is not None:
            query, args = query + " AND occurred_at <= ?", [*args, micros(until)]
        if on:
            query += f" AND topic IN ({', '.join('?' * len(on))})"
            args += on
        return [_entry(row) for row in self.db.execute(query + " ORDER BY occurred_at, seq", args)]

    def entry(self, event_id: object, topic: str) -> Entry | None:
        """The event `event_id` of `topic` (an id names an event only together with its topic)."""
        row = self.db.execute(f"SELECT {_COLUMNS} FROM events WHERE event_id = ? AND topic = ?",
                              (str(event_id), topic)).fetchone()
        return _entry(row) if row else None

    def of_submission(self, model: str, submission_id: object, on: tuple[str, ...]) -> list[Entry]:
        """The `on` events of `model` carrying `submission_id`, in the order indexed."""
        return [_entry(row) for row in self.db.execute(
            f"SELECT {_COLUMNS} FROM events WHERE submission_id = ? AND model = ? AND topic IN "
            f"({', '.join('?' * len(on))}) ORDER BY seq", (str(submission_id), model, *on))]

    def claims(self, submission_id: object) -> list[Entry]:
        """Every indexed model.submitted carrying `submission_id`, whatever its model, in the
        order indexed: one, unless a pipeline claimed an id already used (a conflict)."""
        return [_entry(row) for row in self.db.execute(
            f"SELECT {_COLUMNS} FROM events WHERE submission_id = ? AND topic = ? ORDER BY seq",
            (str(submission_id), topics.MODEL_SUBMITTED))]

    def between(self, since: datetime, until: datetime | None = None) -> Iterator[Entry]:
        query, args = f"SELECT {_COLUMNS} FROM events WHERE occurred_at >= ?", [micros(since)]
        if until is not None:
            query, args = query + " AND occurred_at < ?", [*args, micros(until)]
        for row in self.db.execute(query + " ORDER BY occurred_at, seq", args):
            yield _entry(row)

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM events").fetchone()[0]

    def policy(self, digest: str) -> PolicyTexts | None:
        row = self.db.execute("SELECT digest, workflow, groups_yaml FROM policies WHERE digest = ?",
                              (digest,)).fetchone()
        return PolicyTexts(digest=row[0], workflow=row[1], groups=row[2]) if row else None


def _body(event: Event) -> str:
    """The event's JSON without policy texts (kept once per digest in `policies`)."""
    data = event.model_dump(mode="json")
    for name in ("policy", "workflow"):
        ref = data.get(name)
        if isinstance(ref, dict):
            ref.pop("documents", None)
    return json.dumps(data, separators=(",", ":"))


def _entry(row: tuple) -> Entry:
    topic, partition, offset, signer, role, owner, team, kid, body = row
    event = BY_TOPIC[topic].model_validate_json(body)
    return Entry(event=event, topic=topic, partition=partition, offset=offset,
                 signer=Signed(name=signer, role=role, owner=owner, team=team, kid=kid))
