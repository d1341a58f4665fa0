"""The bridge's settings: MLFLOW_BRIDGE_* variables (Kafka's are KAFKA_*, MLflow's MLFLOW_*)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ArtifactSourceSettings


class MlflowBridgeSettings(ArtifactSourceSettings):
    """Where MLflow calls the bridge, how it proves it is MLflow, how often to poll, and where the
    bridge may read model files from (MLFLOW_BRIDGE_ARTIFACT_S3_PREFIXES, ..._ARTIFACT_ROOTS: the
    same allow-lists as the validator's). Its Kafka principal is a pipeline's, and it signs with
    that pipeline's key (MLFLOW_BRIDGE_SIGNING_KEY_FILE)."""

    model_config = SettingsConfigDict(env_prefix="MLFLOW_BRIDGE_", extra="ignore", frozen=True,
                                      populate_by_name=True)

    mode: Literal["webhook", "poll"] = Field(
        default="webhook", description="webhook: MLflow calls the bridge (it registers its webhook at "
        "start) and the registry is also polled every poll_seconds to catch up; poll: polling only, for an "
        "MLflow that cannot reach the bridge or has no webhooks")
    public_url: str | None = Field(
        default=None, pattern=r"^https?://[^\s]+/mlflow/webhook$", max_length=2000,
        description="The URL MLflow calls, ending in /mlflow/webhook (e.g. "
        "http://mlflow-bridge:8090/mlflow/webhook); required in webhook mode")
    webhook_secret: SecretStr | None = Field(
        default=None, min_length=32,
        description="Shared secret of the webhook's HMAC signature (at least 32 characters); required in "
        "webhook mode; the bridge gives it to MLflow when it registers the webhook")
    webhook_name: str = Field(default="signoff-bridge", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
                              description="The name the bridge's webhook has in MLflow (found by it at start)")
    max_age_seconds: float = Field(default=300.0, ge=10, le=3600,
                                   description="A delivery signed longer ago than this (or as far ahead) is refused")
    poll_seconds: float = Field(default=300.0, ge=1, le=86_400,
                                description="How often the registry is polled for versions not yet submitted")
    retry_attempts: int = Field(
        default=5, ge=1, le=1000,
        description="A version that keeps failing in a way that may pass (its files not digested in time, S3 "
        "or MLflow unreachable; Kafka is not counted) is tried once a poll, and refused for good (logged) once "
        "it failed this often and over at least retry_seconds")
    retry_seconds: float = Field(
        default=3600.0, ge=0, le=30 * 86_400,
        description="The least time a failing version is tried again for before it is refused for good")
    state_db: Path = Field(default=Path(".data/state/mlflow-bridge/bridge.db"),
                           description="Delivery ids seen, versions handled, the poll cursor (SQLite)")
    download_dir: Path = Field(default=Path(".data/downloads/mlflow-bridge"),
                               description="Scratch folder of an http(s) model read (s3:// and file:// are not copied)")
    http_host: str = Field(default="127.0.0.1", description="Address the webhook endpoint listens on")
    http_port: int = Field(default=8090, ge=1, le=65_535, description="Port of the webhook endpoint")

    @model_validator(mode="after")
    def _webhook_is_complete(self) -> MlflowBridgeSettings:
        if self.mode == "webhook" and (self.public_url is None or self.webhook_secret is None):
            raise ValueError("webhook mode needs MLFLOW_BRIDGE_PUBLIC_URL (where MLflow calls the bridge) and "
                             "MLFLOW_BRIDGE_WEBHOOK_SECRET (at least 32 characters); or set "
                             "MLFLOW_BRIDGE_MODE=poll")
        return self
