"""The deployer's durable state (each test on SQLite and on PostgreSQL: `state_db`) and its
model-store target (a folder per version)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from services.deployer import lifecycle
from services.deployer.lifecycle import Lifecycle
from services.deployer.rollout import Plan, Release
from services.deployer.state import StateStore
from services.deployer.targets import _store_files as target
from shared.events import Candidate
from shared.sources import ArtifactError
from shared.workflow.schema import DeployInputs
from tests.unit import factories as f


@pytest.fixture
def store(state_db):
    s = StateStore(state_db)
    yield s
    s.close()


def test_unknown_submission_loads_as_open(store):
    sid = uuid.uuid4()
    assert store.load(sid) == Lifecycle(submission_id=sid)


def test_state_round_trips_and_survives_reopening(store, state_db):
    cause = f.submitted()
    plan = Plan(inputs=DeployInputs(), workflow="w")
    state, _ = lifecycle.advance(Lifecycle(submission_id=cause.submission_id), f.checks_passed(cause), plan)
    state, _ = lifecycle.advance(state, f.decided(cause), plan)
    store.save(state)
    assert store.load(cause.submission_id) == state
    store.save(lifecycle.deployed(state, "/x"))
    reopened = StateStore(state_db)
    try:
        assert reopened.load(cause.submission_id).status == "deployed"
    finally:
        reopened.close()


def test_rejected_digest_is_remembered_with_the_state(store):
    state = Lifecycle(submission_id=uuid.uuid4(), status="rejected", note="no")
    assert not store.is_rejected(f.SHA)
    store.save(state, rejected_digest=f.SHA)
    assert store.is_rejected(f.SHA) and not store.is_rejected(f.OTHER_SHA)
    store.save(state, rejected_digest=f.SHA)  # a redelivery is harmless
    assert store.load(state.submission_id).status == "rejected"


# --- target -------------------------------------------------------------------------------------

@pytest.fixture
def artifact(tmp_path) -> tuple[Path, Candidate]:
    src = tmp_path / "incoming" / "fraud-1.4.0.onnx"
    src.parent.mkdir()
    src.write_bytes(b"onnx bytes")
    return src, f.candidate(artifact_uri=src.as_uri(), artifact_sha256=hashlib.sha256(b"onnx bytes").hexdigest())


def test_install_puts_the_artifact_and_manifest_in_place(tmp_path, artifact):
    src, cand = artifact
    root = tmp_path / "store"
    dest = target.install(root, cand, src, {"artifact_sha256": cand.artifact_sha256, "who": "alice"})
    assert dest == (root / "fraud-detector" / "1.4.0").resolve()
    assert (dest / src.name).read_bytes() == b"onnx bytes"
    assert json.loads((dest / target.MANIFEST).read_text())["who"] == "alice"
    assert list((root / target.STAGING).iterdir()) == []  # staged, then renamed away


def test_install_goes_through_staging_and_one_rename(tmp_path, artifact, monkeypatch):
    src, cand = artifact
    root = tmp_path / "store"
    renames = []
    real_rename = os.rename

    def spy(a, b):
        renames.append((Path(a), Path(b)))
        assert not Path(b).exists()  # nothing visible before the rename
        assert (Path(a) / target.MANIFEST).exists() and (Path(a) / src.name).exists()
        real_rename(a, b)

    monkeypatch.setattr(target.os, "rename", spy)
    dest = target.install(root, cand, src, {"artifact_sha256": cand.artifact_sha256})
    [(staged, final)] = renames
    assert staged.parent == root / target.STAGING and final == dest


def test_install_is_idempotent_for_the_same_digest(tmp_path, artifact):
    src, cand = artifact
    root = tmp_path / "store"
    first = target.install(root, cand, src, {"artifact_sha256": cand.artifact_sha256, "n": 1})
    again = target.install(root, cand, src, {"artifact_sha256": cand.artifact_sha256, "n": 2})
    assert again == first
    assert json.loads((first / target.MANIFEST).read_text())["n"] == 1  # untouched


def test_install_refuses_another_digest_for_an_existing_version(tmp_path, artifact):
    src, cand = artifact
    root = tmp_path / "store"
    target.install(root, cand, src, {"artifact_sha256": cand.artifact_sha256})
    other = cand.model_copy(update={"artifact_sha256": f.OTHER_SHA})
    with pytest.raises(ArtifactError, match="already deployed.*versions are immutable"):
        target.install(root, other, src, {"artifact_sha256": f.OTHER_SHA})


def test_install_refuses_bytes_that_do_not_match_and_leaves_nothing(tmp_path, artifact):
    src, cand = artifact
    root = tmp_path / "store"
    src.write_bytes(b"tampered after the checks")
    with pytest.raises(ArtifactError, match="the artifact changed since it was checked"):
        target.install(root, cand, src, {"artifact_sha256": cand.artifact_sha256})
    assert not (root / "fraud-detector" / "1.4.0").exists()
    assert list((root / target.STAGING).iterdir()) == []


def test_clean_staging_removes_leftovers(tmp_path):
    root = tmp_path / "store"
    leftover = root / target.STAGING / "fraud-detector-1.4.0-abc"
    leftover.mkdir(parents=True)
    (leftover / "half.onnx").write_bytes(b"half")
    (root / "fraud-detector" / "1.3.0").mkdir(parents=True)
    target.clean_staging(root)
    assert list((root / target.STAGING).iterdir()) == []
    assert (root / "fraud-detector" / "1.3.0").is_dir()
    target.clean_staging(tmp_path / "nowhere")  # nothing to clean is fine


def test_clean_staging_leaves_what_another_replica_is_copying(tmp_path):
    """Replicas share the model store: one starting up removes what a dead process of its own host
    left, and anything abandoned for hours, but never a copy a live replica is writing now."""
    import socket

    root = tmp_path / "store"
    staging = root / target.STAGING
    dead = _dead_pid()
    mine_dead = staging / f"{socket.gethostname()}~{dead}~m-1-a"
    other_host = staging / "other-host~12~m-2-b"
    alive_here = staging / f"{socket.gethostname()}~{os.getppid()}~m-3-c"
    for folder in (mine_dead, other_host, alive_here):
        folder.mkdir(parents=True)
    target.clean_staging(root)
    assert sorted(p.name for p in staging.iterdir()) == sorted([other_host.name, alive_here.name])
    target.clean_staging(root, now=time.time() + target.STALE_AFTER_S + 60)  # hours later: abandoned
    assert list(staging.iterdir()) == []


def _dead_pid() -> int:
    """The pid of a process that has ended."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.mark.parametrize(("model", "version"), [("..", "x"), ("a", ".."), ("..", ".."), ("a/b", "c"), ("a", "/etc")])
def test_version_dir_refuses_escape(tmp_path, model, version):
    # The contract forbids these names; build without validation to test the second line of defence.
    bad = Candidate.model_construct(**{**f.candidate().model_dump(), "model": model, "version": version})
    with pytest.raises(ArtifactError, match="escapes the store root"):
        target.version_dir(tmp_path / "store", bad)


def test_version_dir_of_a_safe_name(tmp_path):
    assert target.version_dir(tmp_path, f.candidate()) == (tmp_path / "fraud-detector" / "1.4.0").resolve()


# --- the sequence production is ordered by ------------------------------------------------------

def test_production_changes_are_numbered_per_model_and_the_numbers_survive_a_restart(state_db):
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    first = StateStore(state_db)
    try:
        assert [first.number(a, "fraud"), first.number(b, "fraud"), first.number(c, "churn")] == [1, 2, 1]
    finally:
        first.close()
    again = StateStore(state_db)
    try:
        assert again.number(uuid.uuid4(), "fraud") == 3 and again.number(uuid.uuid4(), "churn") == 2
    finally:
        again.close()


def test_an_event_emitted_again_keeps_its_number_until_production_moved_on(store):
    """A redelivery repeating its step re-emits the same event with the same number; once
    something else changed the model, emitting it again moves production again: a new number."""
    deployed, rolled_back = uuid.uuid4(), uuid.uuid4()
    assert store.number(deployed, "fraud") == 1
    assert store.number(deployed, "fraud") == 1  # the same event again
    assert store.number(rolled_back, "fraud") == 2
    assert store.number(deployed, "fraud") == 3  # after the rollback: it comes after it


def test_an_event_numbered_already_is_read_without_a_write(store, monkeypatch):
    """The step before an emit may number the event with its own writes (a one-stage deployment):
    the emit then finds the number and opens no transaction (no commit, no fsync of its own)."""
    deployed = uuid.uuid4()
    with store.atomic():
        kept = store.number(deployed, "fraud", at_least=1_764_000_000_000)
    opened = []
    transaction = store.db.transaction
    monkeypatch.setattr(store.db, "transaction", lambda: (opened.append(1), transaction())[1])
    assert store.number(deployed, "fraud", at_least=1_764_000_009_000) == kept  # a later clock: same number
    assert opened == []
    assert store.number(uuid.uuid4(), "fraud") == kept + 1 and opened == [1]  # another event: written


def test_numbers_are_at_least_the_deployers_clock_so_an_empty_state_file_still_numbers_after(tmp_path):
    """What a deployer numbered before its state file was lost stays below what it numbers now,
    as long as its clock did not go back; a clock that jumped ahead only makes numbers larger."""
    before = StateStore(tmp_path / "lost.db")
    try:
        old = before.number(uuid.uuid4(), "fraud", at_least=1_764_000_000_000)
    finally:
        before.close()
    fresh = StateStore(tmp_path / "new.db")
    try:
        assert fresh.number(uuid.uuid4(), "fraud", at_least=1_764_000_000_500) > old
        jumped = fresh.number(uuid.uuid4(), "fraud", at_least=4_070_908_800_000)  # a clock in 2099
        assert fresh.number(uuid.uuid4(), "fraud", at_least=1_764_000_001_000) == jumped + 1  # and back
    finally:
        fresh.close()


def test_numbers_from_the_clock_in_milliseconds_fit(store):
    """The deployer numbers at least its clock in milliseconds: beyond a 32-bit integer column."""
    clock_ms = 1_764_000_000_000
    assert store.number(uuid.uuid4(), "fraud", at_least=clock_ms) == clock_ms
    assert store.number(uuid.uuid4(), "fraud", at_least=clock_ms) == clock_ms + 1


def test_a_stage_is_due_to_the_fraction_of_a_second(store):
    """Due times are epoch seconds with a fraction: a 4-byte float would round them by minutes."""
    sid = uuid.uuid4()
    store.schedule(sid, "fraud", 1_764_000_000.5)
    assert store.due(1_764_000_000.4) == [] and not store.is_due(sid, 1_764_000_000.4)
    assert store.due(1_764_000_000.5) == [(sid, "fraud")] and store.is_due(sid, 1_764_000_000.6)
    store.unschedule(sid)
    assert store.due(1_764_000_001.0) == []


def test_promotions_are_numbered_in_order(store):
    cause = f.submitted()
    release = Release(submission_id=cause.submission_id, candidate=cause.submission.candidate,
                      approval=f.decided(cause), deploy=DeployInputs())
    store.save_release(release)
    store.promote("fraud-detector", release.submission_id)
    store.promote("fraud-detector", release.submission_id)
    assert store.production("fraud-detector").promoted == 2
    store.promote("fraud-detector", None)
    assert store.production("fraud-detector") is None and store.production_models() == ["fraud-detector"]


def test_a_state_file_of_an_earlier_version_opens_and_goes_on(tmp_path):
    """Files written before PostgreSQL was an option declared REAL and INTEGER columns (the same
    affinities as DOUBLE PRECISION and BIGINT on SQLite): they open as they are, and numbering and
    the schedule go on from what they hold."""
    path, sid = tmp_path / "state.db", uuid.uuid4()
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE sequence (model TEXT PRIMARY KEY, last INTEGER NOT NULL, event_id TEXT NOT NULL);
        CREATE TABLE schedule (submission_id TEXT PRIMARY KEY, model TEXT NOT NULL, due REAL NOT NULL);
        CREATE TABLE promotion (model TEXT PRIMARY KEY, last INTEGER NOT NULL);
    """)
    old.execute("INSERT INTO sequence VALUES ('fraud', 1764000000000, ?)", (str(uuid.uuid4()),))
    old.execute("INSERT INTO schedule VALUES (?, 'fraud', 1764000000.5)", (str(sid),))
    old.commit()
    old.close()
    store = StateStore(path)
    try:
        assert store.number(uuid.uuid4(), "fraud") == 1_764_000_000_001
        assert store.due(1_764_000_000.4) == [] and store.due(1_764_000_001.0) == [(sid, "fraud")]
    finally:
        store.close()


def test_a_database_from_before_the_unfinished_table_lists_its_half_done_deployments_once(state_db):
    """A deployer upgraded over a state that has a deployment a crash stopped half-way (saved
    before `unfinished` existed) lists it at the first open, and only then reads the lifecycles."""
    from services.deployer.lifecycle import Lifecycle
    from services.deployer.state import StateStore
    from shared.workflow.schema import DeployInputs
    from tests.unit import factories as f

    cause = f.submitted()
    approval = f.decided(cause)
    half_done = Lifecycle(submission_id=cause.submission_id, status="deploying", checked=approval.candidate,
                          approval=approval, deploy=DeployInputs())
    store = StateStore(state_db)
    store.save(Lifecycle(submission_id=f.submitted().submission_id, status="deployed"))
    # As the older code left it: the row, no unfinished entry, no migration done.
    store.db.execute("INSERT INTO lifecycle VALUES (?, ?)", (str(cause.submission_id), half_done.model_dump_json()))
    store.db.execute("DELETE FROM migration")
    store.close()
    reopened = StateStore(state_db)
    assert reopened.unfinished("fraud-detector") == [cause.submission_id]
    reopened.db.execute("DELETE FROM unfinished")
    reopened.close()
    again = StateStore(state_db)  # done once: not filled again
    assert again.unfinished("fraud-detector") == []
    again.close()
