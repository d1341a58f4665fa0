"""A submission's deployment: carry out what the lifecycle decided, hand each stage to the target,
move canary rollouts on after their bake (the scheduler), abort a rollout that fails."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from services.deployer import attesting, lifecycle, rollout
from services.deployer.lifecycle import Lifecycle, SubmissionEvent
from services.deployer.rollout import Release
from services.deployer.targets import Target, TargetError
from services.deployer.targets._store_files import uri_name
from shared.attestation import ATTESTATION_FILE, AttestationError
from shared.events import DeploymentProgressed, RevocationRequested, utcnow

if TYPE_CHECKING:
    from services.deployer.service import Service

__all__ = ["SubmissionEvent", "abort", "on_submission_event", "run_due"]

log = structlog.get_logger()


async def on_submission_event(s: Service, event: SubmissionEvent) -> RevocationRequested | None:
    """Returns the revocation announced now (revoked before its candidate was known), whose new
    digest and version bans the caller applies to the other releases (`revocation.take_out_banned`)."""
    candidate = lifecycle.candidate_of(event)
    async with s.locks[candidate.model]:
        before = s.store.load(event.submission_id)
        digest = candidate.artifact_sha256
        if lifecycle.completes(before, event):
            # What may lead to a deployment is decided with every rejection Kafka acknowledged
            # before now, on any partition, however far this deployer's groups lag.
            await s.caught_up()
        state, actions = lifecycle.advance(
            before, event, rollout.deploy_plan(*s.workflows.match(candidate.model)),
            digest_rejected=s.rejected(digest), ahead=ahead(s, candidate.model),
            revoked=s.store.revocation(event.submission_id, digest, candidate.model, candidate.version))
        await carry_out(s, before, state, actions)
    return next((a.request for a in actions if isinstance(a, lifecycle.AnnounceRevocation)), None)


def ahead(s: Service, model: str) -> Release | None:
    """The newest release of `model` in production or rolling out (what an approval must not
    replace if it was submitted earlier)."""
    live = [r for r in (s.store.production(model), *map(s.store.release, s.store.scheduled(model)))
            if r is not None and r.checked_at is not None]
    return max(live, key=lambda r: r.checked_at or 0, default=None)


async def carry_out(s: Service, before: Lifecycle, state: Lifecycle, actions: list[lifecycle.Action]) -> None:
    """Emit, then record the state (with a digest ban, in one transaction), then deploy: a crash
    in between repeats the step on redelivery, with the same event ids. A deployment's state is
    recorded by `start`, with its release, in one commit: until then nothing was done that a
    redelivery would not do again."""
    ban = None
    if lifecycle.started_unfinished(before) and state.status in lifecycle.TERMINAL and state.status != "deployed":
        # Redelivered after a crash mid-deployment, and now refused (its digest rejected, its bytes
        # revoked, its checks failed meanwhile): the target may already serve it.
        await give_back(s, before, {"operation": "abort", "reason": state.note})
    for action in actions:
        match action:
            case lifecycle.AnnounceRevocation(candidate=c):
                # The ban first: from here on, nothing deploys this digest or version either.
                s.store.revoke(action.why, state.submission_id, c.artifact_sha256, c.model, c.version)
                await s.emit(action.event)
            case lifecycle.Fail() | lifecycle.Supersede():
                await s.emit(action.event)
            case lifecycle.BanDigest(sha256=sha256):
                ban = sha256
    deploys = [a for a in actions if isinstance(a, lifecycle.Deploy)]
    if not deploys or ban is not None:
        s.store.save(state, rejected_digest=ban)
    if state.status != before.status:
        log.info("lifecycle", status=state.status, was=before.status, note=state.note)
    for action in deploys:
        await start(s, state, action)


async def start(s: Service, state: Lifecycle, action: lifecycle.Deploy) -> None:
    inputs = action.plan.inputs
    assert inputs is not None, "the lifecycle deploys only with a deploy step"
    previous = s.store.production(action.candidate.model)
    release = Release(submission_id=state.submission_id, candidate=action.candidate,
                      approval=action.approval, metrics=state.metrics, deploy=inputs, checked_at=state.checked_at)
    try:
        target = s.target(inputs)
        release = attested(s, state, release, target)
        location = await target.prepare(release, manifest(release, action.plan))
    except TargetError as exc:  # bad input or a target that stayed down: nothing was changed now
        if lifecycle.started_unfinished(state):  # but a crash may have left the last try's change
            await give_back(s, state, {"operation": "abort", "reason": str(exc)})
        await fail(s, state, str(exc), inputs.target)
        return
    release = release.model_copy(update={"location": location})
    state = lifecycle.started(state, inputs, previous.submission_id if previous else None)
    with s.store.atomic():
        s.store.save_release(release)
        s.store.save(state)
        if len(rollout.stages(inputs)) == 1:
            # Its one stage emits deployment.succeeded next, under this lock: numbered here, not
            # in a commit of its own (a crash in between repeats this step: the same number).
            s.number(lifecycle.succeeded_event(state, inputs.target, location, release.attestation))
    await stage(s, state, release, 0)


def attested(s: Service, state: Lifecycle, release: Release, target: Target) -> Release:
    """`release` with its approval attestation, signed with the deployer's own key before anything
    is prepared: the model store installs it beside the artifact, the webhook sends it, and
    deployment.succeeded carries it. The same facts give the same bytes on a repeat."""
    if s.signer is None:
        return release
    try:
        envelope = attesting.attest(state, release.approval, uri_name(release.candidate.artifact_uri), target.name,
                                    target.location(release), s.signer.kid, s.signer.sign_bytes)
    except AttestationError as exc:
        raise TargetError(f"cannot attest the release: {exc}") from None
    return release.model_copy(update={"attestation": envelope})


async def stage(s: Service, state: Lifecycle, release: Release, index: int) -> None:
    """Hand stage `index` to the target; then schedule the next one, or finish."""
    assert state.deploy is not None and state.approval is not None
    plan = rollout.stages(state.deploy)
    step, last, canary = plan[index], index == len(plan) - 1, state.deploy.strategy == "canary"
    name = state.deploy.target
    previous = replaced(s, state)
    progressed = DeploymentProgressed.caused_by(
        state.approval, salt=step.name, candidate=release.candidate, target=name,
        stage=step.name, traffic_percent=step.traffic_percent)
    succeeded = lifecycle.succeeded_event(state, name, release.location, release.attestation)
    try:
        await s.target(state.deploy).shift(release, step, previous,
                                           str((progressed if canary else succeeded).event_id))
    except TargetError as exc:
        await abort(s, state, f"stage {step.name} ({step.traffic_percent}% of traffic) failed: {exc}")
        return
    if canary:
        await s.emit(progressed)
    if not last:
        with s.store.atomic():
            s.store.save(lifecycle.staged(state, index))
            s.store.schedule(state.submission_id, release.candidate.model, s.clock() + step.bake_seconds)
        log.info("stage_done", stage=step.name, percent=step.traffic_percent, bake=step.bake_seconds)
        return
    await s.emit(succeeded)  # before recording: a crash in between repeats this stage
    with s.store.atomic():
        s.store.promote(release.candidate.model, release.submission_id)
        s.store.save(lifecycle.deployed(lifecycle.staged(state, index), release.location))
        s.store.unschedule(state.submission_id)
    log.info("deployed", version=release.version, target=name, location=release.location)


def replaced(s: Service, state: Lifecycle) -> Release | None:
    """What a rollout shares traffic with and goes back to: the release in production when it
    started, unless a revocation banned its bytes or version since; then what production is now
    (the revocation's fallback), or nothing. Banned bytes never get traffic back."""
    previous = s.store.release(state.previous)
    if previous is None or not s.store.banned([previous]):
        return previous
    current = s.store.production(previous.candidate.model)
    return None if current is None or s.store.banned([current]) else current


async def abort(s: Service, state: Lifecycle, reason: str) -> None:
    """Stop a rollout: traffic goes back to the version it was replacing, and it fails."""
    assert state.deploy is not None and state.approval is not None
    name = state.deploy.target
    previous = replaced(s, state)
    failed = lifecycle.failed_event(state.approval, name, reason)
    try:
        if state.stage >= 0:  # some traffic was moved: give it back
            await s.target(state.deploy).restore(state.approval.candidate.model, previous,
                                                 f"{failed.event_id}:restore", {"operation": "abort", "reason": reason})
        elif lifecycle.started_unfinished(state):  # the first stage failed: the target may have moved half-way
            await give_back(s, state, {"operation": "abort", "reason": reason})
    except TargetError as exc:
        reason = f"{reason}; restoring the previous version failed too: {exc}"
    where = f"{previous.version} stays in production" if previous else "nothing else was in production"
    await fail(s, state, f"{reason}; {where}", name)


async def give_back(s: Service, state: Lifecycle, why: dict[str, str]) -> None:
    """A deployment a crash stopped after it may have moved the target, ending otherwise: undo
    what it may have moved (done again, it changes nothing). When another rollout of the model is
    under way in the same place, its current stage is handed to the target again (whichever moved
    last, the target then serves that stage). Else the target is pointed at the model's production
    as the state has it (what this deployment never got to replace: a rollback may have moved it
    since), or at nothing if those bytes are banned or live in another place. A target that
    refuses raises: the step is retried (and dead-lettered with the reason if it stays down), as
    for any revocation, so refused bytes are not left serving behind a recorded failure."""
    assert state.deploy is not None and state.approval is not None
    model, target = state.approval.candidate.model, s.target(state.deploy)
    key = f"{state.submission_id}:give-back"
    rolling = [(other, release) for sid in s.store.scheduled(model) if sid != state.submission_id
               if (other := s.store.load(sid)).status == "rolling_out" and other.deploy is not None
               and other.stage >= 0 and (release := s.store.release(sid)) is not None and same_place(target, release)]
    if rolling:
        for other, release in rolling:
            assert other.deploy is not None
            step = rollout.stages(other.deploy)[other.stage]
            await s.target(other.deploy).shift(release, step, replaced(s, other), f"{key}:{other.submission_id}")
        return
    current = s.store.production(model)
    if current is not None and (s.store.banned([current]) or not same_place(target, current)):
        current = None
    await target.restore(model, current, key, why)


def same_place(target: Target, release: Release) -> bool:
    """Whether `release` lives where `target` puts releases (the same store, bucket and prefix,
    registered model, URL): where it was installed is where this target would install it."""
    try:
        return release.location is not None and target.location(release) == release.location
    except TargetError:  # a release this target cannot even name (not an MLflow version, ...)
        return False


async def fail(s: Service, state: Lifecycle, reason: str, target: str) -> None:
    assert state.approval is not None
    await s.emit(lifecycle.failed_event(state.approval, target, reason))
    with s.store.atomic():
        s.store.save(lifecycle.failed(state, reason))
        s.store.unschedule(state.submission_id)
        s.store.set_health(state.submission_id, "failed")
    log.warning("deployment_failed", reason=reason)


async def run_due(s: Service) -> int:
    """Move every rollout whose bake time is over to its next stage; returns how many moved. A
    model another replica holds is left to the next look; the stage is read again once held, since
    another replica's scheduler may have moved it on (its next stage is then not due yet)."""
    moved = 0
    for submission_id, model in s.store.due(s.clock()):
        async with s.locks.attempt(model) as held:
            if not held or not s.store.is_due(submission_id, s.clock()):
                continue
            state, release = s.store.load(submission_id), s.store.release(submission_id)
            if state.status != "rolling_out" or release is None:
                s.store.unschedule(submission_id)  # aborted, revoked or finished meanwhile
                continue
            structlog.contextvars.bind_contextvars(submission_id=str(submission_id))
            try:
                await stage(s, state, release, state.stage + 1)
            finally:
                structlog.contextvars.unbind_contextvars("submission_id")
            moved += 1
    return moved


def manifest(release: Release, plan: rollout.Plan) -> dict:
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
        "deploy_workflow": {"name": plan.workflow, "digest": plan.digest,
                            "target": release.deploy.target, "strategy": release.deploy.strategy},
        "metrics": release.metrics,
        "attestation": ATTESTATION_FILE if release.attestation else None,
        "deployed_at": utcnow().isoformat(),
    }
