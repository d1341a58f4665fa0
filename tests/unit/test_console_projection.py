"""The console's projection (services/console/projection.py): pure, fed with events as the audit
index holds them."""

from __future__ import annotations

import uuid
from datetime import timedelta

from services.console.projection import Projection
from shared.events import ReviewEscalated, RollbackRequested
from tests.unit import factories as f


def fed(*events) -> Projection:
    projection = Projection()
    for event in events:
        projection.apply(event)
    return projection


def test_each_submission_moves_through_its_statuses() -> None:
    cause = f.submitted()
    steps = [(cause, "submitted"), (f.checks_passed(cause), "submitted"), (f.review_requested(cause), "in review"),
             (f.decided(cause), "approved"), (f.deployment_succeeded(cause), "deployed")]
    projection = Projection()
    for event, status in steps:
        projection.apply(event)
        sub = projection.get(cause.submission_id)
        assert sub is not None and sub.status == status, (event.type, sub and sub.status)
    assert [e.type for e in sub.events] == [e.type for e, _ in steps]


def test_a_final_status_is_not_undone_by_an_event_indexed_late() -> None:
    cause = f.submitted()
    projection = fed(cause, f.review_requested(cause), f.decided(cause, outcome="rejected"), f.checks_passed(cause))
    assert projection.get(cause.submission_id).status == "rejected"  # type: ignore[union-attr]
    failed = f.submitted()
    assert fed(failed, f.checks_failed(failed)).get(failed.submission_id).status == "checks failed"  # type: ignore[union-attr]


def test_an_event_applied_twice_changes_nothing() -> None:
    cause = f.submitted()
    projection = fed(cause)
    assert projection.apply(cause) is False
    assert len(projection.get(cause.submission_id).events) == 1  # type: ignore[union-attr]


def test_pending_reviews_are_those_undecided_that_ask_the_person() -> None:
    asks_alice, decided_one = f.submitted(), f.submitted()
    projection = fed(asks_alice, f.review_requested(asks_alice, approvers=("alice",)),
                     decided_one, f.review_requested(decided_one), f.decided(decided_one))
    assert [s.id for s in projection.pending_for("alice")] == [asks_alice.submission_id]
    assert projection.pending_for("bob") == []
    escalated = ReviewEscalated.caused_by(asks_alice, candidate=asks_alice.submission.candidate, approvers=("bob",),
                                          deadline=asks_alice.occurred_at + timedelta(hours=1), reason="timed out")
    projection.apply(escalated)
    assert [s.id for s in projection.pending_for("bob")] == [asks_alice.submission_id]


def test_select_filters_by_model_status_and_time() -> None:
    old = f.submitted(occurred_at=f.submitted().occurred_at - timedelta(days=3))
    new = f.submitted(f.submission(f.candidate(model="churn-model")))
    projection = fed(old, new, f.checks_failed(new))
    assert [s.id for s in projection.select(model="churn")] == [new.submission_id]
    assert [s.id for s in projection.select(status="checks failed")] == [new.submission_id]
    assert [s.id for s in projection.select(until=new.occurred_at - timedelta(days=1))] == [old.submission_id]
    assert [s.id for s in projection.select(since=new.occurred_at)] == [new.submission_id]
    assert [s.id for s in projection.select()] == [new.submission_id, old.submission_id]  # newest first


def test_a_rollback_is_an_operation_not_a_submission() -> None:
    cause = f.submitted()
    op = RollbackRequested(submission_id=uuid.uuid4(), model="fraud-detector", to_version="1.3.0",
                           requested_by="ops", reason="latency")
    projection = fed(cause, op)
    assert projection.get(op.submission_id) is None and len(projection.select()) == 1


def test_the_first_model_submitted_claims_the_id_and_the_review_request_names_the_candidate() -> None:
    real = f.submitted()
    forged = f.submitted(f.submission(f.candidate(version="9.9.9"), submitter="someone-else"),
                         submission_id=real.submission_id)
    projection = fed(real, forged)
    sub = projection.get(real.submission_id)
    assert sub is not None and (sub.version, sub.submitter, len(sub.events)) == ("1.4.0", "pipeline", 1)
    assert sub.signed_by is None  # only claimed so far
    first_forged = fed(forged, real, f.review_requested(real)).get(real.submission_id)
    assert first_forged is not None and first_forged.version == "1.4.0"  # the signed request's candidate
    assert first_forged.signed_by == f.PIPELINE.identity
