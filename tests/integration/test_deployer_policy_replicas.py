"""Two replicas of the deployer, and of the policy, on one PostgreSQL database (as replicas share
it: SIGNOFF_DATABASE_URL): a record a rebalance hands to both starts one deployment, a due canary
stage moves once, a checks event is decided once; and a replica that dies holding the work leaves
it to the other (at-least-once kept). Each replica is a service on its own connection, in one
event loop: only the database keeps them apart, as it must across machines."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from services.deployer.rollout import Release, Stage
from services.deployer.service import Service
from services.deployer.state import StateStore
from services.deployer.targets import INPUTS
from services.policy.state import PolicyStore
from shared.events import DeploymentProgressed, DeploymentSucceeded, Event
from shared.workflow.loading import load_folder
from tests.unit import factories as f

WORKFLOW = """\
name: canary-models
match: ["{model}"]
steps:
  - name: deploy
    type: deploy
    inputs:
      target: model-store
      {strategy}
"""
CANARY = ("strategy: canary\n      stages: [{name: canary, traffic_percent: 10, bake: 60s}, "
          "{name: half, traffic_percent: 50, bake: 60s}, {name: full, traffic_percent: 100}]")


class Target:
    """A target shared by the replicas (one serving system), recording what it was told. Each
    call yields to the event loop, so the other replica runs in between, as it would elsewhere."""

    name = "model-store"

    def __init__(self) -> None:
        self.prepared: list[uuid.UUID] = []
        self.shifted: list[tuple[uuid.UUID, int]] = []
        self.preparing = asyncio.Event()  # set once a prepare began
        self.hold = asyncio.Event()  # prepare waits for it
        self.hold.set()

    def location(self, release: Release) -> str:
        return f"/store/{release.version}"

    async def prepare(self, release: Release, manifest: dict) -> str:
        self.prepared.append(release.submission_id)
        self.preparing.set()
        await self.hold.wait()
        return self.location(release)

    async def shift(self, release: Release, stage: Stage, previous: Release | None, key: str) -> None:
        await asyncio.sleep(0.01)
        self.shifted.append((release.submission_id, stage.traffic_percent))

    async def restore(self, model: str, release: Release | None, key: str, why: dict) -> None:
        raise AssertionError("nothing is restored in these tests")


class Replica:
    def __init__(self, url: str, folder, target: Target, now: list[float], emitted: list[Event]) -> None:
        self.store = StateStore(url)

        async def emit(event: Event) -> None:
            await asyncio.sleep(0)
            emitted.append(event)

        self.service = Service(self.store, load_folder(folder, INPUTS), lambda inputs: target, emit,
                               clock=lambda: now[0])


class Pair:
    def __init__(self, url: str, folder) -> None:
        self.target, self.now, self.emitted = Target(), [1_764_000_000.0], []
        self.one, self.two = (Replica(url, folder, self.target, self.now, self.emitted) for _ in range(2))

    def of(self, kind: type[Event]) -> list:
        return [e for e in self.emitted if isinstance(e, kind)]


def pair(postgres, tmp_path, model: str, strategy: str = "") -> Iterator[Pair]:
    folder = f.workflow_folder(tmp_path / "workflows", default=WORKFLOW.format(model=model, strategy=strategy))
    made = Pair(postgres.database(), folder)
    yield made
    for replica in (made.one, made.two):
        if not replica.store.db.conn.closed:
            replica.store.close()


@pytest.fixture
def direct(postgres, tmp_path) -> Iterator[Pair]:
    yield from pair(postgres, tmp_path, "fraud-detector")


@pytest.fixture
def canary(postgres, tmp_path) -> Iterator[Pair]:
    yield from pair(postgres, tmp_path, "fraud-detector", CANARY)


async def test_an_approval_handed_to_two_replicas_deploys_once(direct):
    cause = f.submitted()
    await direct.one.service.on_submission_event(f.checks_passed(cause))
    approval = f.decided(cause)
    await asyncio.gather(direct.one.service.on_submission_event(approval),
                         direct.two.service.on_submission_event(approval))
    assert direct.target.prepared == [cause.submission_id]
    assert direct.target.shifted == [(cause.submission_id, 100)]
    [succeeded] = direct.of(DeploymentSucceeded)
    assert succeeded.submission_id == cause.submission_id
    assert direct.two.store.load(cause.submission_id).status == "deployed"


async def test_a_replica_that_dies_mid_deployment_leaves_it_to_the_other(direct):
    """The claim is the dead replica's database connection's: it goes with it, and the record
    redelivered to the other replica finishes the deployment."""
    cause = f.submitted()
    await direct.one.service.on_submission_event(f.checks_passed(cause))
    approval = f.decided(cause)
    direct.target.hold.clear()
    dying = asyncio.create_task(direct.one.service.on_submission_event(approval))
    await asyncio.wait_for(direct.target.preparing.wait(), 10)
    redelivered = asyncio.create_task(direct.two.service.on_submission_event(approval))
    await asyncio.sleep(0.1)
    assert not redelivered.done()  # the other replica waits while the first one holds the model
    direct.one.store.db.conn.close()  # the process dies: its connection ends
    dying.cancel()
    direct.target.hold.set()
    await asyncio.wait_for(redelivered, 10)
    [succeeded] = direct.of(DeploymentSucceeded)
    assert succeeded.submission_id == cause.submission_id
    assert direct.two.store.load(cause.submission_id).status == "deployed"


async def test_a_due_canary_stage_moves_once_with_two_schedulers(canary):
    cause = f.submitted()
    await canary.one.service.on_submission_event(f.checks_passed(cause))
    await canary.one.service.on_submission_event(f.decided(cause))
    assert canary.target.shifted == [(cause.submission_id, 10)]
    canary.now[0] += 61  # the bake is over
    # Replica two lists the due stage, then (its own model lock busy) reaches it only after
    # replica one moved it on: it must read the stage again, not run the one after it.
    local = canary.two.service.locks._local["fraud-detector"]  # noqa: SLF001 - to order the race
    await local.acquire()
    late = asyncio.create_task(canary.two.service.run_due())
    await asyncio.sleep(0.05)
    moved = await canary.one.service.run_due()
    local.release()
    assert (moved, await asyncio.wait_for(late, 10)) == (1, 0)
    assert canary.target.shifted == [(cause.submission_id, 10), (cause.submission_id, 50)]  # 100 bakes first
    assert len(canary.of(DeploymentProgressed)) == 2


async def test_two_schedulers_at_once_move_a_stage_once(canary):
    cause = f.submitted()
    await canary.one.service.on_submission_event(f.checks_passed(cause))
    await canary.one.service.on_submission_event(f.decided(cause))
    canary.now[0] += 61
    moved = await asyncio.gather(canary.one.service.run_due(), canary.two.service.run_due())
    assert sorted(moved) == [0, 1]
    assert canary.target.shifted == [(cause.submission_id, 10), (cause.submission_id, 50)]
    assert len(canary.of(DeploymentProgressed)) == 2
    canary.now[0] += 61
    assert await canary.two.service.run_due() == 1  # either replica takes the next stage
    assert canary.target.shifted[-1] == (cause.submission_id, 100) and len(canary.of(DeploymentSucceeded)) == 1


# --- the policy ------------------------------------------------------------------------------------

@pytest.fixture
def policies(postgres) -> Iterator[tuple[PolicyStore, PolicyStore]]:
    url = postgres.database()
    one, two = PolicyStore(url), PolicyStore(url)
    yield one, two
    for store in (one, two):
        if not store.db.conn.closed:
            store.close()


async def decide(store: PolicyStore, submission_id: uuid.UUID, emitted: list[str], name: str) -> None:
    """What the policy's handler does: decide, emit (yielding to the loop), record."""
    if store.has_decided(submission_id):
        return
    async with store.deciding(submission_id) as undecided:
        if undecided:
            await asyncio.sleep(0.05)  # the emit
            emitted.append(name)
            store.record_decision(submission_id, uuid.uuid4())


async def test_a_checks_event_handed_to_two_policy_replicas_is_decided_once(policies):
    one, two = policies
    sid, emitted = uuid.uuid4(), []
    await asyncio.gather(decide(one, sid, emitted, "one"), decide(two, sid, emitted, "two"))
    assert len(emitted) == 1 and one.has_decided(sid) and two.has_decided(sid)


async def test_a_policy_replica_that_dies_before_emitting_leaves_the_decision_to_the_other(policies):
    one, two = policies
    sid, emitted = uuid.uuid4(), []
    async with one.deciding(sid) as undecided:
        assert undecided
        other = asyncio.create_task(decide(two, sid, emitted, "two"))
        await asyncio.sleep(0.1)
        assert emitted == []  # waits while the first replica decides
        one.db.conn.close()  # it dies before emitting: its claim goes with its connection
        await asyncio.wait_for(other, 10)
    assert emitted == ["two"] and two.has_decided(sid)
