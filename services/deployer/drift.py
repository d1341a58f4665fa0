"""Protected production: a target that can say what it serves (`Watched`: the mlflow target's alias)
is compared, every DEPLOYER_DRIFT_CHECK_SECONDS, with what the deployer put in production. A
difference is a move nobody approved: it is reported as deployment.drifted and, when the release's
deploy step says `on_drift: revert`, put back (through the target's `restore`, which verifies the
version's digest again) and the event says so.

What should serve is the release in production, unless it is banned (a revocation of its digest or
version that could not take it out yet) or its files were found changed and the alias removed:
then nothing should, and a revert deletes the alias; a banned release is never put back.

An alias names a version, not bytes: files replaced in the artifact store after the move are served
under the same version. A target that can digest the version again (`FilesWatched`) has the files
of the release in production digested every DEPLOYER_DRIFT_FILES_CHECK_SECONDS (a full read, so
slower than the alias check) and compared with the approved digest: a mismatch is drift too
(reported; with `on_drift: revert` the alias is deleted, since no approved bytes are left to point
at). This finds a replacement after the fact; preventing it is the artifact store's job (write-once:
docs/deployer.md).

The deployer watches, not the MLflow bridge: only the deployer moves production (it holds the
registry credential that can), so it is the one that can tell its own moves from others' and put
production back (docs/deployer.md). Each check holds the model's lock, so it never sees a
deployment, rollback or revocation half done; a model with a deployment in progress (one
interrupted by a crash is finished by its redelivery) is left alone until it ends. The files are
digested without the lock (that can take minutes), and acted on under it only if production is
still that release.

A drift is reported once per distinct finding (the version or digest found, and what was done about
it): the checks between do not repeat it. What was reported is kept in memory, so after a restart a
drift that is still there is reported once more.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import structlog

from services.deployer.rollout import Release
from services.deployer.targets import TargetError
from shared.events import DeploymentDrifted

if TYPE_CHECKING:
    from services.deployer.service import Service

log = structlog.get_logger()
Action = Literal["reported", "reverted", "revert_failed"]


@runtime_checkable
class Watched(Protocol):
    """A target that can say what it serves for a model (None: nothing)."""

    on_drift: Literal["report", "revert"]

    def where(self, model: str) -> str: ...
    async def live(self, model: str) -> str | None: ...
    async def restore(self, model: str, release: Release | None, key: str, why: dict) -> None: ...


@runtime_checkable
class FilesWatched(Watched, Protocol):
    """A watched target that can digest again the files of a release's version where they lie."""

    files_every: float  # seconds between two digests of the files in production (0: never)

    async def served_digest(self, release: Release) -> str: ...


def anchor(current: Release | None, releases: list[Release]) -> Release | None:
    """The release that says how the model's production is watched: the one in production, else
    (production taken out by a revocation) the last one that was."""
    return current or max((r for r in releases if r.promoted), key=lambda r: r.promoted, default=None)


def drifted_event(release: Release, target: Watched, expected: str | None, found: str | None,
                  action: Action, detail: str = "", why_nothing: str = "") -> DeploymentDrifted:
    model = release.candidate.model
    where = target.where(model)
    was = f"version {found}" if found else "nothing"
    should = f"version {expected}" if expected else f"nothing ({why_nothing or 'no version of it is in production'})"
    reason = {"reported": f"{where} points at {was}, but the deployer put {should} there; left as found "
                          "(on_drift: report)",
              "reverted": f"{where} pointed at {was}, but the deployer put {should} there; put back "
                          "(on_drift: revert)",
              "revert_failed": f"{where} points at {was}, but the deployer put {should} there; putting it "
                               f"back failed: {detail}"}[action]
    return DeploymentDrifted(submission_id=release.submission_id, model=model, target=release.target,
                             where=where, expected_version=expected, found_version=found, action=action,
                             reason=reason)


def files_event(release: Release, target: Watched, found: str, action: Action, detail: str = "") -> DeploymentDrifted:
    """The files of the version in production no longer have the approved digest."""
    model, version = release.candidate.model, release.version
    where = target.where(model)
    what = (f"the files of {model} version {version} (in production at {where}) now have digest {found}, not "
            f"the approved {release.candidate.artifact_sha256}: they were replaced after the deployment "
            "(the artifact store must be write-once)")
    reason = {"reported": f"{what}; left as found (on_drift: report)",
              "reverted": f"{what}; {where} deleted, nothing serves (on_drift: revert)",
              "revert_failed": f"{what}; deleting {where} failed: {detail}"}[action]
    return DeploymentDrifted(submission_id=release.submission_id, model=model, target=release.target,
                             where=where, expected_version=version, found_version=version, action=action,
                             reason=reason)


def in_progress(s: Service, model: str) -> bool:
    """A rollout of `model` under way (scheduled) or a deployment a crash stopped half-way
    (unfinished): the target may lead what the state records as production. Two indexed reads,
    whatever the model's history."""
    return bool(s.store.scheduled(model) or s.store.unfinished(model))


class DriftWatch:
    """The drift check, with what it last reported per model (see the module)."""

    def __init__(self) -> None:
        self.reported: dict[str, tuple[str | None, Action]] = {}
        self.digested: dict[str, tuple[uuid.UUID, float]] = {}  # model -> release, when its files last were
        self.tampered: dict[str, tuple[uuid.UUID, str, Action]] = {}  # model -> release, digest found, done

    async def check(self, s: Service) -> list[DeploymentDrifted]:
        """Compare every watched model's production with its target; returns the events emitted."""
        emitted = []
        for model in s.store.production_models():
            due = None
            async with s.locks[model]:
                try:
                    event = await self.check_model(s, model)
                except TargetError as exc:  # the registry is down: the next check tries again
                    log.warning("drift_check_failed", model=model, error=str(exc))
                    continue
                if event is None:
                    due = self.files_due(s, model)
            if due is not None:
                event = await self.check_files(s, model, *due)
            if event is not None:
                emitted.append(event)
        return emitted

    def serving(self, s: Service, current: Release | None) -> tuple[Release | None, str]:
        """What should serve (None: nothing), and why nothing when `current` may not."""
        if current is None:
            return None, ""
        if why := s.store.banned([current]).get(current.submission_id):
            return None, f"its version {current.version} may not serve: {why}"
        tampered = self.tampered.get(current.candidate.model)
        if tampered is not None and tampered[0] == current.submission_id and tampered[2] == "reverted":
            return None, f"the files of its version {current.version} were found changed"
        return current, ""

    async def check_model(self, s: Service, model: str) -> DeploymentDrifted | None:
        current = s.store.production(model)
        if current is not None and not isinstance(s.target(current.deploy), Watched):
            return None  # the anchor is production's own target, which nobody else moves: every release unread
        if in_progress(s, model):
            return None
        # Every release is read only when a revocation left nothing in production (to find the last).
        release = current if current is not None else anchor(None, s.store.releases(model))
        if release is None:
            return None
        target = s.target(release.deploy)
        if not isinstance(target, Watched):
            return None
        serving, why_nothing = self.serving(s, current)
        expected, found = (serving.version if serving else None), await target.live(model)
        if found == expected:
            self.reported.pop(model, None)
            return None
        action: Action = "reported"
        detail = ""
        if target.on_drift == "revert":
            try:
                await target.restore(model, serving, f"drift:{model}:{found}",
                                     {"operation": "drift", "found": found, "expected": expected})
                action = "reverted"
            except TargetError as exc:
                action, detail = "revert_failed", str(exc)
        if self.reported.get(model) == (found, action):
            return None  # reported already (a revert that keeps failing is tried at every check)
        event = drifted_event(release, target, expected, found, action, detail, why_nothing)
        await s.emit(event)
        if action == "reverted":
            self.reported.pop(model, None)  # production is as approved again: a next move is news
        else:
            self.reported[model] = (found, action)
        log.warning("deployment_drifted", model=model, where=event.where, expected=expected, found=found,
                    action=action)
        return event

    def files_due(self, s: Service, model: str) -> tuple[Release, FilesWatched] | None:
        """The release in production and its target, when its files are due to be digested again
        (also once found changed: files put back as approved are served again, at the next check)."""
        current = s.store.production(model)
        if current is None or s.store.banned([current]):
            return None
        target = s.target(current.deploy)
        if not isinstance(target, FilesWatched) or target.files_every <= 0:
            return None
        last = self.digested.get(model)
        if last is not None and last[0] == current.submission_id and s.clock() - last[1] < target.files_every:
            return None
        return current, target

    async def check_files(self, s: Service, model: str, release: Release,
                          target: FilesWatched) -> DeploymentDrifted | None:
        try:
            found = await target.served_digest(release)  # without the lock: a digest can take minutes
        except TargetError as exc:  # the store is down: the next check tries again
            log.warning("drift_files_check_failed", model=model, error=str(exc))
            return None
        sid = release.submission_id
        self.digested[model] = (sid, s.clock())
        async with s.locks[model]:
            current = s.store.production(model)
            if current is None or current.submission_id != sid or in_progress(s, model):
                return None  # production moved meanwhile: what was digested is not what serves
            if found == release.candidate.artifact_sha256:
                self.tampered.pop(model, None)
                return None
            known = self.tampered.get(model)
            if known is not None and known[:2] == (sid, found) and known[2] != "revert_failed":
                return None  # reported already
            action: Action = "reported"
            detail = ""
            if target.on_drift == "revert":
                try:
                    await target.restore(model, None, f"drift:{model}:files:{found}",
                                         {"operation": "drift", "found_sha256": found, "expected": release.version})
                    action = "reverted"
                except TargetError as exc:
                    action, detail = "revert_failed", str(exc)
            if known == (sid, found, action):
                return None  # a deletion that keeps failing is tried at every due check, reported once
            self.tampered[model] = (sid, found, action)
            event = files_event(release, target, found, action, detail)
            await s.emit(event)
        log.warning("deployment_files_drifted", model=model, version=release.version, found=found, action=action)
        return event
