"""Settings common to every service, read from the environment (nothing else reads os.environ)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Base of each service's settings class; subclasses set their own `env_prefix`."""

    # populate_by_name: tests and embedders build settings from field names, not variable names.
    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS"),
        description="host:port[,host:port] of the Kafka brokers",
    )
    topic_partitions: int = Field(
        default=3, ge=1, validation_alias=AliasChoices("SIGNOFF_TOPIC_PARTITIONS"),
        description="Partitions of each topic when Signoff creates it",
    )
    workflows: Path = Field(
        default=Path("workflows"), validation_alias=AliasChoices("SIGNOFF_WORKFLOWS"),
        description="Folder of approval workflow files (*.yaml) and groups.yaml",
    )
    consumer_group_prefix: str = Field(
        default="signoff", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        validation_alias=AliasChoices("SIGNOFF_CONSUMER_GROUP_PREFIX"),
        description="Consumer groups are named <prefix>-<service>.<topic>; a test run sharing a "
        "cluster uses its own prefix",
    )
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("SIGNOFF_LOG_LEVEL"))
    max_attempts: int = Field(
        default=5, ge=1, validation_alias=AliasChoices("SIGNOFF_MAX_ATTEMPTS"),
        description="Tries of one event that fails on an unexpected error before it is dead-lettered",
    )


class ArtifactSourceSettings(ServiceSettings):
    """Where a service may read artifacts from, and how much of them (`shared.sources.ArtifactSource`).
    The validator and the deployer each read these under their own prefix."""

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
    fetch_timeout: float = Field(default=600.0, gt=0, description="Seconds allowed for one download")
