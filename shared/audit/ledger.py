"""The audit index's book-keeping beside the events: each partition's next offset (and the record
it last read, to tell a topic created again), the gaps and problems found, the acknowledgments of
them, and `health`: what an answer must say is missing or suspect, and what makes it incomplete.

A partition's `epoch` grows when its topic was deleted and created again: the new log's offsets
start over, so gaps and problems are told apart by epoch as well as by offset.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from shared.audit.views import Ack, Gap, Health, OpenLink, Problem
from shared.events import utcnow

LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    epoch INTEGER NOT NULL DEFAULT 0, witness TEXT,  -- the record at next_offset - 1, as read
    PRIMARY KEY (topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gaps (
    id INTEGER PRIMARY KEY, topic TEXT NOT NULL, partition INTEGER NOT NULL, epoch INTEGER NOT NULL,
    first_offset INTEGER NOT NULL, last_offset INTEGER NOT NULL, found_at TEXT NOT NULL, why TEXT NOT NULL,
    UNIQUE (topic, partition, epoch, first_offset));
CREATE TABLE IF NOT EXISTS problems (
    id INTEGER PRIMARY KEY, topic TEXT NOT NULL, partition INTEGER NOT NULL, epoch INTEGER NOT NULL,
    "offset" INTEGER NOT NULL, kind TEXT NOT NULL, reason TEXT NOT NULL, key TEXT, other_key TEXT,
    found_at TEXT NOT NULL, UNIQUE (topic, partition, epoch, "offset", kind));
CREATE TABLE IF NOT EXISTS acks (
    what TEXT NOT NULL, ref INTEGER NOT NULL, by TEXT NOT NULL, at TEXT NOT NULL, why TEXT NOT NULL,
    PRIMARY KEY (what, ref)) WITHOUT ROWID;
"""
# Whether a problem makes the answer about :model incomplete: a conflict about it (or any, when
# no model is asked about), a refused record about it, or any with :strict.
_BLOCKS = ("CASE WHEN x.kind = 'conflict' THEN (:model IS NULL OR x.key = :model OR x.other_key = :model) "
           "ELSE (:strict OR x.key = :model) END")


class NoSuchProblem(LookupError):
    """`signoff audit ack` of an id the index does not have, or has acknowledged already."""


class Ledger:
    db: sqlite3.Connection

    def offsets(self) -> dict[tuple[str, int], int]:
        return {(t, p): o for t, p, o in self.db.execute("SELECT topic, partition, next_offset FROM offsets")}

    def next_offset(self, topic: str, partition: int) -> int:
        return self._offset_row(topic, partition)[0]

    def epoch(self, topic: str, partition: int) -> int:
        return self._offset_row(topic, partition)[1]

    def witness(self, topic: str, partition: int) -> str | None:
        return self._offset_row(topic, partition)[2]

    def _offset_row(self, topic: str, partition: int) -> tuple[int, int, str | None]:
        row = self.db.execute("SELECT next_offset, epoch, witness FROM offsets WHERE topic = ? AND partition = ?",
                              (topic, partition)).fetchone()
        return row if row else (0, 0, None)

    def set_offset(self, topic: str, partition: int, offset: int, witness: str | None = None,
                   epoch: int | None = None) -> None:
        """The next offset to read, and the identity of the record just below it (None: not read)."""
        epoch = self.epoch(topic, partition) if epoch is None else epoch
        self.db.execute("INSERT INTO offsets VALUES (?, ?, ?, ?, ?) ON CONFLICT (topic, partition) DO UPDATE SET "
                        "next_offset = excluded.next_offset, epoch = excluded.epoch, witness = excluded.witness",
                        (topic, partition, offset, epoch, witness))

    def add_gap(self, topic: str, partition: int, first: int, last: int, why: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO gaps (topic, partition, epoch, first_offset, last_offset, found_at, "
                        "why) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (topic, partition, self.epoch(topic, partition), first, last, utcnow().isoformat(), why))

    def add_problem(self, topic: str, partition: int, offset: int, kind: str, reason: str,
                    key: str | None, other_key: str | None = None) -> None:
        self.db.execute('INSERT OR IGNORE INTO problems (topic, partition, epoch, "offset", kind, reason, key, '
                        "other_key, found_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (topic, partition, self.epoch(topic, partition), offset, kind, reason[:2000], key,
                         other_key, utcnow().isoformat()))

    def acknowledge(self, ref: str, by: str, why: str, at: datetime) -> Gap | Problem:
        """Acknowledge gap `G<id>` or problem `P<id>`; NoSuchProblem when there is none, or it is
        acknowledged already (the first acknowledgment stands)."""
        what, number = ref[:1].upper(), ref[1:]
        if what not in ("G", "P") or not number.isdigit() or len(number) > 18:
            raise NoSuchProblem(f"{ref!r} is not a problem id: write P<number> or G<number>, as the warnings "
                                "print them")
        found: list[Gap] | list[Problem] = (self._gaps(int(number)) if what == "G"
                                            else self._problems(what_id=int(number)))
        if not found:
            raise NoSuchProblem(f"no {'gap' if what == 'G' else 'problem'} {ref} in this index")
        if found[0].ack is not None:
            raise NoSuchProblem(f"{ref} was acknowledged already by {found[0].ack.by} at "
                                f"{found[0].ack.at.isoformat()}")
        self.db.execute("INSERT INTO acks VALUES (?, ?, ?, ?, ?)", (what, int(number), by, at.isoformat(), why))
        return found[0].model_copy(update={"ack": Ack(by=by, at=at, why=why)})

    def health(self, model: str | None = None, limit: int = 20, strict: bool = False) -> Health:
        """Every gap; the problems (the first `limit`, those blocking first); the open links of
        `model` (of all models when None; the first `limit`); the acknowledged apart."""
        gaps = self._gaps()
        args = {"model": model, "strict": strict, "limit": limit}
        problems = self._problems(f"a.by IS NULL ORDER BY {_BLOCKS} DESC, x.id LIMIT :limit", args)
        total, blocking = self.db.execute(
            f"SELECT count(*), coalesce(sum({_BLOCKS}), 0) FROM problems x LEFT JOIN acks a ON a.what = 'P' "
            "AND a.ref = x.id WHERE a.by IS NULL", args).fetchone()
        acked = [g for g in gaps if g.ack] + self._problems("a.by IS NOT NULL ORDER BY x.id LIMIT :limit", args)
        query = ("SELECT l.event_id, e.type, e.model, l.target, l.why FROM links l "
                 "JOIN events e ON e.event_id = l.event_id AND e.topic = l.event_topic")
        where = " WHERE e.model = :model" if model is not None else ""
        rows = self.db.execute(query + where + " ORDER BY e.occurred_at LIMIT :more", {**args, "more": limit + 1})
        links = [OpenLink(event_id=e, type=t, model=m, target=target, why=why) for e, t, m, target, why in rows]
        open_links = self.db.execute("SELECT count(*) FROM links l JOIN events e ON e.event_id = l.event_id AND "
                                     "e.topic = l.event_topic" + where, args).fetchone()[0]
        unacked = [g for g in gaps if not g.ack]
        return Health(gaps=unacked, problems=problems, open_links=links[:limit],
                      more_problems=max(total - limit, 0), more_links=max(open_links - limit, 0),
                      acknowledged=acked, blocking=len(unacked) + open_links + blocking)

    def _gaps(self, what_id: int | None = None) -> list[Gap]:
        where = "WHERE x.id = ?" if what_id is not None else ""
        rows = self.db.execute(
            "SELECT x.id, topic, partition, first_offset, last_offset, found_at, x.why, a.by, a.at, a.why "
            f"FROM gaps x LEFT JOIN acks a ON a.what = 'G' AND a.ref = x.id {where} ORDER BY x.id",
            (what_id,) if what_id is not None else ())
        return [Gap(id=i, topic=t, partition=p, first_offset=f, last_offset=la, found_at=datetime.fromisoformat(at),
                    why=w, ack=_ack(by, when, why)) for i, t, p, f, la, at, w, by, when, why in rows]

    def _problems(self, where: str = "x.id = :id", args: dict | None = None, what_id: int | None = None
                  ) -> list[Problem]:
        rows = self.db.execute(
            'SELECT x.id, topic, partition, "offset", kind, reason, key, other_key, found_at, a.by, a.at, a.why '
            f"FROM problems x LEFT JOIN acks a ON a.what = 'P' AND a.ref = x.id WHERE {where}",
            {"id": what_id} if args is None else args)
        return [Problem(id=i, topic=t, partition=p, offset=o, kind=k, reason=r, key=key, other_key=other,
                        found_at=datetime.fromisoformat(f), ack=_ack(by, when, why))
                for i, t, p, o, k, r, key, other, f, by, when, why in rows]


def _ack(by: str | None, at: str | None, why: str | None) -> Ack | None:
    return Ack(by=by, at=datetime.fromisoformat(at), why=why or "") if by is not None and at is not None else None
