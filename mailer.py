"""Sending e-mail: over SMTP when SMTP_HOST is set, otherwise into .eml files under outputs/mail/.

`send_mail()` is the one entry point and `MailError` the one exception it raises: its text is fit
to show a user, while the technical cause goes to the log. Bodies can hold one-time codes, so they
never appear in logs or reprs. The console backend names each file after the account the message
is about (as a digest), so that `delete_mail_of()` removes them all when the account is deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path

from i18n import N_, _
from settings import Settings

logger = logging.getLogger("mailer")

USER_MESSAGE = N_("We could not send the e-mail right now; please try again later.")
PARTIAL = ".part"  # the suffix of a message the console backend is still writing


class MailError(Exception):
    """The e-mail was not sent; `str(error)` is a plain-language message for the user, in the active language."""

    def __init__(self, message: str = USER_MESSAGE):
        super().__init__(_(message))


@dataclass(frozen=True)
class Message:
    to: str
    subject: str
    body: str = field(repr=False)
    account: str | None = None  # the username the message is about, if any
    html: str | None = field(default=None, repr=False)  # an HTML alternative to `body`, already escaped
    headers: tuple[tuple[str, str], ...] = ()  # more header fields, e.g. List-Unsubscribe

    def __post_init__(self) -> None:
        values = (self.to, self.subject, *(part for header in self.headers for part in header))
        if any(char in value for value in values for char in "\r\n"):
            raise ValueError("an e-mail recipient, subject or header cannot contain line breaks")


@dataclass(frozen=True)
class Delivery:
    message_id: str
    path: Path | None = None  # the .eml file, when the console backend wrote it


def mail_configured(settings: Settings) -> bool:
    return bool(settings.smtp_host)


def send_mail(settings: Settings, message: Message) -> Delivery:
    """Send `message` through SMTP, or write it under `settings.mail_dir` when no SMTP host is set."""
    now = datetime.now(UTC)
    email = _build(settings, message, now)
    try:
        if mail_configured(settings):
            _send_smtp(settings, email)
            logger.info("sent mail %s through %s:%d", email["Message-ID"], settings.smtp_host, settings.smtp_port)
            return Delivery(email["Message-ID"])
        path = _write_eml(settings.mail_dir, email, now, message.account)
    except (smtplib.SMTPException, OSError) as error:  # ssl.SSLError and timeouts are OSErrors
        target = f"{settings.smtp_host}:{settings.smtp_port}" if mail_configured(settings) else settings.mail_dir
        logger.warning("could not send mail %s via %s: %r", email["Message-ID"], target, error)
        raise MailError() from error
    logger.info("mail is not configured (no SMTP_HOST); message written to %s", path)
    return Delivery(email["Message-ID"], path)


def _build(settings: Settings, message: Message, now: datetime) -> EmailMessage:
    email = EmailMessage()
    email["From"] = settings.smtp_from
    email["To"] = message.to
    email["Subject"] = message.subject
    email["Date"] = format_datetime(now)
    # An explicit domain: make_msgid() would otherwise look up this machine's FQDN, which can hang.
    domain = parseaddr(settings.smtp_from)[1].rpartition("@")[2] or "localhost"
    email["Message-ID"] = make_msgid(domain=domain)
    # Quoted-printable keeps the message 7-bit clean for any relay, whatever the body's language.
    email.set_content(message.body, charset="utf-8", cte="quoted-printable")
    if message.html is not None:
        email.add_alternative(message.html, subtype="html", charset="utf-8", cte="quoted-printable")
    for name, value in message.headers:
        email[name] = value
    return email


def _send_smtp(settings: Settings, email: EmailMessage) -> None:
    if settings.smtp_security == "ssl":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(
            settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout, context=ssl.create_default_context()
        )
    else:
        smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout)
    # Not `with smtp:`: after a failed TLS handshake its QUIT would talk to a broken stream and
    # replace the real cause with a confusing one.
    try:
        if settings.smtp_security == "starttls":
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                raise smtplib.SMTPNotSupportedError("the server does not offer STARTTLS; refusing to send in clear")
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password)
        smtp.send_message(email)
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()  # the server has accepted the message; a failed goodbye changes nothing
    finally:
        smtp.close()


def _owner_tag(account: str | None) -> str:
    return hashlib.blake2b(account.encode(), digest_size=8).hexdigest() if account else "none"


def _write_eml(mail_dir: Path, email: EmailMessage, now: datetime, account: str | None) -> Path:
    mail_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # outputs/, when the mail comes first
    mail_dir.mkdir(exist_ok=True, mode=0o700)
    path = mail_dir / f"{now:%Y%m%dT%H%M%S%fZ}-{_owner_tag(account)}-{secrets.token_hex(4)}.eml"
    # Written aside then renamed, so that whoever reads the folder never opens a half-written message.
    partial = path.with_name(path.name + PARTIAL)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(email.as_bytes())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def delete_mail_of(settings: Settings, account: str) -> int:
    """Remove the messages the console backend wrote about `account`; returns how many."""
    removed = 0
    for path in settings.mail_dir.glob(f"*-{_owner_tag(account)}-*.eml*"):  # and a message half-written
        path.unlink(missing_ok=True)
        removed += 1
    return removed
