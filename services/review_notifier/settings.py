from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

_OPTIONAL = ("api_token", "slack_signing_secret", "slack_bot_token", "slack_webhook_url", "slack_channel",
             "smtp_host", "smtp_username", "smtp_password", "token_key")


class ReviewNotifierSettings(ServiceSettings):
    """Secrets are SecretStr: they never appear in a repr or a log line. An empty value is unset."""

    model_config = SettingsConfigDict(env_prefix="REVIEW_NOTIFIER_", extra="ignore", frozen=True)

    http_host: str = Field(default="127.0.0.1", description="Address the HTTP API listens on")
    http_port: int = Field(default=8081, ge=0, le=65535, description="Port of the HTTP API")
    public_url: str = Field(default="http://127.0.0.1:8081",
                            description="Base URL reviewers reach the HTTP API at (email links)")
    api_token: SecretStr | None = Field(
        default=None,
        description="Bearer token required by the decision API; the API refuses all decisions when unset",
    )
    state_db: Path = Field(default=Path(".data/review-notifier/reviews.db"),
                           description="SQLite file holding reviews, votes, used tokens and Slack messages")
    tick_seconds: float = Field(default=5.0, gt=0, le=300,
                                description="Longest sleep of the deadline loop (it wakes earlier when due)")

    # Slack: the Web API with a bot token (messages are updated in place), or an incoming webhook.
    slack_signing_secret: SecretStr | None = Field(
        default=None, description="Verifies POST /slack/actions; without it Slack clicks are refused (503)")
    slack_bot_token: SecretStr | None = Field(default=None, description="xoxb- token for chat.postMessage/update")
    slack_webhook_url: SecretStr | None = Field(default=None, description="Incoming webhook, when no bot token")
    slack_api_url: str = Field(default="https://slack.com/api", description="Base URL of Slack's Web API")
    slack_channel: str | None = Field(default=None, description="Channel id reviews are posted to (bot token)")
    slack_users: dict[str, str] = Field(default_factory=dict,
                                        description="Slack user id -> approver identity, JSON")

    # Email over SMTP.
    smtp_host: str | None = Field(default=None, description="SMTP server; unset: no email")
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_starttls: bool = Field(default=False, description="Upgrade the connection with STARTTLS")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    mail_from: str = Field(default="signoff@localhost")
    approver_emails: dict[str, str] = Field(default_factory=dict,
                                            description="approver identity -> email address, JSON")
    token_key: SecretStr | None = Field(default=None, description="HMAC key of email-link tokens")

    @field_validator(*_OPTIONAL, mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _consistent(self) -> ReviewNotifierSettings:
        if self.smtp_host and not self.token_key:
            raise ValueError("REVIEW_NOTIFIER_TOKEN_KEY is required when REVIEW_NOTIFIER_SMTP_HOST is set: "
                             "email links are signed with it")
        return self

    @property
    def email_enabled(self) -> bool:
        return self.smtp_host is not None and self.token_key is not None

    @property
    def slack_enabled(self) -> bool:
        """A bot token needs the channel to post to; a webhook posts to its own channel."""
        return (self.slack_bot_token is not None and self.slack_channel is not None) \
            or self.slack_webhook_url is not None
