"""Snapshots of the views kept from topics (shared.snapshot): a view restored from its snapshot
answers as the view did; a stale snapshot plus the events after it gives what a full read gives;
what cannot be used is refused with its reason, and a partition's start offset follows retention."""

from __future__ import annotations

import asyncio
import gc
import json
import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import snapshot
from shared.events import Event
from shared.production import ProductionBook
from shared.rejections import Rejections
from shared.snapshot_store import SnapshotStore
from tests.unit import factories as f
from tests.unit.test_production import MODEL as MODEL_
from tests.unit.test_production import T0, V1, V2, deployed, revoked, rolled_back

V3 = deployed("3", T0 + timedelta(hours=2), 0.96, model="churn")
HISTORY: list[Event] = [V1, V2, rolled_back(V1, T0 + timedelta(hours=3)), revoked(V2, T0 + timedelta(hours=4)),
                        V3, deployed("4", T0 + timedelta(hours=5), 0.9, model="orphan").model_copy(
                            update={"approval_mode": "automatic", "anchored_to": uuid.uuid4()}),
                        rolled_back(uuid.uuid4(), T0 + timedelta(hours=6), to_version="0")]


def rejected(digest: str, hours: int) -> Event:
    cand = f.candidate(artifact_sha256=digest)
    return f.decided(outcome="rejected", cand=cand, final_for_artifact=True,
                     occurred_at=T0 + timedelta(hours=hours), salt=f"{digest}{hours}")


REJECTIONS: list[Event] = [rejected("a" * 64, 2), rejected("a" * 64, 1), rejected("b" * 64, 3),
                           f.decided(outcome="approved")]


def answers(book: ProductionBook) -> dict:
    models = ("fraud-detector", "churn", "orphan", "never")
    return {m: (book.get(m), book.anchor(m)) for m in models} | {"len": len(book)}


def through_json(view: snapshot.View, fresh: snapshot.View) -> snapshot.View:
    fresh.restore(json.loads(json.dumps(view.to_snapshot())))
    return fresh


def test_a_production_book_restored_answers_as_the_book():
    book = ProductionBook()
    for event in HISTORY:
        book.apply(event)
    restored = through_json(book, ProductionBook())
    assert answers(restored) == answers(book)
    assert restored.to_snapshot() == book.to_snapshot()


def test_rejections_restored_cite_the_same_first_rejection():
    view = Rejections()
    for event in REJECTIONS:
        view.apply(event)
    restored = through_json(view, Rejections())
    assert restored.get("a" * 64) == view.get("a" * 64) and restored.get("a" * 64) is not None
    assert restored.get("b" * 64) == view.get("b" * 64) and restored.get("c" * 64) is None


@settings(max_examples=60, deadline=None)
@given(order=st.permutations(range(len(HISTORY))), cut=st.integers(0, len(HISTORY)),
       stale=st.integers(0, len(HISTORY)))
def test_a_stale_snapshot_and_the_events_after_it_give_the_full_read(order, cut, stale):
    """The snapshot taken after `cut` events; the restore re-reads from an older point (`stale`
    events earlier, as a snapshot written by another replica would be): same book as all events."""
    events = [HISTORY[i] for i in order]
    full, partial = ProductionBook(), ProductionBook()
    for event in events:
        full.apply(event)
    for event in events[:cut]:
        partial.apply(event)
    restored = through_json(partial, ProductionBook())
    for event in events[max(0, cut - stale):]:
        restored.apply(event)
    assert answers(restored) == answers(full)


@given(order=st.permutations(range(len(REJECTIONS))), cut=st.integers(0, len(REJECTIONS)))
def test_stale_rejections_and_the_rest_give_the_full_read(order, cut):
    events = [REJECTIONS[i] for i in order]
    full, partial = Rejections(), Rejections()
    for event in events:
        full.apply(event)
    for event in events[:cut]:
        partial.apply(event)
    restored = through_json(partial, Rejections())
    for event in events[cut:]:
        restored.apply(event)
    assert restored.to_snapshot() == full.to_snapshot()


@pytest.mark.parametrize("view, data, field", [
    (ProductionBook(), {"version": 1, "keep": 50}, "version"),  # unbounded: read from the beginning once
    (ProductionBook(), {"version": 2, "keep": 51}, "keeps 51"),  # it would hold releases this book refused
    (ProductionBook(), {"version": 2, "keep": 50, "releases": {"not-a-uuid": {}}, "deployed_at": {}, "set": {},
                        "revoked": {}, "anchor": {}}, "releases"),
    (ProductionBook(), {"version": 2, "keep": 50, "releases": {}, "deployed_at": {str(uuid.uuid4()): []},
                        "set": {}, "revoked": {}, "anchor": {}}, "deployed_at"),
    (ProductionBook(), {"version": 2, "keep": 50, "releases": {}, "deployed_at": {},
                        "set": {"m": [[True, "1", "x", "y"], "u", "1"]}, "revoked": {}, "anchor": {}}, "set"),
    (ProductionBook(), {"version": 2, "keep": 50, "releases": {}, "deployed_at": {}, "set": {},
                        "revoked": {str(uuid.uuid4()): "m"}, "anchor": {}}, "revoked"),
    (Rejections(), {"version": 1, "first": {"d": {"at": "2026-01-01T00:00:00"}}}, "'d'"),
    (Rejections(), {"version": 0}, "version"),
])
def test_a_snapshot_of_another_version_or_shape_is_refused_naming_it(view, data, field):
    with pytest.raises(ValueError, match=field):
        view.restore(data)
    assert view.to_snapshot() == type(view)().to_snapshot()  # nothing changed


@pytest.mark.parametrize("offsets, state, reason", [
    ("{not json", "{}", "not JSON"),
    (json.dumps({"format": 9, "offsets": []}), "{}", "format"),
    (json.dumps({"format": 1, "offsets": [["t", -1, 0]]}), "{}", "partition"),
    (json.dumps({"format": 1, "offsets": []}), "[]", "not a JSON object"),
])
def test_a_row_that_cannot_be_read_is_unusable(offsets, state, reason):
    with pytest.raises(snapshot.Unusable, match=reason):
        snapshot.decode(offsets, state)


def test_offsets_and_state_go_through_the_row():
    offsets = {("deployment.succeeded", 0): 7, ("deployment.revoked", 2): 0}
    assert snapshot.decode(*snapshot.encode(offsets, {"version": 1})) == snapshot.Snapshot(offsets, {"version": 1})


def test_each_partition_resumes_where_the_log_still_holds_it():
    a, b, c = ("t", 0), ("t", 1), ("t", 2)
    start, why = snapshot.resume_offsets({a: 5, b: 3}, beginning={a: 0, b: 4, c: 0}, end={a: 9, b: 9, c: 2})
    assert start == {a: 5, b: 4, c: 0}  # b: retention went past the snapshot; c: a new partition
    assert len(why) == 1 and "retention" in why[0]


def test_a_log_ending_before_the_snapshot_is_another_history():
    with pytest.raises(snapshot.Unusable, match="recreated"):
        snapshot.resume_offsets({("t", 0): 50}, beginning={("t", 0): 0}, end={("t", 0): 3})


def test_the_cursor_is_the_highest_record_noted_plus_one():
    cursor = snapshot.Cursor({("t", 0): 10})
    for offset in (0, 1, 12, 10, 11):  # before the seek: from the beginning; then from 10 on
        cursor.note(("t", 0), offset)
    assert cursor.next == {("t", 0): 13} and cursor.reached(("t", 0), 12) and not cursor.reached(("t", 0), 13)


def test_the_store_keeps_one_row_per_name(tmp_path):
    store = SnapshotStore(tmp_path / "state.db")
    store.save("validator.production", {("t", 0): 1}, {"version": 1}, "2026-11-30T00:00:00+00:00")
    store.save("validator.production", {("t", 0): 4}, {"version": 1, "x": 2}, "2026-11-30T00:01:00+00:00")
    assert store.load("validator.production") == snapshot.Snapshot({("t", 0): 4}, {"version": 1, "x": 2})
    assert store.load("policy.rejections") is None
    store.db.execute("UPDATE snapshot SET state = 'garbage'")
    with pytest.raises(snapshot.Unusable):
        store.load("validator.production")
    store.close()


def test_a_record_skipped_as_invalid_is_listed_to_be_read_again():
    """A rejection signed by a key the service does not trust yet is skipped; the snapshot lists it,
    so that once the trust file is fixed the next start reads it (alone) and counts it."""
    from shared.snapshot import MAX_SKIPPED, Cursor, decode, encode

    p0, p1 = ("review.decided", 0), ("review.decided", 1)
    cursor = Cursor({p0: 10, p1: 0})
    for offset in (10, 11, 13, 14):  # 12 was read and skipped: never noted
        cursor.note(p0, offset)
    for offset in (0, 1, 2):
        cursor.note(p1, offset)
    assert cursor.saved() == ({p0: 15, p1: 3}, [(p0, 12)])
    again = decode(*encode(*cursor.saved()[:1], {"v": 1}, cursor.saved()[1]))
    assert again.offsets == {p0: 15, p1: 3} and again.skipped == ((p0, 12),)
    # Too many to read one by one: the snapshot resumes at the first of them instead.
    cursor.note(p1, 3 + MAX_SKIPPED + 5)
    offsets, listed = cursor.saved()
    assert listed == [] and offsets == {p0: 12, p1: 3}


def test_a_snapshot_nested_deeper_than_the_parser_goes_is_unusable_not_a_crash():
    from shared.snapshot import Unusable, decode

    with pytest.raises(Unusable):
        decode('{"format": 1, "offsets": []}', "[" * 100_000 + "]" * 100_000)


# --- saved off the event loop (shared.replay.Kept.save_soon, shared.snapshot_store) ----------------

def test_a_row_encoded_before_another_is_never_written_after_it(state_db):
    store = SnapshotStore(state_db)
    older = store.encode("v", {("t", 0): 1}, {"n": 1}, "2026-11-30T00:00:00+00:00")
    newer = store.encode("v", {("t", 0): 2}, {"n": 2}, "2026-11-30T00:00:01+00:00")
    assert store.write(newer) and not store.write(older)  # a slow thread's row, overtaken
    assert store.load("v") == snapshot.Snapshot({("t", 0): 2}, {"n": 2})
    store.close()
    assert not store.write(store.encode("v", {}, {"n": 3}, "x"))  # closed: nothing, no error


async def test_the_periodic_save_is_written_off_the_loop_and_the_shutdown_save_wins(state_db):
    """The row is encoded on the loop, written from a thread while the loop goes on; the save at
    shutdown (after the broker stopped) is the row kept, even if the thread writes later."""
    import threading

    from shared.replay import Kept

    book = ProductionBook()
    book.apply(V1)
    kept = Kept("v", book, book.apply, ["t"], every=2)
    kept.store = store = SnapshotStore(state_db)  # SQLite and PostgreSQL: each written from a thread
    written, go_on = [], threading.Event()
    write = store.write

    def slow_write(row):
        written.append((row.number, threading.get_ident()))
        if row.number == 0:
            go_on.wait(10)  # the database is slow: an fsync, a round trip
        return write(row)

    store.write = slow_write
    kept.note("t", 0, 0)
    kept.note("t", 0, 1)  # every=2: saves, but does not wait for the write
    assert kept._writing is not None and not kept._writing.done()
    book.apply(V2)
    kept.note("t", 0, 2)
    kept.note("t", 0, 3)  # a write is under way: none started meanwhile
    await asyncio.sleep(0.05)  # the loop runs while the thread waits
    assert [n for n, _ in written] == [0]
    kept.save()  # at shutdown: now, on the caller's thread
    go_on.set()
    await asyncio.wait_for(kept._writing, 10)
    assert [n for n, _ in written] == [0, 1] and written[0][1] != threading.get_ident()
    saved = store.load("v")
    assert saved is not None and saved.offsets == {("t", 0): 4}
    restored = ProductionBook()
    restored.restore(saved.state)
    assert restored.get(MODEL_) == book.get(MODEL_) and restored.known(MODEL_).candidate.version == "2"
    store.close()


@pytest.mark.parametrize("since, saves", [(0, 0), (1, 1)])
async def test_a_restart_that_reads_nothing_new_does_not_encode_the_view_again(state_db, monkeypatch, since, saves):
    """Restored from its snapshot with nothing written since, the view is the snapshot: encoding it
    again (0.4 s for a large production book) would keep the same row. One record more: saved."""
    from aiokafka import TopicPartition

    from shared import replay
    from shared.replay import Kept

    book = ProductionBook()
    book.apply(V1)
    store = SnapshotStore(state_db)
    store.write(store.encode("v", {("t", 0): 4}, book.to_snapshot(), "2026-11-30T00:00:00+00:00"))

    async def bounds(kafka, topics):
        return {TopicPartition("t", 0): 0}, {TopicPartition("t", 0): 4 + since}

    async def read(kafka, apply, topics, keyring, start, seen):  # what was written since the snapshot
        for offset in range(4, 4 + since):
            seen(SimpleNamespace(topic="t", partition=0, offset=offset), True)
        return since

    monkeypatch.setattr(replay, "bounds", bounds)
    monkeypatch.setattr(replay, "_replay", read)
    view, collecting = ProductionBook(), []
    restore = view.restore

    def restore_noting_the_collector(data):  # shared.replay.bulk_load: paused while the view is built
        collecting.append(gc.isenabled())
        restore(data)

    view.restore = restore_noting_the_collector
    kept = Kept("v", view, lambda e: None, ["t"])
    encoded = []
    monkeypatch.setattr(kept, "save_soon", lambda: encoded.append(1))
    await kept.restore(None, None, store)
    assert kept.view.known(MODEL_) == book.known(MODEL_)
    assert len(encoded) == saves
    assert collecting == [False] and gc.isenabled()
    store.close()

