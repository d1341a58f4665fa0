"""Protected production: a target that can say what it serves (`Watched`: the mlflow target's alias)
is compared, every DEPLOYER_DRIFT_CHECK_SECONDS, with what the deployer put in production. A
difference is a move nobody approved: it is reported as deployment.drifted and, when the release's
deploy step says `on_drift: revert`, put back (through the target's `restore`, which verifies the
version's digest again) and the event says so.

The deployer watches, not the MLflow bridge: only the deployer moves production (it holds the
registry credential that can), so it is the one that can tell its own moves from others' and put
production back (docs/deployer.md). Each check holds the model's lock, so it never sees a
deployment, rollback or revocation half done; a model with a deployment in progress (one
interrupted by a crash is finished by its redelivery) is left alone until it ends.

A drift is reported once per distinct finding (the version found, and what was done about it):
the checks between do not repeat it. What was reported is kept in memory, so after a restart a
drift that is still there is reported once more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import structlog

from services.deployer.rollout import Release
from services.deployer.targets import TargetError
from shared.events import DeploymentDrifted

if TYPE_CHECKING:
    from services.deployer.service import Service

log = structlog.get_logger()
Action = Literal["reported", "reverted", "revert_failed"]
IN_PROGRESS = ("deploying", "rolling_out")


@runtime_checkable
class Watched(Protocol):
    """A target that can say what it serves for a model (None: nothing)."""

    on_drift: Literal["report", "revert"]

    def where(self, model: str) -> str: ...
    async def live(self, model: str) -> str | None: ...
    async def restore(self, model: str, release: Release | None, key: str, why: dict) -> None: ...


def anchor(current: Release | None, releases: list[Release]) -> Release | None:
    """The release that says how the model's production is watched: the one in production, else
    (production taken out by a revocation) the last one that was."""
    return current or max((r for r in releases if r.promoted), key=lambda r: r.promoted, default=None)


def drifted_event(release: Release, target: Watched, expected: str | None, found: str | None,
                  action: Action, detail: str = "") -> DeploymentDrifted:
    model = release.candidate.model
    where = target.where(model)
    was = f"version {found}" if found else "nothing"
    should = f"version {expected}" if expected else "nothing (no version of it is in production)"
    reason = {"reported": f"{where} points at {was}, but the deployer put {should} there; left as found "
                          "(on_drift: report)",
              "reverted": f"{where} pointed at {was}, but the deployer put {should} there; put back "
                          "(on_drift: revert)",
              "revert_failed": f"{where} points at {was}, but the deployer put {should} there; putting it "
                               f"back failed: {detail}"}[action]
    return DeploymentDrifted(submission_id=release.submission_id, model=model, target=release.target,
                             where=where, expected_version=expected, found_version=found, action=action,
                             reason=reason)


class DriftWatch:
    """The drift check, with what it last reported per model (see the module)."""

    def __init__(self) -> None:
        self.reported: dict[str, tuple[str | None, Action]] = {}

    async def check(self, s: Service) -> list[DeploymentDrifted]:
        """Compare every watched model's production with its target; returns the events emitted."""
        emitted = []
        for model in s.store.production_models():
            async with s.locks[model]:
                try:
                    event = await self.check_model(s, model)
                except TargetError as exc:  # the registry is down: the next check tries again
                    log.warning("drift_check_failed", model=model, error=str(exc))
                    continue
            if event is not None:
                emitted.append(event)
        return emitted

    async def check_model(self, s: Service, model: str) -> DeploymentDrifted | None:
        current, releases = s.store.production(model), s.store.releases(model)
        release = anchor(current, releases)
        if release is None or any(s.store.load(r.submission_id).status in IN_PROGRESS for r in releases
                                  if not r.promoted):
            return None
        target = s.target(release.deploy)
        if not isinstance(target, Watched):
            return None
        expected, found = (current.version if current else None), await target.live(model)
        if found == expected:
            self.reported.pop(model, None)
            return None
        action: Action = "reported"
        detail = ""
        if target.on_drift == "revert":
            try:
                await target.restore(model, current, f"drift:{model}:{found}",
                                     {"operation": "drift", "found": found, "expected": expected})
                action = "reverted"
            except TargetError as exc:
                action, detail = "revert_failed", str(exc)
        if self.reported.get(model) == (found, action):
            return None  # reported already (a revert that keeps failing is tried at every check)
        event = drifted_event(release, target, expected, found, action, detail)
        await s.emit(event)
        if action == "reverted":
            self.reported.pop(model, None)  # production is as approved again: a next move is news
        else:
            self.reported[model] = (found, action)
        log.warning("deployment_drifted", model=model, where=event.where, expected=expected, found=found,
                    action=action)
        return event
