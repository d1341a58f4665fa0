"""The fault injector: SIGKILL a service and start it again, SIGKILL the broker and start it again,
hold a service down (the probe), each recorded with its time. Random faults come from a seeded
random.Random and overlap: one service may be down while another restarts, or while the broker
is away. One lock per service, so a service is never started twice and a held one is never
restarted behind the probe's back; no service start is attempted while the broker is down.
Disabled (the baseline), every call is a no-op and the same scenario runs through the same code.

Stack and kafka.sh calls block (a start waits for the service's ready line): they run in threads.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass

from bench.chaos.world import World
from signoff.devstack import SERVICES


@dataclass(frozen=True)
class Fault:
    at: float   # seconds since the run started
    what: str   # kill, start, start failed, died, broker kill, broker up
    target: str
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


class Faults:
    def __init__(self, world: World, rng: random.Random, enabled: bool) -> None:
        self.world, self.rng, self.enabled = world, rng, enabled
        self.log: list[Fault] = []
        self.held: set[str] = set()
        self._locks = {s: asyncio.Lock() for s in SERVICES}
        self._broker_up = asyncio.Event()
        self._broker_up.set()
        self._t0 = time.monotonic()

    def note(self, what: str, target: str, note: str = "") -> None:
        self.log.append(Fault(round(time.monotonic() - self._t0, 2), what, target, note))

    async def kill(self, service: str, hold: bool = False) -> None:
        """SIGKILL `service`; with `hold`, it stays down until `release`."""
        if not self.enabled:
            return
        async with self._locks[service]:
            if hold:
                self.held.add(service)
            await self._kill(service, "held" if hold else "")

    async def release(self, *services: str) -> None:
        """Start held services again, side by side."""
        async def one(service: str) -> None:
            async with self._locks[service]:
                self.held.discard(service)
                await self._start(service)

        if self.enabled:
            await asyncio.gather(*map(one, services))

    async def kill_broker(self, down_for: float) -> None:
        """SIGKILL the broker, leave it down `down_for` seconds, start it (log recovery included)."""
        if not self.enabled:
            return
        self._broker_up.clear()
        try:
            pid = await asyncio.to_thread(self.world.kill_broker)
            self.note("broker kill", "kafka", f"pid {pid}")
            await asyncio.sleep(down_for)  # the outage itself: part of the fault's schedule
            await asyncio.to_thread(self.world.kafka, "up")
            self.note("broker up", "kafka")
        finally:
            self._broker_up.set()

    async def random_kills(self, stop: asyncio.Event, gap: tuple[float, float], down: tuple[float, float]) -> None:
        """Until `stop`: every `gap` seconds (uniform), SIGKILL a service that is neither held nor
        already restarting, and start it again after `down` seconds (uniform), beside other faults."""
        restarts: set[asyncio.Task] = set()
        while self.enabled and not stop.is_set():
            try:  # the schedule: a random gap, cut short by the stop
                await asyncio.wait_for(stop.wait(), self.rng.uniform(*gap))
                break
            except TimeoutError:
                pass
            idle = [s for s in SERVICES if s not in self.held and not self._locks[s].locked()]
            if idle:
                task = asyncio.create_task(self._crash(self.rng.choice(idle), self.rng.uniform(*down)))
                restarts.add(task)
                task.add_done_callback(restarts.discard)
        await asyncio.gather(*restarts)

    async def heal(self) -> None:
        """Start every service that is down and not held: one whose start failed, or that died on
        its own (noted: a crash the faults did not cause is a finding)."""
        async def one(service: str) -> None:
            async with self._locks[service]:
                if service in self.held or self.world.running(service):
                    return
                if (proc := self.world.stack.procs.pop(service, None)) is not None:
                    self.note("died", service, f"exit code {proc.returncode}")
                await self._start(service)

        if self.enabled:
            await asyncio.gather(*map(one, SERVICES))

    async def _crash(self, service: str, down: float) -> None:
        async with self._locks[service]:
            if service in self.held:
                return
            await self._kill(service)
            await asyncio.sleep(down)  # downtime: part of the schedule
            await self._start(service)

    async def _kill(self, service: str, note: str = "") -> None:
        if self.world.running(service):
            await asyncio.to_thread(self.world.stack.kill, service)
            self.note("kill", service, note)
        elif (proc := self.world.stack.procs.pop(service, None)) is not None:
            self.note("died", service, f"exit code {proc.returncode}, before the kill")
        else:
            self.note("kill", service, "was down (an earlier start failed)")

    async def _start(self, service: str, timeout: float = 180.0) -> None:
        """Start `service` once the broker is up, trying again until the deadline (a start racing
        the broker's recovery may fail); on failure it stays down and `heal` tries again."""
        deadline = time.monotonic() + timeout
        while True:
            await self._broker_up.wait()
            try:
                await asyncio.to_thread(self.world.stack.start, service, 60.0)
                self.note("start", service)
                return
            except RuntimeError as exc:
                self.note("start failed", service, str(exc).splitlines()[0])
                if time.monotonic() > deadline:
                    return
