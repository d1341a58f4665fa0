"""revocation.requested: ban the submission, its digest and its model version for good; take it
out of production (falling back to the release before it, `rollout.after_revocation`), out of a
canary in progress, and out of the target's serving tree; then emit deployment.revoked. Only an
operator's signed request is acted on (`rollback.operator`).

The ban is on bytes and a version, not on one release: every other release serving the banned
digest or version (the same bytes submitted again as another version, or under another model) is
taken out the same way (`take_out_banned`), and no fallback, rollback or drift revert ever puts a
banned release back (`StateStore.banned`, used by `rollout.choose_rollback`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from services.deployer import deploying, lifecycle, rollout
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
        if not s.store.operation_done(event.event_id):
            await revoke(s, event)
    # Also on a redelivery: a crash may have stopped it half-way (what is out already stays out).
    await take_out_banned(s, event)


async def revoke(s: Service, event: RevocationRequested) -> None:
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


async def take_out_banned(s: Service, event: RevocationRequested) -> None:
    """Take out every release, of any model, in production or in a canary, that the bans now
    cover though `event` did not name it; each model under its own lock, one after the other (never
    two locks held: two revocations cannot wait on each other)."""
    for model in s.store.serving_models():
        async with s.locks[model]:
            for release in serving(s, model):
                state = s.store.load(release.submission_id)
                why = s.store.banned([release]).get(release.submission_id)
                if why is None or state.status == "revoked" or release.health == "revoked":
                    continue
                await take_out(s, event, state, release, release.candidate, banned_by=why)


def serving(s: Service, model: str) -> list[Release]:
    """The model's releases that serve traffic: canaries first (their traffic goes back to the
    release in production, which is then looked at), then the one in production."""
    rolling = [r for sid in s.store.scheduled(model)
               if (r := s.store.release(sid)) is not None and s.store.load(sid).status == "rolling_out"]
    current = s.store.production(model)
    return rolling + unfinished(s, model) + ([current] if current is not None else [])


def unfinished(s: Service, model: str) -> list[Release]:
    """The model's deployments a crash stopped after they may have moved the target (started, not
    finished): what their approval's redelivery finishes, or gives back."""
    return [r for sid in s.store.unfinished(model) if (r := s.store.release(sid)) is not None]


async def take_out(s: Service, event: RevocationRequested, state: Lifecycle, release: Release | None,
                   candidate: Candidate, banned_by: str | None = None) -> None:
    """Take the submission of `state` out of production, a canary and the target. `banned_by`: why
    a release `event` did not name is banned (its events get their own ids, and its own submission id)."""
    model, sid = candidate.model, state.submission_id
    salt, reason = ("", event.reason) if banned_by is None else (str(sid), f"{banned_by}; it served those bytes")
    current, releases = s.store.production(model), s.store.releases(model)
    live, fallback = rollout.after_revocation(model, releases, current, sid, s.store.banned(releases))
    # Traffic it may have: a canary's, or a deployment a crash stopped after the target moved.
    rolling = state.status == "rolling_out" or lifecycle.started_unfinished(state)
    revoked = DeploymentRevoked.caused_by(event, salt=salt, candidate=candidate, requested_by=event.requested_by,
                                          reason=reason, was_in_production=live or rolling)
    revoked = revoked.model_copy(update={"submission_id": sid})  # the same id for the one named
    why = {"operation": "revoke", "requested_by": event.requested_by, "reason": reason,
           "revoked_submission_id": str(sid)}
    if lifecycle.started_unfinished(state):  # a crash may have left the target serving it
        await deploying.give_back(s, state, why)
    elif rolling and release is not None:  # canary traffic goes back to what it was replacing
        await s.target(release.deploy).restore(model, deploying.replaced(s, state),
                                               f"{revoked.event_id}:restore", why)
    if live:
        assert current is not None
        rolled = fallback and DeploymentRolledBack.caused_by(
            event, salt=salt, model=model, from_version=current.version, to_version=fallback.version,
            to_submission_id=fallback.submission_id, target=fallback.target,
            requested_by=event.requested_by, reason=f"revoked {current.version}: {reason}")
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
        if banned_by is None:
            s.store.finish_operation(event.event_id)
    log.info("revoked", model=model, version=candidate.version, was_live=live, by=event.requested_by,
             fallback=fallback.version if fallback else None, banned_by=banned_by)
