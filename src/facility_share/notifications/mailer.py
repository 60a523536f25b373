"""Sending e-mail: an SMTP backend (aiosmtplib) and a console backend for development.

A message's Message-ID is fixed when the message is written (``handlers``), not when it is
sent, so a retry after a crash between "the server accepted it" and "the job was marked done"
sends the very same message again: mail systems and clients that see the same Message-ID twice
(Gmail, Outlook, most MTAs' duplicate filters) show it once. That at-least-once delivery with a
stable identity is the best SMTP allows: there is no way to make the server's acceptance and
our commit one transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any, Protocol

import aiosmtplib

from facility_share.db.models import utcnow
from facility_share.jobs.queue import Permanent
from facility_share.settings import Settings

log = logging.getLogger("facility_share.notifications")
SMTP_TIMEOUT_SECONDS = 30


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message ready to send, as stored in an ``email.send`` job's payload."""

    to: str
    to_name: str
    subject: str
    text: str
    html: str
    message_id: str
    attachments: tuple[dict[str, str], ...] = ()  # {"filename", "content_type", "data"}
    locale: str = "zh_CN"

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Outgoing:
        return cls(to=payload["to"], to_name=payload.get("to_name", ""), subject=payload["subject"], text=payload["text"],
                   html=payload.get("html", ""), message_id=payload["message_id"],
                   attachments=tuple(payload.get("attachments") or ()), locale=payload.get("locale", "zh_CN"))


def sender_domain(sender: str) -> str:
    address = parseaddr(sender)[1]
    return address.rsplit("@", 1)[-1] if "@" in address else "localhost"


def build_email(message: Outgoing, sender: str) -> EmailMessage:
    """The MIME message: plain text and HTML alternatives, then attachments (the ICS)."""
    email = EmailMessage()
    name, address = parseaddr(sender)
    email["From"] = Address(display_name=name, addr_spec=address) if name else address
    email["To"] = Address(display_name=message.to_name, addr_spec=message.to) if message.to_name else message.to
    email["Subject"] = message.subject
    email["Message-ID"] = message.message_id
    email["Date"] = format_datetime(utcnow())
    # RFC 3834: automatic mail; vacation responders must not answer it.
    email["Auto-Submitted"] = "auto-generated"
    email.set_content(message.text)
    if message.html:
        email.add_alternative(message.html, subtype="html")
    for attachment in message.attachments:
        maintype, _, rest = attachment["content_type"].partition("/")
        subtype, *params = [part.strip() for part in rest.split(";")]
        extra = dict(p.split("=", 1) for p in params if "=" in p)
        if maintype == "text":
            email.add_attachment(attachment["data"], subtype=subtype, filename=attachment["filename"], params=extra)
        else:  # pragma: no cover - only text attachments are written today
            email.add_attachment(attachment["data"].encode(), maintype=maintype, subtype=subtype, filename=attachment["filename"])
    # Last: set_content and add_alternative move or clear the Content-* headers set before them.
    email["Content-Language"] = "zh-CN" if message.locale.startswith("zh") else "en"
    return email


class Backend(Protocol):
    async def send(self, email: EmailMessage) -> None: ...


class ConsoleBackend:
    """Development: the message goes to the log instead of a mail server."""

    async def send(self, email: EmailMessage) -> None:
        body = email.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        names = [part.get_filename() for part in email.iter_attachments()]
        log.info("e-mail (console backend, not sent) to %s: %s\n%s%s", email["To"], email["Subject"], text,
                 f"[attached: {', '.join(n for n in names if n)}]" if names else "")


class SmtpBackend:
    """Production: one SMTP connection per message (notifications are few; a pooled
    connection would only add failure modes)."""

    def __init__(self, settings: Settings) -> None:
        self.hostname = settings.smtp_host
        self.port = settings.smtp_port
        self.username = settings.smtp_user or None
        self._password = settings.smtp_password or None
        implicit = settings.smtp_port == 465
        self.use_tls = implicit
        self.start_tls = False if implicit else settings.smtp_starttls

    def __repr__(self) -> str:  # never the password
        return f"SmtpBackend({self.hostname}:{self.port}, user={self.username!r}, starttls={self.start_tls}, tls={self.use_tls})"

    async def send(self, email: EmailMessage) -> None:
        try:
            await aiosmtplib.send(
                email, hostname=self.hostname, port=self.port, username=self.username, password=self._password,
                use_tls=self.use_tls, start_tls=self.start_tls, timeout=SMTP_TIMEOUT_SECONDS,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [error.code for error in exc.recipients]
            if codes and all(code >= 500 for code in codes):
                raise Permanent(f"the mail server refused the recipient: {exc.recipients[0].message}") from None
            raise
        except aiosmtplib.SMTPAuthenticationError as exc:
            # Said without the password; retried, since an operator may fix the settings.
            raise RuntimeError(f"the mail server refused the login of {self.username!r}: {exc.code} {exc.message}") from None
        log.info("e-mail %s sent to %s: %s", email["Message-ID"], email["To"].addresses[0].addr_spec, email["Subject"])


def backend_for(settings: Settings) -> Backend:
    return SmtpBackend(settings) if settings.email_backend == "smtp" else ConsoleBackend()
