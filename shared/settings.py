"""Settings common to every service, read from the environment (nothing else reads os.environ)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.kafka import KafkaSettings
from shared.observability.tracing import TracingSettings
from shared.topic_config import DAY_MS, FOREVER, DeadLetterRetention, RecordRetention, TopicLayout


class TopicSettings(BaseSettings):
    """How Signoff's topics are made (SIGNOFF_TOPIC_* and SIGNOFF_*_RETENTION), for the services'
    start-up check and `signoff topics`; `topic_layout` is the pure shared.topic_config.TopicLayout."""

    topic_partitions: int = Field(
        default=3, ge=1, le=10_000, validation_alias=AliasChoices("SIGNOFF_TOPIC_PARTITIONS", "topic_partitions"),
        description="Partitions of each topic when Signoff creates it (never changed afterwards)",
    )
    topic_replication_factor: int = Field(
        default=1, ge=1, le=32,
        validation_alias=AliasChoices("SIGNOFF_TOPIC_REPLICATION_FACTOR", "topic_replication_factor"),
        description="Replicas of each topic's partitions: 1 on a laptop, 3 on a cluster",
    )
    topic_min_insync_replicas: int = Field(
        default=1, ge=1, le=32,
        validation_alias=AliasChoices("SIGNOFF_TOPIC_MIN_INSYNC_REPLICAS", "topic_min_insync_replicas"),
        description="Replicas that must have a write before it is acknowledged (at most the replication "
        "factor): 1 on a laptop, 2 on a cluster",
    )
    record_retention: RecordRetention = Field(
        default=FOREVER, validation_alias=AliasChoices("SIGNOFF_RECORD_RETENTION", "record_retention"),
        description="How long the record topics keep events: 'forever', or a duration of at least 365d",
    )
    dead_letter_retention: DeadLetterRetention = Field(
        default=30 * DAY_MS, validation_alias=AliasChoices("SIGNOFF_DEAD_LETTER_RETENTION", "dead_letter_retention"),
        description="How long the dead-letter topics keep letters: a duration of at least 1d, or 'forever'",
    )

    @model_validator(mode="after")
    def _layout_is_valid(self) -> TopicSettings:
        self.topic_layout  # noqa: B018 - fails at start, naming the variables, rather than at first use
        return self

    @property
    def topic_layout(self) -> TopicLayout:
        return TopicLayout(partitions=self.topic_partitions, replication_factor=self.topic_replication_factor,
                           min_insync_replicas=self.topic_min_insync_replicas,
                           record_retention_ms=self.record_retention,
                           dead_letter_retention_ms=self.dead_letter_retention)


class ServiceSettings(KafkaSettings, TopicSettings, TracingSettings):
    """Base of each service's settings class; subclasses set their own `env_prefix`. The Kafka
    fields (KAFKA_* variables, `settings.kafka`) come from shared.kafka.KafkaSettings: each
    service connects as its own principal; the topic fields from TopicSettings; OTEL_* from TracingSettings."""

    # populate_by_name: tests and embedders build settings from field names, not variable names.
    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True,
                                      hide_input_in_errors=True)  # a bad value may be a secret (a URL's password)

    workflows: Path = Field(
        default=Path("workflows"), validation_alias=AliasChoices("SIGNOFF_WORKFLOWS"),
        description="Folder of approval workflow files (*.yaml) and groups.yaml",
    )
    workflows_check_seconds: float = Field(
        default=30.0, ge=0, le=86_400, validation_alias=AliasChoices("SIGNOFF_WORKFLOWS_CHECK_SECONDS"),
        description="How often a service looks whether its workflow folder changed since it started "
        "(it logs workflows_changed_restart_needed; changes apply at restart); 0: never",
    )
    consumer_group_prefix: str = Field(
        default="signoff", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        validation_alias=AliasChoices("SIGNOFF_CONSUMER_GROUP_PREFIX"),
        description="Consumer groups are named <prefix>-<service>.<topic>; a test run sharing a "
        "cluster uses its own prefix",
    )
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("SIGNOFF_LOG_LEVEL"))
    database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SIGNOFF_DATABASE_URL", "database_url"),
        description="PostgreSQL holding the state every replica shares (postgresql://user@host:port/db, a "
        "password in a libpq passfile=... rather than in the URL; `deploy/postgres.sh url`); unset: each "
        "service's SQLite file, for one replica on one machine",
    )
    max_attempts: int = Field(
        default=5, ge=1, validation_alias=AliasChoices("SIGNOFF_MAX_ATTEMPTS"),
        description="Tries of one event that fails on an unexpected error before it is dead-lettered",
    )

    @field_validator("database_url", mode="before")
    @classmethod
    def _database_url_is_postgresql(cls, value: object) -> object:
        """Refused at start, naming the variable (the URL itself is not echoed: it may hold a password)."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text in (None, ""):
            return None
        if not isinstance(text, str) or not text.startswith(("postgresql://", "postgres://")):
            raise ValueError("SIGNOFF_DATABASE_URL must be a postgresql://user@host:port/db URL "
                             "(e.g. the output of `deploy/postgres.sh url`), or unset for SQLite")
        return text

    database_url_file: Path | None = Field(
        default=None, validation_alias=AliasChoices("SIGNOFF_DATABASE_URL_FILE", "database_url_file"),
        description="A file holding SIGNOFF_DATABASE_URL (a Docker secret: the password may be in the URL, "
        "kept out of the environment); instead of SIGNOFF_DATABASE_URL, never with it",
    )

    @model_validator(mode="after")
    def _database_url_from_file(self) -> ServiceSettings:
        """SIGNOFF_DATABASE_URL_FILE read at start: its first line, checked like the variable. The
        model is frozen, so the field is set the one way pydantic allows after validation."""
        if self.database_url_file is None:
            return self
        if self.database_url is not None:
            raise ValueError("set SIGNOFF_DATABASE_URL or SIGNOFF_DATABASE_URL_FILE, not both")
        url = _first_line_of(self.database_url_file, "SIGNOFF_DATABASE_URL_FILE")
        object.__setattr__(self, "database_url", SecretStr(str(self._database_url_is_postgresql(url))))
        return self
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
    artifact_s3_prefixes: tuple[str, ...] = Field(
        default=(),
        description='S3 buckets and prefixes artifacts may be read from (JSON list), matched by whole key '
        'segments, e.g. ["s3://models/teams/"]; none by default. Credentials come from the standard AWS '
        "chain (AWS_* variables, profile, role), never from Signoff's settings",
    )
    s3_endpoint_url: str | None = Field(
        default=None, pattern=r"^https?://[^\s@/?#]+/?$",
        description="S3 API endpoint for MinIO, Ceph, R2 or a test server (http(s)://host:port); unset: "
        "AWS, or AWS_ENDPOINT_URL_S3 as the AWS chain reads it",
    )
    s3_region: str | None = Field(default=None, pattern=r"^[a-z0-9-]{1,32}$",
                                  description="S3 region; unset: the AWS chain's (AWS_DEFAULT_REGION, profile)")
    s3_connect_timeout: float = Field(default=10.0, gt=0, le=300, description="Seconds to connect to S3")
    s3_read_timeout: float = Field(default=60.0, gt=0, le=3600,
                                   description="Seconds S3 may stay silent within one request")
    s3_max_attempts: int = Field(default=3, ge=1, le=10,
                                 description="Tries of one S3 request on a network error or throttling")
    max_artifact_files: int = Field(default=10_000, ge=1, le=100_000,
                                    description="Most files a folder artifact (file:// folder, s3:// prefix) may hold")

    @field_validator("artifact_s3_prefixes")
    @classmethod
    def _s3_prefixes_are_valid(cls, prefixes: tuple[str, ...]) -> tuple[str, ...]:
        """Refused at start, naming the prefix, rather than at the first fetch."""
        from shared.sources.policy import parse_s3

        for prefix in prefixes:
            try:
                parse_s3(prefix)
            except ValueError as exc:
                raise ValueError(f"{prefix!r} is not an s3://bucket/prefix/ location: {exc}") from None
        return prefixes
    max_artifact_bytes: int = Field(default=20 * 2**30, gt=0, description="Largest artifact read (bytes)")
    fetch_timeout: float = Field(default=600.0, gt=0, description="Seconds allowed for one download")
    artifact_allow_hard_links: bool = Field(
        default=False,
        description="Read file:// artifacts that have more than one hard link; refused by default, since "
        "a hard link inside a root can name a file outside it (docs/security.md)",
    )


MAX_SECRET_FILE_BYTES = 8192


def _first_line_of(path: Path, variable: str) -> str:
    """A secret's first line from a file (a Docker secret), bounded in size; the error names the
    variable and the file, never the content."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"{variable}: cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise ValueError(f"{variable}: {path} is larger than {MAX_SECRET_FILE_BYTES} bytes")
    try:
        lines = raw.decode().splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{variable}: {path} is not UTF-8 text") from None
    text = lines[0].strip() if lines else ""
    if not text:
        raise ValueError(f"{variable}: {path} is empty")
    return text
