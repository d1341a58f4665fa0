from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ArtifactSourceSettings


class ValidatorSettings(ArtifactSourceSettings):
    """Thresholds come from the `checks` step of the matching workflow (SIGNOFF_WORKFLOWS)."""

    model_config = SettingsConfigDict(env_prefix="VALIDATOR_", extra="ignore", frozen=True, populate_by_name=True)

    max_document_bytes: int = Field(default=256 * 2**20, gt=0,
                                    description="Largest model card or evaluation file read (bytes)")
    download_dir: Path = Field(default=Path(".data/validator/downloads"),
                               description="Where http(s) artifacts are downloaded while checked")

    state_db: Path = Field(default=Path(".data/validator/state.db"),
                           description="SQLite file: snapshots of what the validator keeps from topics (production), "
                           "so a start reads only what was written since (SIGNOFF_DATABASE_URL instead, when set)")

    http_host: str = Field(default="127.0.0.1", description="Address /healthz, /readyz and /metrics listen on")
    http_port: int = Field(default=8083, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics")
