from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.kafka import KafkaSettings
from shared.settings import TopicSettings


class ClientSettings(KafkaSettings, TopicSettings):
    """The CLI's settings. Kafka (KAFKA_* variables, shared.kafka.KafkaSettings): a pipeline
    submits and watches as its pipeline principal, an operator rolls back and revokes as an
    operator, `signoff topics create` and `signoff acl apply` run as the admin. The topic fields
    (SIGNOFF_TOPIC_*, SIGNOFF_*_RETENTION) come from shared.settings.TopicSettings."""

    model_config = SettingsConfigDict(env_prefix="SIGNOFF_", extra="ignore", frozen=True)

    review_url: str = Field(default="http://127.0.0.1:8081", description="Base URL of the review-notifier")
    api_token: SecretStr | None = Field(default=None, description="Bearer token of the review API")
    review_timeout: float = Field(default=10.0, gt=0, le=300, description="Seconds to wait for the review API's "
                                  "answer; a vote sent but unanswered by then is reported unconfirmed")
    # Signed events (shared.signing): SIGNOFF_SIGNING_KEY_FILE is the key this person or pipeline
    # signs with (an operator's for rollback and revoke, a pipeline's for submit), and
    # SIGNOFF_TRUSTED_KEYS the trust file (who the key belongs to; what watch and history believe).
    signing_key_file: Path | None = Field(default=None, description="Your Ed25519 private key (mode 600)")
    signing_key: SecretStr | None = Field(default=None, description="The same key's PEM text, instead of a file")
    trusted_keys: Path | None = Field(default=None, description="Trust file of the public keys (YAML or JSON)")
    # `signoff audit` (shared.audit): the index it keeps up to date from the topics, beside the token file.
    # One index per cluster by default: `make up` (9092) and `make demo` (9192) from one checkout
    # must not mix their histories in one file.
    audit_index: Path = Field(default_factory=lambda data: default_index(data.get("kafka_bootstrap_servers")),
                              description="The audit index (SQLite), built and caught up by `signoff audit`, "
                              "`history`, `revoke` and `status` (default: .data/signoff/audit-<broker>.sqlite)")


def default_index(bootstrap_servers: object) -> Path:
    """`.data/signoff/audit-<first broker's host and port>.sqlite` (characters other than letters,
    digits, '.' and '-' as '_')."""
    first = str(bootstrap_servers or "local").split(",")[0].strip() or "local"
    return Path(".data/signoff") / f"audit-{re.sub(r'[^A-Za-z0-9.-]', '_', first)[:100]}.sqlite"
