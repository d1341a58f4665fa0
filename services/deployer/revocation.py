"""revocation.requested: ban the submission, its digest and its model version for good; take it
out of production (falling back to the release before it, `rollout.after_revocation`), out of a
canary in progress, and out of the target's serving tree; then emit deployment.revoked. Only an
operator's signed request is acted on (`rollback.operator`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from services.deployer import lifecycle, rollout
from services.deployer.lifecycle import Lifecycle
from services.deployer.rollback import operator
from services.deployer.rollout import Release
from services.deployer.targets import TargetError
from shared.broker import Refused
from shared.events import Candidate, DeploymentRevoked, DeploymentRolledBack, RevocationRequested

if TYPE_CHECKING:
    from services.deployer.service import Service

log = structlog.get_logger()


async def on_revocation(s: Service, event: RevocationRequested) -> None:
    operator(event)  # signed by an operator, who is the one named: see rollback.operator
    async with s.locks[event.model]:
        if s.store.operation_done(event.event_id):
            return
        sid = event.submission_id
        state, release = s.store.load(sid), s.store.release(sid)
        candidate = release.candidate if release else state.candidate
        if candidate is not None and candidate.model != event.model:
            raise Refused(f"submission {sid} is model {candidate.model!r}, not {event.model!r}")
        why = f"by {event.requested_by}: {event.reason}"
        # The ban first: from here on, nothing deploys this submission, digest or version.
        s.store.revoke(why, sid, *((candidate.artifact_sha256, candidate.model, candidate.version)
                                   if candidate else ()))
        if candidate is None:  # not seen yet: announced when its first event arrives (lifecycle)
            with s.store.atomic():
                s.store.save(lifecycle.revoke(state, event))
                s.store.finish_operation(event.event_id)
            log.info("revoked_before_seen", submission=str(sid), by=event.requested_by)
            return
        await take_out(s, event, state, release, candidate)


async def take_out(s: Service, event: RevocationRequested, state: Lifecycle, release: Release | None,
                   candidate: Candidate) -> None:
    model, sid = candidate.model, event.submission_id
    current = s.store.production(model)
    live, fallback = rollout.after_revocation(model, s.store.releases(model), current, sid)
    rolling = state.status == "rolling_out"
    revoked = DeploymentRevoked.caused_by(event, candidate=candidate, requested_by=event.requested_by,
                                          reason=event.reason, was_in_production=live or rolling)
    why = {"operation": "revoke", "requested_by": event.requested_by, "reason": event.reason,
           "revoked_submission_id": str(sid)}
    if rolling and release is not None:  # canary traffic goes back to what it was replacing
        await s.target(release.deploy).restore(model, s.store.release(state.previous),
                                               f"{revoked.event_id}:restore", why)
    if live:
        assert current is not None
        rolled = fallback and DeploymentRolledBack.caused_by(
            event, model=model, from_version=current.version, to_version=fallback.version,
            to_submission_id=fallback.submission_id, target=fallback.target,
            requested_by=event.requested_by, reason=f"revoked {current.version}: {event.reason}")
        # A failure here raises: the revoked version must not keep serving, so the request is
        # retried (and dead-lettered with the reason if the target stays down).
        await s.target((fallback or current).deploy).restore(
            model, fallback, str(rolled.event_id) if rolled else f"{revoked.event_id}:restore", why)
        if rolled:
            await s.emit(rolled)
    if release is not None:
        try:
            await s.target(release.deploy).retire(release, f"{revoked.event_id}:retire", why)
        except TargetError as exc:  # it no longer serves, and the ban holds; say so
            log.warning("retire_failed", error=str(exc))
    await s.emit(revoked)
    with s.store.atomic():
        if live:
            s.store.promote(model, fallback.submission_id if fallback else None)
        s.store.set_health(sid, "revoked")
        s.store.unschedule(sid)
        s.store.save(lifecycle.revoke(state, event))
        s.store.finish_operation(event.event_id)
    log.info("revoked", version=candidate.version, was_live=live, by=event.requested_by,
             fallback=fallback.version if fallback else None)
