"""Sending mail over SMTP with the standard library's smtplib, in a worker thread so the event
loop never blocks on a slow server. STARTTLS and login when configured."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage


class Mailer:
    def __init__(self, host: str, port: int, starttls: bool = False, username: str | None = None,
                 password: str | None = None, timeout: float = 15.0) -> None:
        self.host, self.port, self.starttls = host, port, starttls
        self.username, self._password, self.timeout = username, password, timeout

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            smtp.ehlo()
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self._password or "")
            smtp.send_message(message)
