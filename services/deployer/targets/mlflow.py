"""The mlflow target: production is an alias (default `champion`) of a registered model in the MLflow
Model Registry, which only Signoff moves.

- `prepare` reads the version (the release's version is its MLflow version number), digests the
  version's files where they lie (`ArtifactSource.digest` of its download URI, under the
  deployer's allowed roots and S3 prefixes) and refuses it unless that is the approved digest; then
  logs the attestation to the version's run as `signoff/<model>/<version>/attestation.intoto.json`
  and tags the version with the decision (TAGS).
- `shift` moves the alias to the version, after digesting it again (what changed between check and
  deploy is refused, nothing moved). An alias is all or nothing: strategy canary is refused.
- `restore` moves the alias back (rollback, revocation: verified the same way), or deletes it.
- `retire` tags a revoked version `signoff.revoked`.
- `live` and `where` let the deployer's drift check (services/deployer/drift.py) compare the alias
  with what it put in production; `on_drift` says whether a move by hand is put back.
  `served_digest` lets it digest the version in production again (every `files_every` seconds):
  files replaced after the alias moved are served under the same version.

Every call is blocking HTTP (`_mlflow_registry`), run in a thread and retried when transient.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Any, Final, Literal

from pydantic import ConfigDict, Field, model_validator

from services.deployer.rollout import Release, Stage
from services.deployer.settings import DeployerSettings
from services.deployer.targets._mlflow_registry import Registry, VersionInfo
from services.deployer.targets.base import Deps, TargetError, retrying
from shared import attestation
from shared.sources import ArtifactError, Digested
from shared.transport import InsecureUrl, require_secure
from shared.workflow.schema import DeployInputs

NAME: Final = "mlflow"
ALLOW_HTTP_LOOPBACK = "DEPLOYER_MLFLOW_ALLOW_HTTP_LOOPBACK"
ATTESTATION_FOLDER = "signoff"  # in the run's artifacts: signoff/<model>/<version>/attestation.intoto.json
# The tags each deployed version gets (the decision behind it); signoff.revoked when revoked.
TAGS = ("signoff.decision_id", "signoff.approved_by", "signoff.approval_mode", "signoff.policy_digest",
        "signoff.submission_id", "signoff.artifact_sha256", "signoff.attestation_sha256",
        "signoff.attestation_uri")
_VERSION = re.compile(r"^[1-9][0-9]{0,9}$")


class Inputs(DeployInputs):
    """`target: mlflow`: which registered model and alias production is, and what a move by hand does."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target: Literal["mlflow"] = NAME
    registered_model: str | None = Field(
        default=None, min_length=1, max_length=256, pattern=r"^[^/\x00-\x1f\x7f]+$",
        description="The MLflow registered model (no '/'); default: the Signoff model name")
    alias: str = Field(default="champion", pattern=r"^[A-Za-z0-9_-]{1,255}$",
                       description="The alias that is production; only Signoff moves it")
    on_drift: Literal["report", "revert"] = Field(
        default="report", description="An alias found moved by someone else: report it (deployment.drifted), "
        "or report it and move it back")

    @model_validator(mode="after")
    def _alias_only(self) -> Inputs:
        if self.strategy != "direct":
            raise ValueError("target mlflow moves an alias, which cannot split traffic: use strategy direct")
        if self.alias == "latest" or re.fullmatch(r"v[0-9]+", self.alias):
            raise ValueError(f"alias {self.alias!r} is reserved by MLflow; use another, such as champion")
        return self


def problems(inputs: Inputs, settings: DeployerSettings) -> list[str]:
    """No registry to call, or one the deployer will not call: said at start-up."""
    try:
        tracking_uri(settings)
    except TargetError as exc:
        return [str(exc)]
    return []


def tracking_uri(settings: DeployerSettings) -> str:
    uri = settings.mlflow_tracking_uri
    if not uri:
        raise TargetError("target mlflow needs DEPLOYER_MLFLOW_TRACKING_URI (the MLflow tracking server)")
    try:
        return require_secure(uri, "DEPLOYER_MLFLOW_TRACKING_URI", settings.mlflow_allow_http_loopback,
                              ALLOW_HTTP_LOOPBACK)
    except InsecureUrl as exc:
        raise TargetError(str(exc)) from None


def build(inputs: Inputs, deps: Deps) -> MlflowTarget:
    return MlflowTarget(inputs, deps)


def mlflow_version(release: Release) -> str:
    """The release's MLflow version number: its Signoff version, as `signoff submit --mlflow` and the
    bridge submit it."""
    version = release.version
    if not _VERSION.match(version):
        raise TargetError(f"target mlflow: version {version!r} of {release.candidate.model} is not an MLflow "
                          "version number; submit MLflow versions with `signoff submit --mlflow` or the bridge")
    return version


def decision_tags(release: Release, attested: bytes | None, attestation_uri: str | None) -> dict[str, str]:
    """The decision a version is deployed under, as the version's tags (see TAGS)."""
    approval = release.approval
    tags = {"signoff.decision_id": str(approval.event_id), "signoff.approved_by": approval.decided_by,
            "signoff.approval_mode": approval.mode, "signoff.policy_digest": approval.policy.digest,
            "signoff.submission_id": str(release.submission_id),
            "signoff.artifact_sha256": release.candidate.artifact_sha256}
    if attested is not None:
        tags["signoff.attestation_sha256"] = hashlib.sha256(attested).hexdigest()
    if attestation_uri is not None:
        tags["signoff.attestation_uri"] = attestation_uri
    return tags


class MlflowTarget:
    name = NAME

    def __init__(self, inputs: Inputs, deps: Deps) -> None:
        self.inputs, self.deps = inputs, deps
        self.alias, self.on_drift = inputs.alias, inputs.on_drift
        self.files_every = deps.settings.drift_files_check_seconds  # an alias names a version, not bytes
        self._registry: Registry | None = None

    @property
    def registry(self) -> Registry:
        if self._registry is None:  # made on first use: a missing setting fails the step, saying so
            self._registry = Registry(tracking_uri(self.deps.settings))
        return self._registry

    def registered(self, model: str) -> str:
        return self.inputs.registered_model or model

    def location(self, release: Release) -> str:
        return f"models:/{self.registered(release.candidate.model)}/{mlflow_version(release)}"

    def where(self, model: str) -> str:
        return f"models:/{self.registered(model)}@{self.alias}"

    async def _call(self, what: str, fn: Any, *args: Any) -> Any:
        async def once() -> Any:
            return await asyncio.to_thread(fn, *args)
        return await retrying(once, self.deps.policy, what)

    async def _found(self, release: Release) -> tuple[VersionInfo, Digested]:
        """The release's version, and its files as they are now."""
        name, version = self.registered(release.candidate.model), mlflow_version(release)
        info: VersionInfo = await self._call("read MLflow version", self.registry.version, name, version)

        async def digest() -> Digested:
            try:
                return await self.deps.source.digest(info.download_uri)
            except ArtifactError as exc:
                raise TargetError(f"models:/{name}/{version}: {exc}", transient=exc.transient) from exc

        return info, await retrying(digest, self.deps.policy, "digest MLflow version")

    async def served_digest(self, release: Release) -> str:
        """The digest of the release's version's files now (the drift check compares it with the approved one)."""
        return (await self._found(release))[1].sha256

    async def _verified(self, release: Release) -> VersionInfo:
        """The release's version, once its files are found to be the approved bytes."""
        info, files = await self._found(release)
        name, version, found = info.name, info.version, files.sha256
        if found != release.candidate.artifact_sha256:
            raise TargetError(f"models:/{name}/{version}: its files' digest is {found}, the approved digest is "
                              f"{release.candidate.artifact_sha256}: the version changed since it was checked; "
                              f"alias {self.alias!r} not moved")
        return info

    async def prepare(self, release: Release, manifest: dict) -> str:
        info = await self._verified(release)
        attested = attestation.file_bytes(release.attestation) if release.attestation is not None else None
        uri = None
        if attested is not None and info.run_id and info.run_artifact_uri:
            folder = f"{ATTESTATION_FOLDER}/{info.name}/{info.version}"
            await self._call("log attestation", self.registry.log_file, info.run_id, folder,
                             attestation.ATTESTATION_FILE, attested)
            uri = f"{info.run_artifact_uri.rstrip('/')}/{folder}/{attestation.ATTESTATION_FILE}"
        await self._call("tag MLflow version", self.registry.set_tags, info.name, info.version,
                         decision_tags(release, attested, uri))
        return self.location(release)

    async def shift(self, release: Release, stage: Stage, previous: Release | None, key: str) -> None:
        if stage.traffic_percent != 100:  # refused when the workflow is loaded; stored steps are older
            raise TargetError(f"target mlflow cannot send {stage.traffic_percent}% of traffic: an alias is all "
                              "or nothing; use strategy direct")
        await self._move(release)

    async def restore(self, model: str, release: Release | None, key: str, why: dict) -> None:
        if release is None:
            await self._call("delete alias", self.registry.delete_alias, self.registered(model), self.alias)
            return
        await self._move(release)

    async def retire(self, release: Release, key: str, why: dict) -> None:
        note = f"by {why.get('requested_by', '?')}: {why.get('reason', '')}"
        await self._call("tag revoked version", self.registry.set_tags, self.registered(release.candidate.model),
                         mlflow_version(release), {"signoff.revoked": note})

    async def live(self, model: str) -> str | None:
        """The version the alias points at now (None: the alias does not exist)."""
        aliases = await self._call("read aliases", self.registry.aliases, self.registered(model))
        return aliases.get(self.alias)

    async def _move(self, release: Release) -> None:
        info = await self._verified(release)  # verified again, right before the move
        await self._call("move alias", self.registry.set_alias, info.name, self.alias, info.version)
