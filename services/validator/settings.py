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
        description="Folders artifacts may be read from (JSON list); anything else is refused",
    )
