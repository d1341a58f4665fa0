"""What every deploy target shares: the interface, the error, retries, and what a builder receives.

A module of its own so that each target module can import it without importing the registry in
`services.deployer.targets` (which imports them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import structlog

from services.deployer.rollout import Release, Stage
from services.deployer.settings import DeployerSettings
from shared.events import Candidate
from shared.sources import ArtifactError, ArtifactSource, Fetched

log = structlog.get_logger()
T = TypeVar("T")


class TargetError(Exception):
    """A target operation failed; `transient` ones are worth another try."""

    def __init__(self, message: str, transient: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


class Target(Protocol):
    """Four operations, each idempotent (a redelivery or a restart may repeat them): `prepare` the
    release (read and verify the bytes; install it with `release.attestation` where the target
    keeps files; returns where it is), `shift` traffic to it for a stage (100%: production),
    `restore` production to another release (None: take the model out), and `retire` a revoked
    one. `key` is stable per step, for a receiver to drop repeats. `location` says, before
    anything is done, where `prepare` will put the release (what its attestation records)."""

    name: str

    def location(self, release: Release) -> str: ...

    async def prepare(self, release: Release, manifest: dict) -> str: ...
    async def shift(self, release: Release, stage: Stage, previous: Release | None, key: str) -> None: ...
    async def restore(self, model: str, release: Release | None, key: str, why: dict) -> None: ...
    async def retire(self, release: Release, key: str, why: dict) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 8.0

    @classmethod
    def from_settings(cls, settings: DeployerSettings) -> RetryPolicy:
        return cls(settings.retry_attempts, settings.retry_backoff_seconds, settings.retry_max_backoff_seconds)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Wait before try `attempt + 1`: doubling from `backoff`, at most `max_backoff`; a
        server's Retry-After is honoured up to the same cap."""
        delay = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
        return min(max(delay, retry_after or 0.0), self.max_backoff)


async def retrying(operation: Callable[[], Awaitable[T]], policy: RetryPolicy, what: str) -> T:
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


class Deliveries(Protocol):
    """Requests a receiver acknowledged, remembered across restarts (the state store)."""

    def delivered(self, key: str) -> bool: ...
    def record_delivery(self, key: str) -> None: ...


@dataclass(frozen=True)
class Deps:
    """What a target's builder receives: the deployer's settings (each target reads its own), where
    approved artifacts may be read from, the record of acknowledged requests, the retry policy."""

    settings: DeployerSettings
    source: ArtifactSource
    deliveries: Deliveries
    policy: RetryPolicy

    @classmethod
    def from_settings(cls, settings: DeployerSettings, deliveries: Deliveries) -> Deps:
        return cls(settings, ArtifactSource.from_settings(settings, settings.download_dir), deliveries,
                   RetryPolicy.from_settings(settings))

    async def verified(self, candidate: Candidate) -> Fetched:
        """The artifact's bytes in a local file whose sha256 is the approved one, read as the
        validator reads them (the deployer's own allowed roots and URL prefixes). The caller owns
        the result: `cleanup()` it. A network failure is retried; a refused URI, an answer other
        than 200, or changed bytes are not."""

        async def once() -> Fetched:
            try:
                return await self.source.fetch(candidate.artifact_uri)
            except ArtifactError as exc:
                raise TargetError(str(exc), transient=exc.transient) from exc

        fetched = await retrying(once, self.policy, "fetch artifact")
        if fetched.sha256 != candidate.artifact_sha256:
            fetched.cleanup()
            raise TargetError(f"artifact digest is {fetched.sha256}, approved digest is "
                              f"{candidate.artifact_sha256}: the artifact changed since it was checked")
        return fetched
