"""A version bump of one event type, with its upcaster, keeps stored state working: rows that
services wrote before the bump (nesting the event as version 1 spelled it) load, decide, and
fire their deadlines after it. Only the bumped type has an upcaster; nothing else changes.

The bump is real for the duration of a test: the class's version goes one up, the previous
version's spelling of a field differs (as a renamed field would), the stored rows are rewritten to
that spelling, and the upcaster renames it back. Without the upcaster the rows do not load (checked first)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from services.review_notifier.reviews import Review
from shared import topics
from shared.events import EVENT_TYPES, DeploymentSucceeded, ReviewDecided, ReviewRequested, Vote, utcnow
from shared.upcasting import UPCASTERS
from tests.component.conftest import publish, running, sent, sent_all, settle
from tests.unit import factories as f

DECLARED = {c: c.class_version for c in EVENT_TYPES}


def bump(monkeypatch: pytest.MonkeyPatch, cls: type, old: str, new: str) -> None:
    """`cls` one version up, whose previous version called field `new` `old`."""
    def rename(data: dict) -> dict:
        data[new] = data.pop(old)
        return data

    before = dict(UPCASTERS)
    monkeypatch.setattr(cls, "class_version", DECLARED[cls] + 1)
    monkeypatch.setitem(UPCASTERS, (cls.type, DECLARED[cls]), rename)
    assert [c for c in EVENT_TYPES if c.class_version != DECLARED[c]] == [cls]  # one type bumped
    assert set(UPCASTERS) - set(before) == {(cls.type, DECLARED[cls])}  # one upcaster: no other type needs one


def as_previous(cls: type, row: dict, path: tuple[str, ...], old: str, new: str) -> dict:
    """The stored row as it was written when the event at `path` was the version before the bump."""
    event = row
    for key in path:
        event = event[key]
    event[old] = event.pop(new)
    event["schema_version"] = DECLARED[cls]
    return row


async def test_reviews_stored_before_a_bump_load_decide_and_time_out(build_app, monkeypatch):
    notifier = build_app("review_notifier")
    voted, waiting = f.review_requested(quorum=1), f.review_requested(quorum=1)
    async with running(notifier.broker) as br:
        for request in (voted, waiting):
            await publish(br, request)
    for request in (voted, waiting):  # what the previous version of the service wrote
        (text,) = notifier.store.db.execute("SELECT review FROM review WHERE submission_id = ?",
                                            (str(request.submission_id),)).fetchone()
        row = as_previous(ReviewRequested, json.loads(text), ("request",), "min_approvals", "quorum")
        notifier.store.db.execute("UPDATE review SET review = ? WHERE submission_id = ?",
                                  (json.dumps(row), str(request.submission_id)))
    monkeypatch.setattr(ReviewRequested, "class_version", DECLARED[ReviewRequested] + 1)
    assert notifier.store.pending() == []  # the new version cannot read the old without its upcaster

    bump(monkeypatch, ReviewRequested, "min_approvals", "quorum")
    pending = notifier.store.pending()
    assert sorted(r.submission_id for r in pending) == sorted([voted.submission_id, waiting.submission_id])
    assert all(r.request.schema_version == DECLARED[ReviewRequested] + 1 and r.request.quorum == 1
               for r in pending)

    async with running(notifier.broker):
        _, decision = await notifier.reviewer.vote(
            voted.submission_id, Vote(approver="bob", decision="approve", reason="fine", channel="http", at=utcnow()))
        assert decision is not None and decision.outcome == "approved"
        notifier.reviewer.clock = lambda: waiting.deadline + timedelta(seconds=1)
        await notifier.reviewer.tick()  # the deadline of the review stored before the bump fires
        await settle(notifier.broker)
        decided = {d.submission_id: d for d in sent_all(notifier.emitter.publishers[ReviewDecided],
                                                         topics.REVIEW_DECIDED)}
    assert decided[voted.submission_id].decided_by == "bob"
    assert decided[waiting.submission_id].decided_by == "review-notifier/timeout"
    assert notifier.store.pending() == []
    assert isinstance(notifier.store.get(waiting.submission_id), Review)


async def test_deployer_lifecycles_stored_before_a_bump_load_and_deploy(build_app, artifact, monkeypatch):
    deployer = build_app("deployer")
    cause = f.submitted(f.submission(f.candidate(artifact_uri=artifact.path.as_uri(),
                                                 artifact_sha256=artifact.sha256)))
    async with running(deployer.broker) as br:
        await publish(br, f.decided(cause))  # approved; waits for its checks
        deployer.emitter.publishers[DeploymentSucceeded].mock.assert_not_called()
    (text,) = deployer.store.db.execute("SELECT state FROM lifecycle WHERE submission_id = ?",
                                        (str(cause.submission_id),)).fetchone()
    row = as_previous(ReviewDecided, json.loads(text), ("approval",), "decider", "decided_by")
    deployer.store.db.execute("UPDATE lifecycle SET state = ? WHERE submission_id = ?",
                              (json.dumps(row), str(cause.submission_id)))
    previous = DECLARED[ReviewDecided]
    monkeypatch.setattr(ReviewDecided, "class_version", previous + 1)
    with pytest.raises(ValueError, match=f"schema_version {previous} of signoff.review.decided has no upcaster"):
        deployer.store.load(cause.submission_id)  # unreadable without the upcaster

    bump(monkeypatch, ReviewDecided, "decider", "decided_by")
    stored = deployer.store.load(cause.submission_id)
    assert stored.approval is not None and stored.approval.decided_by == "alice"
    assert stored.approval.schema_version == previous + 1

    async with running(deployer.broker) as br:
        await publish(br, f.checks_passed(cause))  # the other half arrives after the bump
        out = sent(deployer.emitter.publishers[DeploymentSucceeded], topics.DEPLOYMENT_SUCCEEDED)
    assert out.candidate == cause.submission.candidate
    assert deployer.store.load(cause.submission_id).status == "deployed"
