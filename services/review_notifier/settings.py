"""REVIEW_NOTIFIER_* from the environment: the core's fields here, each channel's fields from its
own `Settings` (channels/), so a new channel brings its configuration with it. Secrets are
SecretStr: they never appear in a repr or a log line. An empty value counts as unset."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.review_notifier.channels import CHANNELS
from services.review_notifier.channels.base import unset_when_empty
from shared.settings import ServiceSettings


# The bases are computed from CHANNELS at import time, which mypy cannot follow (hence the ignore).
class ReviewNotifierSettings(ServiceSettings, *(channel.Settings for channel in CHANNELS)):  # type: ignore[misc]
    model_config = SettingsConfigDict(env_prefix="REVIEW_NOTIFIER_", extra="ignore", frozen=True, populate_by_name=True)

    http_host: str = Field(default="127.0.0.1", description="Address the HTTP API listens on")
    http_port: int = Field(default=8081, ge=0, le=65535, description="Port of the HTTP API")
    public_url: str = Field(default="http://127.0.0.1:8081",
                            description="Base URL reviewers reach the HTTP API at (email links)")
    api_token: SecretStr | None = Field(
        default=None,
        description="Bearer token required by the decision API; the API refuses all decisions when unset",
    )
    state_db: Path = Field(default=Path(".data/review-notifier/reviews.db"),
                           description="SQLite file holding reviews, votes, receipts and what was sent")
    tick_seconds: float = Field(default=5.0, gt=0, le=300,
                                description="Longest sleep of the deadline loop (it wakes earlier when due)")

    # A validator, not a field: the pydantic plugin recognizes only field_validator(...)(f) written out.
    unset_core = unset_when_empty("api_token")  # type: ignore[pydantic-field]
