"""What the deployer does with each event: the lifecycle decides, the targets act, events record it.

Order of every step: act on the target (idempotently), emit the event (with an id derived from its
cause), then record the new state. A crash anywhere repeats the step on redelivery (or, for canary
stages, at the scheduler's next look), producing the same target state and the same event ids.
All steps about one model hold that model's lock, so the scheduler and the handlers never
interleave on one model.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

import structlog

from services.deployer import lifecycle, rollout
from services.deployer.lifecycle import Lifecycle
from services.deployer.rollout import Release
from services.deployer.state import StateStore
from services.deployer.targets import TargetError, Targets
from shared import codec
from shared.events import (
    Candidate, ChecksFailed, ChecksPassed, DeploymentFailed, DeploymentProgressed, DeploymentRevoked,
    DeploymentRolledBack, Event, ReviewDecided, RevocationRequested, RollbackRequested, utcnow,
)
from shared.workflows import Loaded, WorkflowSet

log = structlog.get_logger()


class Deployer:
    def __init__(self, store: StateStore, workflows: WorkflowSet, targets: Targets,
                 emit: Callable[[Event], Awaitable[None]], clock: Callable[[], float] = time.time) -> None:
        self.store, self.workflows, self.targets, self.emit, self.clock = store, workflows, targets, emit, clock
        self.locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    # --- a submission: checks and decisions in, a deployment out --------------------------------

    async def on_submission_event(self, event: ChecksPassed | ChecksFailed | ReviewDecided) -> None:
        candidate = event.candidate if isinstance(event, ReviewDecided) else event.submission.candidate
        async with self.locks[candidate.model]:
            before = self.store.load(event.submission_id)
            if before.status == "revoked" and not before.announced:
                await self._announce_revocation(before, candidate)
                return
            digest = candidate.artifact_sha256
            revoked = self.store.revocation(event.submission_id, digest, candidate.model, candidate.version)
            state, action = lifecycle.advance(before, event, self.store.is_rejected(digest), revoked)
            if isinstance(action, lifecycle.Fail):
                # Emit before saving the terminal state: a crash in between redelivers and fails again.
                await self.emit(lifecycle.failed_event(action.approval, self._target_name(candidate.model),
                                                       action.reason))
            newly_rejected = state.status == "rejected" and before.status != "rejected"
            self.store.save(state, rejected_digest=digest if newly_rejected and lifecycle.bans_digest(event) else None)
            if state.status != before.status:
                log.info("lifecycle", status=state.status, was=before.status, note=state.note)
            if isinstance(action, lifecycle.Deploy):
                await self._start(state, action)

    def _target_name(self, model: str) -> str:
        loaded, _ = self.workflows.match(model)
        step = loaded.workflow.deploy if loaded else None
        return step.inputs.target if step else "none"

    async def _start(self, state: Lifecycle, action: lifecycle.Deploy) -> None:
        loaded, no_match = self.workflows.match(action.candidate.model)
        inputs, why = rollout.deploy_inputs(loaded, no_match)
        if inputs is None:
            await self._fail(state, why, "none")
            return
        assert loaded is not None
        previous = self.store.production(action.candidate.model)
        release = Release(submission_id=state.submission_id, candidate=action.candidate,
                          approval=action.approval, metrics=state.metrics, deploy=inputs)
        target = self.targets.get(inputs)
        try:
            location = await target.prepare(release, _manifest(release, loaded))
        except TargetError as exc:  # bad input or a target that stayed down: nothing was changed
            await self._fail(state, str(exc), target.name)
            return
        release = release.model_copy(update={"location": location})
        state = lifecycle.started(state, inputs, previous.submission_id if previous else None)
        with self.store.atomic():
            self.store.save_release(release)
            self.store.save(state)
        await self._stage(state, release, 0)

    async def _stage(self, state: Lifecycle, release: Release, index: int) -> None:
        """Hand stage `index` to the target; then schedule the next one, or finish."""
        assert state.deploy is not None and state.approval is not None
        plan = rollout.stages(state.deploy)
        stage, last, canary = plan[index], index == len(plan) - 1, state.deploy.strategy == "canary"
        target = self.targets.get(state.deploy)
        previous = self.store.release(state.previous)
        progressed = DeploymentProgressed.caused_by(
            state.approval, salt=stage.name, candidate=release.candidate, target=target.name,
            stage=stage.name, traffic_percent=stage.traffic_percent)
        succeeded = lifecycle.succeeded_event(state, target.name, release.location)
        try:
            await target.shift(release, stage, previous, str((progressed if canary else succeeded).event_id))
        except TargetError as exc:
            await self._abort(state, f"stage {stage.name} ({stage.traffic_percent}% of traffic) failed: {exc}")
            return
        if canary:
            await self.emit(progressed)
        if not last:
            with self.store.atomic():
                self.store.save(lifecycle.staged(state, index))
                self.store.schedule(state.submission_id, release.candidate.model, self.clock() + stage.bake_seconds)
            log.info("stage_done", stage=stage.name, percent=stage.traffic_percent, bake=stage.bake_seconds)
            return
        await self.emit(succeeded)  # before recording: a crash in between repeats this stage
        with self.store.atomic():
            self.store.promote(release.candidate.model, release.submission_id)
            self.store.save(lifecycle.deployed(lifecycle.staged(state, index), release.location))
            self.store.unschedule(state.submission_id)
        log.info("deployed", version=release.version, target=target.name, location=release.location)

    async def _abort(self, state: Lifecycle, reason: str) -> None:
        """Stop a rollout: traffic goes back to the version it was replacing, and it fails."""
        assert state.deploy is not None and state.approval is not None
        target = self.targets.get(state.deploy)
        previous = self.store.release(state.previous)
        failed = lifecycle.failed_event(state.approval, target.name, reason)
        if state.stage >= 0:  # some traffic was moved: give it back
            try:
                await target.restore(state.approval.candidate.model, previous, f"{failed.event_id}:restore",
                                     {"operation": "abort", "reason": reason})
            except TargetError as exc:
                reason = f"{reason}; restoring the previous version failed too: {exc}"
        where = f"{previous.version} stays in production" if previous else "nothing else was in production"
        await self._fail(state, f"{reason}; {where}", target.name)

    async def _fail(self, state: Lifecycle, reason: str, target: str) -> None:
        assert state.approval is not None
        await self.emit(lifecycle.failed_event(state.approval, target, reason))
        with self.store.atomic():
            self.store.save(lifecycle.failed(state, reason))
            self.store.unschedule(state.submission_id)
            self.store.set_health(state.submission_id, "failed")
        log.warning("deployment_failed", reason=reason)

    # --- canary stages after their bake time ------------------------------------------------------

    async def run_due(self) -> int:
        """Move every rollout whose bake time is over to its next stage; returns how many moved."""
        moved = 0
        for submission_id, model in self.store.due(self.clock()):
            async with self.locks[model]:
                state, release = self.store.load(submission_id), self.store.release(submission_id)
                if state.status != "rolling_out" or release is None:
                    self.store.unschedule(submission_id)  # aborted, revoked or finished meanwhile
                    continue
                structlog.contextvars.bind_contextvars(submission_id=str(submission_id))
                try:
                    await self._stage(state, release, state.stage + 1)
                finally:
                    structlog.contextvars.unbind_contextvars("submission_id")
                moved += 1
        return moved

    async def run_scheduler(self, poll_seconds: float) -> None:
        """The scheduler: durable (the schedule is in SQLite, so a restart resumes it), cancellable,
        and it never holds a Kafka partition while a stage bakes."""
        while True:
            try:
                await self.run_due()
            except Exception as exc:  # noqa: BLE001 - logged; the schedule is kept and retried
                log.exception("scheduler_step_failed", error=repr(exc))
            await asyncio.sleep(poll_seconds)

    # --- rollback ---------------------------------------------------------------------------------

    async def on_rollback(self, event: RollbackRequested) -> None:
        async with self.locks[event.model]:
            if self.store.operation_done(event.event_id):
                return
            current = self.store.production(event.model)
            choice = rollout.choose_rollback(event.model, self.store.releases(event.model), current, event.to_version)
            if isinstance(choice, str):
                await self._refuse(event, current, f"rollback refused: {choice}")
                return
            why = {"operation": "rollback", "requested_by": event.requested_by, "reason": event.reason,
                   "operation_id": str(event.submission_id)}
            await self._abort_rollouts(event.model, f"rollback to {choice.version} requested by "
                                                    f"{event.requested_by}: {event.reason}")
            rolled = DeploymentRolledBack.caused_by(
                event, model=event.model, from_version=current.version if current else None,
                to_version=choice.version, to_submission_id=choice.submission_id, target=choice.target,
                requested_by=event.requested_by, reason=event.reason)
            try:
                await self.targets.get(choice.deploy).restore(event.model, choice, str(rolled.event_id), why)
            except TargetError as exc:
                stays = current.version if current else "nothing"
                await self._refuse(event, current, f"rollback to {choice.version} failed: {exc}; {stays} stays in production")
                return
            await self.emit(rolled)
            with self.store.atomic():
                self.store.promote(event.model, choice.submission_id)
                if current is not None:
                    self.store.set_health(current.submission_id, "rolled_back")
                self.store.finish_operation(event.event_id)
            log.info("rolled_back", model=event.model, to=choice.version, by=event.requested_by)

    async def _refuse(self, event: RollbackRequested, current: Release | None, reason: str) -> None:
        """A rollback that cannot happen ends in deployment.failed on the operation's id, naming the
        model in production (or the last one that was). A model never deployed has no candidate to
        name (the contract requires one), so that request is dead-lettered with the reason."""
        named = current or max(self.store.releases(event.model), key=lambda r: r.promoted, default=None)
        if named is None:
            raise codec.BadEvent(f"{event.model} was never deployed by this deployer: {reason}")
        await self.emit(DeploymentFailed.caused_by(event, candidate=named.candidate, target=named.target,
                                                   reason=reason))
        self.store.finish_operation(event.event_id)
        log.warning("rollback_refused", model=event.model, reason=reason)

    async def _abort_rollouts(self, model: str, reason: str) -> None:
        for submission_id in self.store.scheduled(model):
            state = self.store.load(submission_id)
            if state.status == "rolling_out":
                await self._abort(state, f"rollout aborted: {reason}")

    # --- revocation -------------------------------------------------------------------------------

    async def on_revocation(self, event: RevocationRequested) -> None:
        async with self.locks[event.model]:
            if self.store.operation_done(event.event_id):
                return
            sid = event.submission_id
            state, release = self.store.load(sid), self.store.release(sid)
            candidate = release.candidate if release else state.candidate
            if candidate is not None and candidate.model != event.model:
                raise codec.BadEvent(f"submission {sid} is model {candidate.model!r}, not {event.model!r}")
            why = f"by {event.requested_by}: {event.reason}"
            # The ban first: from here on, nothing deploys this submission, digest or version.
            self.store.revoke(why, sid, *((candidate.artifact_sha256, candidate.model, candidate.version)
                                          if candidate else ()))
            if candidate is None:  # not seen yet: announced when its first event arrives
                with self.store.atomic():
                    self.store.save(lifecycle.revoke(state, event))
                    self.store.finish_operation(event.event_id)
                log.info("revoked_before_seen", submission=str(sid), by=event.requested_by)
                return
            await self._take_out(event, state, release, candidate)

    async def _take_out(self, event: RevocationRequested, state: Lifecycle, release: Release | None,
                        candidate: Candidate) -> None:
        model, sid = candidate.model, event.submission_id
        current = self.store.production(model)
        live, fallback = rollout.after_revocation(model, self.store.releases(model), current, sid)
        rolling = state.status == "rolling_out"
        revoked = DeploymentRevoked.caused_by(event, candidate=candidate, requested_by=event.requested_by,
                                              reason=event.reason, was_in_production=live or rolling)
        why = {"operation": "revoke", "requested_by": event.requested_by, "reason": event.reason,
               "revoked_submission_id": str(sid)}
        if rolling and release is not None:  # canary traffic goes back to what it was replacing
            await self.targets.get(release.deploy).restore(
                model, self.store.release(state.previous), f"{revoked.event_id}:restore", why)
        if live:
            assert current is not None
            rolled = fallback and DeploymentRolledBack.caused_by(
                event, model=model, from_version=current.version, to_version=fallback.version,
                to_submission_id=fallback.submission_id, target=fallback.target,
                requested_by=event.requested_by, reason=f"revoked {current.version}: {event.reason}")
            # A failure here raises: the revoked version must not keep serving, so the request is
            # retried (and dead-lettered with the reason if the target stays down).
            await self.targets.get((fallback or current).deploy).restore(
                model, fallback, str(rolled.event_id) if rolled else f"{revoked.event_id}:restore", why)
            if rolled:
                await self.emit(rolled)
        if release is not None:
            try:
                await self.targets.get(release.deploy).retire(release, f"{revoked.event_id}:retire", why)
            except TargetError as exc:  # it no longer serves, and the ban holds; say so
                log.warning("retire_failed", error=str(exc))
        await self.emit(revoked)
        with self.store.atomic():
            if live:
                self.store.promote(model, fallback.submission_id if fallback else None)
            self.store.set_health(sid, "revoked")
            self.store.unschedule(sid)
            self.store.save(lifecycle.revoke(state, event))
            self.store.finish_operation(event.event_id)
        log.info("revoked", version=candidate.version, was_live=live, by=event.requested_by,
                 fallback=fallback.version if fallback else None)

    async def _announce_revocation(self, state: Lifecycle, candidate: Candidate) -> None:
        request = state.revocation
        assert request is not None
        self.store.revoke(f"by {request.requested_by}: {request.reason}", state.submission_id,
                          candidate.artifact_sha256, candidate.model, candidate.version)
        await self.emit(DeploymentRevoked.caused_by(request, candidate=candidate, requested_by=request.requested_by,
                                                    reason=request.reason, was_in_production=False))
        self.store.save(state.model_copy(update={"announced": True}))


def _manifest(release: Release, loaded: Loaded) -> dict:
    """manifest.json of a version: what it is, who approved it under which workflow, when."""
    approval = release.approval
    return {
        **release.candidate.model_dump(),
        "submission_id": str(release.submission_id),
        "approved_by": approval.decided_by,
        "approval_mode": approval.mode,
        "approval_reason": approval.reason,
        "approval_event_id": str(approval.event_id),
        "approvals": [v.model_dump(mode="json") for v in approval.votes],
        "policy": approval.policy.model_dump(),
        "deploy_workflow": {"name": loaded.workflow.name, "digest": loaded.digest,
                            "target": release.deploy.target, "strategy": release.deploy.strategy},
        "metrics": release.metrics,
        "deployed_at": utcnow().isoformat(),
    }


def webhook_problems(workflows: WorkflowSet, secret: Callable[[str], bytes]) -> list[str]:
    """Webhook deploy steps whose secret the deployer cannot read: said at start-up, so the first
    deployment does not have to discover it."""
    problems = []
    for loaded in workflows.workflows:
        step = loaded.workflow.deploy
        if step and step.inputs.target == "webhook":
            try:
                secret(step.inputs.secret_env or "")
            except KeyError as exc:
                problems.append(f"workflow {loaded.workflow.name!r}: {exc.args[0]}")
    return problems

