"""The console's projection restored from its snapshot (services/console/projection_snapshot.py,
feed.py): restoring it and applying the events indexed after it gives what projecting every
indexed event gives, for the lists and for each submission's own page; a snapshot this version
did not write, or of another index, is ignored and every event projected instead."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from services.console import projection_snapshot
from services.console.feed import Feed
from services.console.projection import Projection
from shared.audit.index import Index
from shared.events import Event, ReviewEscalated, RollbackRequested
from shared.kafka import KafkaAccess
from shared.signing import load_trust
from shared.snapshot_store import SnapshotStore
from tests import keys
from tests.unit import factories as f

PEOPLE = ("alice", "bob", "dave", "nobody")


def history() -> list[Event]:
    """Submissions in every state, indexed in an order that tests the folding: a decision indexed
    before its request, a second model.submitted claiming an id, an escalation, a rollback."""
    deployed, rejected, pending, escalated, late, claimed = (f.submitted() for _ in range(6))
    churn = f.submitted(f.submission(f.candidate(model="churn-model", version="2.0.0")))
    forged = f.submitted(f.submission(f.candidate(version="9.9.9"), submitter="someone-else"),
                         submission_id=claimed.submission_id)
    escalation = ReviewEscalated.caused_by(escalated, candidate=escalated.submission.candidate, approvers=("dave",),
                                           deadline=escalated.occurred_at + timedelta(hours=1), reason="timed out")
    rollback = RollbackRequested(submission_id=uuid.uuid4(), model="fraud-detector", to_version="1.3.0",
                                 requested_by="ops", reason="latency")
    return [deployed, f.checks_passed(deployed), f.review_requested(deployed), f.decided(deployed),
            rejected, pending, f.review_requested(pending, approvers=("alice",)), churn, f.checks_failed(churn),
            f.deployment_succeeded(deployed), f.review_requested(rejected), escalated, f.review_requested(escalated),
            escalation, late, f.decided(late), rollback, f.decided(rejected, outcome="rejected"), claimed, forged,
            f.review_requested(late), f.checks_passed(claimed), f.review_requested(claimed)]


def indexed(path: Path, events: list[Event]) -> Index:
    index = Index.open(path)
    with index.transaction():
        for offset, event in enumerate(events):
            index.add_event(event.topic, 0, offset, event, None, None)
    return index


def feed_of(index: Index) -> Feed:
    kafka = KafkaAccess(bootstrap_servers="127.0.0.1:9", security_protocol="PLAINTEXT")
    return Feed(kafka, load_trust(keys.keys().trust), index, Projection())


def answers(feed: Feed) -> dict:
    """What every page asks of the projection (the submission pages through `full`)."""
    p = feed.projection
    return {"select": [s.id for s in p.select(limit=1000)], "models": p.models(),
            "pending": [(s.id, s.approvers, s.request) for s in p.pending()],
            "pending_for": {who: [s.id for s in p.pending_for(who)] for who in PEOPLE},
            "rows": [(s.id, s.model, s.version, s.status, s.submitter, s.signed_by, s.first_at) for s in p.select()],
            "full": {sid: feed.full(sid) for sid in p.submissions}}


def test_restored_and_the_rest_equals_projecting_everything(tmp_path: Path) -> None:
    events = history()
    everything = feed_of(indexed(tmp_path / "all.db", events))
    everything._project()
    expected = answers(everything)
    assert len(expected["full"]) == 7 and expected["pending"] and expected["full"][events[0].submission_id].events
    one_by_one = Projection()
    taken = [one_by_one.apply(event) for event in events]  # False: the operation's, the second claim's
    for split in range(len(events) + 1):
        path = tmp_path / f"at-{split}.db"
        index = indexed(path, events[:split])
        before = feed_of(index)
        before.restore(SnapshotStore(path))
        before._project()
        before.save()
        with index.transaction():
            for offset, event in enumerate(events[split:], start=split):
                index.add_event(event.topic, 0, offset, event, None, None)
        after = feed_of(index)
        after.restore(SnapshotStore(path))
        assert after.restored_from == before.last_seq == split
        assert after._project() == sum(taken[split:])  # only the events indexed after the snapshot
        assert answers(after) == expected, split
        assert projection_snapshot.to_snapshot(after.projection, after.last_seq, None) == \
            projection_snapshot.to_snapshot(everything.projection, everything.last_seq, None)


def saved(tmp_path: Path, events: list[Event]) -> tuple[Index, SnapshotStore]:
    index = indexed(tmp_path / "index.db", events)
    feed = feed_of(index)
    feed._project()
    feed.store = store = SnapshotStore(tmp_path / "index.db")
    feed.save()
    return index, store


@pytest.mark.parametrize("damage", ["version", "not json", "bad status", "bad uuid", "witness", "format"])
def test_a_snapshot_it_cannot_use_is_ignored_and_everything_projected(tmp_path: Path, damage: str) -> None:
    events = history()
    index, store = saved(tmp_path, events)
    offsets, state = store.db.execute("SELECT offsets, state FROM snapshot").fetchone()
    data = json.loads(state)
    if damage == "version":
        data["version"] = 99
    elif damage == "bad status":
        data["submissions"][0][7] = "approved-by-magic"
    elif damage == "bad uuid":
        data["submissions"][0][0] = "not-a-uuid"
    elif damage == "witness":  # the index deleted and built again: its seq names another event
        data["witness"][1] = str(uuid.uuid4())
    elif damage == "format":
        offsets = json.dumps({"format": 0, "offsets": []})
    state = "{\"version\": 1, \"seq\"" if damage == "not json" else json.dumps(data)
    store.db.execute("UPDATE snapshot SET offsets = ?, state = ?", (offsets, state))
    feed = feed_of(index)
    with capture_logs() as logs:
        feed.restore(store)
    assert [e["event"] for e in logs] == ["console_snapshot_unusable"], logs
    assert feed.last_seq == 0 and not feed.projection.submissions
    feed._project()
    everything = feed_of(indexed(tmp_path / "all.db", events))
    everything._project()
    assert answers(feed) == answers(everything)


def test_a_restored_submission_reads_its_timeline_from_the_index(tmp_path: Path) -> None:
    events = history()
    index, store = saved(tmp_path, events)
    feed = feed_of(index)
    feed.restore(store)
    sub = feed.projection.get(events[0].submission_id)
    assert sub is not None and sub.partial and sub.events == [] and sub.decision is None
    full = feed.full(events[0].submission_id)
    assert full is not None and not full.partial and full.decision is not None
    assert [e.type for e in full.events] == [e.type for e in events if e.submission_id == events[0].submission_id]
    assert full.status == sub.status == "deployed"
