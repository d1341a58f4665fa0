"""The auditor's answers from the index: for a model deployed (1.0, approved by alice), replaced
(2.0, automatically), rolled back to 1.0 by an operator and redeployed (3.0, approved by bob under
another policy text), what was in production before, between and after, who approved it and
under which policy digest; every release's story; the rows of an export."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.audit import queries
from shared.audit.index import Index
from shared.events import DeploymentRevoked, DeploymentRolledBack, DeploymentSucceeded, ReviewDecided
from signoff import audit_report
from tests.audit_history import T0, History, deployed_rolled_back_redeployed
from tests.unit.audit_log import Log, index

MODEL = "churn"


@pytest.fixture
def built(tmp_path: Path):
    history, one, two, three = deployed_rolled_back_redeployed(MODEL)
    idx = index(tmp_path)
    log = Log()
    log.write(*history.events)
    log.feed(idx)
    return idx, history, one, two, three


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_in_production_before_between_and_after_with_who_approved_and_the_policy_digest(built) -> None:
    idx, _, one, two, three = built

    for moment in (at(-1), at(0.04)):  # before anything; 1.0 approved but not deployed yet (09:02)
        answer = queries.production_at(idx, MODEL, moment)
        assert (answer.state, answer.version) == ("nothing", None)

    answer = queries.production_at(idx, MODEL, at(0.5))
    assert (answer.state, answer.version, answer.submission_id) == ("deployed", "1.0", one.submitted.submission_id)
    assert answer.set_by is not None and answer.set_by.event.event_id == one.deployed.event_id
    decision = answer.approval.event if answer.approval else None
    assert isinstance(decision, ReviewDecided)
    assert (decision.decided_by, [v.approver for v in decision.votes]) == ("alice", ["alice"])
    assert decision.policy.digest == one.decision.policy.digest
    assert answer.submitted is not None and answer.submitted.signer.name == "pipeline-test"

    answer = queries.production_at(idx, MODEL, at(1.5))
    assert (answer.version, answer.approval.event.decided_by) == ("2.0", "policy:default/auto")

    answer = queries.production_at(idx, MODEL, at(2.5))  # after the rollback to 1.0
    assert (answer.state, answer.version) == ("deployed", "1.0")
    assert isinstance(answer.set_by.event, DeploymentRolledBack)
    assert answer.rollback_request is not None and answer.rollback_request.event.requested_by == "oncall"
    assert answer.rollback_request.signer.name == "oncall"
    assert answer.approval.event.decided_by == "alice"
    assert answer.approval.event.policy.digest == one.decision.policy.digest

    answer = queries.production_at(idx, MODEL, at(4))
    assert (answer.version, answer.approval.event.decided_by) == ("3.0", "bob")
    assert answer.approval.event.policy.digest == three.decision.policy.digest != one.decision.policy.digest
    assert answer.rollback_request is None


def test_the_order_is_the_deployers_sequence_not_the_clock(tmp_path: Path) -> None:
    """A rollback stamped (by a skewed clock) before the deployment it undid still comes after it."""
    history = History(MODEL)
    one = history.release("1.0", T0)
    two = history.release("2.0", T0 + timedelta(hours=1))
    rolled = history.rollback(one, "2.0", T0 + timedelta(hours=2))
    skewed = rolled.model_copy(update={"occurred_at": two.deployed.occurred_at - timedelta(seconds=1)})
    log = Log()
    log.write(*[skewed if e == rolled else e for e in history.events])
    idx = index(tmp_path)
    log.feed(idx)
    assert queries.production_at(idx, MODEL, at(3)).version == "1.0"


def test_a_revoked_release_leaves_nothing_in_production_and_says_who_took_it_out(tmp_path: Path) -> None:
    history = History(MODEL)
    one = history.release("1.0", T0)
    revoked = DeploymentRevoked.caused_by(one.deployed, candidate=one.deployed.candidate, requested_by="security",
                                          reason="trained on PII", was_in_production=True, sequence=2,
                                          occurred_at=at(1))
    log = Log()
    log.write(*history.events, revoked)
    idx = index(tmp_path)
    log.feed(idx)
    assert queries.production_at(idx, MODEL, at(0.5)).version == "1.0"
    answer = queries.production_at(idx, MODEL, at(2))
    assert answer.state == "nothing" and answer.taken_out_by is not None
    assert answer.taken_out_by.event.requested_by == "security"


def test_a_rollback_to_a_release_the_index_never_saw_deployed_is_unknown_not_a_guess(tmp_path: Path) -> None:
    history = History(MODEL)
    one = history.release("1.0", T0)
    history.release("2.0", at(1))
    history.rollback(one, "2.0", at(2))
    log = Log()
    log.write(*(e for e in history.events if e != one.deployed))
    idx = index(tmp_path)
    log.feed(idx)
    answer = queries.production_at(idx, MODEL, at(3))
    assert (answer.state, answer.version, answer.approval) == ("unknown", "1.0", None)
    assert "never saw" in answer.note


def test_every_release_with_its_submitter_checks_decision_and_outcomes(built) -> None:
    idx, history, one, two, three = built
    audit = queries.releases(idx, MODEL)
    assert [r.version for r in audit.releases] == ["1.0", "2.0", "3.0"]
    first = audit.releases[0]
    assert first.submitted is not None and first.submitted.event.submission.submitter == "carol"
    assert first.submitted.signer.name == "pipeline-test"
    assert [c.signer.name for c in first.checks] == ["validator"]
    assert [d.event.decided_by for d in first.decisions] == ["alice"]
    assert [type(d.event) for d in first.deployments] == [DeploymentSucceeded, DeploymentRolledBack]
    assert [type(d.event) for d in audit.releases[1].deployments] == [DeploymentSucceeded, DeploymentRolledBack]
    [operation] = audit.operations
    assert operation.request is not None and operation.request.event.requested_by == "oncall"
    assert [type(o.event) for o in operation.outcomes] == [DeploymentRolledBack]

    text = "\n".join(audit_report.audit_lines(audit))
    assert one.decision.policy.digest in text and three.decision.policy.digest in text
    assert "vote: alice approves via http" in text and "by carol" in text and "oncall" in text


def test_the_policy_text_in_force(built) -> None:
    idx, _, one, _, three = built
    answer, digest, texts = queries.policy_in_force(idx, MODEL, at(4))
    assert digest == three.decision.policy.digest and texts is not None
    assert texts.workflow.endswith("# quorum raised\n")
    _, digest, texts = queries.policy_in_force(idx, MODEL, at(2.5))
    assert digest == one.decision.policy.digest and texts is not None and "quorum raised" not in texts.workflow
    assert queries.policy_in_force(idx, MODEL, at(-1))[1:] == (None, None)


def test_export_rows_of_a_period(built) -> None:
    idx, history, _, two, _ = built
    rows = list(queries.export_rows(idx, at(1), at(2)))
    assert [r["event_id"] for r in rows] == [str(e.event_id) for e in history.events
                                             if e.submission_id == two.submitted.submission_id]
    decision = next(r for r in rows if r["type"] == "signoff.review.decided")
    assert (decision["actor"], decision["outcome"], decision["policy_digest"], decision["signer"]) == (
        "policy:default/auto", "approved", two.decision.policy.digest, "policy")
    assert set(rows[0]) == set(queries.EXPORT_COLUMNS)
    assert len(list(queries.export_rows(idx, at(0)))) == len(history.events)


def test_an_answer_reads_as_text(built) -> None:
    idx, _, one, _, _ = built
    text = "\n".join(audit_report.production_lines(queries.production_at(idx, MODEL, at(2.5))))
    assert "version 1.0" in text and "oncall" in text and "alice" in text and one.decision.policy.digest in text
    nothing = "\n".join(audit_report.production_lines(queries.production_at(idx, MODEL, at(-1))))
    assert "nothing in production" in nothing


def test_an_empty_index_answers_nothing(tmp_path: Path) -> None:
    idx = Index.open(tmp_path / "audit.sqlite")
    assert queries.production_at(idx, MODEL, datetime.now(UTC)).state == "nothing"
    assert queries.releases(idx, MODEL).releases == []
