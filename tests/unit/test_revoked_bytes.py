"""A revocation bans bytes (the artifact digest) and a model version, not only the release it names:
no other release with those bytes is the revocation's fallback, an operator's rollback or the drift
check's revert, and every release serving them, of any model, is taken out. The deployer's service
on a real state file, with a stand-in target that records what it was told."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Literal

import pytest

from services.deployer import deploying
from services.deployer.lifecycle import Lifecycle
from services.deployer.rollout import Release, Stage
from services.deployer.service import Service
from services.deployer.state import StateStore
from services.deployer.targets import INPUTS
from shared import signing
from shared.events import (
    DeploymentDrifted,
    DeploymentFailed,
    DeploymentRevoked,
    DeploymentRolledBack,
    Event,
    RevocationRequested,
    RollbackRequested,
)
from shared.workflow.matching import WorkflowSet
from tests import keys
from tests.unit import factories as f

BAD, OTHER = "b" * 64, "c" * 64  # the revoked bytes, and other bytes


class Target:
    """A watched target (an alias) that records every restore and retire."""

    name = "mlflow"

    def __init__(self, on_drift: Literal["report", "revert"] = "revert") -> None:
        self.on_drift = on_drift
        self.found: dict[str, str | None] = {}
        self.restored: list[tuple[str, str | None]] = []
        self.retired: list[uuid.UUID] = []
        self.shifted: list[tuple[str, int, str | None]] = []

    def where(self, model: str) -> str:
        return f"models:/{model}@champion"

    async def live(self, model: str) -> str | None:
        return self.found.get(model)

    async def restore(self, model: str, release: Release | None, key: str, why: dict) -> None:
        self.restored.append((model, release.version if release else None))
        self.found[model] = release.version if release else None

    async def retire(self, release: Release, key: str, why: dict) -> None:
        self.retired.append(release.submission_id)

    async def shift(self, release: Release, stage: Stage, previous: Release | None, key: str) -> None:
        self.shifted.append((release.version, stage.traffic_percent, previous.version if previous else None))


class Stand:
    def __init__(self, tmp_path) -> None:
        self.store = StateStore(tmp_path / "state.db")
        self.emitted: list[Event] = []
        self.target = Target()

        async def emit(event: Event) -> None:
            self.emitted.append(event)

        self.service = Service(self.store, WorkflowSet(()), lambda inputs: self.target, emit)

    def deployed(self, model: str, version: str, sha: str) -> Release:
        """A release of `model` that became production (the alias on it)."""
        cause = f.submitted(f.submission(f.candidate(model=model, version=version, artifact_sha256=sha)))
        release = Release(submission_id=cause.submission_id, candidate=cause.submission.candidate,
                          approval=f.decided(cause), deploy=INPUTS.validate_python({"target": "mlflow"}))
        self.store.save_release(release)
        self.store.promote(model, release.submission_id)
        self.target.found[model] = version
        return release

    async def revoke(self, release: Release | uuid.UUID, model: str = "churn",
                     again: RevocationRequested | None = None) -> RevocationRequested:
        sid = release if isinstance(release, uuid.UUID) else release.submission_id
        event = again or RevocationRequested(submission_id=sid, model=model, requested_by="oncall", reason="backdoor")
        with signing.signed_by(keys.principal("oncall")):  # as the decoder sets it
            await self.service.on_revocation(event)
        return event

    def of(self, kind: type[Event]) -> list:
        return [e for e in self.emitted if isinstance(e, kind)]


@pytest.fixture
def stand(tmp_path) -> Iterator[Stand]:
    made = Stand(tmp_path)
    yield made
    made.store.close()


async def test_the_fallback_of_a_revocation_is_never_the_same_bytes_under_another_version(stand):
    v1 = stand.deployed("churn", "1", OTHER)
    stand.deployed("churn", "2", BAD)
    v3 = stand.deployed("churn", "3", BAD)  # the same bytes submitted again as version 3
    await stand.revoke(v3)
    assert stand.store.production("churn").submission_id == v1.submission_id  # not 2: it is those bytes
    assert stand.target.found["churn"] == "1"
    [rolled] = stand.of(DeploymentRolledBack)
    assert (rolled.from_version, rolled.to_version) == ("3", "1")


async def test_a_revocation_takes_out_every_release_serving_the_revoked_bytes_of_any_model(stand):
    old = stand.deployed("churn", "1", OTHER)
    named = stand.deployed("churn", "2", BAD)
    again = stand.deployed("churn", "3", BAD)  # in production: the same bytes as the one revoked
    elsewhere = stand.deployed("fraud", "7", BAD)  # the same bytes registered under another model
    untouched = stand.deployed("spam", "1", OTHER)
    request = await stand.revoke(named)
    assert stand.store.production("churn").submission_id == old.submission_id
    assert stand.store.production("fraud") is None and stand.target.found["fraud"] is None
    assert stand.store.production("spam").submission_id == untouched.submission_id
    revoked = {e.submission_id: e for e in stand.of(DeploymentRevoked)}
    assert set(revoked) == {named.submission_id, again.submission_id, elsewhere.submission_id}
    assert revoked[again.submission_id].was_in_production and revoked[elsewhere.submission_id].was_in_production
    assert "artifact " + BAD + " was revoked (by oncall: backdoor)" in revoked[elsewhere.submission_id].reason
    assert len({e.event_id for e in stand.emitted}) == len(stand.emitted)  # each event its own id
    assert stand.store.load(elsewhere.submission_id).status == "revoked"
    count = len(stand.emitted)
    await stand.revoke(named, again=request)  # redelivered: nothing more happens
    assert len(stand.emitted) == count


async def test_an_operator_cannot_roll_back_to_revoked_bytes(stand):
    stand.deployed("churn", "1", OTHER)
    stand.deployed("churn", "2", BAD)
    v3 = stand.deployed("churn", "3", BAD)
    v4 = stand.deployed("churn", "4", OTHER)
    await stand.revoke(v3)  # not in production: production stays 4
    assert stand.store.production("churn").submission_id == v4.submission_id
    with signing.signed_by(keys.principal("oncall")):
        await stand.service.on_rollback(RollbackRequested(submission_id=uuid.uuid4(), model="churn", to_version="2",
                                                          requested_by="oncall", reason="p99"))
    [failed] = stand.of(DeploymentFailed)
    assert "rollback refused: churn 2 cannot be restored: artifact " + BAD in failed.reason
    assert stand.target.found["churn"] == "4"


async def test_bytes_revoked_before_the_deployer_saw_their_submission_are_taken_out_once_it_does(stand):
    serving = stand.deployed("fraud", "7", BAD)
    cause = f.submitted(f.submission(f.candidate(model="churn", version="9", artifact_sha256=BAD)))
    await stand.revoke(cause.submission_id)  # only the submission is known to be banned
    assert stand.store.production("fraud") is not None
    await stand.service.on_submission_event(f.checks_passed(cause))  # now its digest is known: banned too
    assert stand.store.production("fraud") is None and stand.target.found["fraud"] is None
    assert {e.submission_id for e in stand.of(DeploymentRevoked)} == {cause.submission_id, serving.submission_id}


async def test_the_drift_check_never_puts_back_a_banned_release(stand):
    live = stand.deployed("churn", "3", BAD)
    # banned, but not taken out (a revocation that stopped half-way): nothing may serve
    stand.store.revoke("by oncall: backdoor", uuid.uuid4(), BAD)
    [drifted] = await stand.service.check_drift()
    assert (drifted.expected_version, drifted.found_version, drifted.action) == (None, "3", "reverted")
    assert "version 3 may not serve: artifact " + BAD in drifted.reason
    assert stand.target.restored == [("churn", None)] and stand.target.found["churn"] is None
    stand.target.found["churn"] = "3"  # someone puts it back by hand
    [again] = await stand.service.check_drift()
    assert again.action == "reverted" and stand.target.found["churn"] is None
    assert stand.of(DeploymentDrifted) == [drifted, again] and live.version == "3"


CANARY = {"target": "model-store", "strategy": "canary",
          "stages": [{"name": "canary", "traffic_percent": 10, "bake": "1s"},
                     {"name": "half", "traffic_percent": 50, "bake": "1s"}, {"name": "full", "traffic_percent": 100}]}


async def test_a_canary_never_shares_traffic_with_or_falls_back_to_bytes_revoked_meanwhile(stand):
    stand.deployed("churn", "1", OTHER)
    old = stand.deployed("churn", "3", BAD)
    cause = f.submitted(f.submission(f.candidate(model="churn", version="4", artifact_sha256=OTHER)))
    inputs = INPUTS.validate_python(CANARY)
    coming = Release(submission_id=cause.submission_id, candidate=cause.submission.candidate,
                     approval=f.decided(cause), deploy=inputs, location="churn/4")
    stand.store.save_release(coming)
    stand.store.save(Lifecycle(submission_id=coming.submission_id, status="rolling_out", deploy=inputs,
                               previous=old.submission_id, stage=0, checked=coming.candidate,
                               approval=coming.approval))
    stand.store.schedule(coming.submission_id, "churn", 0)  # 10% on 4, 90% on 3, the next stage due
    await stand.revoke(old)  # 3 falls back to 1
    assert stand.store.production("churn").version == "1"
    assert await stand.service.run_due() == 1
    assert stand.target.shifted == [("4", 50, "1")]  # the other half goes to 1, not to the revoked 3
    stand.store.revoke("by oncall: backdoor", uuid.uuid4(), OTHER)  # now 1's (and 4's) bytes too
    state = stand.store.load(coming.submission_id)
    assert deploying.replaced(stand.service, state) is None  # nothing banned gets traffic back
