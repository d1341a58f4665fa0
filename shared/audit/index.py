"""The audit index's SQLite file (opened like every service's state: shared.sqlite, WAL, synchronous
FULL). One row per verified event, with who signed it and where it was read; the next offset to
read per partition, written in the same transaction as the rows it covers, so a crash never
indexes a record twice or skips one; the gaps and problems found; the chain links still open;
and the policy texts, one copy per digest.

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
from shared.audit.views import Entry, Gap, Health, OpenLink, PolicyTexts, Problem, Signed
from shared.events import (
    BY_TOPIC,
    DeploymentRolledBack,
    DeploymentSucceeded,
    Event,
    ReviewDecided,
    utcnow,
)
from shared.signing import Principal
from shared.sqlite import open_durable

UNSIGNED = "unsigned"
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL, partition INTEGER NOT NULL, "offset" INTEGER NOT NULL,
    type TEXT NOT NULL, model TEXT NOT NULL, submission_id TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,  -- microseconds since 1970-01-01 UTC
    signer TEXT NOT NULL, signer_role TEXT, signer_owner TEXT, signer_team TEXT, signer_kid TEXT,
    body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_model ON events (model, occurred_at);
CREATE INDEX IF NOT EXISTS events_submission ON events (submission_id, topic);
CREATE INDEX IF NOT EXISTS events_time ON events (occurred_at);
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gaps (
    id INTEGER PRIMARY KEY, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    first_offset INTEGER NOT NULL, last_offset INTEGER NOT NULL, found_at TEXT NOT NULL, why TEXT NOT NULL,
    UNIQUE (topic, partition, first_offset));
CREATE TABLE IF NOT EXISTS problems (
    id INTEGER PRIMARY KEY, topic TEXT NOT NULL, partition INTEGER NOT NULL, "offset" INTEGER NOT NULL,
    kind TEXT NOT NULL, reason TEXT NOT NULL, key TEXT, found_at TEXT NOT NULL,
    UNIQUE (topic, partition, "offset", kind));
CREATE TABLE IF NOT EXISTS links (
    kind TEXT NOT NULL, target TEXT NOT NULL, event_id TEXT NOT NULL, why TEXT NOT NULL,
    PRIMARY KEY (kind, target, event_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS policies (
    digest TEXT PRIMARY KEY, workflow TEXT NOT NULL, groups_yaml TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_COLUMNS = 'topic, partition, "offset", signer, signer_role, signer_owner, signer_team, signer_kid, body'
# Links to a submission close when an event of this topic about it is indexed.
_CLOSED_BY = {"submission": topics.MODEL_SUBMITTED, "deployed": topics.DEPLOYMENT_SUCCEEDED}


def micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


class Index:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    @classmethod
    def open(cls, path: Path) -> Index:
        return cls(open_durable(path, SCHEMA))

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

    # -- offsets, gaps, problems ---------------------------------------------------------------

    def offsets(self) -> dict[tuple[str, int], int]:
        return {(t, p): o for t, p, o in self.db.execute("SELECT topic, partition, next_offset FROM offsets")}

    def next_offset(self, topic: str, partition: int) -> int:
        row = self.db.execute("SELECT next_offset FROM offsets WHERE topic = ? AND partition = ?",
                              (topic, partition)).fetchone()
        return row[0] if row else 0

    def set_offset(self, topic: str, partition: int, offset: int) -> None:
        self.db.execute("INSERT INTO offsets VALUES (?, ?, ?) ON CONFLICT (topic, partition) "
                        "DO UPDATE SET next_offset = excluded.next_offset", (topic, partition, offset))

    def add_gap(self, topic: str, partition: int, first: int, last: int, why: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO gaps (topic, partition, first_offset, last_offset, found_at, why) "
                        "VALUES (?, ?, ?, ?, ?, ?)", (topic, partition, first, last, utcnow().isoformat(), why))

    def add_problem(self, topic: str, partition: int, offset: int, kind: str, reason: str,
                    key: str | None) -> None:
        self.db.execute('INSERT OR IGNORE INTO problems (topic, partition, "offset", kind, reason, key, found_at) '
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (topic, partition, offset, kind, reason[:2000], key, utcnow().isoformat()))

    def add_policy(self, digest: str, workflow: str, groups: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO policies VALUES (?, ?, ?)", (digest, workflow, groups))

    def note_caught_up(self, at: datetime) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('caught_up_at', ?)", (at.isoformat(),))

    def caught_up_at(self) -> datetime | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'caught_up_at'").fetchone()
        return datetime.fromisoformat(row[0]) if row else None

    # -- events --------------------------------------------------------------------------------

    def add_event(self, topic: str, partition: int, offset: int, event: Event, signer: Principal | None,
                  kid: str | None) -> bool:
        """Index `event` (False: its event_id is indexed already, a redelivered copy), close the
        links that waited for it and open those it needs."""
        who = signer or Principal(UNSIGNED, role="")
        inserted = self.db.execute(
            "INSERT OR IGNORE INTO events (event_id, topic, partition, \"offset\", type, model, submission_id, "
            "occurred_at, signer, signer_role, signer_owner, signer_team, signer_kid, body) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (str(event.event_id), topic, partition, offset, event.type, event.key, str(event.submission_id),
             micros(event.occurred_at), who.name, who.role or None, who.owner, who.team, kid, _body(event)),
        ).rowcount
        if not inserted:
            return False
        self.db.execute("DELETE FROM links WHERE kind = 'event' AND target = ?", (str(event.event_id),))
        for kind, closes in _CLOSED_BY.items():
            if event.topic == closes:
                self.db.execute("DELETE FROM links WHERE kind = ? AND target = ?", (kind, str(event.submission_id)))
        for kind, target, why in references(event):
            if not self._holds(kind, target):
                self.db.execute("INSERT OR IGNORE INTO links VALUES (?, ?, ?, ?)",
                                (kind, target, str(event.event_id), why))
        return True

    def _holds(self, kind: str, target: str) -> bool:
        if kind == "event":
            return self.db.execute("SELECT 1 FROM events WHERE event_id = ?", (target,)).fetchone() is not None
        return self.db.execute("SELECT 1 FROM events WHERE submission_id = ? AND topic = ?",
                               (target, _CLOSED_BY[kind])).fetchone() is not None

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

    def entry(self, event_id: object) -> Entry | None:
        row = self.db.execute(f"SELECT {_COLUMNS} FROM events WHERE event_id = ?", (str(event_id),)).fetchone()
        return _entry(row) if row else None

    def first_of(self, submission_id: object, topic: str) -> Entry | None:
        """The first indexed `topic` event of a submission (its model.submitted, its deployment)."""
        row = self.db.execute(f"SELECT {_COLUMNS} FROM events WHERE submission_id = ? AND topic = ? "
                              "ORDER BY occurred_at, seq LIMIT 1", (str(submission_id), topic)).fetchone()
        return _entry(row) if row else None

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

    def health(self, model: str | None = None, limit: int = 20) -> Health:
        """Every gap; the problems (the first `limit`); the open links of `model` (of all models
        when None; the first `limit`)."""
        gaps = [Gap(topic=t, partition=p, first_offset=a, last_offset=b, found_at=datetime.fromisoformat(f), why=w)
                for t, p, a, b, f, w in self.db.execute(
                    "SELECT topic, partition, first_offset, last_offset, found_at, why FROM gaps ORDER BY id")]
        problems = [Problem(topic=t, partition=p, offset=o, kind=k, reason=r, key=key,
                            found_at=datetime.fromisoformat(f))
                    for t, p, o, k, r, key, f in self.db.execute(
                        'SELECT topic, partition, "offset", kind, reason, key, found_at FROM problems '
                        "ORDER BY id LIMIT ?", (limit,))]
        total = self.db.execute("SELECT count(*) FROM problems").fetchone()[0]
        query = ("SELECT l.event_id, e.type, e.model, l.target, l.why FROM links l "
                 "JOIN events e ON e.event_id = l.event_id")
        args: tuple = ()
        if model is not None:
            query, args = query + " WHERE e.model = ?", (model,)
        rows = self.db.execute(query + " ORDER BY e.occurred_at LIMIT ?", (*args, limit + 1)).fetchall()
        links = [OpenLink(event_id=e, type=t, model=m, target=target, why=why) for e, t, m, target, why in rows]
        more_links = 0
        if len(links) > limit:
            count = "SELECT count(*) FROM links l JOIN events e ON e.event_id = l.event_id"
            more_links = self.db.execute(count + (" WHERE e.model = ?" if model else ""), args).fetchone()[0] - limit
        return Health(gaps=gaps, problems=problems, open_links=links[:limit],
                      more_problems=max(total - limit, 0), more_links=more_links)


def references(event: Event) -> list[tuple[str, str, str]]:
    """What `event` cites that the index must hold for its story to be whole: (kind, target, why)."""
    out = []
    if event.causation_id is not None:
        why = "its approval (causation_id)" if isinstance(event, DeploymentSucceeded) else "its cause (causation_id)"
        out.append(("event", str(event.causation_id), why))
    if isinstance(event, ReviewDecided) and event.checks_event_id is not None:
        if event.checks_event_id != event.causation_id:
            out.append(("event", str(event.checks_event_id), "its checks event (checks_event_id)"))
    if isinstance(event, ReviewDecided | DeploymentSucceeded):
        out.append(("submission", str(event.submission_id), "its submission (model.submitted of)"))
    if isinstance(event, DeploymentRolledBack):
        out.append(("deployed", str(event.to_submission_id),
                    "the release it restored (deployment.succeeded of)"))
    return out


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
