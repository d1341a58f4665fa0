"""REVIEW_NOTIFIER_* from the environment: the core's fields here, each channel's fields from its
own `Settings` (channels/), so a new channel brings its configuration with it. Secrets are
SecretStr: they never appear in a repr or a log line. An empty value counts as unset."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from services.review_notifier.channels import CHANNELS
from services.review_notifier.channels.base import unset_when_empty
from services.review_notifier.oidc import ALLOWED_ALGORITHMS
from shared.settings import ServiceSettings


# The bases are computed from CHANNELS at import time, which mypy cannot follow (hence the ignore).
class ReviewNotifierSettings(ServiceSettings, *(channel.Settings for channel in CHANNELS)):  # type: ignore[misc]
    model_config = SettingsConfigDict(env_prefix="REVIEW_NOTIFIER_", extra="ignore", frozen=True, populate_by_name=True)

    http_host: str = Field(default="127.0.0.1", description="Address the HTTP API listens on")
    http_port: int = Field(default=8081, ge=0, le=65535, description="Port of the HTTP API")
    public_url: str = Field(default="http://127.0.0.1:8081",
                            description="Base URL reviewers reach the HTTP API at (email links)")
    # Who may call the review API: people, each with their own credential (auth.py).
    known_users: tuple[str, ...] = Field(
        default=(), validation_alias=AliasChoices("known_users", "REVIEW_NOTIFIER_KNOWN_USERS", "SIGNOFF_KNOWN_USERS"),
        description="Known users besides those the workflows name (JSON list); no one else authenticates")
    tokens_file: Path | None = Field(
        default=Path(".data/signoff/tokens.json"),
        validation_alias=AliasChoices("tokens_file", "REVIEW_NOTIFIER_TOKENS_FILE", "SIGNOFF_TOKENS_FILE"),
        description="Per-person API tokens (hashed), written by `signoff token create`; empty: no API tokens")
    oidc_issuer: str | None = Field(default=None, description="OIDC issuer (`iss`); unset: no OIDC tokens")
    oidc_audience: str | None = Field(default=None, description="Audience (`aud`) OIDC tokens must be for")
    oidc_jwks_url: str | None = Field(default=None, description="The issuer's JWKS URL (https)")
    oidc_identity_claim: str = Field(default="preferred_username", min_length=1,
                                     description="Claim naming the person (a known user), e.g. email")
    oidc_roles_claim: str = Field(default="roles", min_length=1, description="Claim listing the person's roles")
    oidc_break_glass_role: str = Field(default="signoff-break-glass", min_length=1,
                                       description="Role (in the roles claim) that may break glass")
    oidc_algorithms: tuple[str, ...] = Field(default=("RS256", "ES256", "EdDSA"), min_length=1,
                                             description="Signature algorithms accepted (JSON list)")
    oidc_jwks_cache_seconds: float = Field(default=300.0, gt=0, le=86400, description="JWKS kept this long")
    oidc_jwks_min_refresh_seconds: float = Field(
        default=30.0, ge=0, le=3600, description="Least time between JWKS fetches for an unknown key id")
    state_db: Path = Field(default=Path(".data/review-notifier/reviews.db"),
                           description="SQLite file holding reviews, votes, receipts and what was sent")
    tick_seconds: float = Field(default=5.0, gt=0, le=300,
                                description="Longest sleep of the deadline loop (it wakes earlier when due)")

    # A validator, not a field: the pydantic plugin recognizes only field_validator(...)(f) written out.
    unset_core = unset_when_empty(  # type: ignore[pydantic-field]
        "tokens_file", "oidc_issuer", "oidc_audience", "oidc_jwks_url")

    @field_validator("oidc_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        refused = [a for a in value if a not in ALLOWED_ALGORITHMS]
        if refused:
            raise ValueError(f"{', '.join(refused)} not allowed; use some of {', '.join(ALLOWED_ALGORITHMS)} "
                             "(never none or HS*: a shared secret is not a person's credential)")
        return value

    @model_validator(mode="after")
    def _oidc_complete(self) -> ReviewNotifierSettings:
        if not self.oidc_issuer:
            return self
        if not self.oidc_audience or not self.oidc_jwks_url:
            raise ValueError("REVIEW_NOTIFIER_OIDC_ISSUER is set: set REVIEW_NOTIFIER_OIDC_AUDIENCE and "
                             "REVIEW_NOTIFIER_OIDC_JWKS_URL too")
        url = urlsplit(self.oidc_jwks_url)
        if url.scheme != "https" and not (url.scheme == "http" and url.hostname in ("127.0.0.1", "localhost", "::1")):
            raise ValueError("REVIEW_NOTIFIER_OIDC_JWKS_URL must be https (plain http only to localhost)")
        return self
