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
import json
import posixpath
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import unquote, urlparse

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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
    model_names: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, max_length=10_000,
        description='MLflow registered model name -> Signoff model name (JSON), e.g. {"Churn Model": '
        '"churn"}: the MLflow models whose versions are submitted, and as which Signoff model')
    strict_names: bool = Field(
        default=True,
        description="On (the default): only the MLflow models listed in SIGNOFF_MLFLOW_MODEL_NAMES are "
        "submitted, since whoever may register a model in MLflow must not choose the Signoff model it is "
        "submitted as (\"Churn Model\" or a look-alike \"churn\u2010model\" as churn-model). Off: unlisted "
        "ASCII names are converted (lowercased, other characters as '-'), except one that would become a "
        "listed name's target; names with other characters are refused")

    metrics: dict[str, str] = Field(
        default_factory=dict, max_length=256,
        description='MLflow metric name -> Signoff metric name (JSON), e.g. {"val_auc": "auc"}; when '
        "set, only these metrics are submitted; unset: every metric of the run as it is named")

    @field_validator("model_names", mode="before")
    @classmethod
    def _names_json(cls, value: object) -> object:
        """JSON from the environment; empty (compose's `${VAR:-}`) means no model is listed yet."""
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value


class VersionNotFound(LookupError):
    """The registry has no such model version (or alias), or its registration failed; the message
    says which."""


class VersionPending(VersionNotFound):
    """The version is still being registered (PENDING_REGISTRATION): its files may be incomplete,
    so it is read once MLflow says READY (the bridge tries again; the CLI says to)."""


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
                        status=str(getattr(version, "status", None) or "READY"),
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
    requires is missing, e.g. no git commit tag: the message names the field) otherwise. Everything
    but the digest is checked before a byte is read: a version that cannot be submitted (an unlisted
    name, no lineage, not READY) costs no download."""
    facts = await asyncio.to_thread(read_version, client, ref)
    if facts.status == "PENDING_REGISTRATION":
        raise VersionPending(f"{ref} is still being registered in MLflow (PENDING_REGISTRATION): try again once "
                             "it is READY")
    if facts.status != "READY":
        raise VersionNotFound(f"{ref} is {facts.status[:40]} in MLflow, not READY: its registration failed, "
                              "so there is nothing to submit")
    uri = readable(facts.download_uri)
    _submission(ref, facts, "0" * 64, settings)  # the digest is all that is left to know
    with tempfile.TemporaryDirectory(prefix="signoff-mlflow-") as workdir:
        digested = await (source or own_location(uri, Path(workdir))).digest(uri)
    return Resolved(facts, _submission(ref, facts, digested.sha256, settings))


def _submission(ref: Reference, facts: VersionFacts, sha256: str, settings: MlflowSourceSettings) -> Submission:
    data = submission_data(facts, sha256, names=settings.model_names, metric_names=settings.metrics,
                           data_version_tag=settings.data_version_tag, strict_names=settings.strict_names)
    try:
        return Submission.model_validate(data)
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


__all__ = ["MappingError", "MlflowSourceSettings", "Resolved", "VersionNotFound", "VersionPending",
           "mlflow_client", "own_location", "read_version", "readable", "resolve", "tracking_uri"]
