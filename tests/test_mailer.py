"""Mail: real local SMTP servers (aiosmtpd on 127.0.0.1) over plain SMTP, AUTH, STARTTLS and TLS,
servers that are down or silent, and the console backend used when no SMTP host is configured.

TLS servers use a self-signed certificate made per test; a test trusts it only by pointing
SSL_CERT_FILE at it, so every other test shows that certificate verification is on.
"""

from __future__ import annotations

import email
import email.policy
import errno
import logging
import re
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

import mailer
from certs import Certificate, self_signed_certificate
from mailer import USER_MESSAGE, MailError, Message, delete_mail_of, mail_configured, send_mail
from net import free_port
from settings import Settings, load_settings

SENDER = "Carburoam <no-reply@carburoam.test>"
RECIPIENT = "alice@example.org"
USER, PASSWORD = "carburoam", "s3cret-Pa55word"
BODY = "Bonjour Alice,\n\nVotre code est 12345678. Station la moins chère : Évreux, 1,789 €/L.\n"
EML_NAME = re.compile(r"\d{8}T\d{12}Z-(none|[0-9a-f]{16})-[0-9a-f]{8}\.eml")
MESSAGE = Message(to=RECIPIENT, subject="Votre code Carburoam — réinitialisation", body=BODY)


# --------------------------------------------------------------------------- helpers


@dataclass
class Received:
    envelope: Envelope
    over_tls: bool
    authenticated: bool

    def parsed(self) -> EmailMessage:
        return email.message_from_bytes(self.envelope.original_content, policy=email.policy.default)

    def text(self) -> str:
        return self.parsed().get_content().replace("\r\n", "\n")  # SMTP carries CRLF line ends


class Recorder:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.received: list[Received] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        over_tls = server.transport is not None and server.transport.get_extra_info("ssl_object") is not None
        self.received.append(Received(envelope, over_tls, authenticated=bool(session.authenticated)))
        return "250 Message accepted for delivery"


def check_password(server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    # handled=False: aiosmtpd then answers 535 itself; with its default it would say nothing.
    return AuthResult(success=ok, handled=False)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def mail_env(monkeypatch: pytest.MonkeyPatch, sqlite_settings: Settings) -> Callable[..., Settings]:
    """Settings for this test's data dir with the given SMTP_* variables (and no others)."""
    for name in ("SMTP_HOST", "SMTP_PORT", "SMTP_USER", "SMTP_PASSWORD", "SMTP_SECURITY", "SMTP_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SMTP_FROM", SENDER)
    monkeypatch.setenv("SMTP_TIMEOUT", "5")

    def make(**smtp: object) -> Settings:
        for key, value in smtp.items():
            monkeypatch.setenv(f"SMTP_{key.upper()}", str(value))
        return load_settings()

    return make


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., tuple[int, Recorder]]]:
    """Start a real aiosmtpd server on 127.0.0.1; returns its port and the handler that records mail."""
    controllers: list[Controller] = []

    def start(**smtp_parameters: object) -> tuple[int, Recorder]:
        recorder, port = Recorder(), free_port()
        controller = Controller(
            recorder, hostname="127.0.0.1", port=port, server_hostname="mail.test", **smtp_parameters
        )
        controller.start()
        controllers.append(controller)
        return port, recorder

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    """A self-signed certificate for 127.0.0.1, trusted by nobody unless a test says so."""
    return self_signed_certificate(tmp_path, "cert", ["127.0.0.1"], common_name="carburoam test mail server")


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never says a word, until the test ends."""
    done = threading.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def hold() -> None:
        conn, _ = listener.accept()
        with conn:
            done.wait()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    done.set()
    # Unblock accept() when the client never connected.
    socket.create_connection(listener.getsockname()).close()
    thread.join(timeout=5)
    listener.close()


# --------------------------------------------------------------------------- SMTP


def test_plain_smtp_delivers_a_complete_utf8_message(mail_env, smtp_server):
    port, recorder = smtp_server()
    settings = mail_env(host="127.0.0.1", port=port, security="none")

    delivery = send_mail(settings, MESSAGE)

    assert len(recorder.received) == 1
    envelope = recorder.received[0].envelope
    assert envelope.mail_from == "no-reply@carburoam.test"
    assert envelope.rcpt_tos == [RECIPIENT]
    received = recorder.received[0].parsed()
    assert received["From"] == SENDER
    assert received["To"] == RECIPIENT
    assert received["Subject"] == MESSAGE.subject
    assert received["Message-ID"] == delivery.message_id
    assert received["Message-ID"].endswith("@carburoam.test>")
    assert received["Date"].datetime.tzinfo is not None
    assert received.get_content_charset() == "utf-8"
    assert recorder.received[0].text() == BODY
    assert "Évreux" in recorder.received[0].text()
    assert delivery.path is None


def test_auth_with_the_right_password_delivers(mail_env, smtp_server):
    port, recorder = smtp_server(authenticator=check_password, auth_require_tls=False)
    settings = mail_env(host="127.0.0.1", port=port, security="none", user=USER, password=PASSWORD)

    send_mail(settings, MESSAGE)

    assert [(r.authenticated, r.envelope.rcpt_tos) for r in recorder.received] == [(True, [RECIPIENT])]


def test_auth_with_a_wrong_password_fails_and_delivers_nothing(mail_env, smtp_server, caplog):
    port, recorder = smtp_server(authenticator=check_password, auth_require_tls=False)
    settings = mail_env(host="127.0.0.1", port=port, security="none", user=USER, password="wrong-" + PASSWORD)

    with caplog.at_level(logging.WARNING, logger="mailer"), pytest.raises(MailError) as raised:
        send_mail(settings, MESSAGE)

    assert str(raised.value) == USER_MESSAGE
    assert recorder.received == []
    assert "Authentication" in caplog.text  # the technical cause is logged ...
    assert PASSWORD not in caplog.text  # ... without the password


def test_starttls_delivers_over_tls_to_a_trusted_server(mail_env, smtp_server, certificate, monkeypatch):
    port, recorder = smtp_server(tls_context=certificate.server_context(), require_starttls=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert_file))
    settings = mail_env(host="127.0.0.1", port=port, security="starttls")

    send_mail(settings, MESSAGE)

    assert [r.over_tls for r in recorder.received] == [True]
    assert recorder.received[0].text() == BODY


def test_starttls_refuses_an_untrusted_certificate(mail_env, smtp_server, certificate, caplog):
    port, recorder = smtp_server(tls_context=certificate.server_context())
    settings = mail_env(host="127.0.0.1", port=port, security="starttls")

    with caplog.at_level(logging.WARNING, logger="mailer"), pytest.raises(MailError):
        send_mail(settings, MESSAGE)

    assert recorder.received == []
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


def test_starttls_never_falls_back_to_clear_text(mail_env, smtp_server, caplog):
    port, recorder = smtp_server()  # no tls_context: the server does not offer STARTTLS
    settings = mail_env(host="127.0.0.1", port=port, security="starttls")

    with caplog.at_level(logging.WARNING, logger="mailer"), pytest.raises(MailError):
        send_mail(settings, MESSAGE)

    assert recorder.received == []
    assert "STARTTLS" in caplog.text


def test_ssl_delivers_to_a_trusted_server_and_refuses_an_untrusted_one(mail_env, smtp_server, certificate, monkeypatch):
    port, recorder = smtp_server(ssl_context=certificate.server_context())
    settings = mail_env(host="127.0.0.1", port=port, security="ssl")

    with pytest.raises(MailError):
        send_mail(settings, MESSAGE)
    assert recorder.received == []

    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert_file))
    send_mail(settings, MESSAGE)
    assert [r.over_tls for r in recorder.received] == [True]


def test_a_server_that_is_down_gives_a_plain_message_without_the_password(mail_env, caplog):
    settings = mail_env(host="127.0.0.1", port=free_port(), security="none", user=USER, password=PASSWORD)

    with caplog.at_level(logging.DEBUG), pytest.raises(MailError) as raised:
        send_mail(settings, MESSAGE)

    message = str(raised.value)
    assert message == USER_MESSAGE
    assert PASSWORD not in message
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(settings)
    assert "Connection refused" in caplog.text or "ConnectionRefused" in caplog.text


@pytest.mark.timeout(10)
def test_a_silent_server_times_out_promptly(mail_env, silent_server):
    settings = mail_env(host="127.0.0.1", port=silent_server, security="none", timeout=0.5)

    with pytest.raises(MailError) as raised:
        send_mail(settings, MESSAGE)

    assert str(raised.value) == USER_MESSAGE


# --------------------------------------------------------------------------- console backend


def test_without_smtp_host_the_message_is_written_to_a_private_eml_file(mail_env, caplog):
    settings = mail_env()
    assert not mail_configured(settings)

    with caplog.at_level(logging.INFO, logger="mailer"):
        delivery = send_mail(settings, MESSAGE)

    files = list(settings.mail_dir.iterdir())
    assert files == [delivery.path]
    assert delivery.path.suffix == ".eml"
    assert stat.S_IMODE(delivery.path.stat().st_mode) == 0o600
    written = email.message_from_bytes(delivery.path.read_bytes(), policy=email.policy.default)
    assert written.get_content() == BODY
    assert written["To"] == RECIPIENT
    assert written["Message-ID"] == delivery.message_id
    lines = [record.getMessage() for record in caplog.records if record.name == "mailer"]
    assert len(lines) == 1
    assert str(delivery.path) in lines[0]
    assert "12345678" not in caplog.text
    assert "Évreux" not in caplog.text


def test_console_file_names_are_unique_and_not_derived_from_the_message(mail_env):
    settings = mail_env()
    hostile = Message(to="../../etc/passwd@example.org", subject="../../x", body="hi")

    paths = {send_mail(settings, hostile).path for _ in range(3)}

    assert len(paths) == 3
    assert all(p is not None and p.parent == settings.mail_dir and EML_NAME.fullmatch(p.name) for p in paths)


def test_deleting_an_accounts_mail_removes_its_files_only(mail_env):
    settings = mail_env()
    for account in ("alice", "alice", "bob", None):
        send_mail(settings, Message(to=f"{account}@example.org", subject="hi", body="x", account=account))

    assert delete_mail_of(settings, "alice") == 2
    left = sorted(settings.mail_dir.glob("*.eml"))
    assert len(left) == 2 and all("alice" not in path.read_text() for path in left)
    assert delete_mail_of(settings, "alice") == 0
    assert delete_mail_of(settings, "carol") == 0, "no mail ever written, nothing to do"


def test_a_message_that_cannot_be_written_whole_leaves_no_file(mail_env, monkeypatch):
    settings = mail_env()
    send_mail(settings, Message(to="alice@example.org", subject="first", body="x", account="alice"))

    def disk_full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mailer.os, "replace", disk_full)
    with pytest.raises(MailError):
        send_mail(settings, Message(to="alice@example.org", subject="second", body="x", account="alice"))

    (kept,) = settings.mail_dir.iterdir()
    assert "first" in kept.read_text(), "only the message written whole is in the folder"


def test_deleting_an_accounts_mail_removes_a_message_left_half_written(mail_env):
    settings = mail_env()
    path = send_mail(settings, Message(to="alice@example.org", subject="hi", body="x", account="alice")).path
    path.rename(path.with_name(path.name + mailer.PARTIAL))  # as after a crash while it was being written

    assert delete_mail_of(settings, "alice") == 1
    assert list(settings.mail_dir.iterdir()) == []


def test_mail_configured_follows_smtp_host(mail_env):
    assert not mail_configured(mail_env())
    assert mail_configured(mail_env(host="smtp.example.org"))


# --------------------------------------------------------------------------- message


def test_message_hides_its_body_and_refuses_header_injection():
    assert "12345678" not in repr(MESSAGE)
    with pytest.raises(ValueError):
        Message(to=RECIPIENT, subject="hi\r\nBcc: everyone@example.org", body="x")
    with pytest.raises(ValueError):
        Message(to=f"{RECIPIENT}\nBcc: everyone@example.org", subject="hi", body="x")
