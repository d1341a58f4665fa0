"""Where a release goes: the model store on the filesystem, or a webhook (webhook.py).

Every target does four things, each idempotent (a redelivery or a restart may repeat them):
`prepare` the release (copy and verify the bytes), `shift` traffic to it for a stage (100%:
production), `restore` production to another release (abort, rollback), `retire` a revoked one.
Transient failures are retried with capped exponential backoff; `TargetError` reports the rest.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

from services.deployer import target as store
from services.deployer.rollout import Release, Stage
from shared.artifacts import ArtifactError, resolve
from shared.workflows import DeployInputs

log = structlog.get_logger()


class TargetError(Exception):
    """A target operation failed; `transient` ones are worth another try."""

    def __init__(self, message: str, transient: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 8.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Wait before try `attempt + 1`: doubling from `backoff`, at most `max_backoff`; a
        server's Retry-After is honoured up to the same cap."""
        delay = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
        return min(max(delay, retry_after or 0.0), self.max_backoff)


async def retrying(operation: Any, policy: RetryPolicy, what: str) -> Any:
    """Await `operation()` until it succeeds, fails permanently, or runs out of tries."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return await operation()
        except TargetError as exc:
            if not exc.transient:
                raise
            if attempt == policy.attempts:
                raise TargetError(f"{exc} (gave up after {attempt} tries)") from exc
            delay = policy.delay(attempt, exc.retry_after)
            log.warning("target_retry", what=what, attempt=attempt, error=str(exc), wait=delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


class Target(Protocol):
    name: str

    async def prepare(self, release: Release, manifest: dict) -> str: ...
    async def shift(self, release: Release, stage: Stage, previous: Release | None, key: str) -> None: ...
    async def restore(self, model: str, release: Release | None, key: str, why: dict) -> None: ...
    async def retire(self, release: Release, key: str, why: dict) -> None: ...


class ModelStore:
    """`<root>/<model>/<version>/` (artifact + manifest.json), `PRODUCTION`, `traffic.json`."""

    name = "model-store"

    def __init__(self, root: Path, artifact_roots: tuple[Path, ...], policy: RetryPolicy) -> None:
        self.root, self.artifact_roots, self.policy = root, artifact_roots, policy

    async def _run(self, what: str, fn: Any, *args: Any) -> Any:
        async def once() -> Any:
            try:
                return await asyncio.to_thread(fn, *args)
            except ArtifactError as exc:  # bad input: escaping names, outside the roots, changed bytes
                raise TargetError(str(exc)) from exc
            except OSError as exc:  # disk full, I/O error, NFS hiccup: worth another try
                raise TargetError(f"{what}: {exc}", transient=True) from exc
        return await retrying(once, self.policy, what)

    async def prepare(self, release: Release, manifest: dict) -> str:
        candidate = release.candidate
        try:
            source = resolve(candidate.artifact_uri, self.artifact_roots)
        except ArtifactError as exc:
            raise TargetError(str(exc)) from exc
        path = await self._run("install", store.install, self.root, candidate, source, manifest)
        return str(path)

    async def shift(self, release: Release, stage: Stage, previous: Release | None, key: str) -> None:
        model, version = release.candidate.model, release.version
        split = {version: stage.traffic_percent}
        if stage.traffic_percent < 100 and previous is not None:
            split[previous.version] = 100 - stage.traffic_percent
        if stage.traffic_percent == 100:
            await self._run("set production", store.set_production, self.root, model, version)
        await self._run("set traffic", store.set_traffic, self.root, model, split, stage.name)

    async def restore(self, model: str, release: Release | None, key: str, why: dict) -> None:
        version = release.version if release else None
        await self._run("set production", store.set_production, self.root, model, version)
        split = {version: 100} if version else {}
        await self._run("set traffic", store.set_traffic, self.root, model, split, why.get("operation", "restore"))

    async def retire(self, release: Release, key: str, why: dict) -> None:
        await self._run("retire", store.retire, self.root, release.candidate.model, release.version)


class Targets:
    """The target a workflow's deploy step names."""

    def __init__(self, model_store: ModelStore, webhook: Any) -> None:
        self.model_store = model_store
        self.webhook = webhook  # callable: DeployInputs -> a webhook Target

    def get(self, inputs: DeployInputs) -> Target:
        return self.model_store if inputs.target == "model-store" else self.webhook(inputs)
