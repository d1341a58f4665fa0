"""What the policy remembers: decisions made, the first rejection of each digest, and the newest
deployment per model; all of it kept across a restart."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.policy.rules import Rejection
from services.policy.state import PolicyStore
from shared.events import DeploymentSucceeded
from tests.unit import factories as f

T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "policy" / "state.db"  # the folder is created by the store


@pytest.fixture
def store(path):
    store = PolicyStore(path)
    yield store
    store.close()


def rejected(by: str, reason: str, at: datetime, sha: str = f.SHA):
    cause = f.submitted(f.submission(f.candidate(artifact_sha256=sha)))
    return f.decided(cause, outcome="rejected", decided_by=by, reason=reason, occurred_at=at)


def deployed(version: str, at: datetime, accuracy: float, model: str = "fraud-detector") -> DeploymentSucceeded:
    approval = f.decided(f.submitted(f.submission(f.candidate(model=model, version=version))))
    return DeploymentSucceeded.caused_by(approval, candidate=approval.candidate, target="model-store",
                                         location=f"/store/{model}/{version}", metrics={"accuracy": accuracy},
                                         occurred_at=at)


def test_has_decided_after_a_decision_is_recorded(store):
    sid, other = uuid.uuid4(), uuid.uuid4()
    assert not store.has_decided(sid)
    store.record_decision(sid, uuid.uuid4())
    store.record_decision(sid, uuid.uuid4())  # recording again is harmless
    assert store.has_decided(sid) and not store.has_decided(other)


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


def test_no_production_until_a_deployment(store):
    assert store.production("fraud-detector") is None


@pytest.mark.parametrize(("older_at", "newer_at"), [
    (T0, T0 + timedelta(hours=1)),
    (T0, T0 + timedelta(microseconds=500_000)),  # same second: ISO text without / with a fraction
    (T0 - timedelta(microseconds=1), T0),
    (T0 + timedelta(seconds=9, microseconds=900_000), T0 + timedelta(seconds=10)),
])
@pytest.mark.parametrize("order", ["newer-first", "older-first"])
def test_production_is_the_newest_deployment_in_either_order(store, older_at, newer_at, order):
    older, newer = deployed("1.3.0", older_at, 0.91), deployed("1.4.0", newer_at, 0.93)
    for event in ((newer, older) if order == "newer-first" else (older, newer)):
        store.record_production(event)
    now = store.production("fraud-detector")
    assert now.candidate == newer.candidate
    assert now.metrics == {"accuracy": 0.93} and now.submission_id == newer.submission_id


def test_production_time_in_another_zone_is_compared_as_utc(store):
    newer = deployed("1.4.0", T0.astimezone(timezone(timedelta(hours=-5))) + timedelta(minutes=1), 0.93)
    older = deployed("1.3.0", T0.astimezone(timezone(timedelta(hours=2))), 0.91)
    store.record_production(newer)
    store.record_production(older)
    assert store.production("fraud-detector").candidate.version == "1.4.0"


def test_production_is_per_model(store):
    store.record_production(deployed("1.4.0", T0, 0.93))
    store.record_production(deployed("0.9.0", T0 + timedelta(days=1), 0.8, model="churn-model"))
    assert store.production("fraud-detector").candidate.version == "1.4.0"
    assert store.production("churn-model").candidate.version == "0.9.0"


def test_everything_is_kept_across_a_restart(path):
    sid = uuid.uuid4()
    first = PolicyStore(path)
    first.record_decision(sid, uuid.uuid4())
    first.record_rejection(rejection := rejected("bob", "no", T0))
    first.record_production(deployed("1.4.0", T0, 0.93))
    first.close()
    again = PolicyStore(path)
    try:
        assert again.has_decided(sid)
        assert again.rejection(f.SHA).event_id == rejection.event_id
        assert again.production("fraud-detector").candidate.version == "1.4.0"
    finally:
        again.close()
