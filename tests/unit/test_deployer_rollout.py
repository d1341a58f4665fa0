"""Pure decisions of the deployer beyond the submission lifecycle: stages, rollback choice,
revocation, retry timing; and the lifecycle's canary and revocation states."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.deployer import lifecycle, rollout
from services.deployer.lifecycle import Deploy, Fail, Lifecycle
from services.deployer.rollout import Plan, Release
from services.deployer.targets import RetryPolicy, TargetError, retrying
from shared.events import RevocationRequested
from shared.workflow.schema import DeployInputs
from tests.unit import factories as f

CANARY = DeployInputs(strategy="canary", stages=[
    {"name": "canary", "traffic_percent": 10, "bake": "10m"}, {"name": "full", "traffic_percent": 100}])


def release(version: str, promoted: int = 1, health: str = "healthy") -> Release:
    cause = f.submitted(f.submission(f.candidate(version=version)))
    return Release(submission_id=cause.submission_id, candidate=cause.submission.candidate,
                   approval=f.decided(cause), deploy=DeployInputs(), promoted=promoted, health=health)


def choose(model, releases, current, to_version, banned=None):
    return rollout.choose_rollback(model, releases, current, to_version, banned or {})


def after_revocation(model, releases, current, revoked, banned=None):
    return rollout.after_revocation(model, releases, current, revoked, banned or {})


# --- stages and the deploy step --------------------------------------------------------------

def test_direct_is_one_full_stage_and_canary_the_declared_ones():
    assert rollout.stages(DeployInputs()) == (rollout.FULL,)
    assert [(s.name, s.traffic_percent, s.bake_seconds) for s in rollout.stages(CANARY)] == [
        ("canary", 10, 600.0), ("full", 100, 0.0)]


def test_the_deploy_plan_says_why_nothing_is_deployed(tmp_path):
    nothing = rollout.deploy_plan(None, "no workflow matches model 'x'")
    assert nothing == Plan(why="no workflow matches model 'x'; nothing deployed") and nothing.target == "none"
    loaded = f.load_workflow(tmp_path, "name: w\ndefault: true\nsteps:\n  - {name: c, type: checks}\n")
    assert rollout.deploy_plan(loaded, "") == Plan(why="workflow 'w' has no deploy step; nothing deployed",
                                                   workflow="w", digest=loaded.digest)
    with_deploy = f.load_workflow(tmp_path / "b", "name: w\ndefault: true\nsteps:\n  - {name: d, type: deploy}\n")
    plan = rollout.deploy_plan(with_deploy, "")
    assert plan == Plan(inputs=DeployInputs(), workflow="w", digest=with_deploy.digest)
    assert plan.target == "model-store"


def test_stored_deploy_inputs_read_back():
    """The workflow loader does not read pydantic's 'PT10M': the state stores bakes as '600s'."""
    rel = release("1").model_copy(update={"deploy": CANARY})
    assert Release.model_validate_json(rel.model_dump_json()).deploy == CANARY
    state = Lifecycle(submission_id=uuid.uuid4(), deploy=CANARY)
    assert Lifecycle.model_validate_json(state.model_dump_json()).deploy.stages[0].bake == timedelta(minutes=10)


# --- rollback ------------------------------------------------------------------------------------

def test_rollback_picks_the_healthy_release_most_recently_in_production():
    v1, v2, v3 = release("1", 1), release("2", 2), release("3", 3)
    assert choose("m", [v1, v2, v3], v3, None) == v2
    assert choose("m", [v1, v2.model_copy(update={"health": "rolled_back"}), v3], v3, None) == v1
    assert choose("m", [v1, v2.model_copy(update={"health": "revoked"}), v3], v3, None) == v1
    # v1 restored by a rollback (promoted 4): going back from it picks v3, in production just before
    assert choose("m", [v1.model_copy(update={"promoted": 4}), v2, v3],
                                   v1.model_copy(update={"promoted": 4}), None) == v3


def test_rollback_refusals_say_why():
    v1, v2 = release("1", 1), release("2", 2)
    assert choose("m", [v1], v1, None) == (
        "nothing to roll back to: m has no earlier approved, healthy version (in production: 1)")
    assert "nothing in production" in choose("m", [], None, None)
    assert choose("m", [v1, v2], v2, "7") == "m 7 was never deployed (deployed versions: 1, 2)"
    assert choose("m", [v1, v2], v2, "2") == "m 2 is already in production"
    revoked = v1.model_copy(update={"health": "revoked"})
    assert "revoked; a revoked version is never redeployed" in choose("m", [revoked, v2], v2, "1")
    never = release("3", 0, "failed")
    assert "never reached production" in choose("m", [v1, v2, never], v2, "3")
    assert choose("m", [v1, v2], v2, "1") == v1
    assert choose("m", [v1, v2.model_copy(update={"health": "rolled_back"})], v1, "2").version == "2"


RELEASES = st.lists(st.tuples(st.integers(0, 6), st.sampled_from(["healthy", "failed", "rolled_back", "revoked"])),
                    max_size=6)


@settings(max_examples=200, deadline=None, database=None)
@given(specs=RELEASES, current_index=st.integers(-1, 5), named=st.none() | st.integers(0, 5),
       banned_indexes=st.sets(st.integers(0, 5)))
def test_a_rollback_never_picks_a_revoked_banned_or_unreleased_version_nor_the_current(
        specs, current_index, named, banned_indexes):
    releases = [release(str(i), promoted, health) for i, (promoted, health) in enumerate(specs)]
    current = releases[current_index] if 0 <= current_index < len(releases) else None
    banned = {r.submission_id: "artifact x was revoked" for i, r in enumerate(releases) if i in banned_indexes}
    choice = choose("m", releases, current, None if named is None else str(named), banned)
    if isinstance(choice, Release):
        assert choice.health != "revoked" and choice.promoted > 0 and choice.submission_id not in banned
        assert current is None or choice.submission_id != current.submission_id
        if named is None:
            assert choice.health == "healthy"
    else:
        assert choice  # a refusal always says why


def test_revoking_the_live_release_falls_back_or_leaves_nothing():
    v1, v2 = release("1", 1), release("2", 2)
    assert after_revocation("m", [v1, v2], v2, v2.submission_id) == (True, v1)
    assert after_revocation("m", [v2], v2, v2.submission_id) == (True, None)
    assert after_revocation("m", [v1, v2], v2, v1.submission_id) == (False, None)
    assert after_revocation("m", [v1], None, v1.submission_id) == (False, None)


def test_a_release_whose_bytes_or_version_were_revoked_is_never_put_back():
    """A revocation bans a digest: another release with the same bytes (its own health is
    healthy) is neither the fallback, nor the automatic rollback, nor a named one."""
    v1, v2, v3 = release("1", 1), release("2", 2), release("3", 3)
    banned = {v2.submission_id: "artifact abc was revoked (by op: backdoor)"}
    assert after_revocation("m", [v1, v2, v3], v3, v3.submission_id, banned) == (True, v1)
    assert after_revocation("m", [v2, v3], v3, v3.submission_id, banned) == (True, None)
    assert choose("m", [v1, v2, v3], v3, None, banned) == v1
    refused = choose("m", [v1, v2, v3], v3, "2", banned)
    assert refused == ("m 2 cannot be restored: artifact abc was revoked (by op: backdoor); a revoked artifact "
                       "is never redeployed")


# --- retries -----------------------------------------------------------------------------------------

def test_backoff_doubles_up_to_the_cap_and_honours_retry_after_within_it():
    policy = RetryPolicy(attempts=6, backoff=0.5, max_backoff=4.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert policy.delay(1, retry_after=3.0) == 3.0
    assert policy.delay(1, retry_after=60.0) == 4.0


async def test_retrying_retries_transient_errors_only(monkeypatch):
    waits: list[float] = []

    async def no_sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    calls = iter([TargetError("busy", transient=True), TargetError("busy", transient=True), "ok"])

    async def flaky():
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert await retrying(flaky, RetryPolicy(attempts=5, backoff=1, max_backoff=8), "x") == "ok"
    assert waits == [1, 2]

    async def refused():
        raise TargetError("HTTP 403")

    with pytest.raises(TargetError, match="^HTTP 403$"):
        await retrying(refused, RetryPolicy(), "x")

    async def down():
        raise TargetError("connection refused", transient=True)

    with pytest.raises(TargetError, match=r"gave up after 3 tries"):
        await retrying(down, RetryPolicy(attempts=3, backoff=0, max_backoff=0), "x")


# --- lifecycle: canary and revocation ------------------------------------------------------------------

CAUSE = f.submitted()
PASSED, APPROVED = f.checks_passed(CAUSE), f.decided(CAUSE)
REVOCATION = RevocationRequested(submission_id=CAUSE.submission_id, model="fraud-detector",
                                 requested_by="sec", reason="leak")
PLAN = Plan(inputs=CANARY, workflow="w", digest="d" * 64)


def advance(state, event, revoked: str | None = None):
    return lifecycle.advance(state, event, PLAN, revoked=revoked)


def test_while_rolling_out_a_redelivered_approval_starts_nothing():
    state, _ = advance(Lifecycle(submission_id=CAUSE.submission_id), PASSED)
    state, actions = advance(state, APPROVED)
    assert [type(a) for a in actions] == [Deploy]
    rolling = lifecycle.staged(lifecycle.started(state, CANARY, None), 0)
    assert rolling.status == "rolling_out" and rolling.stage == 0
    assert advance(rolling, APPROVED) == (rolling, [])
    assert advance(rolling, PASSED) == (rolling, [])


def test_a_revoked_artifact_fails_the_deployment_with_the_reason():
    state, _ = advance(Lifecycle(submission_id=CAUSE.submission_id), PASSED, "artifact x was revoked")
    state, actions = advance(state, APPROVED, "artifact x was revoked")
    assert actions == [Fail(approval=APPROVED, target="model-store",
                            reason="artifact x was revoked; a revoked artifact is never deployed again")]
    assert state.status == "failed"


@pytest.mark.parametrize("status", ["open", "deploying", "rolling_out", "deployed"])
def test_revocation_is_terminal_from_any_state(status):
    state = Lifecycle(submission_id=CAUSE.submission_id, status=status, checked=CAUSE.submission.candidate)
    revoked = lifecycle.revoke(state, REVOCATION)
    assert revoked.status == "revoked" and revoked.announced and "revoked by sec: leak" == revoked.note
    assert advance(revoked, APPROVED) == (revoked, [])


def test_a_revocation_before_the_candidate_is_known_waits_to_be_announced():
    revoked = lifecycle.revoke(Lifecycle(submission_id=CAUSE.submission_id), REVOCATION)
    assert not revoked.announced and revoked.revocation == REVOCATION
    state, actions = advance(revoked, PASSED)
    assert state.status == "revoked" and [type(a).__name__ for a in actions] == ["AnnounceRevocation"]
