"""rollback.requested: put an earlier release back in production (`rollout.choose_rollback` picks
it), or answer deployment.failed on the operation's id saying why not.

Who asked is the operator whose key signed the request (`operator`), never a name taken on trust."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from services.deployer import deploying, rollout
from services.deployer.rollout import Release
from services.deployer.targets import TargetError
from shared.broker import Refused
from shared.events import DeploymentFailed, DeploymentRolledBack, RevocationRequested, RollbackRequested
from shared.signing import verified_signer

if TYPE_CHECKING:
    from services.deployer.service import Service

log = structlog.get_logger()


def operator(event: RollbackRequested | RevocationRequested) -> str:
    """The operator who signed `event` (the decoder verified the signature and the role); its
    `requested_by` must name them, so the history never credits someone who did not ask."""
    signer = verified_signer()
    if signer is None or signer.role != "operator":  # the decoder refuses these; never act on one
        raise Refused(f"{event.type} must be signed by an operator's key")
    if event.requested_by != signer.name:
        raise Refused(f"requested_by does not match the operator who signed the request ({signer.name})")
    return signer.name


async def on_rollback(s: Service, event: RollbackRequested) -> None:
    operator(event)
    async with s.locks[event.model]:
        if s.store.operation_done(event.event_id):
            return
        current = s.store.production(event.model)
        releases = s.store.releases(event.model)
        choice = rollout.choose_rollback(event.model, releases, current, event.to_version, s.store.banned(releases))
        if isinstance(choice, str):
            await refuse(s, event, current, f"rollback refused: {choice}")
            return
        why = {"operation": "rollback", "requested_by": event.requested_by, "reason": event.reason,
               "operation_id": str(event.submission_id)}
        await abort_rollouts(s, event.model, f"rollback to {choice.version} requested by "
                                             f"{event.requested_by}: {event.reason}")
        rolled = DeploymentRolledBack.caused_by(
            event, model=event.model, from_version=current.version if current else None,
            to_version=choice.version, to_submission_id=choice.submission_id, target=choice.target,
            requested_by=event.requested_by, reason=event.reason)
        try:
            await s.target(choice.deploy).restore(event.model, choice, str(rolled.event_id), why)
        except TargetError as exc:
            stays = current.version if current else "nothing"
            await refuse(s, event, current, f"rollback to {choice.version} failed: {exc}; {stays} stays in production")
            return
        await s.emit(rolled)
        with s.store.atomic():
            s.store.promote(event.model, choice.submission_id)
            if current is not None:
                s.store.set_health(current.submission_id, "rolled_back")
            s.store.finish_operation(event.event_id)
        log.info("rolled_back", model=event.model, to=choice.version, by=event.requested_by)


async def refuse(s: Service, event: RollbackRequested, current: Release | None, reason: str) -> None:
    """A rollback that cannot happen ends in deployment.failed on the operation's id, naming the
    model in production (or the last one that was). A model never deployed has no candidate to
    name (the contract requires one), so that request is refused: dead-lettered with the reason."""
    named = current or max(s.store.releases(event.model), key=lambda r: r.promoted, default=None)
    if named is None:
        raise Refused(f"{event.model} was never deployed by this deployer: {reason}")
    await s.emit(DeploymentFailed.caused_by(event, candidate=named.candidate, target=named.target, reason=reason))
    s.store.finish_operation(event.event_id)
    log.warning("rollback_refused", model=event.model, reason=reason)


async def abort_rollouts(s: Service, model: str, reason: str) -> None:
    for submission_id in s.store.scheduled(model):
        state = s.store.load(submission_id)
        if state.status == "rolling_out":
            await deploying.abort(s, state, f"rollout aborted: {reason}")
