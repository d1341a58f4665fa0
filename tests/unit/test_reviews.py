"""Review rules: only approvers vote, never on their own model, once each; quorum approves, one 'no'
vetoes (unless the workflow says otherwise); break-glass approves alone with a justification; the
deadline brings the declared outcome, reminders come at their interval."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from services.review_notifier import reviews, state
from services.review_notifier.channels import Receipt
from services.review_notifier.reviews import Refused, Review
from services.review_notifier.state import ReviewStore
from shared import database
from shared.events import Escalation, Production, ReviewRequested, Submitter, Vote
from shared.identity import Directory
from shared.upcasting import UPCASTERS
from tests.unit import factories as f

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def vote(approver: str, decision: str = "approve", reason: str = "fine", channel: str = "http",
         break_glass: bool = False) -> Vote:
    return Vote(approver=approver, decision=decision, reason=reason, channel=channel, at=T0,
                break_glass=break_glass)


def review(quorum: int = 1, approvers=("alice", "bob", "carol"), submitter: str = "pipeline", **over) -> Review:
    cause = f.submitted(f.submission(submitter=submitter), occurred_at=T0)
    return Review(request=f.review_requested(cause, approvers=approvers, quorum=quorum, occurred_at=T0, **over))


def refused(rev, v) -> Refused:
    with pytest.raises(Refused) as info:
        reviews.cast(rev, v)
    return info.value


def test_unknown_review_is_404():
    assert refused(None, vote("alice")).status == 404


def test_non_approver_is_403():
    r = refused(review(), vote("mallory"))
    assert r.status == 403 and "'mallory' is not an approver" in r.message


def test_submitter_cannot_approve_own_model():
    r = refused(review(submitter="alice"), vote("alice"))
    assert r.status == 403 and "submitter" in r.message


def test_submitter_may_reject_own_model():
    _, decision = reviews.cast(review(submitter="alice"), vote("alice", "reject", "found a bug"))
    assert decision is not None and decision.outcome == "rejected"


def test_one_approval_meets_quorum_one():
    rev = review()
    updated, decision = reviews.cast(rev, vote("alice", reason="ship it", channel="slack"))
    assert decision is not None
    assert (decision.outcome, decision.mode, decision.decided_by) == ("approved", "human", "alice")
    assert decision.reason == "alice: ship it"
    assert decision.candidate == rev.request.submission.candidate
    assert decision.policy == rev.request.policy
    assert decision.causation_id == rev.request.event_id
    assert decision.votes == updated.votes and decision.votes[0].channel == "slack"
    assert decision.votes[0].at == T0 and not decision.break_glass
    assert updated.decision == decision and len(updated.votes) == 1


def test_quorum_two_needs_two_distinct_approvers():
    rev, decision = reviews.cast(review(quorum=2), vote("alice"))
    assert decision is None and rev.decision is None
    assert refused(rev, vote("alice")).status == 409  # the same approver twice does not count twice
    rev, decision = reviews.cast(rev, vote("bob", channel="email"))
    assert decision is not None and decision.outcome == "approved"
    assert decision.decided_by == "alice, bob"
    assert [(v.approver, v.channel) for v in decision.votes] == [("alice", "http"), ("bob", "email")]


def test_double_vote_is_409():
    rev, _ = reviews.cast(review(quorum=2), vote("alice"))
    r = refused(rev, vote("alice", "reject"))
    assert r.status == 409 and "already voted" in r.message


def test_one_rejection_vetoes():
    rev, _ = reviews.cast(review(quorum=2), vote("alice"))
    rev, decision = reviews.cast(rev, vote("bob", "reject", "bias on group_b"))
    assert decision is not None
    assert (decision.outcome, decision.decided_by, decision.reason) == ("rejected", "bob", "bob: bias on group_b")
    assert len(decision.votes) == 2


def test_without_veto_rejections_need_the_quorum():
    rev = review(quorum=2, approvers=("alice", "bob", "carol", "dave"), veto=False)
    rev, decision = reviews.cast(rev, vote("alice", "reject", "no"))
    assert decision is None
    rev, decision = reviews.cast(rev, vote("bob", "approve"))
    assert decision is None
    rev, decision = reviews.cast(rev, vote("carol", "reject", "no either"))
    assert decision is not None and (decision.outcome, decision.decided_by) == ("rejected", "alice, carol")


def test_without_veto_a_quorum_out_of_reach_rejects():
    rev = review(quorum=2, approvers=("alice", "bob"), veto=False)
    rev, decision = reviews.cast(rev, vote("alice", "reject", "no"))
    assert decision is not None and decision.outcome == "rejected"  # bob alone can never make two


def test_decided_review_is_409():
    rev, _ = reviews.cast(review(), vote("alice"))
    r = refused(rev, vote("bob", "reject"))
    assert r.status == 409 and "already decided: approved by alice" in r.message


def test_the_decision_is_idempotent_for_the_same_request():
    rev = review()
    _, a = reviews.cast(rev, vote("alice"))
    _, b = reviews.cast(rev, vote("alice"))
    assert a.event_id == b.event_id


JUSTIFICATION = "fraud spike in production, the old model is leaking money"


def test_break_glass_approves_alone_and_is_flagged():
    rev = review(quorum=2, break_glass=("oncall",))
    rev, decision = reviews.cast(rev, vote("oncall", reason=JUSTIFICATION, break_glass=True))
    assert decision is not None and decision.outcome == "approved" and decision.break_glass
    assert decision.votes[0].break_glass and decision.decided_by == "oncall"
    assert decision.reason.startswith("BREAK-GLASS by oncall: ")


@pytest.mark.parametrize(("who", "decision", "reason", "status", "says"), [
    ("alice", "approve", JUSTIFICATION, 403, "may not break glass"),
    ("oncall", "approve", "urgent", 422, "justification"),
    ("oncall", "reject", JUSTIFICATION, 422, "approving alone"),
    ("pipeline", "approve", JUSTIFICATION, 403, "submitter"),
])
def test_break_glass_refusals(who, decision, reason, status, says):
    rev = review(break_glass=("oncall", "pipeline"))
    r = refused(rev, vote(who, decision, reason, break_glass=True))
    assert r.status == status and says in r.message


def test_break_glass_without_a_role_in_the_workflow():
    assert "allows no break-glass" in refused(review(), vote("alice", reason=JUSTIFICATION, break_glass=True)).message


def release(version: str, model: str = "fraud-detector") -> Production:
    """A release of `model` in production (its own submission)."""
    return Production(candidate=f.candidate(model=model, version=version), metrics={"accuracy": 0.93},
                      submission_id=uuid.uuid4())


V110, V160 = release("1.1.0"), release("1.6.0")
CHANGED = ("production changed since this review was shown: now fraud-detector 1.6.0 (was 1.1.0); "
           "the evidence is refreshed, look again and vote again")


def reshown(rev, v, production) -> reviews.Reshown:
    with pytest.raises(reviews.Reshown) as info:
        reviews.cast(rev, v, production)
    return info.value


def test_a_vote_counts_against_the_production_shown_and_is_refused_once_it_changed():
    rev = review(quorum=2, production=V110)
    assert rev.shown == V110  # what the reviewers were shown: the request's
    counted, decision = reviews.cast(rev, vote("alice"), V110.model_copy(update={"metrics": {}}))
    assert decision is None and len(counted.votes) == 1  # the same release (by submission), counted

    r = reshown(counted, vote("bob"), V160)  # a late approval replaced 1.1.0 with 1.6.0 meanwhile
    assert (r.status, r.message) == (409, CHANGED)
    assert r.review.shown == V160 and r.review.request.production == V110  # refreshed; the request as it was
    assert r.review.votes == counted.votes and r.review.decision is None  # bob's vote did not count

    refreshed, decision = reviews.cast(r.review, vote("bob"), V160)  # against the refreshed evidence
    assert decision is not None and decision.outcome == "approved" and refreshed.shown == V160


@pytest.mark.parametrize(("shown", "now", "says"), [
    (None, V160, "now fraud-detector 1.6.0 (was no model in production)"),
    (V110, None, "now no model in production (was fraud-detector 1.1.0)"),
    (V110, release("2.0.0", model="other-model"), "now other-model 2.0.0 (was fraud-detector 1.1.0)"),
])
def test_none_and_a_release_differ_both_ways(shown, now, says):
    r = reshown(review(production=shown), vote("alice", "reject", "no"), now)
    assert says in r.message and r.review.shown == now and r.review.votes == ()
    _, decision = reviews.cast(r.review, vote("alice", "reject", "no"), now)
    assert decision is not None and decision.outcome == "rejected"


def test_an_unknown_production_judges_the_vote_as_before_and_a_refusal_says_more_first():
    rev = review(quorum=2, production=V110, break_glass=("oncall",))
    rev, _ = reviews.cast(rev, vote("alice"), reviews.UNKNOWN)  # counted: the notifier cannot tell
    assert len(rev.votes) == 1 and rev.shown == V110
    assert refused(rev, vote("mallory")).status == 403  # not an approver, whatever production is
    assert refused(rev, vote("alice")).status == 409
    with pytest.raises(Refused) as info:
        reviews.cast(rev, vote("mallory"), V160)
    assert info.value.status == 403 and not isinstance(info.value, reviews.Reshown)
    assert reshown(rev, vote("oncall", reason=JUSTIFICATION, break_glass=True), V160).review.shown == V160


def test_deadline_rejects_when_the_workflow_says_reject():
    rev, _ = reviews.cast(review(quorum=2), vote("alice"))
    assert reviews.due(rev, rev.deadline - timedelta(seconds=1)).decision is None
    step = reviews.due(rev, rev.deadline)
    d = step.decision
    assert d is not None and (d.outcome, d.mode, d.decided_by) == ("rejected", "automatic", reviews.TIMEOUT_DECIDER)
    assert d.policy.rule == "manual_approval.on_timeout" and d.votes == rev.votes
    assert not d.final_for_artifact  # nobody judged the artifact
    assert step.review.decision == d
    assert reviews.due(step.review, rev.deadline + timedelta(hours=1)) == reviews.Due(step.review)


def test_deadline_escalates_once_then_rejects():
    rev = review(on_timeout="escalate", escalation=Escalation(approvers=("dave", "erin"), timeout=timedelta(hours=2)))
    now = rev.deadline + timedelta(seconds=3)
    step = reviews.due(rev, now)
    assert step.decision is None and step.escalation is not None
    assert step.escalation.approvers == ("dave", "erin") and step.escalation.deadline == now + timedelta(hours=2)
    escalated = step.review
    assert escalated.approvers == ("alice", "bob", "carol", "dave", "erin")
    assert escalated.deadline == now + timedelta(hours=2)
    assert reviews.due(escalated, now + timedelta(minutes=1)).escalation is None  # only once
    _, decision = reviews.cast(escalated, vote("dave"))  # the escalation approvers may now decide
    assert decision is not None and decision.outcome == "approved"
    final = reviews.due(escalated, escalated.deadline).decision
    assert final is not None and final.outcome == "rejected" and "after escalation" in final.reason


def test_reminders_at_the_interval_to_those_who_have_not_voted():
    rev = review(quorum=2, remind_every=timedelta(hours=1), submitter="carol")
    rev, _ = reviews.cast(rev, vote("alice"))
    assert reviews.due(rev, T0 + timedelta(minutes=59)).remind == ()
    step = reviews.due(rev, T0 + timedelta(hours=1))
    assert step.remind == ("bob",)  # not alice (voted), not carol (the submitter)
    assert reviews.due(step.review, T0 + timedelta(hours=1, minutes=30)).remind == ()
    assert reviews.due(step.review, T0 + timedelta(hours=2)).remind == ("bob",)
    assert reviews.next_due(step.review) == T0 + timedelta(hours=2)


def test_no_reminder_without_an_interval():
    rev = review()
    assert reviews.due(rev, T0 + timedelta(hours=23)).remind == ()
    assert reviews.next_due(rev) == rev.deadline


names = st.sampled_from(["alice", "bob", "carol", "dave", "erin", "mallory"])


@settings(max_examples=200)
@given(votes=st.lists(st.tuples(names, st.sampled_from(["approve", "reject"])), max_size=8),
       quorum=st.integers(1, 3), veto=st.booleans())
def test_properties_of_any_sequence_of_votes(votes, quorum, veto):
    """Whatever arrives: only eligible, distinct approvers count; an approval has `quorum` distinct
    approvers, none the submitter; with veto, any counted rejection means rejected."""
    rev = review(quorum=quorum, approvers=("alice", "bob", "carol", "dave"), submitter="carol", veto=veto)
    decision = None
    for who, what in votes:
        try:
            rev, decision = reviews.cast(rev, vote(who, what))
        except Refused:
            continue
    counted = [v.approver for v in rev.votes]
    assert len(counted) == len(set(counted)) and set(counted) <= {"alice", "bob", "carol", "dave"}
    if decision is not None and decision.outcome == "approved":
        approvers = {v.approver for v in rev.votes if v.decision == "approve"}
        assert len(approvers) >= quorum and "carol" not in approvers
        assert not (veto and any(v.decision == "reject" for v in rev.votes))
    if veto and any(v.decision == "reject" for v in rev.votes):
        assert rev.decision is not None and rev.decision.outcome == "rejected"


SLACK_REQUEST, EMAIL_LINK = Receipt("slack", "v0=abc"), Receipt("email", "t1")


def test_store_keeps_reviews_votes_receipts_and_notices_across_a_reopen(state_db):
    path = state_db  # an SQLite file, or a PostgreSQL URL (conftest: every store test runs on both)
    store = ReviewStore(path)
    rev = review(quorum=2)
    assert store.open(rev.request) is True
    assert store.open(rev.request) is False  # a redelivered request
    assert store.get(rev.request.submission_id) == rev
    updated, _ = reviews.cast(rev, vote("alice"))
    store.save(updated, receipt=SLACK_REQUEST, at=T0)
    store.record_notice(rev.submission_id, "slack:requested", {"channel": "C1", "ts": "1.2"})
    store.close()

    store = ReviewStore(path)
    try:
        assert store.get(rev.request.submission_id) == updated
        assert store.open(rev.request) is False
        assert store.get(rev.request.submission_id) == updated  # not reset by a redelivery
        assert store.receipt_seen(SLACK_REQUEST) and not store.receipt_seen(Receipt("slack", "v0=abd"))
        assert not store.receipt_seen(Receipt("email", "v0=abc"))  # a receipt belongs to its channel
        assert store.notice(rev.submission_id, "slack:requested") == {"channel": "C1", "ts": "1.2"}
        assert store.pending() == [updated]
        done, _ = reviews.cast(updated, vote("bob"))
        store.save(done, receipt=EMAIL_LINK, at=T0)
        assert store.pending() == [] and store.receipt_seen(EMAIL_LINK)
        assert not store.receipt_seen(Receipt("email", "t2"))
    finally:
        store.close()


def test_a_failed_save_records_neither_the_vote_nor_the_receipt(state_db):
    store = ReviewStore(state_db)
    try:
        rev = review(quorum=2)
        store.open(rev.request)
        store.save(rev, receipt=EMAIL_LINK, at=T0)
        updated, _ = reviews.cast(rev, vote("alice"))
        with pytest.raises(database.IntegrityError):
            store.save(updated, receipt=EMAIL_LINK, at=T0)  # the receipt was seen: the whole save fails
        assert store.get(rev.submission_id) == rev
    finally:
        store.close()


_BEFORE_RECEIPTS = """
CREATE TABLE review (submission_id TEXT PRIMARY KEY, review TEXT NOT NULL);
CREATE TABLE used_token (token_id TEXT PRIMARY KEY, submission_id TEXT NOT NULL, used_at TEXT NOT NULL);
CREATE TABLE slack_request (signature TEXT PRIMARY KEY, submission_id TEXT NOT NULL, at TEXT NOT NULL);
"""


def test_a_state_file_from_before_receipts_keeps_used_links_and_counted_requests(tmp_path):
    """Written by the version with per-channel tables (and before `pending`): what was used stays used."""
    path, rev = tmp_path / "reviews.db", review()
    old = sqlite3.connect(path)
    old.executescript(_BEFORE_RECEIPTS)
    old.execute("INSERT INTO review VALUES (?, ?)", (str(rev.submission_id), rev.model_dump_json()))
    old.execute("INSERT INTO used_token VALUES ('t-used', ?, ?)", (str(rev.submission_id), T0.isoformat()))
    old.execute("INSERT INTO slack_request VALUES ('v0=seen', ?, ?)", (str(rev.submission_id), T0.isoformat()))
    old.commit()
    old.close()
    for _ in range(2):  # opening again copies nothing twice
        store = ReviewStore(path)
        try:
            assert store.receipt_seen(Receipt("email", "t-used")) and store.receipt_seen(Receipt("slack", "v0=seen"))
            assert not store.receipt_seen(Receipt("email", "v0=seen"))
            assert store.db.execute("SELECT count(*) FROM receipt").fetchone() == (2,)
            assert store.pending() == [rev]
        finally:
            store.close()


def test_a_stored_review_written_under_an_older_event_version_is_upcast(state_db, monkeypatch):
    """The nested review.requested of a stored row is brought up to date as it is read."""
    rev = review(quorum=2)
    store = ReviewStore(state_db)
    try:
        store.open(rev.request)
        row = json.loads(rev.model_dump_json())
        row["request"]["min_approvals"] = row["request"].pop("quorum")  # how "version 1" spelled it
        store.db.execute("UPDATE review SET review = ?", (json.dumps(row),))
        assert store.get(rev.submission_id) is None  # unreadable without an upcaster

        def renamed(data: dict) -> dict:
            data["quorum"] = data.pop("min_approvals")
            return data
        now = ReviewRequested.class_version  # the stored row is at it; the class goes one up
        monkeypatch.setattr(ReviewRequested, "class_version", now + 1)
        monkeypatch.setitem(UPCASTERS, (ReviewRequested.type, now), renamed)
        upcast = store.get(rev.submission_id)
        assert upcast is not None and upcast.request.quorum == 2 and upcast.request.schema_version == now + 1
        assert store.pending() == [upcast]
    finally:
        store.close()


def test_a_review_stored_before_it_remembered_what_was_shown_shows_the_requests_production(state_db):
    rev = review(production=V110)
    store = ReviewStore(state_db)
    try:
        store.open(rev.request)
        row = json.loads(rev.model_dump_json())
        del row["shown"]  # how rows were written before
        store.db.execute("UPDATE review SET review = ?", (json.dumps(row),))
        old = store.get(rev.submission_id)
        assert old == rev and old.shown == V110
        stale = reshown(old, vote("alice"), V160)
        store.save(stale.review)
        assert store.get(rev.submission_id).shown == V160  # the refreshed evidence is what is stored
        assert store.pending() == [stale.review]
    finally:
        store.close()


def test_a_corrupt_stored_review_is_skipped_with_a_warning(state_db, monkeypatch):
    store = ReviewStore(state_db)
    monkeypatch.setattr(state, "log", structlog.get_logger())  # not one cached under another configuration
    try:
        good, bad = review(), review()
        store.open(good.request)
        store.open(bad.request)
        store.db.execute("UPDATE review SET review = '{\"request\": 7}' WHERE submission_id = ?",
                         (str(bad.submission_id),))
        with capture_logs() as logs:
            assert store.get(bad.submission_id) is None
            assert store.pending() == [good]
        warned = [(e["event"], e["submission_id"]) for e in logs]
        assert warned == [("stored_review_unreadable", str(bad.submission_id))] * 2
    finally:
        store.close()


def test_the_rules_import_no_io_framework_or_settings():
    """reviews.py is pure: not even transitively does it import I/O, frameworks or settings."""
    code = ("import sys, services.review_notifier.reviews; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'yaml', 'celpy', 'httpx', 'aiokafka', 'faststream', 'sqlite3', '_sqlite3', 'pydantic_settings', "
            "'fastapi', 'uvicorn', 'structlog'} or m.split('.')[-1] == 'settings'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"


# --- separation of duties on verified identities -----------------------------------------------

ALICES_PIPELINE = Submitter(name="fraud-ci", owner="alice", team="risk")
PEOPLE = Directory(["alice", "bob", "carol", "oncall"])


def signed_review(by: Submitter | None, submitter: str = "pipeline", **over) -> Review:
    rev = review(submitter=submitter, break_glass=("oncall", "alice"), **over)
    return rev.model_copy(update={"request": rev.request.model_copy(update={"submitted_by": by})})


def refused_with(rev: Review, v: Vote, people: Directory | None = PEOPLE) -> Refused:
    with pytest.raises(Refused) as info:
        reviews.cast(rev, v, people=people)
    return info.value


@pytest.mark.parametrize("claimed", ["pipeline", "bob", "pipeline@ci", "аlice"])
def test_a_signed_submission_by_alices_pipeline_cannot_be_approved_by_alice(claimed):
    """Whatever name the submission claims, the key that signed it is alice's."""
    rev = signed_review(ALICES_PIPELINE, submitter=claimed)
    r = refused_with(rev, vote("alice"))
    assert r.status == 403 and "alice owns the key fraud-ci" in r.message
    g = refused_with(rev, vote("alice", reason=JUSTIFICATION, break_glass=True))
    assert g.status == 403 and "not even by breaking glass" in g.message
    assert reviews.cast(rev, vote("carol"), people=PEOPLE)[1].outcome == "approved"
    assert "alice" not in rev.pending_approvers


def test_a_claimed_name_only_takes_approval_away():
    """Signed by a shared bot key, but claiming bob: bob may still not approve it."""
    rev = signed_review(Submitter(name="ci-bot"), submitter="Bob")
    assert "submitter cannot approve" in refused_with(rev, vote("bob")).message
    assert reviews.cast(rev, vote("alice"), people=PEOPLE)[1].outcome == "approved"


@pytest.mark.parametrize("claimed", ["аlice", "ALICE", "Ａlice", "a1ice", " alice "])
def test_a_look_alike_submitter_cannot_self_approve(claimed):
    """Cyrillic 'а', case, fullwidth letters, in-ASCII look-alikes: alice may not approve."""
    rev = signed_review(None, submitter=claimed)
    for v in (vote("alice"), vote("alice", reason=JUSTIFICATION, break_glass=True)):
        r = refused_with(rev, v)
        assert r.status == 403 and "submitter" in r.message


def test_an_unsigned_submission_claiming_a_malformed_name_cannot_be_approved_by_anyone():
    rev = signed_review(None, submitter="аlice")  # Cyrillic а: not an identity at all
    r = refused_with(rev, vote("bob"))
    assert r.status == 403 and "not an identity" in r.message and "sign its submissions" in r.message
    assert refused_with(rev, vote("bob"), people=None).status == 403  # with or without the directory


def test_an_unsigned_submission_claiming_nobody_known_cannot_be_approved_by_anyone():
    """`pipeline@ci` is no known user: nothing shows that the approver did not submit it."""
    rev = signed_review(None, submitter="pipeline@ci")
    r = refused_with(rev, vote("alice"))
    assert r.status == 403 and "'pipeline@ci' is not a known user" in r.message
    assert reviews.cast(rev, vote("bob", "reject"), people=PEOPLE)[1].outcome == "rejected"  # a no still counts


def test_an_unsigned_submission_claiming_a_known_user_is_theirs():
    rev = signed_review(None, submitter="carol")
    assert "submitter cannot approve" in refused_with(rev, vote("carol")).message
    assert reviews.cast(rev, vote("bob"), people=PEOPLE)[1].outcome == "approved"


def test_a_human_decision_cites_the_checks_the_review_was_requested_on():
    rev = signed_review(ALICES_PIPELINE)
    _, decision = reviews.cast(rev, vote("bob"), people=PEOPLE)
    assert decision.checks_event_id == rev.request.causation_id is not None
    timed_out = reviews.due(rev, rev.deadline).decision
    assert timed_out.checks_event_id == rev.request.causation_id
