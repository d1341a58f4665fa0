"""One chaos run: a scenario driven through a World, with or without faults, drained, measured.

The driver plays the training jobs (submissions on the scenario's schedule, through one producer,
retried through a broker outage), the reviewers (votes through the review-notifier's HTTP API,
retried while the review is not open yet or the notifier is down) and the operators who resubmit
a rejected artifact under another name (once its rejection is on the log). The fault injector
runs beside it. Then everything is given `drain_timeout` seconds to reach its end, and the figures
are computed from every topic read to its end and from the model store.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

from bench.chaos import SUBMITTER
from bench.chaos.faults import Faults
from bench.chaos.figures import Figures, compute, ending
from bench.chaos.scenario import HUMAN, Planned, Scenario, content
from bench.chaos.tail import Tail, read_all
from bench.chaos.world import World
from shared import codec, signing, topics
from shared.events import Candidate, ModelSubmitted, Submission

STEP_TIMEOUT = 120.0  # a review to open, a rejection to land, a publish to be acknowledged


@dataclass(frozen=True)
class Chaos:
    """The faults of a run (the baseline has none)."""

    enabled: bool = True
    kill_gap: tuple[float, float] = (2.0, 6.0)   # seconds between two service kills
    down: tuple[float, float] = (0.0, 2.0)       # seconds a killed service stays down
    broker_down: float = 2.0                     # seconds the broker stays down


@dataclass
class Run:
    label: str
    figures: Figures
    drained: bool
    scenario_seconds: float  # first submission to the last end (or the drain deadline)
    drain_seconds: float     # end of the schedule to the last end
    faults: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # the driver's: a vote refused, a copy never submitted
    revotes: int = 0
    outcomes: dict[str, dict] = field(default_factory=dict)


def run(workdir: Path, scenario: Scenario, chaos: Chaos, drain_timeout: float, label: str) -> Run:
    """A World of its own in `workdir` (broker, services), the scenario driven through it, all stopped."""
    workdir.mkdir(parents=True, exist_ok=True)
    quiet, level = logging.getLogger("aiokafka"), logging.getLogger("aiokafka").level
    quiet.setLevel(logging.CRITICAL)  # the driver's own clients retrying while the broker is away
    try:
        with World(workdir) as world:
            return asyncio.run(drive(world, scenario, chaos, drain_timeout, label))
    finally:
        quiet.setLevel(level)


async def drive(world: World, scenario: Scenario, chaos: Chaos, drain_timeout: float, label: str) -> Run:
    driver = _Driver(world, scenario, chaos)
    await driver.tail.start()
    try:
        return await driver.run(drain_timeout, label)
    finally:
        await driver.close()


class _Driver:
    def __init__(self, world: World, scenario: Scenario, chaos: Chaos) -> None:
        self.world, self.scenario, self.chaos = world, scenario, chaos
        self.faults = Faults(world, random.Random(f"faults:{scenario.seed}"), chaos.enabled)
        self.tail = Tail(world.access)
        self.producer = AIOKafkaProducer(**world.access.client_kwargs(), acks="all", enable_idempotence=True)
        # The training job signs its submissions with the stack's pipeline key (devstack.Stack made it).
        self.signer = signing.load_private(world.workdir / "keys" / "pipeline.pem", None,
                                           file_variable="pipeline key", env_variable="-")
        self.http = httpx.AsyncClient(base_url=world.review_url, timeout=5.0,
                                      headers={"Authorization": f"Bearer {world.tokens['alice']}"})  # reads
        self.ids = {p.n: str(uuid.uuid4()) for p in scenario.submissions}
        self.published: dict[int, str] = {}
        self.given_up: set[int] = set()  # copies whose source was never rejected: never submitted
        self.problems: list[str] = []
        self.revotes = 0  # votes refused without counting (production changed since shown), cast again

    async def close(self) -> None:
        await self.tail.stop()
        await self.producer.stop()
        await self.http.aclose()

    async def run(self, drain_timeout: float, label: str) -> Run:
        loop = asyncio.get_running_loop()
        await self.producer.start()
        stop = asyncio.Event()
        injector = asyncio.create_task(self.faults.random_kills(stop, self.chaos.kill_gap, self.chaos.down))
        tasks: list[asyncio.Task] = []
        t0 = loop.time()
        for p in self.scenario.submissions:
            await asyncio.sleep(max(0.0, t0 + p.at - loop.time()))  # the scenario's schedule
            if p.copy_of is not None:
                tasks.append(asyncio.create_task(self.copy(p), name=f"#{p.n}: the copy of #{p.copy_of}"))
            else:
                await self.submit(p)
            if p.kind in HUMAN:
                tasks.append(asyncio.create_task(self.probe(p) if p.probe else self.review(p),
                                                 name=f"#{p.n}: its reviewer"))
            if p.n == self.scenario.broker_kill_after:
                tasks.append(asyncio.create_task(self.faults.kill_broker(self.chaos.broker_down),
                                                 name="the broker kill"))
        scheduled = loop.time()
        drained = await self.tail.wait(self.all_ended, drain_timeout)  # the faults go on meanwhile
        finished = loop.time()
        unended = {sid for sid in self.published.values() if not self.ended(sid)}
        stop.set()
        await injector
        if tasks:  # a reviewer's answer may come just after the end it caused is on the log
            await asyncio.wait(tasks, timeout=10.0)
        for task in tasks:
            if not task.done():
                self.problems.append(f"{task.get_name()}: still at work when the drain ended")
                task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Exception):
                self.problems.append(f"driver task failed: {outcome!r}")
        await self.faults.heal()  # every service up again, so the review-notifier answers below
        records = await read_all(self.world.access)
        ids = {n: self.ids[n] for n in self.published}
        pending = {sid for sid in unended if await self.review_pending(sid)}
        figures = compute(self.scenario, ids, records, self.world.store_snapshot(), pending, unended)
        outcomes = {sid: {"n": n, "kind": p.kind, "model": p.model, "version": p.version, "end": figures.ends[sid]}
                    for n, sid in ids.items() for p in [self.scenario.submissions[n]]}
        return Run(label, figures, drained, round(finished - t0, 2), round(finished - scheduled, 2),
                   [f.as_dict() for f in self.faults.log], self.problems, self.revotes, outcomes)

    # --- the training jobs and operators ------------------------------------------------------

    async def submit(self, p: Planned) -> None:
        source = p.copy_of if p.copy_of is not None else p.n
        path = self.world.artifacts / f"{p.model}-{p.version}.bin"
        path.write_bytes(content(self.scenario.seed, source))
        event = ModelSubmitted(submission_id=uuid.UUID(self.ids[p.n]), submission=Submission(
            candidate=Candidate(model=p.model, version=p.version, artifact_uri=path.as_uri(),
                                artifact_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                                data_version="2026-11-01", code_commit="3f2c9ab"),
            metrics={"accuracy": p.accuracy}, submitter=SUBMITTER))
        record = self.signer.sign(codec.encode(event, "/signoff/bench-chaos"))
        headers = [(k, v.encode()) for k, v in record.headers.items()]
        deadline = asyncio.get_running_loop().time() + STEP_TIMEOUT
        while True:  # through a broker outage: the same event again (same id) until acknowledged
            try:
                await self.producer.send_and_wait(record.topic, record.value, key=record.key, headers=headers)
                self.published[p.n] = self.ids[p.n]
                return
            except Exception as exc:  # noqa: BLE001 - aiokafka's errors while the broker is away
                if asyncio.get_running_loop().time() > deadline:
                    self.problems.append(f"#{p.n} not published within {STEP_TIMEOUT}s: {exc!r}")
                    self.given_up.add(p.n)
                    return
                await asyncio.sleep(0.5)  # the broker is away: try again shortly

    async def copy(self, p: Planned) -> None:
        """Resubmit the bytes of a rejected submission once its rejection is on the log."""
        assert p.copy_of is not None
        source = self.ids[p.copy_of]
        if await self._until(lambda: self.ended(source) == "rejected", f"#{p.n}: the rejection of #{p.copy_of}"):
            await self.submit(p)
        else:
            self.given_up.add(p.n)

    # --- the reviewers ------------------------------------------------------------------------

    async def review(self, p: Planned) -> None:
        sid = self.ids[p.n]
        if p.vote_after is not None:  # an approval arriving after a newer version was deployed
            newer = self.ids[p.vote_after]
            await self._until(lambda: self.tail.has(newer, topics.DEPLOYMENT_SUCCEEDED),
                              f"#{p.n}: the deployment of the newer #{p.vote_after}")
        await self._until(lambda: self.tail.has(sid, topics.REVIEW_REQUESTED), f"#{p.n}: its review request")
        await asyncio.sleep(p.vote_delay)  # the reviewer's own pace: part of the schedule
        await self.vote(p, "approve" if p.kind == "approve" else "reject")

    async def probe(self, p: Planned) -> None:
        """Kill the policy and the deployer once the review is open, reject, wait for the copies of
        the bytes to pass their checks while both are down, then start both."""
        sid = self.ids[p.n]
        try:
            await self._until(lambda: self.tail.has(sid, topics.REVIEW_REQUESTED), f"#{p.n}: its review request")
            await self.faults.kill("policy", hold=True)
            await self.faults.kill("deployer", hold=True)
            await self.vote(p, "reject")
            copies = [self.ids[c.n] for c in self.scenario.probe_copies]
            await self._until(lambda: all(self.tail.has(c, topics.CHECKS_PASSED) for c in copies),
                              "the probe's copies to pass their checks")
        finally:
            await self.faults.release("policy", "deployer")

    async def vote(self, p: Planned, decision: str) -> None:
        sid, loop = self.ids[p.n], asyncio.get_running_loop()
        body = {"decision": decision, "reason": f"chaos #{p.n}"}
        voter = {"Authorization": f"Bearer {self.world.tokens[p.reviewer or 'alice']}"}  # votes as p.reviewer
        deadline = loop.time() + STEP_TIMEOUT
        while loop.time() < deadline:
            try:
                response = await self.http.post(f"/reviews/{sid}/decision", json=body, headers=voter)
            except httpx.HTTPError:  # the review-notifier is down, or died mid-request
                response = None
            if response is not None and response.status_code == 200:
                return
            if response is not None and response.status_code == 409 and await self.counted(sid, p.reviewer):
                return  # counted by an earlier attempt whose answer was lost, or decided meanwhile
            if response is not None and response.status_code == 409:
                self.revotes += 1  # refused, counting nothing (production changed since it was shown)
            elif response is not None and response.status_code not in (404, 500, 502, 503):
                self.problems.append(f"#{p.n} vote refused: {response.status_code} {response.text}")
                return
            await asyncio.sleep(0.2)  # not open yet (404), or the notifier away: try again
        self.problems.append(f"#{p.n}: vote not counted within {STEP_TIMEOUT}s")

    async def counted(self, sid: str, approver: str | None) -> bool:
        """Whether the review is decided, or holds a vote of `approver`."""
        try:
            review = (await self.http.get(f"/reviews/{sid}")).json()
        except (httpx.HTTPError, ValueError):
            return False
        return review.get("decision") is not None or any(v.get("approver") == approver
                                                         for v in review.get("votes", ()))

    async def review_pending(self, sid: str) -> bool:
        try:
            response = await self.http.get(f"/reviews/{sid}")
        except httpx.HTTPError:
            requested = self.tail.has(sid, topics.REVIEW_REQUESTED)
            return bool(requested) and not self.tail.has(sid, topics.REVIEW_DECIDED)
        return response.status_code == 200 and response.json().get("decision") is None

    # --- what the driver waits for ------------------------------------------------------------

    def ended(self, sid: str) -> str | None:
        return next((e for r in self.tail.about.get(sid, ()) if (e := ending(r)) is not None), None)

    def all_ended(self) -> bool:
        """Every submission of the plan published and ended (or given up by the driver)."""
        return all(p.n in self.given_up if p.n not in self.published else self.ended(self.ids[p.n])
                   for p in self.scenario.submissions)

    async def _until(self, predicate: Callable[[], object], what: str) -> bool:
        ok = await self.tail.wait(predicate, STEP_TIMEOUT)
        if not ok:
            self.problems.append(f"waited {STEP_TIMEOUT}s in vain for {what}")
        return ok

