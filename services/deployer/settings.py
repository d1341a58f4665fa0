from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class DeployerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DEPLOYER_", extra="ignore", frozen=True)

    model_store: Path = Field(default=Path(".data/model-store"),
                              description="Root of the model store: <root>/<model>/<version>/")
    artifact_roots: tuple[Path, ...] = Field(
        default=(Path(".data/artifacts"),),
        description="Folders artifacts may be read from (JSON list); anything else is refused",
    )
    state_db: Path = Field(default=Path(".data/deployer/state.db"),
                           description="SQLite file holding each submission's lifecycle")
