"""Outgoing mail: SMTP when a host is configured, else files in an outbox folder.

The outbox default lets a fresh install (and a developer) read reset mails
without a mail server. SMTP runs in a thread so a slow server never blocks the
event loop.
"""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from pathlib import Path

from models.clock import new_id


class Mailer:
    def __init__(
        self,
        sender: str,
        outbox: Path,
        smtp_host: str = "",
        smtp_port: int = 25,
        username: str = "",
        password: str = "",
        starttls: bool = False,
    ) -> None:
        self.sender = sender
        self.outbox = outbox
        self.smtp_host = smtp_host
        self.smtp_port = smtp_port
        self._username = username
        self._password = password
        self.starttls = starttls

    async def send(self, to: str, subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        if self.smtp_host:
            await asyncio.to_thread(self._send_smtp, message)
        else:
            await asyncio.to_thread(self._write_outbox, message)

    def _send_smtp(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=30) as smtp:
            if self.starttls:
                smtp.starttls()
            if self._username:
                smtp.login(self._username, self._password)
            smtp.send_message(message)

    def _write_outbox(self, message: EmailMessage) -> None:
        self.outbox.mkdir(parents=True, exist_ok=True)
        path = self.outbox / f"{new_id()}.eml"
        path.write_bytes(message.as_bytes())
