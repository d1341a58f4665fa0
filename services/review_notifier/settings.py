from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ReviewNotifierSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REVIEW_NOTIFIER_", extra="ignore", frozen=True)

    http_host: str = Field(default="127.0.0.1", description="Address the HTTP API listens on")
    http_port: int = Field(default=8081, ge=0, le=65535, description="Port of the HTTP API")
    api_token: SecretStr | None = Field(
        default=None,
        description="Bearer token required by the decision API; the API refuses all decisions when unset",
    )
    state_db: Path = Field(default=Path(".data/review-notifier/reviews.db"),
                           description="SQLite file holding pending reviews and votes")
