from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ValidatorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="VALIDATOR_", extra="ignore", frozen=True)

    artifact_roots: tuple[Path, ...] = Field(
        default=(Path(".data/artifacts"),),
        description="Folders artifacts may be read from (JSON list); anything else is refused",
    )
    min_metrics: dict[str, float] = Field(
        default_factory=lambda: {"accuracy": 0.8},
        description='Minimum value per metric, JSON: {"accuracy": 0.8}',
    )
    max_metrics: dict[str, float] = Field(
        default_factory=dict, description='Maximum value per metric, JSON: {"latency_ms": 50}'
    )
    required_lineage: tuple[str, ...] = Field(
        default=("data_version", "code_commit"),
        description="Lineage fields a submission must carry (data_version, code_commit, training_run_id)",
    )
