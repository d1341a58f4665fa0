"""The deployer's state machine: deploy exactly the approved, checked artifact, once, never after a 'no'."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from services.deployer import lifecycle
from services.deployer.lifecycle import Deploy, Fail, Lifecycle
from shared.events import CheckResult, ChecksFailed, ChecksPassed, ReviewDecided
from tests.unit import factories as f

CAUSE = f.submitted()
PASSED = f.checks_passed(CAUSE)
FAILED = f.checks_failed(CAUSE)
APPROVED = f.decided(CAUSE)
REJECTED = f.decided(CAUSE, outcome="rejected", salt="r")


def run(events, rejected_digests=frozenset()):
    """Feed events as the app does (a Deploy is followed by `deployed`); returns (state, actions)."""
    state, actions = Lifecycle(submission_id=CAUSE.submission_id), []
    for event in events:
        digest = (event.candidate if isinstance(event, ReviewDecided) else event.submission.candidate).artifact_sha256
        state, action = lifecycle.advance(state, event, digest in rejected_digests)
        actions.append(action)
        if isinstance(action, Deploy):
            state = lifecycle.deployed(state, "/store/x")
    return state, actions


@pytest.mark.parametrize("order", [(PASSED, APPROVED), (APPROVED, PASSED)], ids=["checks-first", "approval-first"])
def test_either_order_deploys_once(order):
    state, actions = run(order)
    assert actions[0] is None
    assert actions[1] == Deploy(candidate=PASSED.submission.candidate, approval=APPROVED)
    assert state.status == "deployed"


@pytest.mark.parametrize("order", list(itertools.permutations([PASSED, APPROVED, APPROVED, PASSED])))
def test_duplicates_deploy_once(order):
    _, actions = run(order)
    assert sum(isinstance(a, Deploy) for a in actions) == 1


def test_deploying_waits_then_second_delivery_after_deployed_does_nothing():
    state, action = lifecycle.advance(Lifecycle(submission_id=CAUSE.submission_id), PASSED, False)
    state, action = lifecycle.advance(state, APPROVED, False)
    assert isinstance(action, Deploy) and state.status == "deploying"
    done = lifecycle.deployed(state, "/store/x")
    assert lifecycle.advance(done, APPROVED, False) == (done, None)


@pytest.mark.parametrize("order", list(itertools.permutations([REJECTED, PASSED, APPROVED])))
def test_rejection_in_any_order_before_the_pair_completes_never_deploys(order):
    state, actions = run(order)
    if order.index(REJECTED) < 2:
        assert not any(isinstance(a, Deploy) for a in actions)
        assert state.status == "rejected"


@pytest.mark.parametrize("order", list(itertools.permutations([FAILED, APPROVED])))
def test_failed_checks_never_deploy(order):
    state, actions = run(order)
    assert actions == [None, None]
    assert state.status == "rejected" and state.note in ("checks failed",)


def test_rejection_note_is_the_reason():
    state, _ = run([REJECTED])
    assert state.note == REJECTED.reason


@pytest.mark.parametrize("field", ["artifact_sha256", "data_version", "code_commit"])
def test_approval_for_another_candidate_fails(field):
    other = {"artifact_sha256": f.OTHER_SHA, "data_version": "2020-01-01", "code_commit": "deadbeef"}[field]
    approval = f.decided(CAUSE, cand=CAUSE.submission.candidate.model_copy(update={field: other}))
    for order in ([PASSED, approval], [approval, PASSED]):
        state, actions = run(order)
        assert isinstance(actions[1], Fail) and actions[1].approval == approval
        assert other in actions[1].reason
        assert state.status == "failed"
        assert run([*order, APPROVED])[1][2] is None  # terminal: a later good approval changes nothing


def test_rejected_digest_fails_even_when_approved():
    state, actions = run([PASSED, APPROVED], rejected_digests={f.SHA})
    assert isinstance(actions[1], Fail)
    assert "rejected before" in actions[1].reason
    assert state.status == "failed"


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
    deploys, terminal = [], False
    for i, name in enumerate(names):
        state, action = lifecycle.advance(state, EVENTS[name], blacklisted)
        if terminal:
            assert action is None, f"action {action!r} after a terminal state"
        if isinstance(action, Deploy):
            deploys.append(i)
            state = lifecycle.deployed(state, "/store/x")
        terminal = terminal or state.status in lifecycle.TERMINAL
    assert len(deploys) <= 1
    if deploys:
        before = set(names[: deploys[0] + 1])
        assert {"passed", "approved"} <= before and not SPOILERS & before and not blacklisted
    if "passed" in names and "approved" in names and not blacklisted:
        pair_done = max(names.index("passed"), names.index("approved"))
        if not SPOILERS & set(names[: pair_done + 1]):
            assert deploys == [pair_done]


def test_a_mismatched_approval_fails_whatever_the_order():
    """An approval for another artifact is never forgotten, whatever order the topics deliver in:
    [other, approved, passed] must fail just like [passed, other, approved]."""
    for order in ([PASSED, OTHER_APPROVAL, APPROVED], [OTHER_APPROVAL, PASSED, APPROVED],
                  [OTHER_APPROVAL, APPROVED, PASSED]):
        state, actions = run(order)
        assert not any(isinstance(a, Deploy) for a in actions), [type(e).__name__ for e in order]
        assert state.status == "failed"


def test_types_of_the_fixture_events():
    assert isinstance(PASSED, ChecksPassed) and isinstance(FAILED, ChecksFailed)


def test_only_verified_bytes_get_their_digest_banned():
    cause = f.submitted()
    unread = ChecksFailed.caused_by(cause, submission=cause.submission, results=(
        CheckResult(name="integrity", passed=False, threshold=f.SHA, message="no such file"),))
    assert lifecycle.bans_digest(unread) is False
    assert lifecycle.bans_digest(f.checks_failed(cause)) is True
    assert lifecycle.bans_digest(f.decided(cause, outcome="rejected")) is True
