"""Sending mail over SMTP with the standard library's smtplib, in a worker thread so the event
loop never blocks on a slow server. Implicit TLS or STARTTLS (certificate and host name verified),
and login only over one of them unless plaintext login is explicitly allowed."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path


class PlaintextLogin(smtplib.SMTPException):
    """A login would go over an unencrypted connection, and that was not allowed."""


class Mailer:
    def __init__(self, host: str, port: int, starttls: bool = False, username: str | None = None,
                 password: str | None = None, timeout: float = 15.0, *, tls: bool = False,
                 ca_file: Path | None = None, allow_plaintext_login: bool = False) -> None:
        self.host, self.port, self.starttls, self.tls = host, port, starttls, tls
        self.username, self._password, self.timeout = username, password, timeout
        self.ca_file, self.allow_plaintext_login = ca_file, allow_plaintext_login

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._send, message)

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    def _send(self, message: EmailMessage) -> None:
        if self.username and not (self.tls or self.starttls or self.allow_plaintext_login):
            raise PlaintextLogin("SMTP login without TLS is not allowed: enable STARTTLS or implicit TLS")
        smtp = (smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self._context())
                if self.tls else smtplib.SMTP(self.host, self.port, timeout=self.timeout))
        with smtp:
            smtp.ehlo()
            if self.starttls:  # raises SMTPNotSupportedError when the server does not offer it
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self._password or "")
            smtp.send_message(message)
