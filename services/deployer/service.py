"""What the deployer does with each event: the lifecycle and rollout decide (pure), the targets act,
events record it. The steps are in `deploying` (a submission's deployment and its canary stages),
`rollback` and `revocation`; `Service` holds what they share.

Order of every step: act on the target (idempotently), emit the event (with an id derived from its
cause), then record the new state. Every event that moves a model's production is numbered as it
is emitted, or with the writes just before it (`Service.number`, `StateStore.number`), and the
number is kept before the event is published: the production view orders by that number, not by
a timestamp.
A crash anywhere repeats the step on redelivery (or, for canary stages, at the scheduler's next
look), producing the same target state and the same event ids. All steps about one model hold
that model's lock (`ModelLocks`), in this process and across replicas, so the scheduler and the
handlers never interleave on one model, whichever replica runs them: a deployment is started by
one replica, and another handed the same record (a rebalance before the first committed) waits,
then finds it started or finished. A replica that dies holding a model frees it (the lock is its
database connection's), and the redelivered step finishes the job elsewhere.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog

from services.deployer import deploying, revocation, rollback
from services.deployer.drift import DriftWatch
from services.deployer.state import StateStore
from services.deployer.targets import Target
from shared.database import Database
from shared.events import (
    DeploymentDrifted,
    DeploymentRevoked,
    DeploymentRolledBack,
    DeploymentSucceeded,
    Event,
    RevocationRequested,
    RollbackRequested,
)
from shared.rejections import Rejections
from shared.signing import Signer
from shared.workflow.matching import WorkflowSet
from shared.workflow.schema import DeployInputs

log = structlog.get_logger()

# What moves a model's production (what shared.production reads): numbered by the deployer.
NUMBERED = (DeploymentSucceeded, DeploymentRolledBack, DeploymentRevoked)


async def _nothing_to_wait_for() -> None:
    return None


class ModelLocks:
    """One lock per model, held across replicas: `async with locks[model]:` waits for this
    process's other tasks (an asyncio lock) and then for other replicas (`Database.claim`, which
    the database drops if the holder dies). `attempt(model)` does not wait for another replica."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._local: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    @asynccontextmanager
    async def __getitem__(self, model: str) -> AsyncIterator[None]:
        async with self._local[model], self._db.held(_key(model)):
            yield

    @asynccontextmanager
    async def attempt(self, model: str) -> AsyncIterator[bool]:
        """Yields False, holding nothing, when another replica holds `model`."""
        async with self._local[model]:
            if not self._db.claim(_key(model)):
                yield False
                return
            try:
                yield True
            finally:
                self._db.release(_key(model))


def _key(model: str) -> str:
    return f"deployer.model:{model}"


class Service:
    """The deployer's state, workflows, targets (`target(inputs)` builds the one a deploy step
    names), emitter, signing key and clock, and one lock per model."""

    def __init__(self, store: StateStore, workflows: WorkflowSet, target: Callable[[DeployInputs], Target],
                 emit: Callable[[Event], Awaitable[None]], clock: Callable[[], float] = time.time,
                 rejections: Rejections | None = None,
                 caught_up: Callable[[], Awaitable[None]] | None = None, signer: Signer | None = None) -> None:
        self.store, self.workflows, self.target, self.clock = store, workflows, target, clock
        self.signer = signer  # the deployer's own key: signs each release's attestation (None: none made)
        self._emit = emit
        self.locks = ModelLocks(store.db)
        # Every final rejection on review.decided, and a wait until they are all read (shared.facts).
        self.rejections = rejections if rejections is not None else Rejections()  # empty is falsy
        self.caught_up = caught_up or _nothing_to_wait_for
        self.drift = DriftWatch()  # protected production: see services/deployer/drift.py

    async def emit(self, event: Event) -> None:
        """Publish `event`; one that moves production first gets its number, kept in the state
        before it is published (a retry publishes the same number)."""
        await self._emit(self.number(event))

    def number(self, event: Event) -> Event:
        """`event` with its sequence number if it moves production, kept in the state (in the
        caller's transaction, if any). A step that emits it next, holding the model's lock, can
        number it with what it writes before (one commit fewer); `emit` then reads the number."""
        if isinstance(event, NUMBERED):
            number = self.store.number(event.event_id, event.key, at_least=int(self.clock() * 1000))
            event = event.model_copy(update={"sequence": number})
        return event

    def rejected(self, sha256: str) -> bool:
        """Whether the digest was rejected for good: by a decision this deployer handled, or by any
        on review.decided (call `caught_up` first)."""
        return self.store.is_rejected(sha256) or self.rejections.get(sha256) is not None

    async def on_submission_event(self, event: deploying.SubmissionEvent) -> None:
        announced = await deploying.on_submission_event(self, event)
        if announced is not None:  # its digest and version are banned only now
            await revocation.take_out_banned(self, announced)

    async def on_rollback(self, event: RollbackRequested) -> None:
        await rollback.on_rollback(self, event)

    async def on_revocation(self, event: RevocationRequested) -> None:
        await revocation.on_revocation(self, event)

    async def run_due(self) -> int:
        """Move every rollout whose bake time is over to its next stage; returns how many moved."""
        return await deploying.run_due(self)

    async def check_drift(self) -> list[DeploymentDrifted]:
        """Compare each watched target (an MLflow alias) with production; report, or put back."""
        return await self.drift.check(self)

    async def run_drift_watch(self, period: float) -> None:
        """The drift check every `period` seconds, cancellable; a failure is logged and retried."""
        while True:
            await asyncio.sleep(period)
            try:
                await self.check_drift()
            except Exception as exc:  # noqa: BLE001 - logged; the next check tries again
                log.exception("drift_check_failed", error=repr(exc))

    async def run_scheduler(self, poll_seconds: float) -> None:
        """The scheduler: durable (the schedule is in the state, so a restart resumes it), cancellable,
        and it never holds a Kafka partition while a stage bakes."""
        while True:
            try:
                await self.run_due()
            except Exception as exc:  # noqa: BLE001 - logged; the schedule is kept and retried
                log.exception("scheduler_step_failed", error=repr(exc))
            await asyncio.sleep(poll_seconds)
