from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import ArtifactSourceSettings


class DeployerSettings(ArtifactSourceSettings):
    model_config = SettingsConfigDict(env_prefix="DEPLOYER_", extra="ignore", frozen=True, populate_by_name=True)

    model_store: Path = Field(default=Path(".data/model-store"),
                              description="Root of the model store: <root>/<model>/<version>/")
    download_dir: Path = Field(default=Path(".data/deployer/downloads"),
                               description="Where http(s) artifacts are downloaded while installed or verified")
    state_db: Path = Field(default=Path(".data/deployer/state.db"),
                           description="SQLite file holding each submission's lifecycle")
    webhook_secret_envs: tuple[str, ...] = Field(
        default=(),
        description="Names of the environment variables a workflow's webhook `secret_env` may name "
        "(JSON list); any other name is refused, so a workflow file cannot sign with an arbitrary "
        "variable of the deployer's environment",
    )
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, description="Per webhook request")
    webhook_allow_http_loopback: bool = Field(
        default=False, description="Development only: allow a workflow's webhook url to be http:// to a loopback "
        "address (a receiver on this machine); otherwise only https:// is called")
    s3_target_prefixes: tuple[str, ...] = Field(
        default=(),
        description='S3 buckets and prefixes the s3 target may deploy to (JSON list), matched by whole key '
        'segments, e.g. ["s3://serving/models/"]; none by default. Endpoint, region and timeouts: the '
        "DEPLOYER_S3_* settings; credentials: the standard AWS chain",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, min_length=1, max_length=2000,
        description="The MLflow tracking server the mlflow target moves aliases on (https://; MLflow's own "
        "variables, such as MLFLOW_TRACKING_TOKEN, authenticate); unset: no workflow may use target mlflow")
    mlflow_allow_http_loopback: bool = Field(
        default=False, description="Development only: allow DEPLOYER_MLFLOW_TRACKING_URI to be http:// to a "
        "loopback address; otherwise only https:// is called")
    drift_check_seconds: float = Field(
        default=30.0, ge=0, le=86_400, description="How often protected aliases (target mlflow) are compared "
        "with what the deployer put in production; 0: never")
    drift_files_check_seconds: float = Field(
        default=600.0, ge=0, le=604_800, description="How often the files of the version in production (target "
        "mlflow) are digested again and compared with the approved digest (each time a full read of the files; "
        "at most once per drift check); 0: never")
    retry_attempts: int = Field(default=5, ge=1, description="Tries of a target operation that fails transiently")
    retry_backoff_seconds: float = Field(default=0.5, ge=0, description="First wait between tries; doubles")
    retry_max_backoff_seconds: float = Field(default=8.0, ge=0, description="Cap of the wait between tries")
    schedule_poll_seconds: float = Field(default=0.5, gt=0,
                                         description="How often the canary scheduler looks for due stages")

    http_host: str = Field(default="127.0.0.1", description="Address /healthz, /readyz and /metrics listen on")
    http_port: int = Field(default=8085, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics")

    def secret(self, name: str) -> bytes:
        """The HMAC secret held by the environment variable `name`, read now (so a rotated secret
        is used without a restart). Raises KeyError with the reason when it is not allowed or unset."""
        if name not in self.webhook_secret_envs:
            raise KeyError(f"secret_env {name} is not listed in DEPLOYER_WEBHOOK_SECRET_ENVS")
        reader = create_model(  # a one-field settings class: pydantic-settings reads the variable
            "WebhookSecret", __base__=BaseSettings,
            value=(SecretStr | None, Field(default=None, validation_alias=AliasChoices(name))),
        )
        value = reader().value  # type: ignore[attr-defined]
        if value is None or not value.get_secret_value():
            raise KeyError(f"secret_env {name} is not set in the deployer's environment")
        return value.get_secret_value().encode()
