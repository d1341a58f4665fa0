"""The s3 target: an approved release copied to a serving bucket (AWS S3, MinIO, Ceph, R2) in the
layout serving platforms read, `<prefix>/<model>/<version>/`, with its manifest and attestation,
and a `PRODUCTION` pointer beside the versions (`_s3_layout` has the whole layout).

A reader sees a version only whole: the pointer moves after the version's files, and its manifest
(written last of them) is what makes a version installed. The bytes are verified again on the
way: read from a verified copy, and sent with their sha256 for S3 to check (`_s3_objects`).

Where it may write is the deployer's setting, not the workflow's: DEPLOYER_S3_TARGET_PREFIXES
(none by default). The connection: DEPLOYER_S3_ENDPOINT_URL, DEPLOYER_S3_REGION and the
DEPLOYER_S3_* timeouts; credentials from the standard AWS chain.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
from typing import Any, Final, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ConfigDict, Field, field_validator

from services.deployer.rollout import Release, Stage
from services.deployer.settings import DeployerSettings
from services.deployer.targets import _s3_install as install
from services.deployer.targets import _s3_layout as layout
from services.deployer.targets import _s3_objects as objects
from services.deployer.targets._s3_layout import ATTESTATION_FILE, Place
from services.deployer.targets._store_files import uri_name
from services.deployer.targets.base import Deps, TargetError, retrying
from shared import attestation
from shared.events import utcnow
from shared.sources import ArtifactError
from shared.workflow.schema import DeployInputs

NAME: Final = "s3"


class Inputs(DeployInputs):
    """`target: s3`, with the serving bucket and the prefix the models go under."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target: Literal["s3"] = NAME
    bucket: str = Field(description="The serving bucket (it must exist)")
    prefix: str = Field(default="", description="Key prefix the models go under, e.g. 'serving/models' "
                        "('': the bucket's top); it must be under DEPLOYER_S3_TARGET_PREFIXES")

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        problem = layout.bucket_problem(value)
        if problem:
            raise ValueError(f"{problem}; name an existing bucket")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        problem = layout.prefix_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @property
    def place(self) -> Place:
        return Place(self.bucket, self.prefix)


def problems(inputs: Inputs, settings: DeployerSettings) -> list[str]:
    """A bucket or prefix the deployer may not write to: said at start-up (and refused at deploy)."""
    refused = layout.refusal(inputs.place, settings.s3_target_prefixes)
    return [refused] if refused else []


def build(inputs: Inputs, deps: Deps) -> S3Target:
    return S3Target(inputs.place, deps)


def clean_staging(settings: DeployerSettings) -> None:
    """At start-up: remove the private copies a crash mid-upload left behind."""
    shutil.rmtree(settings.download_dir / install.STAGING, ignore_errors=True)


@functools.lru_cache(maxsize=4)
def _client(settings: DeployerSettings) -> Any:
    # One client per settings (boto3 clients are thread-safe; making one costs tens of milliseconds).
    return objects.client(settings)


def _with_client(fn: Any, settings: DeployerSettings, place: Place, *args: Any) -> Any:
    # In the worker thread: making the client reads the AWS configuration files.
    return fn(_client(settings), place, *args)


def pointer(place: Place, release: Release) -> dict:
    """PRODUCTION's content: the version, its digest, where it and its attestation are, since when."""
    c = release.candidate
    folder = f"s3://{place.bucket}/{layout.version_key(place, c.model, c.version)}"
    return {"model": c.model, "version": c.version, "sha256": c.artifact_sha256,
            "submission_id": str(release.submission_id), "location": folder + "/",
            "attestation": f"{folder}/{ATTESTATION_FILE}" if release.attestation else None,
            "updated_at": utcnow().isoformat()}


class S3Target:
    name = NAME

    def __init__(self, place: Place, deps: Deps) -> None:
        self.place, self.deps = place, deps

    def location(self, release: Release) -> str:
        try:
            key = layout.version_key(self.place, release.candidate.model, release.version)
            return f"s3://{self.place.bucket}/{key}/"
        except ValueError as exc:
            raise TargetError(str(exc)) from None

    def _pointer(self, release: Release) -> dict:
        try:
            return pointer(self.place, release)
        except ValueError as exc:
            raise TargetError(str(exc)) from None

    def _allowed(self) -> None:
        refused = layout.refusal(self.place, self.deps.settings.s3_target_prefixes)
        if refused:
            raise TargetError(refused)

    async def _run(self, what: str, fn: Any, *args: Any) -> Any:
        """`fn(*args)` in a thread (boto3 blocks), retried while S3 or the disk fail transiently."""

        async def once() -> Any:
            try:
                return await asyncio.to_thread(fn, *args)
            except (ArtifactError, ValueError) as exc:  # bad input: changed bytes, an existing version
                raise TargetError(f"{what}: {exc}") from exc
            except (ClientError, BotoCoreError) as exc:
                message, transient = objects.classify(exc)
                raise TargetError(f"{what} at {self.place.uri()}: {message}", transient=transient) from exc
            except OSError as exc:  # the local copy: disk full, I/O error
                raise TargetError(f"{what}: {exc}", transient=True) from exc
        return await retrying(once, self.deps.policy, f"s3 {what}")

    async def _s3(self, what: str, fn: Any, *args: Any) -> Any:
        """`fn(client, place, *args)`: an S3 operation, only where the deployer may write."""
        self._allowed()
        return await self._run(what, _with_client, fn, self.deps.settings, self.place, *args)

    async def prepare(self, release: Release, manifest: dict) -> str:
        """Fetch and verify the approved bytes, then upload them with the release's attestation,
        under the name its subject gives; the download and the private copy are deleted whatever
        happens. A digest that changed since the checks is refused before anything is written."""
        location = self.location(release)  # a bad name, or a place not allowed, is refused first
        self._allowed()
        candidate, attested = release.candidate, release.attestation
        fetched = await self.deps.verified(candidate)
        try:
            name = (attestation.subject_of(attested).name if attested is not None
                    else uri_name(candidate.artifact_uri))
            settings = self.deps.settings
            files = await self._run("stage", install.staged, fetched, candidate.artifact_sha256, name,
                                    settings.download_dir, settings.max_artifact_files)
            try:
                await self._s3("install", install.install, candidate, files, manifest,
                                attestation.file_bytes(attested) if attested is not None else None)
            finally:
                files.cleanup()
        finally:
            fetched.cleanup()
        return location

    async def shift(self, release: Release, stage: Stage, previous: Release | None, key: str) -> None:
        model, version = release.candidate.model, release.version
        split = {version: stage.traffic_percent}
        if stage.traffic_percent < 100 and previous is not None:
            split[previous.version] = 100 - stage.traffic_percent
        if stage.traffic_percent == 100:
            await self._s3("set production", install.set_pointer, model, self._pointer(release))
        await self._s3("set traffic", install.set_traffic, model, split, stage.name)

    async def restore(self, model: str, release: Release | None, key: str, why: dict) -> None:
        await self._s3("set production", install.set_pointer, model,
                        self._pointer(release) if release else None)
        split = {release.version: 100} if release else {}
        await self._s3("set traffic", install.set_traffic, model, split, why.get("operation", "restore"))

    async def retire(self, release: Release, key: str, why: dict) -> None:
        await self._s3("retire", install.retire, release.candidate.model, release.version, why)
