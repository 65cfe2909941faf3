"""Helpers for the AppTest stories of tests/test_app.py: the app's environment, driving it, reading it.

How AppTest runs a multipage app (Streamlit 1.67), which shapes every helper here:

- `AppTest.from_file(home.py).run()` runs the entry script (the frame: sign-in form, navigation by
  role, sidebar) and the default page for the role.
- Every later `run()` requests the page the previous run finished on and executes ONLY that page
  script: the frame does not run and `at.sidebar` is empty. `switch_page(path)` does the same for
  another page, and keeps requesting it on later runs.
- To run the frame again, as every run of a real browser session does, both the finished page and
  the page asked by `switch_page` must be forgotten: `run_frame` does that, and the default page of
  the current role is shown.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest
from streamlit.util import calc_hash

from accounts.service import Accounts
from accounts.store import credential_store
from accounts.users import Account
from conftest import ROOT
from models import EtlRun, Price, Rupture, Station
from session import init_db, make_engine
from settings import Settings, load_settings
from utils import fold, utcnow

PASSWORD = "correct horse battery"
NEW_PASSWORD = "staple and stable 42"
TIMEOUT = 30
CODE = re.compile(r"\b(\d{8})\b")


@dataclass
class App:
    """The test's own view of the app's data dir: the same settings, database and credentials."""

    settings: Settings
    engine: Engine
    accounts: Accounts

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def count(self, model, *where) -> int:
        with self.session() as session:
            return session.scalar(select(func.count()).select_from(model).where(*where))

    def register(self, username: str, password: str = PASSWORD, email_address: str | None = None) -> Account:
        mail = email_address or f"{username}@example.org"
        return self.accounts.register(username, mail, username.capitalize(), "Test", password, password)

    def entries(self) -> dict:
        return self.accounts.store.load().document["credentials"]["usernames"]


def app_environment(monkeypatch: pytest.MonkeyPatch, data_dir: Path, **extra: str) -> None:
    """The app's configuration for a test: its own data dir and SQLite database, nothing started, no network."""
    monkeypatch.setenv("CARBUROAM_DATA_DIR", str(data_dir))
    monkeypatch.delenv("CARBUROAM_DATABASE_URL", raising=False)
    monkeypatch.setenv("ETL_AUTOSTART", "off")
    monkeypatch.setenv("REGISTRATION_CAPTCHA", "off")
    monkeypatch.setenv("MAP_PROVIDER", "none")
    monkeypatch.setenv("CARBUROAM_LANGUAGE", "en")  # the stories read English; tests/test_i18n.py runs them in French
    for name in ("SMTP_HOST", "LOAD_MODE", "BUCKET_NAME_STORE", "CARBUROAM_FEED_URL", "PRICE_STALE_DAYS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    # The frame keeps its settings, engine and credentials store in st.cache_resource, process-wide:
    # without this, the app would go on using the database of the previous test.
    st.cache_resource.clear()
    st.cache_data.clear()


def open_app(monkeypatch: pytest.MonkeyPatch, data_dir: Path, **extra: str) -> App:
    """Configure the environment, then open the same database and store as the app will."""
    app_environment(monkeypatch, data_dir, **extra)
    settings = load_settings()
    engine = make_engine(settings.database_url)
    init_db(engine)
    return App(settings, engine, Accounts(settings, credential_store(settings), engine))


# --------------------------------------------------------------------------- driving the app


def new_app() -> AppTest:
    """A new browser session on the app (a new tab: empty session state, same server process)."""
    return AppTest.from_file(str(ROOT / "home.py"), default_timeout=TIMEOUT)


def run_frame(at: AppTest) -> AppTest:
    """Run home.py (sign-in, navigation by role, sidebar) and the default page of the current role.

    AppTest otherwise re-runs only the page script the previous run finished on (or the one given
    to `switch_page`, which it keeps asking for); forgetting both makes it run the entry script.
    """
    at._finished_page_script_hash = ""
    at._page_hash = ""
    return at.run()


def open_page(at: AppTest, path: str) -> AppTest:
    """Run one page alone, with the session state (the signed-in account) of the earlier runs."""
    return at.switch_page(path).run()


def request_page(at: AppTest, path: str) -> AppTest:
    """Ask for a page script by its file even when the session's navigation does not offer it.

    This is what a hand-typed URL or a stale link asks for; the page's own server-side check must
    refuse it. `switch_page` refuses pages the last st.navigation did not register, so this asks
    for the page by the hash of its file name, which is how AppTest names pages before any
    navigation is known (`AppTest._resolve_page_hash`); the page script then runs alone.
    """
    at._page_hash = calc_hash(Path(path).stem)
    return at.run()


def sign_in_form(at: AppTest):
    """Where a signed-out person signs in: the sidebar, or the page itself on Welcome, whose sidebar has no form."""
    return at.sidebar if at.sidebar.text_input else at.main


def sign_in(at: AppTest, username: str, password: str) -> AppTest:
    """Type into the sign-in form and submit it; the frame runs, so the result is what a person sees."""
    run_frame(at)
    form = sign_in_form(at)
    text_input(form, "Username").input(username)
    text_input(form, "Password").input(password)
    button(form, "Sign in").click()
    return run_frame(at)


def sign_out(at: AppTest) -> AppTest:
    run_frame(at)
    button(at.sidebar, "Sign out").click()
    return run_frame(at)


def text_input(where, label: str, index: int = 0):
    found = [widget for widget in where.text_input if widget.label == label]
    assert len(found) > index, f"no text input {label!r}; have {[w.label for w in where.text_input]}"
    return found[index]


def button(where, label: str):
    found = [widget for widget in where.button if widget.label == label]
    assert found, f"no button {label!r}; have {[w.label for w in where.button]}"
    return found[0]


def fill(where, values: dict[str, str]) -> None:
    for label, value in values.items():
        text_input(where, label).input(value)


# --------------------------------------------------------------------------- reading what is shown


_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")


def shown(markdown: str) -> str:
    """A Markdown body without the backslash escapes and invisible joiners of `ui.md`: the text as people read it."""
    return _ESCAPED.sub(r"\1", markdown).replace("\u2060", "")


def values(elements) -> list[str]:
    return [shown(str(element.value)) for element in elements]


def titles(at: AppTest) -> list[str]:
    return values(at.title)


def errors(where) -> list[str]:
    return values(where.error)


def successes(where) -> list[str]:
    return values(where.success)


def warnings(where) -> list[str]:
    return values(where.warning)


def infos(where) -> list[str]:
    return values(where.info)


def captions(where) -> list[str]:
    return values(where.caption)


def markdowns(where) -> list[str]:
    return values(where.markdown)


def page_links(at: AppTest) -> dict[str, str]:
    """The page links on the page: label -> target page file."""
    return {link.proto.label: link.proto.page for link in at.get("page_link")}


def navigation(at: AppTest) -> list[str]:
    """The titles of the pages `st.navigation` offered in the last frame run (see `run_frame`).

    AppTest keeps what st.navigation registered only in this private attribute; `shell.pages_for`
    itself cannot be called outside a script run (st.Page needs the run's context).
    """
    return [page["page_name"] for page in at._registered_pages.values()]


def tables(at: AppTest) -> list[pd.DataFrame]:
    return [table.value for table in at.dataframe]


def subheaders(at: AppTest) -> list[str]:
    return values(at.subheader)


def board(at: AppTest) -> dict[str, pd.DataFrame]:
    """The price board: fuel -> its table (each fuel is a subheader followed by its table; the board comes first)."""
    fuels = [name for name in subheaders(at) if name in {"Gazole", "SP95", "E85", "GPLc", "E10", "SP98"}]
    frames = tables(at)
    assert len(frames) >= len(fuels), f"fuels {fuels} but {len(frames)} tables"
    return dict(zip(fuels, frames[: len(fuels)], strict=True))


def read_code(settings: Settings, timeout: float = 10.0) -> str:
    """The reset code from the newest e-mail the console mailer wrote (mails are sent after the page answered)."""
    deadline = time.monotonic() + timeout
    while not (mails := sorted(settings.mail_dir.glob("*.eml"), key=lambda path: path.stat().st_mtime_ns)):
        assert time.monotonic() < deadline, f"no e-mail under {settings.mail_dir} after {timeout} s"
        time.sleep(0.01)
    message = email.message_from_bytes(mails[-1].read_bytes(), policy=email.policy.default)
    match = CODE.search(message.get_body(preferencelist=("plain",)).get_content())
    assert match, "no 8-digit code in the e-mail"
    return match.group(1)


# --------------------------------------------------------------------------- seeding precise data


def add_station(
    session: Session,
    station_id: int,
    address: str,
    town: str,
    zip_code: str,
    lat: float | None = None,
    lon: float | None = None,
    *,
    road_type: str = "R",
    automat: bool = False,
    hours: list[dict] | None = None,
    services: list[str] | None = None,
    last_seen_at: dt.datetime | None = None,
) -> None:
    """A station of the feed, searchable as the loader makes it (search_text folded by utils.fold).

    Without lat and lon it has no position; it was last seen now unless `last_seen_at` says otherwise.
    """
    session.add(
        Station(
            id=station_id,
            latitude=lat,
            longitude=lon,
            zip_code=zip_code,
            town=town,
            address=address,
            road_type=road_type,
            automate_24_24=automat,
            opening_hours=hours,
            services=services or [],
            search_text=fold(f"{address} {zip_code} {town}"),
            last_seen_at=last_seen_at or utcnow(),
        )
    )
    session.flush()  # prices and ruptures refer to it; the ORM does not order unrelated inserts by foreign key


def add_price(session: Session, station_id: int, fuel_id: int, price: str, updated_at: dt.datetime) -> None:
    session.add(Price(station_id=station_id, gastype_id=fuel_id, price=Decimal(price), updated_at=updated_at))


def add_rupture(session: Session, station_id: int, fuel_id: int, kind: str, started_at: dt.datetime) -> None:
    session.add(Rupture(station_id=station_id, gastype_id=fuel_id, started_at=started_at, ended_at=None, kind=kind))


def add_run(session: Session, status: str, finished_at: dt.datetime, error: str | None = None) -> None:
    session.add(
        EtlRun(
            kind="run",
            started_at=finished_at - dt.timedelta(seconds=5),
            finished_at=finished_at,
            status=status,
            source="test",
            error=error,
        )
    )
