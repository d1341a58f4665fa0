"""The deployer's state machine: deploy exactly the approved, checked artifact, once, never after a 'no';
and every action it returns (Deploy, Fail, Supersede, BanDigest, AnnounceRevocation)."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from services.deployer import lifecycle
from services.deployer.lifecycle import AnnounceRevocation, BanDigest, Deploy, Fail, Lifecycle
from services.deployer.rollout import Plan, Release
from shared.events import CheckResult, ChecksFailed, ChecksPassed, RevocationRequested
from shared.workflow.schema import DeployInputs
from tests.unit import factories as f

CAUSE = f.submitted()
PASSED = f.checks_passed(CAUSE)
FAILED = f.checks_failed(CAUSE, scan=True)  # the bytes condemned: the digest is banned
APPROVED = f.decided(CAUSE)
REJECTED = f.decided(CAUSE, outcome="rejected", salt="r")
PLAN = Plan(inputs=DeployInputs(), workflow="test-policy", digest="d" * 64)


def advance(state, event, rejected: bool = False, revoked: str | None = None, plan: Plan = PLAN):
    return lifecycle.advance(state, event, plan, digest_rejected=rejected, revoked=revoked)


def run(events, rejected_digests=frozenset(), plan: Plan = PLAN):
    """Feed events as the app does (a Deploy is followed by `deployed`); returns (state, the
    actions of each event)."""
    state, actions = Lifecycle(submission_id=CAUSE.submission_id), []
    for event in events:
        rejected = lifecycle.candidate_of(event).artifact_sha256 in rejected_digests
        state, done = advance(state, event, rejected, plan=plan)
        actions.append(done)
        if any(isinstance(a, Deploy) for a in done):
            state = lifecycle.deployed(state, "/store/x")
    return state, actions


def deploys(actions) -> int:
    return sum(isinstance(a, Deploy) for done in actions for a in done)


# --- Deploy ------------------------------------------------------------------------------------

@pytest.mark.parametrize("order", [(PASSED, APPROVED), (APPROVED, PASSED)], ids=["checks-first", "approval-first"])
def test_either_order_deploys_once(order):
    state, actions = run(order)
    assert actions[0] == []
    assert actions[1] == [Deploy(candidate=PASSED.submission.candidate, approval=APPROVED, plan=PLAN)]
    assert state.status == "deployed"


@pytest.mark.parametrize("order", list(itertools.permutations([PASSED, APPROVED, APPROVED, PASSED])))
def test_duplicates_deploy_once(order):
    _, actions = run(order)
    assert deploys(actions) == 1


def test_deploying_waits_then_second_delivery_after_deployed_does_nothing():
    state, _ = advance(Lifecycle(submission_id=CAUSE.submission_id), PASSED)
    state, actions = advance(state, APPROVED)
    assert [type(a) for a in actions] == [Deploy] and state.status == "deploying"
    done = lifecycle.deployed(state, "/store/x")
    assert advance(done, APPROVED) == (done, [])


@pytest.mark.parametrize("order", list(itertools.permutations([REJECTED, PASSED, APPROVED])))
def test_rejection_in_any_order_before_the_pair_completes_never_deploys(order):
    state, actions = run(order)
    if order.index(REJECTED) < 2:
        assert deploys(actions) == 0
        assert state.status == "rejected"


@pytest.mark.parametrize("order", list(itertools.permutations([FAILED, APPROVED])))
def test_failed_checks_never_deploy(order):
    state, actions = run(order)
    assert deploys(actions) == 0 and not any(isinstance(a, Fail) for done in actions for a in done)
    assert state.status == "rejected" and state.note == "checks failed"


@pytest.mark.parametrize("order", [(FAILED, APPROVED, PASSED), (FAILED, PASSED, APPROVED), (APPROVED, FAILED, PASSED)])
def test_failed_checks_then_approval_never_deploys(order):
    """checks.passed arriving after checks.failed (a re-run, a forged or misrouted event) would
    complete the pair: the failure must already have ended the lifecycle."""
    state, actions = run(order)
    assert state.status == "rejected" and state.note == "checks failed"
    assert deploys(actions) == 0


def test_rejection_note_is_the_reason():
    state, _ = run([REJECTED])
    assert state.note == REJECTED.reason


# --- completes: when the deployer must read every rejection first -----------------------------------

OTHER_APPROVAL = f.decided(CAUSE, cand=CAUSE.submission.candidate.model_copy(update={"artifact_sha256": f.OTHER_SHA}),
                           salt="other")
EVENTS = [PASSED, FAILED, APPROVED, REJECTED, OTHER_APPROVAL]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(EVENTS), max_size=4), st.sampled_from(EVENTS))
def test_whatever_completes_says_no_to_decides_the_same_with_or_without_a_rejection(history, event):
    # The deployer skips the wait for the rejections' topic when `completes` is False: that is
    # safe only if the rejections could not change the answer.
    state, _ = run(history)
    if not lifecycle.completes(state, event):
        assert advance(state, event, rejected=True) == advance(state, event, rejected=False)


def test_checks_before_their_approval_wait_for_nothing_and_the_approval_waits():
    start = Lifecycle(submission_id=CAUSE.submission_id)
    assert not lifecycle.completes(start, PASSED)  # the usual order: no wait for the checks
    checked, _ = advance(start, PASSED)
    assert lifecycle.completes(checked, APPROVED)
    assert lifecycle.completes(advance(start, APPROVED)[0], PASSED)  # the approval came first
    assert not lifecycle.completes(checked, REJECTED)


# --- Fail ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["artifact_sha256", "data_version", "code_commit"])
def test_approval_for_another_candidate_fails(field):
    other = {"artifact_sha256": f.OTHER_SHA, "data_version": "2020-01-01", "code_commit": "deadbeef"}[field]
    approval = f.decided(CAUSE, cand=CAUSE.submission.candidate.model_copy(update={field: other}))
    for order in ([PASSED, approval], [approval, PASSED]):
        state, actions = run(order)
        [fail] = actions[1]
        assert isinstance(fail, Fail) and fail.approval == approval and fail.target == "model-store"
        assert other in fail.reason
        assert state.status == "failed" and state.note == fail.reason
        assert run([*order, APPROVED])[1][2] == []  # terminal: a later good approval changes nothing


def test_rejected_digest_fails_even_when_approved():
    state, actions = run([PASSED, APPROVED], rejected_digests={f.SHA})
    [fail] = actions[1]
    assert isinstance(fail, Fail) and "rejected before" in fail.reason
    assert state.status == "failed"


def test_without_a_deploy_step_the_approval_fails_saying_why():
    why = "workflow 'manual' has no deploy step; nothing deployed"
    state, actions = run([PASSED, APPROVED], plan=Plan(why=why, workflow="manual"))
    assert actions[1] == [Fail(approval=APPROVED, target="none", reason=why)]
    assert (state.status, state.note) == ("failed", why)


def test_a_fail_emits_deployment_failed_derived_from_the_approval():
    fail = Fail(approval=APPROVED, target="webhook", reason="boom")
    event = fail.event
    assert (event.causation_id, event.candidate, event.target, event.reason) == (
        APPROVED.event_id, APPROVED.candidate, "webhook", "boom")
    assert event.event_id == fail.event.event_id  # a redelivery emits the same id


# --- BanDigest -----------------------------------------------------------------------------------

@pytest.mark.parametrize("rejection", [FAILED, REJECTED], ids=["checks-failed", "review-rejected"])
def test_a_rejection_bans_the_digest_once(rejection):
    state, actions = run([rejection, rejection])
    assert actions == [[BanDigest(sha256=f.SHA)], []]  # the redelivery finds it rejected already
    assert state.status == "rejected"


def test_a_rejection_of_unverified_bytes_bans_nothing():
    unread = ChecksFailed.caused_by(CAUSE, submission=CAUSE.submission, results=(
        CheckResult(name="integrity", passed=False, threshold=f.SHA, message="no such file"),))
    state, actions = run([unread])
    assert actions == [[]] and state.status == "rejected"


# --- AnnounceRevocation --------------------------------------------------------------------------

def test_a_revocation_before_the_candidate_is_known_is_announced_by_the_next_event():
    request = RevocationRequested(submission_id=CAUSE.submission_id, model="fraud-detector",
                                  requested_by="sec", reason="leak")
    revoked = lifecycle.revoke(Lifecycle(submission_id=CAUSE.submission_id), request)
    state, actions = advance(revoked, APPROVED)
    assert actions == [AnnounceRevocation(request=request, candidate=APPROVED.candidate)]
    assert state.status == "revoked" and state.announced
    event = actions[0].event
    assert (event.causation_id, event.candidate, event.was_in_production) == (
        request.event_id, APPROVED.candidate, False)
    assert actions[0].why == "by sec: leak"
    assert advance(state, PASSED) == (state, [])  # announced once


def test_result_events_derive_from_the_approval():
    state, _ = run([PASSED, APPROVED])
    ok = lifecycle.succeeded_event(state, "model-store", "/store/x")
    assert ok.causation_id == APPROVED.event_id and ok.candidate == APPROVED.candidate
    assert ok.metrics == PASSED.submission.metrics
    assert ok.event_id == lifecycle.succeeded_event(state, "model-store", "/store/x").event_id
    bad = lifecycle.failed_event(APPROVED, "model-store", "boom")
    assert bad.reason == "boom" and bad.event_id != ok.event_id


# Property: over any sequence of these events, a Deploy happens only when checks passed for the
# approved candidate, nothing was rejected, the digest is not blacklisted; never twice, never after
# a terminal state; and the clean pair always deploys.
OTHER_APPROVAL = f.decided(CAUSE, cand=CAUSE.submission.candidate.model_copy(update={"artifact_sha256": f.OTHER_SHA}),
                           salt="other")
EVENTS = {"passed": PASSED, "failed": FAILED, "approved": APPROVED, "rejected": REJECTED, "other": OTHER_APPROVAL}
SPOILERS = {"failed", "rejected", "other"}


@settings(max_examples=300, deadline=None, database=None)
@given(names=st.lists(st.sampled_from(sorted(EVENTS)), max_size=8), blacklisted=st.booleans())
@example(names=["other", "approved", "passed"], blacklisted=False)  # found by hypothesis: see below
def test_deploy_only_when_checked_approved_and_never_rejected(names, blacklisted):
    state = Lifecycle(submission_id=CAUSE.submission_id)
    deployed_at, terminal = [], False
    for i, name in enumerate(names):
        state, actions = advance(state, EVENTS[name], blacklisted)
        if terminal:
            assert actions == [], f"actions {actions!r} after a terminal state"
        if any(isinstance(a, Deploy) for a in actions):
            deployed_at.append(i)
            state = lifecycle.deployed(state, "/store/x")
        terminal = terminal or state.status in lifecycle.TERMINAL
    assert len(deployed_at) <= 1
    if deployed_at:
        before = set(names[: deployed_at[0] + 1])
        assert {"passed", "approved"} <= before and not SPOILERS & before and not blacklisted
    if "passed" in names and "approved" in names and not blacklisted:
        pair_done = max(names.index("passed"), names.index("approved"))
        if not SPOILERS & set(names[: pair_done + 1]):
            assert deployed_at == [pair_done]


def test_a_mismatched_approval_fails_whatever_the_order():
    """An approval for another artifact is never forgotten, whatever order the topics deliver in:
    [other, approved, passed] must fail just like [passed, other, approved]."""
    for order in ([PASSED, OTHER_APPROVAL, APPROVED], [OTHER_APPROVAL, PASSED, APPROVED],
                  [OTHER_APPROVAL, APPROVED, PASSED]):
        state, actions = run(order)
        assert deploys(actions) == 0, [type(e).__name__ for e in order]
        assert state.status == "failed"


def test_types_of_the_fixture_events():
    assert isinstance(PASSED, ChecksPassed) and isinstance(FAILED, ChecksFailed)


def test_only_verified_bytes_get_their_digest_banned():
    cause = f.submitted()
    unread = ChecksFailed.caused_by(cause, submission=cause.submission, results=(
        CheckResult(name="integrity", passed=False, threshold=f.SHA, message="no such file"),))
    assert lifecycle.bans_digest(unread) is False
    assert lifecycle.bans_digest(f.checks_failed(cause, scan=True)) is True
    # Declared metrics are the submitter's word: anyone may submit someone else's artifact with
    # bad ones, so failing them ends the submission, not the digest.
    assert lifecycle.bans_digest(f.checks_failed(cause)) is False
    assert lifecycle.bans_digest(f.decided(cause, outcome="rejected")) is True


# --- Supersede: production never moves backwards ----------------------------------------------

def release_of(cause, checked_at, version: str = "1.6.0"):
    cand = f.candidate(version=version, artifact_sha256=f.OTHER_SHA)
    return Release(submission_id=cause.submission_id, candidate=cand, approval=f.decided(cause, cand=cand),
                   deploy=DeployInputs(), checked_at=checked_at)


@pytest.mark.parametrize("order", [(PASSED, APPROVED), (APPROVED, PASSED)], ids=["checks-first", "approval-first"])
def test_an_approval_submitted_before_the_release_in_production_is_superseded(order):
    newer = release_of(f.submitted(), PASSED.occurred_at + timedelta(seconds=1))
    state = Lifecycle(submission_id=CAUSE.submission_id)
    for event in order:
        state, actions = lifecycle.advance(state, event, PLAN, ahead=newer)
    assert state.status == "superseded" and str(newer.submission_id) in state.note
    [supersede] = actions
    assert isinstance(supersede, lifecycle.Supersede) and supersede.by == newer
    assert (supersede.event.superseded_by, supersede.event.superseded_by_version) == (newer.submission_id, "1.6.0")
    assert supersede.event.causation_id == APPROVED.event_id
    # Terminal: nothing later deploys it.
    assert lifecycle.advance(state, APPROVED, PLAN)[1] == []


@pytest.mark.parametrize("offset", [-1, 0], ids=["older-in-production", "same-instant"])
def test_an_approval_not_older_than_production_deploys(offset):
    older = release_of(f.submitted(), PASSED.occurred_at + timedelta(seconds=offset))
    state, _ = lifecycle.advance(Lifecycle(submission_id=CAUSE.submission_id), PASSED, PLAN, ahead=older)
    state, [action] = lifecycle.advance(state, APPROVED, PLAN, ahead=older)
    assert isinstance(action, Deploy) and state.status == "deploying"


def test_unknown_order_deploys_as_before():
    """A release stored before the order was kept has no checked_at: it supersedes nothing."""
    unknown = release_of(f.submitted(), None)
    state, _ = lifecycle.advance(Lifecycle(submission_id=CAUSE.submission_id), PASSED, PLAN, ahead=unknown)
    assert isinstance(lifecycle.advance(state, APPROVED, PLAN, ahead=unknown)[1][0], Deploy)


def test_a_redelivered_checks_event_keeps_the_first_place_in_order():
    state, _ = lifecycle.advance(Lifecycle(submission_id=CAUSE.submission_id), PASSED, PLAN)
    later = PASSED.model_copy(update={"occurred_at": PASSED.occurred_at + timedelta(minutes=5)})
    state, _ = lifecycle.advance(state, later, PLAN)
    assert state.checked_at == PASSED.occurred_at


def test_the_service_judges_digests_with_the_view_it_is_given(tmp_path):
    """The view the app keeps current is the one decisions read, even while it is still empty
    (an empty view is falsy: `rejections or Rejections()` once replaced it with a fresh one)."""
    from services.deployer.service import Service
    from services.deployer.state import StateStore
    from shared.rejections import Rejections
    from shared.workflow.matching import WorkflowSet

    view = Rejections()
    store = StateStore(tmp_path / "state.db")
    try:
        service = Service(store, WorkflowSet(()), target=None, emit=None, rejections=view)  # type: ignore[arg-type]
        assert not service.rejected(REJECTED.candidate.artifact_sha256)
        view.apply(REJECTED)  # learnt by the follower after the service was built
        assert service.rejected(REJECTED.candidate.artifact_sha256)
    finally:
        store.close()


# --- the approval's chain: it cites the checks it follows ----------------------------------------

def test_an_approval_carries_the_checks_it_follows():
    assert APPROVED.checks_event_id == PASSED.event_id  # what every test above deploys with
    state, _ = advance(Lifecycle(submission_id=CAUSE.submission_id), PASSED)
    assert state.checks_event_id == PASSED.event_id


@pytest.mark.parametrize("cited", ["another checks event", "none"])
@pytest.mark.parametrize("order", ["checks-first", "approval-first"])
def test_an_approval_citing_other_checks_never_deploys(cited, order):
    """Same candidate, same submission, but it follows other checks (a forged or stale approval),
    or none (written before approvals cited theirs): the submission fails, saying which."""
    other = f.checks_passed(f.submitted(submission_id=CAUSE.submission_id)).event_id
    approval = APPROVED.model_copy(update={"checks_event_id": other if cited != "none" else None})
    events = [PASSED, approval] if order == "checks-first" else [approval, PASSED]
    state, actions = run(events)
    assert actions[0] == []  # the first half waits for the other
    [fail] = actions[1]
    assert isinstance(fail, Fail) and deploys(actions) == 0 and state.status == "failed"
    assert str(PASSED.event_id) in fail.reason
    assert (str(other) if cited != "none" else "cites no checks event") in fail.reason
    assert run([*events, APPROVED])[1][2] == []  # terminal: nothing deploys it afterwards

