"""Where a release goes: the model store on the filesystem, or a webhook (webhook.py).

Every target does four things, each idempotent (a redelivery or a restart may repeat them):
`prepare` the release (copy and verify the bytes), `shift` traffic to it for a stage (100%:
production), `restore` production to another release (abort, rollback), `retire` a revoked one.
Transient failures are retried with capped exponential backoff; `TargetError` reports the rest.
Both read the approved bytes through `ArtifactSource`: `file://` under the allowed roots,
`http(s)://` under the allowed URL prefixes, checked against the approved digest.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import structlog

from services.deployer import target as store
from services.deployer.rollout import Release, Stage
from shared.artifacts import ArtifactError, Fetched, fetch
from shared.events import Candidate
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


@dataclass(frozen=True)
class ArtifactSource:
    """Where approved artifacts may be read from, as the validator reads them (same rules, the
    deployer's own settings): `file://` in place under `roots`, `http(s)://` under `url_prefixes`,
    downloaded into `workdir`."""

    roots: tuple[Path, ...]
    url_prefixes: tuple[str, ...] = ()
    max_bytes: int = 20 * 2**30
    timeout: float = 600.0
    workdir: Path = Path(".data/deployer/downloads")
    policy: RetryPolicy = RetryPolicy()

    async def verified(self, candidate: Candidate) -> Fetched:
        """The artifact's bytes in a local file, whose sha256 is the approved one. The caller
        owns the result: `cleanup()` it when done. A network failure is retried; a refused URI,
        an answer other than 200, or changed bytes are not."""
        uri = candidate.artifact_uri

        async def once() -> Fetched:
            try:
                if urlsplit(uri).scheme.lower() in ("http", "https"):
                    await asyncio.to_thread(self.workdir.mkdir, parents=True, exist_ok=True)
                return await fetch(uri, roots=self.roots, url_prefixes=self.url_prefixes,
                                   max_bytes=self.max_bytes, timeout=self.timeout, workdir=self.workdir)
            except ArtifactError as exc:
                # fetch raises ArtifactError for every cause; the httpx error it replaced, if any,
                # is its __context__: connection refused or reset, a read timeout.
                raise TargetError(str(exc), transient=isinstance(exc.__context__, httpx.TransportError)) from exc
            except OSError as exc:  # the download folder cannot be created (no URI: it may hold user info)
                raise TargetError(f"cannot create the download folder {self.workdir}: {exc}", transient=True) from exc

        fetched: Fetched = await retrying(once, self.policy, "fetch artifact")
        if fetched.sha256 != candidate.artifact_sha256:
            fetched.cleanup()
            raise TargetError(f"artifact digest is {fetched.sha256}, approved digest is "
                              f"{candidate.artifact_sha256}: the artifact changed since it was checked")
        return fetched


class Target(Protocol):
    name: str

    async def prepare(self, release: Release, manifest: dict) -> str: ...
    async def shift(self, release: Release, stage: Stage, previous: Release | None, key: str) -> None: ...
    async def restore(self, model: str, release: Release | None, key: str, why: dict) -> None: ...
    async def retire(self, release: Release, key: str, why: dict) -> None: ...


class ModelStore:
    """`<root>/<model>/<version>/` (artifact + manifest.json), `PRODUCTION`, `traffic.json`."""

    name = "model-store"

    def __init__(self, root: Path, source: ArtifactSource, policy: RetryPolicy) -> None:
        self.root, self.source, self.policy = root, source, policy

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
        """Fetch and verify the approved bytes, then install them (copied and verified again,
        into staging, renamed into place); a download is deleted whatever happens."""
        candidate = release.candidate
        fetched = await self.source.verified(candidate)
        try:
            name = store.artifact_name(candidate.artifact_uri, fetched.path)
            path = await self._run("install", store.install, self.root, candidate, fetched.path, manifest, name)
        finally:
            fetched.cleanup()
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
