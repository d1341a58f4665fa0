"""The MLflow Model Registry as the mlflow target uses it: blocking calls of mlflow-skinny's
MlflowClient, each failure turned into a TargetError (transient for 5xx, 429 and connection errors,
which `base.retrying` tries again). Run them in a thread (`asyncio.to_thread`).

The client is made for each call: MlflowClient keeps per-thread HTTP sessions and reads MLflow's own
variables (MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_USERNAME/_PASSWORD, MLFLOW_S3_ENDPOINT_URL, the
AWS chain for writing to an s3:// artifact root) each time, so a rotated token is used at once.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from services.deployer.targets.base import TargetError

if TYPE_CHECKING:
    from mlflow import MlflowClient

MAX_TAG_CHARS = 5000  # MLflow's limit on a model version tag's value


@dataclass(frozen=True)
class VersionInfo:
    """A registered model version: where its files are (a storage URI Signoff's sources read:
    s3:// or file://), and the run it came from (None: registered without a run)."""

    name: str
    version: str
    download_uri: str
    run_id: str | None
    run_artifact_uri: str | None


class Registry:
    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri

    def _client(self) -> MlflowClient:
        from mlflow import MlflowClient  # imported by the deployer only when a workflow uses MLflow

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def version(self, name: str, version: str) -> VersionInfo:
        client = self._client()
        with failures(f"MLflow model {name!r} version {version}"):
            found = client.get_model_version(name, version)
            uri = str(client.get_model_version_download_uri(name, version))
            run_id = found.run_id or None
            artifacts = str(client.get_run(run_id).info.artifact_uri) if run_id else None
        if uri.startswith("runs:/") and artifacts:  # registered from runs:/<id>/<path>: where that lies
            _, _, path = uri[len("runs:/"):].partition("/")
            uri = f"{artifacts.rstrip('/')}/{path}"
        return VersionInfo(name, str(found.version), uri, run_id, artifacts)

    def aliases(self, name: str) -> dict[str, str]:
        """The registered model's aliases: alias -> version."""
        with failures(f"MLflow model {name!r}"):
            return {k: str(v) for k, v in self._client().get_registered_model(name).aliases.items()}

    def set_alias(self, name: str, alias: str, version: str) -> None:
        with failures(f"moving alias {alias!r} of MLflow model {name!r} to version {version}"):
            self._client().set_registered_model_alias(name, alias, version)

    def delete_alias(self, name: str, alias: str) -> None:
        with failures(f"deleting alias {alias!r} of MLflow model {name!r}"):
            self._client().delete_registered_model_alias(name, alias)  # absent already: no error

    def set_tags(self, name: str, version: str, tags: dict[str, str]) -> None:
        client = self._client()
        with failures(f"tagging MLflow model {name!r} version {version}"):
            for key, value in tags.items():
                client.set_model_version_tag(name, version, key, value[:MAX_TAG_CHARS])

    def log_file(self, run_id: str, folder: str, filename: str, content: bytes) -> None:
        """`content` as the run's artifact `<folder>/<filename>` (written again on a repeat: the
        same bytes for the same release)."""
        with tempfile.TemporaryDirectory(prefix="signoff-mlflow-") as tmp:
            path = Path(tmp) / filename
            path.write_bytes(content)
            with failures(f"logging {folder}/{filename} to MLflow run {run_id}"):
                self._client().log_artifact(run_id, str(path), folder)


@contextmanager
def failures(what: str) -> Iterator[None]:
    """Turn what MlflowClient raises into TargetError, saying what was being done."""
    try:
        yield
    except TargetError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure of the client, classified below
        raise as_target_error(what, exc) from exc


def as_target_error(what: str, exc: Exception) -> TargetError:
    """`exc` as a TargetError: transient for a server error, throttling or a network failure; a
    missing model or version, a refused credential or a bad request fail the step at once."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        status = exc.get_http_status_code()
        code = getattr(exc, "error_code", "")
        if code == "RESOURCE_DOES_NOT_EXIST" or status == 404:
            return TargetError(f"{what}: MLflow has no such model or version ({exc.message[:300]}); register "
                               "it, or correct the workflow's registered_model")
        transient = status >= 500 or status == 429
        return TargetError(f"{what}: MLflow answered {code or status}: {exc.message[:300]}", transient=transient)
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)) or _is_network(exc):
        return TargetError(f"{what}: {type(exc).__name__}: {str(exc)[:300]}", transient=True)
    return TargetError(f"{what}: {type(exc).__name__}: {str(exc)[:300]}")


def _is_network(exc: Exception) -> bool:
    try:
        import requests
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - both come with mlflow-skinny and boto3
        return False
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or status == 429
    return isinstance(exc, (requests.ConnectionError, requests.Timeout, BotoCoreError))
