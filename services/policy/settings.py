from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class PolicySettings(ServiceSettings):
    """The rules themselves are workflow files (SIGNOFF_WORKFLOWS); this is where the policy keeps
    what it remembers."""

    model_config = SettingsConfigDict(env_prefix="POLICY_", extra="ignore", frozen=True, populate_by_name=True)

    state_db: Path = Field(default=Path(".data/policy/state.db"),
                           description="SQLite file: decisions made, rejected digests, production models")

    http_host: str = Field(default="127.0.0.1", description="Address /healthz, /readyz and /metrics listen on")
    http_port: int = Field(default=8084, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics")
