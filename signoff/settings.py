from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ClientSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIGNOFF_", extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS"))
    topic_partitions: int = Field(default=3, ge=1)
    review_url: str = Field(default="http://127.0.0.1:8081", description="Base URL of the review-notifier")
    api_token: SecretStr | None = Field(default=None, description="Bearer token of the review API")
