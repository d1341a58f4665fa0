"""How `signoff watch` ends a timeline that goes on after a deployment (rollback, revocation)."""

from __future__ import annotations

import uuid

from shared.events import (
    DeploymentFailed,
    DeploymentRevoked,
    DeploymentRolledBack,
    RevocationRequested,
    RollbackRequested,
)
from signoff.timeline import Ending, history_line
from tests.unit import factories as f

CAUSE = f.submitted()
CAND = CAUSE.submission.candidate
REVOKE = RevocationRequested(submission_id=CAUSE.submission_id, model=CAND.model, requested_by="sec", reason="pii")
ROLLED = DeploymentRolledBack.caused_by(REVOKE, model=CAND.model, from_version="1.4.0", to_version="1.3.0",
                                        to_submission_id=uuid.uuid4(), target="model-store",
                                        requested_by="sec", reason="revoked 1.4.0: pii")
REVOKED = DeploymentRevoked.caused_by(REVOKE, candidate=CAND, requested_by="sec", reason="pii", was_in_production=True)


def shown(events) -> tuple[list[str], bool]:
    ending = Ending()
    return [type(e).__name__ for e in events if ending.see(e)], ending.done


def test_a_deployment_ends_the_timeline_and_later_noise_is_not_shown():
    names, done = shown([CAUSE, f.checks_passed(CAUSE), f.decided(CAUSE), f.deployment_succeeded(CAUSE),
                         f.decided(CAUSE, salt="forged")])
    assert names == ["ModelSubmitted", "ChecksPassed", "ReviewDecided", "DeploymentSucceeded"] and done


def test_a_revocation_reopens_it_until_revoked_even_past_the_rollback_it_causes():
    ending = Ending()
    for event in (f.deployment_succeeded(CAUSE), REVOKE, ROLLED):
        assert ending.see(event)
    assert not ending.done  # rolled back, but the revocation itself has not been recorded yet
    assert ending.see(REVOKED) and ending.done


def test_a_rollback_operation_ends_rolled_back_or_failed():
    op = RollbackRequested(submission_id=uuid.uuid4(), model=CAND.model, requested_by="oncall", reason="slow")
    for outcome in (DeploymentRolledBack.caused_by(op, model=CAND.model, from_version="2", to_version="1",
                                                   to_submission_id=uuid.uuid4(), target="model-store",
                                                   requested_by="oncall", reason="slow"),
                    DeploymentFailed.caused_by(op, candidate=CAND, target="model-store",
                                               reason="nothing to roll back to")):
        names, done = shown([op, outcome])
        assert done and names == ["RollbackRequested", type(outcome).__name__]


def test_history_lines_name_the_version_or_the_operation():
    assert "  1.4.0  " in history_line(REVOKED) and "revoked by sec (was in production): pii" in history_line(REVOKED)
    op = RollbackRequested(submission_id=uuid.uuid4(), model=CAND.model, requested_by="oncall", reason="slow")
    assert f"op {str(op.submission_id)[:8]}" in history_line(op) and "asked by oncall: slow" in history_line(op)
