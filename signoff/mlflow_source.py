"""MLflow as a source: a registered model version read from the MLflow Model Registry, its model
files digested where they lie, and the Submission built from both (`signoff submit --mlflow`, and
the bridge in services/mlflow_bridge).

The registry is read with mlflow-skinny's MlflowClient: MLFLOW_TRACKING_URI and MLflow's own
authentication variables (MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_USERNAME/_PASSWORD, ...) are
MLflow's, read by it. The model files are at the version's download URI
(`get_model_version_download_uri`), which must be an s3:// or file:// location: an MLflow server
that proxies artifacts (`mlflow-artifacts:/...`) is refused, since the validator and the deployer
read the bytes themselves. The rules that turn what was read into a submission are pure, in
signoff/mlflow_mapping.py.
"""

from __future__ import annotations

import asyncio
import posixpath
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.codec import describe
from shared.events import Submission
from shared.sources import ArtifactError, ArtifactSource
from signoff.mlflow_mapping import MappingError, Reference, VersionFacts, submission_data, user_of

if TYPE_CHECKING:
    from mlflow import MlflowClient

READABLE = ("s3", "file")  # download URI schemes Signoff's sources read in place


class MlflowSourceSettings(BaseSettings):
    """How MLflow versions become submissions (SIGNOFF_MLFLOW_* variables); where the registry is
    (MLFLOW_TRACKING_URI) and how to authenticate to it are MLflow's own variables."""

    model_config = SettingsConfigDict(env_prefix="SIGNOFF_MLFLOW_", extra="ignore", frozen=True,
                                      populate_by_name=True)

    tracking_uri: str | None = Field(
        default=None, min_length=1, max_length=2000,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "tracking_uri"),
        description="The MLflow tracking server (MLflow's own variable); also part of each version's "
        "submission id, so keep it stable")
    data_version_tag: str = Field(
        default="data_version", min_length=1, max_length=250,
        description="Run tag holding the training data version; without it, the digest of the "
        "dataset the run logged as input")
    model_names: dict[str, str] = Field(
        default_factory=dict, max_length=10_000,
        description='MLflow registered model name -> Signoff model name (JSON), e.g. {"Churn Model": '
        '"churn"}; unlisted names are lowercased with other characters as "-"')
    metrics: dict[str, str] = Field(
        default_factory=dict, max_length=256,
        description='MLflow metric name -> Signoff metric name (JSON), e.g. {"val_auc": "auc"}; when '
        "set, only these metrics are submitted; unset: every metric of the run as it is named")


class VersionNotFound(LookupError):
    """The registry has no such model version (or alias); the message says which."""


@dataclass(frozen=True)
class Resolved:
    """A version read from MLflow and the submission built from it."""

    facts: VersionFacts
    submission: Submission


def mlflow_client(settings: MlflowSourceSettings) -> MlflowClient:
    from mlflow import MlflowClient  # imported when MLflow is used, not by every command

    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def tracking_uri(settings: MlflowSourceSettings) -> str:
    """The registry's URI as MLflow resolves it (the variable, else MLflow's default)."""
    if settings.tracking_uri:
        return settings.tracking_uri
    import mlflow

    return str(mlflow.get_tracking_uri())


def read_version(client: MlflowClient, ref: Reference) -> VersionFacts:
    """What MLflow says about `ref`: the version, its run, its download URI. Blocking (HTTP)."""
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version(ref.name, ref.version) if ref.version else \
            client.get_model_version_by_alias(ref.name, ref.alias or "")
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise VersionNotFound(f"MLflow has no {ref} ({exc.error_code}); check the name, and the "
                                  "version or alias, in the registry") from None
        raise
    download_uri = str(client.get_model_version_download_uri(version.name, version.version))
    tags: dict[str, str] = {}
    run_metrics: dict[str, float] = {}
    digests: tuple[str, ...] = ()
    run_user = None
    if version.run_id:
        run = client.get_run(version.run_id)
        tags, run_metrics, run_user = dict(run.data.tags), dict(run.data.metrics), run.info.user_id
        inputs: Any = run.inputs
        digests = tuple(str(d.dataset.digest) for d in (inputs.dataset_inputs if inputs else []) if d.dataset.digest)
    return VersionFacts(name=version.name, version=str(version.version), run_id=version.run_id or None,
                        download_uri=download_uri, user=user_of(version.user_id, tags, run_user),
                        run_metrics=run_metrics, run_tags=tags, dataset_digests=digests)


def readable(uri: str) -> str:
    """`uri` if Signoff's sources can read it in place; ArtifactError naming the fix otherwise."""
    scheme = urlparse(uri).scheme
    if scheme not in READABLE:
        raise ArtifactError(f"the model version's files are at {uri[:300]!r}, which Signoff cannot read "
                            "(mlflow-artifacts:/ is MLflow's proxy): run the MLflow server with an s3:// "
                            "artifact root and --no-serve-artifacts, so versions name their S3 location")
    return uri


def own_location(uri: str, workdir: Path) -> ArtifactSource:
    """A source that reads only the folder holding `uri`: what `signoff submit --mlflow` digests
    with (the person chose the version; the services apply their own allow-lists to it)."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return ArtifactSource(roots=(Path(unquote(parsed.path)).parent,), workdir=workdir)
    parent = posixpath.dirname(parsed.path.strip("/"))
    return ArtifactSource(roots=(), s3_prefixes=(f"s3://{parsed.netloc}/{parent}/" if parent
                                                 else f"s3://{parsed.netloc}/",), workdir=workdir)


async def resolve(ref: Reference, client: MlflowClient, settings: MlflowSourceSettings,
                  source: ArtifactSource | None = None) -> Resolved:
    """Read `ref` and its run, digest its files (through `source`, else `own_location`) and build
    the Submission. VersionNotFound, ArtifactError, or MappingError (also when a field the contract
    requires is missing, e.g. no git commit tag: the message names the field) otherwise."""
    facts = await asyncio.to_thread(read_version, client, ref)
    uri = readable(facts.download_uri)
    with tempfile.TemporaryDirectory(prefix="signoff-mlflow-") as workdir:
        digested = await (source or own_location(uri, Path(workdir))).digest(uri)
    data = submission_data(facts, digested.sha256, names=settings.model_names,
                           metric_names=settings.metrics, data_version_tag=settings.data_version_tag)
    try:
        return Resolved(facts, Submission.model_validate(data))
    except ValidationError as exc:
        raise MappingError(f"{ref} cannot be submitted: {describe(exc)}{_hint(exc)}") from None


def _hint(exc: ValidationError) -> str:
    """Where a missing lineage field comes from in MLflow."""
    missing = {".".join(map(str, e["loc"])) for e in exc.errors() if e["type"] == "missing"}
    hints = {"candidate.code_commit": "the run's mlflow.source.git.commit tag (MLflow sets it for a run "
             "started from a git checkout)",
             "candidate.data_version": "the run's data version tag (SIGNOFF_MLFLOW_DATA_VERSION_TAG) or a "
             "dataset logged with mlflow.log_input"}
    found = [f"{field} comes from {hint}" for field, hint in hints.items() if field in missing]
    return f" ({'; '.join(found)})" if found else ""


__all__ = ["MappingError", "MlflowSourceSettings", "Resolved", "VersionNotFound", "mlflow_client",
           "own_location", "read_version", "readable", "resolve", "tracking_uri"]
