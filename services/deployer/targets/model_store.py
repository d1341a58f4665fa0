"""The model-store target: `<root>/<model>/<version>/` (artifact + manifest.json), `PRODUCTION`,
`traffic.json`; the files themselves are `_store_files`. Needs no settings beyond the store's root."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import ConfigDict

from services.deployer.rollout import Release, Stage
from services.deployer.settings import DeployerSettings
from services.deployer.targets import _store_files as files
from services.deployer.targets.base import Deps, TargetError, retrying
from shared import attestation
from shared.sources import ArtifactError
from shared.workflow.schema import DeployInputs

NAME: Final = "model-store"


class Inputs(DeployInputs):
    """`target: model-store` (the default): no keys of its own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target: Literal["model-store"] = NAME


def problems(inputs: Inputs, settings: DeployerSettings) -> list[str]:
    return []  # the store's root is created on first install; a disk problem is retried then


def build(inputs: Inputs, deps: Deps) -> ModelStore:
    return ModelStore(deps.settings.model_store, deps)


def clean_staging(settings: DeployerSettings) -> None:
    """At start-up: remove what a crash mid-copy (or mid pointer update) left behind."""
    files.clean_staging(settings.model_store)


class ModelStore:
    name = NAME

    def __init__(self, root: Path, deps: Deps) -> None:
        self.root, self.deps = root, deps

    async def _run(self, what: str, fn: Any, *args: Any) -> Any:
        async def once() -> Any:
            try:
                return await asyncio.to_thread(fn, *args)
            except ArtifactError as exc:  # bad input: escaping names, outside the roots, changed bytes
                raise TargetError(str(exc)) from exc
            except OSError as exc:  # disk full, I/O error, NFS hiccup: worth another try
                raise TargetError(f"{what}: {exc}", transient=True) from exc
        return await retrying(once, self.deps.policy, what)

    def location(self, release: Release) -> str:
        try:
            return str(files.version_dir(self.root, release.candidate))
        except ArtifactError as exc:
            raise TargetError(str(exc)) from exc

    async def prepare(self, release: Release, manifest: dict) -> str:
        """Fetch and verify the approved bytes, then install them with the release's attestation,
        under the name its subject gives (copied and verified again, into staging, renamed into
        place, all in one step); a download is deleted whatever happens."""
        candidate, attested = release.candidate, release.attestation
        fetched = await self.deps.verified(candidate)
        try:
            name = (attestation.subject_of(attested).name if attested is not None
                    else files.artifact_name(candidate.artifact_uri, fetched.path))
            path = await self._run("install", files.install, self.root, candidate, fetched.path, manifest, name,
                                   attestation.file_bytes(attested) if attested is not None else None)
        finally:
            fetched.cleanup()
        return str(path)

    async def shift(self, release: Release, stage: Stage, previous: Release | None, key: str) -> None:
        model, version = release.candidate.model, release.version
        split = {version: stage.traffic_percent}
        if stage.traffic_percent < 100 and previous is not None:
            split[previous.version] = 100 - stage.traffic_percent
        if stage.traffic_percent == 100:
            await self._run("set production", files.set_serving, self.root, model, version, split, stage.name)
        else:
            await self._run("set traffic", files.set_traffic, self.root, model, split, stage.name)

    async def restore(self, model: str, release: Release | None, key: str, why: dict) -> None:
        version = release.version if release else None
        # Not set_serving: when a revoked or failed version is taken out, PRODUCTION moves first and
        # durably, so no crash leaves it naming that version beside a traffic.json that does not.
        await self._run("set production", files.set_production, self.root, model, version)
        split = {version: 100} if version else {}
        await self._run("set traffic", files.set_traffic, self.root, model, split, why.get("operation", "restore"))

    async def retire(self, release: Release, key: str, why: dict) -> None:
        await self._run("retire", files.retire, self.root, release.candidate.model, release.version, why)
