"""Shared fixtures: an isolated data dir and database per test, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import os
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import bcrypt
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SMTPSession
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy_utils import create_database, drop_database

import session
from accounts.service import Accounts
from accounts.store import LocalCredentialStore
from net import free_port
from session import init_db, make_engine
from settings import Settings, load_settings

if TYPE_CHECKING:
    from app_helpers import App

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = ROOT.parent / "shared"
REAL_FEEDS = SHARED / "feeds" / "real"
PG_URL = os.environ.get("CARBUROAM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

_pg_state: dict[str, bool] = {}


def postgres_available() -> bool:
    if "up" not in _pg_state:
        try:
            probe = create_engine(PG_URL, connect_args={"connect_timeout": 3})
            with probe.connect() as conn:
                conn.execute(text("SELECT 1"))
            probe.dispose()
            _pg_state["up"] = True
        except OperationalError:
            _pg_state["up"] = False
    return _pg_state["up"]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> Iterator[App]:
    """The app on its first start, over its own data dir (see app_helpers.open_app): no price, no run, no account.

    A module that wants it set up otherwise declares an `app` of its own.
    """
    from app_helpers import open_app  # imports Streamlit, which only the tests of the app should pay for

    opened = open_app(monkeypatch, data_dir)
    yield opened
    opened.engine.dispose()


def _base_env(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.setenv("CARBUROAM_DATA_DIR", str(data_dir))
    monkeypatch.delenv("CARBUROAM_DATABASE_URL", raising=False)
    monkeypatch.setenv("CARBUROAM_FEED_URL", str(FIXTURES / "feed_a.zip"))
    monkeypatch.setenv("CARBUROAM_LANGUAGE", "en")  # the stories read English; tests/test_i18n.py reads French
    monkeypatch.setenv("BRANDS_INTERVAL_SECONDS", "0")  # tests that want brands import them themselves
    monkeypatch.setenv("PLACES_INTERVAL_SECONDS", "0")  # and places
    monkeypatch.setenv("ETL_HTTP_BACKOFF", "0.01")
    monkeypatch.setenv("ETL_CONNECT_TIMEOUT", "2")
    monkeypatch.setenv("ETL_READ_TIMEOUT", "2")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def database_url(request, monkeypatch, data_dir):
    """A fresh, empty database: a SQLite file in the data dir, or a new PostgreSQL database."""
    _base_env(monkeypatch, data_dir)
    if request.param == "sqlite":
        url = f"sqlite:///{data_dir / 'db.sqlite3'}"
        monkeypatch.setenv("CARBUROAM_DATABASE_URL", url)
        yield url
        return
    if not postgres_available():
        if os.environ.get("CARBUROAM_REQUIRE_POSTGRES"):
            pytest.fail(f"CARBUROAM_REQUIRE_POSTGRES is set but no PostgreSQL server answers at {PG_URL}")
        pytest.skip(f"no PostgreSQL server answers at {make_url(PG_URL).render_as_string(hide_password=True)}")
    url = make_url(PG_URL).set(database=f"carburoam_test_{uuid.uuid4().hex[:12]}").render_as_string(False)
    create_database(url)
    monkeypatch.setenv("CARBUROAM_DATABASE_URL", url)
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def settings(database_url):
    """Settings for an isolated data dir and database; feeds are local files, HTTP retries are fast."""
    return load_settings()


@pytest.fixture
def sqlite_settings(monkeypatch, data_dir):
    """Like `settings`, on SQLite only (for tests about processes rather than SQL)."""
    _base_env(monkeypatch, data_dir)
    return load_settings()


@pytest.fixture
def engine(settings):
    engine = make_engine(settings.database_url)
    init_db(engine)
    yield engine
    engine.dispose()


class Inbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self, delay: float = 0.0) -> None:
        self.received: list[EmailMessage] = []
        self.delay = delay

    async def handle_DATA(self, server: SMTP, session: SMTPSession, envelope: Envelope) -> str:
        await asyncio.sleep(self.delay)
        self.received.append(email.message_from_bytes(envelope.original_content, policy=email.policy.default))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_inbox(request: pytest.FixtureRequest) -> Iterator[tuple[int, Inbox]]:
    """A real SMTP server on 127.0.0.1 (plain, no login): its port, and what it received.

    `@pytest.mark.parametrize("smtp_inbox", [seconds], indirect=True)` makes it take that long to
    accept each message, like a distant server.
    """
    inbox, port = Inbox(delay=getattr(request, "param", 0.0)), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, server_hostname="mail.test")
    controller.start()
    yield port, inbox
    controller.stop()


@pytest.fixture
def cheap_bcrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """bcrypt at cost 4 instead of 12: the same code paths, a fraction of the time."""
    real = bcrypt.gensalt
    monkeypatch.setattr(bcrypt, "gensalt", lambda rounds=12, prefix=b"2b": real(4, prefix))


@pytest.fixture
def console_settings(settings: Settings) -> Settings:
    """The test's settings with mail going to .eml files under settings.mail_dir."""
    return dataclasses.replace(settings, smtp_host="")


@pytest.fixture
def store(console_settings: Settings) -> LocalCredentialStore:
    return LocalCredentialStore(console_settings.credentials_file)


@pytest.fixture
def accounts(console_settings: Settings, store: LocalCredentialStore, engine) -> Accounts:
    return Accounts(console_settings, store, engine)


@pytest.fixture
def main_engines(monkeypatch: pytest.MonkeyPatch) -> Iterator[list]:
    """etl.main() builds its own engine and never disposes it: dispose it here so the test database can go."""
    made = []
    real_make_engine = session.make_engine

    def make_engine(url):
        made.append(real_make_engine(url))
        return made[-1]

    monkeypatch.setattr(session, "make_engine", make_engine)
    yield made
    for engine in made:
        engine.dispose()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests to 127.0.0.1 must reach the test's own servers, whatever proxy the machine is configured with."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def serve() -> Iterator:
    """Starts local HTTP(S) feed servers (test_fetch.FeedServer) answering with `respond`; stops them after."""
    from test_fetch import FeedServer

    servers: list = []

    def start(respond, tls=None):
        servers.append(FeedServer(respond, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
