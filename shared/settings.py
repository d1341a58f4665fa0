"""Settings common to every service, read from the environment (nothing else reads os.environ)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.kafka import KafkaSettings


class ServiceSettings(KafkaSettings):
    """Base of each service's settings class; subclasses set their own `env_prefix`. The Kafka
    fields (KAFKA_* variables, `settings.kafka`) come from shared.kafka.KafkaSettings: each
    service connects as its own principal."""

    # populate_by_name: tests and embedders build settings from field names, not variable names.
    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

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
    # Signed events (shared.signing). The key is per service: <PREFIX>SIGNING_KEY_FILE, e.g.
    # DEPLOYER_SIGNING_KEY_FILE, so services sharing one environment never share a key.
    signing_key_file: Path | None = Field(
        default=None, description="This service's Ed25519 private key (PEM PKCS#8, mode 600), from "
        "`signoff keys generate`")
    signing_key: SecretStr | None = Field(
        default=None, description="The same key's PEM text, instead of a file")
    trusted_keys: Path | None = Field(
        default=None, validation_alias=AliasChoices("SIGNOFF_TRUSTED_KEYS", "trusted_keys"),
        description="Trust file (YAML or JSON): the public keys whose events are believed, and their roles")
    accept_unsigned_submissions: bool = Field(
        default=True, validation_alias=AliasChoices("SIGNOFF_ACCEPT_UNSIGNED_SUBMISSIONS",
                                                    "accept_unsigned_submissions"),
        description="Accept model.submitted without a pipeline signature (every other event must be signed)")


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
    artifact_allow_hard_links: bool = Field(
        default=False,
        description="Read file:// artifacts that have more than one hard link; refused by default, since "
        "a hard link inside a root can name a file outside it (docs/security.md)",
    )
