"""CONSOLE_* from the environment (and the SIGNOFF_* the services share: the workflows, the trust
file, the token file, the known users). An empty value counts as unset."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ConsoleSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CONSOLE_", extra="ignore", frozen=True, populate_by_name=True)

    http_host: str = Field(default="127.0.0.1", description="Address the console listens on")
    http_port: int = Field(default=8082, ge=1, le=65535, description="Port of the console")
    public_url: str = Field(default="http://127.0.0.1:8082", max_length=2000,
                            description="Base URL people reach the console at; https makes the session "
                            "cookie Secure")
    review_url: str = Field(default="http://127.0.0.1:8081", max_length=2000,
                            description="The review-notifier's HTTP API, where votes are cast with the "
                            "person's own credential: https, or http on loopback (or with "
                            "CONSOLE_REVIEW_URL_PRIVATE_NETWORK)")
    review_url_private_network: bool = Field(
        default=False, description="CONSOLE_REVIEW_URL is plain http on a private network only the console and "
        "the review-notifier share (compose's): every credential crosses it in clear text")
    known_users: tuple[str, ...] = Field(
        default=(), validation_alias=AliasChoices("known_users", "CONSOLE_KNOWN_USERS", "SIGNOFF_KNOWN_USERS"),
        description="Known users besides those the workflows name (JSON list); no one else signs in")
    tokens_file: Path | None = Field(
        default=Path(".data/signoff/tokens.json"),
        validation_alias=AliasChoices("tokens_file", "CONSOLE_TOKENS_FILE", "SIGNOFF_TOKENS_FILE"),
        description="The review API's token file (read only here): the same personal tokens sign in")
    oidc_issuer: str | None = Field(default=None, description="OIDC issuer (`iss`); unset: no OIDC sign-in")
    oidc_audience: str | None = Field(default=None, description="Audience (`aud`) OIDC tokens must be for "
                                      "(the review API's: the console passes the token on)")
    oidc_jwks_url: str | None = Field(default=None, description="The issuer's JWKS URL (https)")
    oidc_identity_claim: str = Field(default="preferred_username", min_length=1,
                                     description="Claim naming the person (a known user)")
    index_db: Path = Field(default=Path(".data/console/audit.sqlite"),
                           description="The console's own audit index (SQLite), rebuilt from the topics")
    refresh_seconds: float = Field(default=2.0, gt=0, le=300,
                                   description="How often the index reads what is new on the topics")
    session_minutes: int = Field(default=480, ge=1, le=7 * 24 * 60,
                                 description="A session ends this long after sign-in (sign in again)")
    max_sessions: int = Field(default=10_000, ge=1, le=1_000_000,
                              description="Sessions kept at once; the oldest ends first beyond it")
    session_key_file: Path | None = Field(
        default=None, description="The key every console replica shares (urlsafe base64 of 32 random bytes, "
        "a Docker secret): signs sign-in forms and encrypts the sessions kept in the database; unset: a key of "
        "this process (one replica, sessions in memory)")
    sessions_db: Path | None = Field(
        default=None, description="SQLite file of the sessions replicas on one machine share; SIGNOFF_DATABASE_URL "
        "(PostgreSQL) instead when set; neither: sessions in this process's memory")
    dead_letters_limit: int = Field(default=200, ge=1, le=10_000,
                                    description="Dead letters shown per topic at most")
    dead_letters_days: int = Field(default=14, ge=1, le=366,
                                   description="The dead-letters page reads this many days back")

    @field_validator("tokens_file", "oidc_issuer", "oidc_audience", "oidc_jwks_url", "session_key_file",
                     "sessions_db", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("public_url", "review_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        url = urlsplit(value)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL: write e.g. http://127.0.0.1:8081")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _credentials_not_in_clear(self) -> ConsoleSettings:
        """Each vote and page sends the person's credential to the review API: never in clear
        text over a network, unless the deployment says that network is private."""
        url = urlsplit(self.review_url)
        if url.scheme == "http" and not _loopback(url.hostname or "") and not self.review_url_private_network:
            raise ValueError(f"CONSOLE_REVIEW_URL {self.review_url!r} is plain http to another host: every person's "
                             "credential would cross the network in clear text. Use https, or set "
                             "CONSOLE_REVIEW_URL_PRIVATE_NETWORK=true if only the console and the review-notifier "
                             "share that network (as in compose)")
        return self

    @model_validator(mode="after")
    def _oidc_complete(self) -> ConsoleSettings:
        if self.oidc_issuer and not (self.oidc_audience and self.oidc_jwks_url):
            raise ValueError("CONSOLE_OIDC_ISSUER is set: set CONSOLE_OIDC_AUDIENCE and CONSOLE_OIDC_JWKS_URL too")
        return self

    @property
    def secure_cookies(self) -> bool:
        return urlsplit(self.public_url).scheme == "https"


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
