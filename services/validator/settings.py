from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ValidatorSettings(ServiceSettings):
    """Thresholds come from the `checks` step of the matching workflow (SIGNOFF_WORKFLOWS)."""

    model_config = SettingsConfigDict(env_prefix="VALIDATOR_", extra="ignore", frozen=True)

    artifact_roots: tuple[Path, ...] = Field(
        default=(Path(".data/artifacts"),),
        description="Folders file:// artifacts may be read from (JSON list); anything else is refused",
    )
    artifact_url_prefixes: tuple[str, ...] = Field(
        default=(),
        description='http(s) URL prefixes artifacts may be fetched from (JSON list), '
        'e.g. ["https://models.internal/registry/"]; none by default',
    )
    max_artifact_bytes: int = Field(default=20 * 2**30, gt=0, description="Largest artifact read (bytes)")
    max_document_bytes: int = Field(default=256 * 2**20, gt=0,
                                    description="Largest model card or evaluation file read (bytes)")
    fetch_timeout: float = Field(default=600.0, gt=0, description="Seconds allowed for one download")
    download_dir: Path = Field(default=Path(".data/validator/downloads"),
                               description="Where http(s) artifacts are downloaded while checked")
