"""The email channel: a mail with the evidence and two signed links to each approver (once per
stage), a fresh mail at each reminder, and votes from the links' confirmation form (`routes`).

    mailer.py    smtplib in a worker thread
    messages.py  pure: the mail (text and HTML) and the pages its links open
    tokens.py    pure: the signed, expiring link tokens
    routes.py    GET /email/confirm, POST /email/decide
"""

from __future__ import annotations

import smtplib
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import structlog
from fastapi import APIRouter
from pydantic import BaseModel, Field, SecretStr, model_validator

from services.review_notifier import reviews
from services.review_notifier.channels.base import Notices, failed, secret, stage, unset_when_empty
from services.review_notifier.channels.email import messages, routes, tokens
from services.review_notifier.channels.email.mailer import Mailer
from services.review_notifier.reviews import Review

if TYPE_CHECKING:
    import httpx

    from services.review_notifier.settings import ReviewNotifierSettings

log = structlog.get_logger()


class EmailSettings(BaseModel):
    """Email over SMTP; the links are signed with `token_key` and lead to `public_url`. A login
    (username and password) only ever goes over TLS: STARTTLS by default, or implicit TLS."""

    smtp_host: str | None = Field(default=None, description="SMTP server; unset: no email")
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_starttls: bool | None = Field(
        default=None, description="Upgrade the connection with STARTTLS (refusing a server that does not "
        "offer it); unset: yes when a username is set and smtp_tls is not")
    smtp_tls: bool = Field(default=False, description="Implicit TLS from the first byte (SMTPS, usually port 465)")
    smtp_ca_file: Path | None = Field(default=None, description="CA bundle (PEM) the SMTP server's certificate "
                                      "is verified against; unset: the system's")
    smtp_allow_plaintext_login: bool = Field(
        default=False, description="Development only: log in over an unencrypted connection "
        "(smtp_starttls=false, smtp_tls=false); the password then crosses the network in clear")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    mail_from: str = Field(default="signoff@localhost")
    approver_emails: dict[str, str] = Field(default_factory=dict,
                                            description="approver identity -> email address, JSON")
    token_key: SecretStr | None = Field(default=None, description="HMAC key of email-link tokens")

    # A validator, not a field: the pydantic plugin recognizes only field_validator(...)(f) written out.
    unset_email = unset_when_empty(  # type: ignore[pydantic-field]
        "smtp_host", "smtp_username", "smtp_password", "token_key")

    @model_validator(mode="after")
    def _links_are_signed(self) -> EmailSettings:
        if self.smtp_host and not self.token_key:
            raise ValueError("REVIEW_NOTIFIER_TOKEN_KEY is required when REVIEW_NOTIFIER_SMTP_HOST is set: "
                             "email links are signed with it")
        return self

    @model_validator(mode="after")
    def _login_over_tls(self) -> EmailSettings:
        if self.smtp_tls and self.smtp_starttls:
            raise ValueError("REVIEW_NOTIFIER_SMTP_TLS and REVIEW_NOTIFIER_SMTP_STARTTLS are both set: implicit "
                             "TLS (port 465) and STARTTLS (port 587) exclude each other; set one")
        if self.smtp_username and not self.smtp_encrypted and not self.smtp_allow_plaintext_login:
            raise ValueError("REVIEW_NOTIFIER_SMTP_STARTTLS=false with REVIEW_NOTIFIER_SMTP_USERNAME would send the "
                             "SMTP password in clear: leave STARTTLS on (the default with a username) or set "
                             "REVIEW_NOTIFIER_SMTP_TLS=true; only for a local test server, "
                             "REVIEW_NOTIFIER_SMTP_ALLOW_PLAINTEXT_LOGIN=true")
        return self

    @property
    def smtp_uses_starttls(self) -> bool:
        """STARTTLS as configured; by default whenever there are credentials to protect."""
        return self.smtp_starttls if self.smtp_starttls is not None else bool(self.smtp_username) and not self.smtp_tls

    @property
    def smtp_encrypted(self) -> bool:
        return self.smtp_tls or self.smtp_uses_starttls


class EmailChannel:
    name: ClassVar[str] = "email"
    Settings: ClassVar[type[BaseModel]] = EmailSettings

    def __init__(self, *, token_key: bytes | None = None, mailer: Mailer | None = None, public_url: str = "",
                 mail_from: str = "signoff@localhost", addresses: dict[str, str] | None = None) -> None:
        self.token_key, self.mailer, self.public_url = token_key, mailer, public_url
        self.mail_from, self.addresses = mail_from, addresses or {}
        self.notices: Notices | None = None

    @classmethod
    def from_settings(cls, settings: ReviewNotifierSettings) -> EmailChannel:
        key = secret(settings.token_key)
        mailer = Mailer(settings.smtp_host, settings.smtp_port, starttls=settings.smtp_uses_starttls,
                        tls=settings.smtp_tls, username=settings.smtp_username,
                        password=secret(settings.smtp_password), ca_file=settings.smtp_ca_file,
                        allow_plaintext_login=settings.smtp_allow_plaintext_login) if settings.smtp_host else None
        return cls(token_key=key.encode() if key else None, mailer=mailer,
                   public_url=settings.public_url, mail_from=settings.mail_from,
                   addresses=settings.approver_emails)

    @property
    def sends(self) -> bool:
        return self.mailer is not None and self.token_key is not None

    def open(self, http: httpx.AsyncClient, notices: Notices) -> None:
        self.notices = notices  # SMTP connects per mail: nothing to hold open

    def router(self) -> APIRouter:
        return routes.router(self)

    async def announce(self, review: Review) -> None:
        """Mail each approver of the current stage (the escalation approvers once escalated), once."""
        at = stage(review)
        assert self.notices is not None, "the Notifier announces only through opened channels"
        for approver in review.escalation.approvers if review.escalation else review.request.approvers:
            what = f"{at}:{approver}"
            if not self.notices.claim(review, what):  # mailed already, or another replica is mailing
                continue
            if await self._mail(review, approver):
                self.notices.record(review, what, {})
            else:
                self.notices.release(review, what)

    async def refresh(self, review: Review, reply_to: str | None = None) -> None:
        """A sent mail does not change; the confirmation page a link opens always shows the state."""

    async def remind(self, review: Review, approvers: tuple[str, ...]) -> None:
        for approver in approvers:
            await self._mail(review, approver, reminder=True)

    async def _mail(self, review: Review, approver: str, reminder: bool = False) -> bool:
        """One mail with fresh links (they expire at the review's deadline); never to the submitter."""
        address = self.addresses.get(approver)
        if not (self.sends and address) or reviews.is_submitter(review.request, approver):
            return False
        assert self.token_key is not None and self.mailer is not None  # both, since self.sends
        links = {action: messages.link(self.public_url, tokens.issue(
                     self.token_key, review.submission_id, approver, action, review.deadline))
                 for action in ("approve", "reject")}
        message = messages.review_mail(review, self.mail_from, address, approver, links["approve"], links["reject"],
                                       reminder=reminder)
        try:
            await self.mailer.send(message)
        except Exception as exc:  # noqa: BLE001 - a notification never undoes a decision
            failed("mail_failed", review, exc, safe=(smtplib.SMTPException,), approver=approver)
            return False
        log.info("mail_sent", submission_id=str(review.submission_id), approver=approver, reminder=reminder)
        return True


CHANNEL = EmailChannel  # what the registry (channels/__init__.py) lists
