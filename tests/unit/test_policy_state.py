"""What the policy remembers: decisions made and the first rejection of each digest, kept across a
restart, on SQLite and on PostgreSQL (`state_db`). (The model in production is not remembered
here: tests/unit/test_production.py.)"""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.policy.state import PolicyStore
from shared.rejections import Rejection
from tests.unit import factories as f

T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "policy" / "state.db"  # the folder is created by the store


@pytest.fixture
def store(state_db):
    store = PolicyStore(state_db)
    yield store
    store.close()


def rejected(by: str, reason: str, at: datetime, sha: str = f.SHA):
    cause = f.submitted(f.submission(f.candidate(artifact_sha256=sha)))
    return f.decided(cause, outcome="rejected", decided_by=by, reason=reason, occurred_at=at)


def test_has_decided_after_a_decision_is_recorded(store):
    sid, other = uuid.uuid4(), uuid.uuid4()
    assert not store.has_decided(sid)
    assert store.record_decision(sid, uuid.uuid4()) is True
    assert store.record_decision(sid, uuid.uuid4()) is False  # recording again is harmless
    assert store.has_decided(sid) and not store.has_decided(other)


async def test_deciding_yields_false_once_decided(store):
    sid = uuid.uuid4()
    async with store.deciding(sid) as undecided:
        assert undecided
        store.record_decision(sid, uuid.uuid4())
    async with store.deciding(sid) as undecided:
        assert not undecided


def test_first_rejection_of_a_digest_wins_and_is_returned(store):
    first = rejected("bob", "recall dropped", T0)
    second = rejected("policy:strict/rejected_before", "rejected before", T0 + timedelta(hours=1))
    store.record_rejection(first)
    store.record_rejection(second)
    assert store.rejection(f.SHA) == Rejection(event_id=first.event_id, submission_id=first.submission_id,
                                               decided_by="bob", at=T0, reason="recall dropped")
    assert store.rejection(f.OTHER_SHA) is None


def test_rejections_are_per_digest(store):
    store.record_rejection(rejected("bob", "a", T0))
    store.record_rejection(other := rejected("alice", "b", T0, sha=f.OTHER_SHA))
    assert store.rejection(f.OTHER_SHA).event_id == other.event_id
    assert store.rejection(f.SHA).decided_by == "bob"


def test_everything_is_kept_across_a_restart(state_db):
    sid = uuid.uuid4()
    first = PolicyStore(state_db)
    first.record_decision(sid, uuid.uuid4())
    first.record_rejection(rejection := rejected("bob", "no", T0))
    first.close()
    again = PolicyStore(state_db)
    try:
        assert again.has_decided(sid)
        assert again.rejection(f.SHA).event_id == rejection.event_id
    finally:
        again.close()


def test_a_production_table_of_an_older_version_is_dropped(path):
    """The deployment topics are the record of production now; a stale copy must not linger."""
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE production (model TEXT PRIMARY KEY, production TEXT NOT NULL, at TEXT NOT NULL)")
    db.commit()
    db.close()
    PolicyStore(path).close()
    db = sqlite3.connect(path)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    db.close()
    assert tables == {"decided", "rejected"}


def test_a_policy_store_leaves_a_deployer_store_in_the_same_schema_intact(postgres):
    """Every service given the same PostgreSQL URL (one schema) must not destroy another's state:
    the policy's upgrade of its old SQLite files (dropping the `production` table it once kept)
    never runs on PostgreSQL, where `production` is the deployer's."""
    from services.deployer.rollout import Release
    from services.deployer.state import StateStore
    from shared.workflow.schema import DeployInputs

    url = postgres.database()
    deployer = StateStore(url)
    try:
        cause = f.submitted()
        deployer.save_release(Release(submission_id=cause.submission_id, candidate=cause.submission.candidate,
                                      approval=f.decided(cause), deploy=DeployInputs()))
        deployer.promote("fraud-detector", cause.submission_id)
        deployer.revoke("leaked", cause.submission_id, f.SHA)
        PolicyStore(url).close()
        PolicyStore(url).close()  # a restart of the policy too
        assert deployer.production_models() == ["fraud-detector"]
        assert deployer.production("fraud-detector").submission_id == cause.submission_id
        assert cause.submission_id in deployer.banned([deployer.release(cause.submission_id)])
    finally:
        deployer.close()
