"""User stories through the app itself (Streamlit AppTest): accounts, pages by role, prices, stations.

Each test gets its own data dir, SQLite database and credentials file (see `app_helpers.open_app`)
and drives `home.py` and its pages the way a person does: typing into forms, clicking buttons,
reading titles, messages and tables. See app_helpers.py for how AppTest runs the frame and pages.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
import signal
import sqlite3
import stat
import statistics
import threading
import time
import uuid
from collections.abc import Iterator

import bcrypt
import boto3
import psutil
import pytest
import yaml
from moto.server import ThreadedMotoServer
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

import i18n
from accounts.service import WRONG_CREDENTIALS
from app_helpers import (
    NEW_PASSWORD,
    PASSWORD,
    App,
    add_price,
    add_run,
    add_rupture,
    add_station,
    app_environment,
    board,
    button,
    captions,
    errors,
    fill,
    infos,
    markdowns,
    navigation,
    new_app,
    open_app,
    open_page,
    page_links,
    read_code,
    request_page,
    run_frame,
    sign_in,
    sign_in_form,
    sign_out,
    successes,
    tables,
    text_input,
    titles,
    warnings,
)
from conftest import FIXTURES, ROOT
from ingest import passes, pidfile
from models import CustomStation, User, UserGasType, UserSession, VerificationCode
from prices import preferences
from session import make_engine, writer
from ui import shell, widgets
from utils import utcnow

pytestmark = pytest.mark.usefixtures("cheap_bcrypt")

DASHBOARD = "My prices today"
WELCOME = "Carburoam"
SIGN_IN_WARNING = "Please sign in to see this page."
ADMIN_ONLY = "This page is for administrators."
THROTTLED = "Too many attempts. Try again in 1 minute."
REGISTER = "Create my account"
FEED_A_TOWN = "agen"  # feed_a has two stations in 47000: one in 'AGEN', one in 'Agen'


def load_feed_a(app: App) -> None:
    passes.run_pass(app.engine, app.settings, str(FIXTURES / "feed_a.zip"))


def follow(app: App, user_id: int, stations: dict[int, str], fuels: tuple[int, ...] | None = None) -> None:
    with app.session() as session, session.begin():
        for station_id, name in stations.items():
            preferences.follow_station(session, user_id, station_id, name)
        if fuels is not None:
            preferences.set_fuels(session, user_id, fuels)


def two_fresh_stations(app: App) -> None:
    now = utcnow()
    with app.session() as session, session.begin():
        add_station(session, 101, "1 rue de la Gare", "Lyon", "69003", 45.76, 4.85)
        add_station(session, 102, "2 avenue Jean Jaures", "Lyon", "69007", 45.74, 4.84)
        add_price(session, 101, 1, "1.899", now - dt.timedelta(hours=1))
        add_price(session, 102, 1, "1.799", now - dt.timedelta(hours=1))
        add_run(session, "success", now - dt.timedelta(minutes=5))


# --------------------------------------------------------------------------- the frame


def test_a_fresh_data_dir_starts_on_the_welcome_page(monkeypatch, data_dir):
    app_environment(monkeypatch, data_dir)
    assert list(data_dir.iterdir()) == []

    at = new_app().run()

    assert not at.exception
    assert titles(at) == [WELCOME]
    assert [w.label for w in at.main.text_input] == ["Username", "Password"]
    assert [b.label for b in at.main.button] == ["Sign in"]
    assert at.sidebar.text_input == [] and at.sidebar.button == [], "one sign-in form, the page's, as a phone shows"
    assert page_links(at) == {
        "Find the cheapest station near you, no account needed": "find",
        "Create an account": "register",
        "Try the demo, no account needed": "demo",
        "Forgot your password or username?": "forgot",
        "Where the prices come from": "about",
    }
    assert (data_dir / "db.sqlite3").is_file()
    credentials = data_dir / "credentials.yaml"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    document = yaml.safe_load(credentials.read_text())
    assert document["credentials"] == {"usernames": {}}
    assert len(document["cookie"]["key"]) >= 32
    database = sqlite3.connect(f"file:{data_dir / 'db.sqlite3'}?mode=ro", uri=True)
    try:
        tables_made = {name for (name,) in database.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"stations", "prices", "users", "custom_stations", "verification_codes", "etl_runs"} <= tables_made
        assert database.execute("SELECT name FROM gas_types ORDER BY id").fetchall() == [
            ("Gazole",),
            ("SP95",),
            ("E85",),
            ("GPLc",),
            ("E10",),
            ("SP98",),
        ]
        assert database.execute("SELECT count(*) FROM users").fetchone() == (0,)
    finally:
        database.close()


# --------------------------------------------------------------------------- accounts


def register_through_the_page(at, overrides: dict[str, str] | None = None):
    details = {
        "First name": "Alice",
        "Last name": "Martin",
        "E-mail": "alice@example.org",
        "Username": "alice",
        "Password": PASSWORD,
        "Repeat the password": PASSWORD,
    }
    details.update(overrides or {})
    fill(at, details)
    button(at, REGISTER).click()
    return at.run()


def test_once_a_page_was_drawn_the_process_objects_are_left_out_of_full_garbage_collections(app):
    """A full collection went through every module and Streamlit's runtime, 0.15 s of the server's CPU per
    journey: after the first page drawn they are frozen (ui.shell.settle_the_heap), and pages still draw."""
    at = new_app().run()

    assert not at.exception and titles(at) == [WELCOME]
    assert gc.get_freeze_count() > 10_000


def test_register_then_sign_in_and_refusals(app):
    at = new_app().run()
    open_page(at, "pages/register.py")
    assert titles(at) == ["Create an account"]

    register_through_the_page(at)
    assert not at.exception
    assert titles(at) == ["Find a station"], "signed in at once, on to the stations to follow"
    assert at.session_state[shell.TOKEN_KEY], "a session of its own, as a sign-in opens"
    run_frame(at)  # the frame's next run: the browser writes the cookie, the sidebar and the welcome show
    assert "Signed in as alice" in captions(at.sidebar)
    assert successes(at) == [shell.WELCOME_NEW_ACCOUNT]
    assert app.entries()["alice"]["email"] == "alice@example.org"
    with app.session() as session:
        user = session.scalar(select(User).where(User.username == "alice"))
        assert (user.email, user.name, user.role) == ("alice@example.org", "Alice Martin", "user")
        assert set(session.scalars(select(UserGasType.gastype_id).where(UserGasType.user_id == user.id))) == {1, 2, 5}

    sign_out(at)
    sign_in(at, "alice", PASSWORD)
    assert not at.exception
    assert titles(at) == [DASHBOARD]
    sign_out(at)

    refusals = [
        ({"Username": "alice", "E-mail": "someone@example.org"}, "already used by another account"),
        (
            {"Username": "alice2", "E-mail": "ALICE@Example.ORG"},
            "That e-mail address is already used by another account.",
        ),
        ({"Username": "Bad Name!", "E-mail": "bad@example.org"}, "A username is 3 to 32 characters"),
        (
            {"Username": "bob", "E-mail": "bob@example.org", "Password": "short", "Repeat the password": "short"},
            "A password needs at least 10 characters.",
        ),
    ]
    for fields, message in refusals:
        open_page(at, "pages/register.py")  # the frame ran in between: a fresh form
        register_through_the_page(at, fields)
        assert not at.exception
        assert successes(at) == []
        assert len(errors(at)) == 1 and message in errors(at)[0], (fields, errors(at))
    assert set(app.entries()) == {"alice"}
    assert app.count(User) == 1


def test_a_taken_email_costs_the_same_password_hash_as_an_accepted_registration(app, monkeypatch):
    """The library refuses a taken e-mail before hashing; the refusal hashes too, so its timing tells nothing."""
    app.register("alice")
    real_hashpw, hashed = bcrypt.hashpw, []
    monkeypatch.setattr(bcrypt, "hashpw", lambda *args: hashed.append(1) or real_hashpw(*args))
    at = new_app().run()

    open_page(at, "pages/register.py")
    register_through_the_page(at, {"Username": "alice2", "E-mail": "alice@example.org"})
    assert errors(at) == ["That e-mail address is already used by another account."]
    refused = len(hashed)
    open_page(at, "pages/register.py")
    register_through_the_page(at, {"Username": "carol", "E-mail": "carol@example.org"})
    assert titles(at) == ["Find a station"], "registered and signed in"

    assert refused == 1 and len(hashed) == 2, "one hash for the refusal, one for the new account"


def test_password_fields_explain_our_password_rule(app):
    app.register("alice")
    at = new_app().run()
    open_page(at, "pages/register.py")
    shown = {"register": text_input(at, "Password").proto.help}
    sign_in(at, "alice", PASSWORD)
    open_page(at, "pages/profile.py")
    shown["change password"] = text_input(at, "New password").proto.help

    for form, help_text in shown.items():
        assert "10" in help_text and "64" in help_text, (form, help_text)
        assert "uppercase" not in help_text.lower(), (form, help_text)


def wrong_attempts(at, username: str, count: int) -> list[str]:
    seen = []
    for _ in range(count):
        sign_in(at, username, "not the password")
        assert titles(at) == [WELCOME]
        seen.append(" / ".join(errors(sign_in_form(at))))
    return seen


def test_wrong_passwords_then_throttling_same_for_unknown_names(app):
    app.register("alice")
    at = new_app().run()

    known = wrong_attempts(at, "alice", 7)
    assert known[:5] == [WRONG_CREDENTIALS] * 5
    assert known[6] == THROTTLED  # the 6th attempt: see test_the_sixth_attempt_after_five_failures_is_throttled
    sign_in(at, "alice", PASSWORD)  # even the right password waits now
    assert errors(sign_in_form(at)) == [THROTTLED]
    assert titles(at) == [WELCOME]

    assert wrong_attempts(new_app().run(), "nobody", 7) == known, "an unknown name gets exactly the same answers"


def test_the_sixth_attempt_after_five_failures_is_throttled(app):
    app.register("alice")
    at = new_app().run()

    assert wrong_attempts(at, "alice", 5) == [WRONG_CREDENTIALS] * 5
    sign_in(at, "alice", "not the password")
    assert errors(sign_in_form(at)) == [THROTTLED]


def test_profile_fuels_and_consumption_show_on_the_dashboard_then_sign_out(app):
    account = app.register("alice")
    two_fresh_stations(app)
    follow(app, account.user_id, {101: "Gare", 102: "Jaures"})
    at = new_app().run()
    sign_in(at, "alice", PASSWORD)
    assert list(board(at)) == ["Gazole", "SP95", "E10"]
    assert any("Savings use your yearly consumption of 650\u202fL" in text for text in captions(at))

    open_page(at, "pages/profile.py")
    assert titles(at) == ["Profile"]
    at.multiselect[0].set_value([1, 6])
    button(at, "Save my fuels").click().run()
    assert "Saved." in successes(at)
    with app.session() as session:
        followed = set(session.scalars(select(UserGasType.gastype_id).where(UserGasType.user_id == account.user_id)))
    assert followed == {1, 6}
    open_page(at, "pages/dashboard.py")
    assert list(board(at)) == ["Gazole", "SP98"]

    open_page(at, "pages/profile.py")
    at.radio[0].set_value("litres")  # shown as "How many litres I buy a year"
    number = {widget.label: widget for widget in at.number_input}
    number["Litres a year"].set_value(1200.0)
    button(at, "Save my consumption").click().run()
    assert "Saved." in successes(at)
    with app.session() as session:
        user = session.get(User, account.user_id)
        assert (user.litres_per_year, user.km_per_year, user.litres_per_100km) == (1200.0, None, None)
    open_page(at, "pages/dashboard.py")
    assert any("Savings use your yearly consumption of 1,200\u202fL" in text for text in captions(at))
    assert "saves about **€120.00 a year**" in markdowns(at)[-1]  # (1.899 - 1.799) x 1200

    open_page(at, "pages/profile.py")
    at.radio[0].set_value("distance")  # shown as "How far I drive"
    number = {widget.label: widget for widget in at.number_input}
    number["Kilometres a year"].set_value(15000.0)
    number["Litres per 100 km"].set_value(6.0)
    button(at, "Save my consumption").click().run()
    assert "Saved." in successes(at)
    with app.session() as session:
        user = session.get(User, account.user_id)
        assert (user.litres_per_year, user.km_per_year, user.litres_per_100km) == (None, 15000.0, 6.0)
    open_page(at, "pages/dashboard.py")
    assert any("Savings use your yearly consumption of 900\u202fL" in text for text in captions(at))

    sign_out(at)
    assert titles(at) == [WELCOME]
    assert "Signed in as alice" not in captions(at.sidebar)
    request_page(at, "pages/dashboard.py")
    assert warnings(at) == [SIGN_IN_WARNING]
    run_frame(at)
    assert [b.label for b in sign_in_form(at).button] == ["Sign in"]


def test_right_after_sign_out_the_sidebar_offers_sign_in(app):
    app.register("alice")
    at = new_app().run()
    sign_in(at, "alice", PASSWORD)

    sign_out(at)

    assert titles(at) == [WELCOME]
    assert [b.label for b in sign_in_form(at).button] == ["Sign in"]


def test_a_link_to_a_page_opened_first_on_a_fresh_server_goes_through_the_frame(app):
    """Streamlit serves a link to a page of a process that never ran st.navigation by running the page
    script alone; the page sends that run through home.py: page setup, sign-in, menu, the link's query."""
    load_feed_a(app)
    at = new_app()
    at.query_params["q"] = FEED_A_TOWN

    request_page(at, "pages/find.py")  # the first request of this session, as a shared link is

    assert not at.exception
    assert titles(at) == ["Find a station"]
    assert navigation(at)[0] == "Find a station", "the frame's menu, not one entry per file of pages/"
    assert [w.label for w in at.sidebar.text_input] == ["Username", "Password"]
    assert at.query_params["q"] == FEED_A_TOWN, "the place stays in the URL, where the place box reads it"
    assert any(" in and around " in text for text in markdowns(at)), "the link's search is answered"


def test_pages_by_role(app):
    app.register("alice")
    app.accounts.create_admin("root", "root@example.org", PASSWORD)
    load_feed_a(app)

    at = new_app().run()
    assert navigation(at) == [
        "Find a station",
        "Welcome",
        "Demo",
        "Create an account",
        "Forgot password",
        "About",
        "Alert e-mails",  # registered, hidden from the menu: the page an alert e-mail's link opens
    ]
    for page in ("pages/dashboard.py", "pages/stations.py", "pages/profile.py"):
        request_page(at, page)
        assert warnings(at) == [SIGN_IN_WARNING], page
        assert tables(at) == [] and titles(at) == [], page
    request_page(at, "pages/admin.py")
    assert errors(at) == [ADMIN_ONLY]
    assert at.metric.len == 0

    sign_in(at, "alice", PASSWORD)
    assert titles(at) == [DASHBOARD]
    assert navigation(at) == [
        "My prices",
        "Find a station",
        "My stations",
        "Price trends",
        "Profile",
        "About",
        "Alert e-mails",
    ]
    request_page(at, "pages/admin.py")
    assert errors(at) == [ADMIN_ONLY]
    assert titles(at) == [] and at.metric.len == 0 and tables(at) == []

    admin_session = new_app().run()
    sign_in(admin_session, "root", PASSWORD)
    assert navigation(admin_session) == [
        "My prices",
        "Find a station",
        "My stations",
        "Price trends",
        "Profile",
        "Admin",
        "About",
        "Alert e-mails",
    ]
    open_page(admin_session, "pages/admin.py")
    assert not admin_session.exception
    assert titles(admin_session) == ["Administration"]
    metrics = {metric.label: metric.value for metric in admin_session.metric}
    assert metrics["Accounts"] == "2"
    assert metrics["Stations"] == "60"
    assert metrics["Current prices"] == "231"
    assert metrics["Last update"] in {"just now", "1 min ago"}


def test_the_profile_keeps_a_fill_and_a_consumption_for_the_detour(app):
    account = app.register("alice")
    at = new_app().run()
    sign_in(at, "alice", PASSWORD)
    open_page(at, "pages/profile.py")

    fill = {widget.label: widget for widget in at.number_input}
    assert (fill["Litres per fill"].value, fill["Consumption (L/100 km)"].value) == (40.0, 6.5), "the defaults"
    fill["Litres per fill"].set_value(55.0)
    fill["Consumption (L/100 km)"].set_value(5.1)
    button(at, "Save my fill and consumption").click().run()
    assert "Saved." in successes(at)
    with app.session() as session:
        assert preferences.trip(session.get(User, account.user_id)) == (55.0, 5.1)

    fill = {widget.label: widget for widget in at.number_input}
    fill["Litres per fill"].set_value(1.0)
    button(at, "Save my fill and consumption").click().run()
    assert "Litres per fill must be between 5 and 200." in errors(at)
    with app.session() as session:
        assert preferences.trip(session.get(User, account.user_id)) == (55.0, 5.1), "nothing changed"


def test_change_password_on_the_profile(app):
    app.register("alice")
    elsewhere = new_app().run()  # alice is also signed in on another device
    sign_in(elsewhere, "alice", PASSWORD)
    at = new_app().run()
    sign_in(at, "alice", PASSWORD)
    token_before = at.session_state[shell.TOKEN_KEY]

    open_page(at, "pages/profile.py")
    fill(at, {"Current password": PASSWORD, "New password": NEW_PASSWORD, "Repeat the new password": NEW_PASSWORD})
    button(at, "Change my password").click().run()

    assert not at.exception
    run_frame(at)
    assert successes(at) == ["Your password is changed. Your other devices will have to sign in again."]
    assert titles(at) == [DASHBOARD], "this session stays signed in, with a new session"
    assert at.session_state[shell.TOKEN_KEY] != token_before
    assert app.accounts.resume(token_before) is None
    run_frame(elsewhere)
    assert shell.SESSION_ENDED in infos(elsewhere)
    assert titles(elsewhere) == [WELCOME]

    other = new_app().run()
    sign_in(other, "alice", PASSWORD)
    assert errors(sign_in_form(other)) == [WRONG_CREDENTIALS]
    assert titles(other) == [WELCOME]
    fresh = new_app().run()
    sign_in(fresh, "alice", NEW_PASSWORD)
    assert titles(fresh) == [DASHBOARD]


def test_delete_account_removes_every_row_and_signs_out(app):
    account = app.register("alice")
    bob = app.register("bob")
    two_fresh_stations(app)
    follow(app, account.user_id, {101: "Gare"})
    follow(app, bob.user_id, {101: "Bob's"})
    app.accounts.recovery.request_password_reset("alice")  # a verification code row, and a mail
    assert app.count(VerificationCode, VerificationCode.user_id == account.user_id) == 1
    app.accounts.recovery.request_password_reset("bob")
    elsewhere = new_app().run()
    sign_in(elsewhere, "alice", PASSWORD)
    at = new_app().run()
    sign_in(at, "alice", PASSWORD)

    open_page(at, "pages/profile.py")
    text_input(at, "Your password, to confirm").input(PASSWORD)
    at.checkbox[0].check()
    button(at, "Delete my account").click().run()

    assert not at.exception
    for model in (User, UserGasType, CustomStation, VerificationCode, UserSession):
        column = User.id if model is User else model.user_id
        assert app.count(model, column == account.user_id) == 0, model.__tablename__
    assert "alice" not in app.entries()
    assert set(app.entries()) == {"bob"} and app.count(CustomStation) == 1, "bob keeps everything"
    assert len(list(app.settings.mail_dir.glob("*.eml"))) == 1, "alice's mail is gone, bob's stays"
    open_page(at, "pages/profile.py")
    assert warnings(at) == [SIGN_IN_WARNING], "the page refuses the signed-out session"
    run_frame(at)
    assert successes(at) == ["Your account is deleted, with all its data, and you are signed out. Goodbye!"]
    assert titles(at) == [WELCOME]
    assert [b.label for b in sign_in_form(at).button] == ["Sign in"]
    run_frame(elsewhere)
    assert titles(elsewhere) == [WELCOME], "the other device is signed out too"


# --------------------------------------------------------------------------- prices


def seed_board(app: App) -> dt.datetime:
    """Alice follows five stations for Gazole and SP95; returns when the prices were last updated.

    Gazole: three fresh prices (1.899, 1.799, 1.849), a cheaper price at a station out of stock for
    now, and an even cheaper one declared 10 days ago.
    """
    account = app.register("alice")
    now = utcnow()
    fresh = now - dt.timedelta(hours=1)
    with app.session() as session, session.begin():
        for station_id, town in ((1, "Lyon"), (2, "VIENNE CEDEX"), (3, "Givors"), (4, "Bron"), (5, "Oullins")):
            add_station(session, station_id, f"{station_id} rue Centrale", town, "69000", 45.7 + station_id / 100, 4.8)
        for station_id, gazole, sp95 in ((1, "1.899", "1.990"), (2, "1.799", "1.950"), (3, "1.849", "1.970")):
            add_price(session, station_id, 1, gazole, fresh)
            add_price(session, station_id, 2, sp95, fresh)
        add_price(session, 4, 1, "1.699", fresh)
        add_rupture(session, 4, 1, "temporaire", fresh)
        add_price(session, 5, 1, "1.599", now - dt.timedelta(days=10))
        add_run(session, "success", now - dt.timedelta(minutes=12))
    follow(
        app,
        account.user_id,
        {1: "Dearest", 2: "Cheapest", 3: "Middle", 4: "Empty pumps", 5: "Old news"},
        fuels=(1, 2),
    )
    return now - dt.timedelta(minutes=12)


def test_dashboard_cheapest_first_savings_out_of_stock_and_old_prices(app):
    updated = seed_board(app)
    at = new_app().run()
    sign_in(at, "alice", PASSWORD)

    assert not at.exception
    assert titles(at) == [DASHBOARD]
    prices = board(at)
    assert list(prices) == ["Gazole", "SP95"]
    gazole = prices["Gazole"]
    assert list(gazole["Station"]) == ["Cheapest", "Middle", "Dearest", "Old news", "Empty pumps"]
    assert list(gazole["Price"]) == ["€1.799/L", "€1.849/L", "€1.899/L", "€1.599/L", "€1.699/L"]
    assert list(gazole[""][:3]) == ["", "", ""]
    assert gazole[""][3] == "Old price (1 week ago): not counted"
    assert gazole[""][4] == "Out of stock (for now)"
    assert gazole["Address"][0] == "2 rue Centrale, 69000 Vienne"  # the feed wrote "VIENNE CEDEX"
    sp95 = prices["SP95"]
    assert list(sp95["Station"][:3]) == ["Cheapest", "Middle", "Dearest"]
    assert list(sp95["Price"][:3]) == ["€1.950/L", "€1.970/L", "€1.990/L"]

    savings = [text for text in markdowns(at) if "saves about" in text]
    assert savings == [
        "Filling up at **Cheapest** rather than **Dearest** saves about **€65.00 a year**.",
        "Filling up at **Cheapest** rather than **Dearest** saves about **€26.00 a year**.",
    ]
    assert "(dearest €1.899/L − cheapest €1.799/L) × 650\u202fL a year = €65.00" in captions(at)
    freshness = [text for text in captions(at) if text.startswith("Prices updated ")]
    newest = updated + dt.timedelta(minutes=12) - dt.timedelta(hours=1)  # the prices were declared an hour ago
    assert freshness == [  # Europe/Paris time
        f"Prices updated {i18n.moment(updated)} (12 min ago); the newest price was declared "
        f"{i18n.moment(newest)} (1 hr ago)."
    ]
    assert warnings(at) == []

    with app.session() as session, session.begin():
        add_run(session, "failed", utcnow(), error="the feed could not be downloaded")
    open_page(at, "pages/dashboard.py")
    assert len(warnings(at)) == 1
    assert warnings(at)[0].startswith("Prices updated ")
    assert "The latest update could not be made; these prices may be out of date." in warnings(at)[0]
    assert "could not be downloaded" not in warnings(at)[0], "the reason is for the admin page"


def test_empty_states_no_prices_yet_and_no_stations(app):
    app.register("alice")
    at = new_app().run()
    sign_in(at, "alice", PASSWORD)

    assert titles(at) == [DASHBOARD]
    assert infos(at) == [
        "Prices are still loading: the first download takes a minute or two. Come back shortly.",
        "You don't follow any station yet. Find yours on the map, give them a name, and their prices appear here.",
    ]
    assert page_links(at) == {"Find a station": "find"}
    assert tables(at) == []

    load_feed_a(app)
    open_page(at, "pages/dashboard.py")
    assert not any("still loading" in text for text in infos(at))
    assert any(text.startswith("The official feed's newest price was declared on ") for text in warnings(at)), (
        "2024 prices"
    )
    assert infos(at)[0].startswith("You don't follow any station yet.")


def test_demo_signed_out_keeps_changes_in_the_session_only(app):
    load_feed_a(app)
    at = new_app().run()
    open_page(at, "pages/demo.py")

    assert not at.exception
    assert titles(at) == ["Demo"]
    assert "kept only until you close this tab" in infos(at)[0]
    assert any(text.startswith("The official feed's newest price was declared on ") for text in warnings(at)), (
        "2024 prices"
    )
    prices = board(at)
    assert list(prices) == ["Gazole", "SP95"]
    names = list(prices["Gazole"]["Station"])
    assert len(names) == 3
    assert sorted(prices["SP95"]["Station"]) == sorted(names)
    for table in prices.values():
        assert all(price.endswith("/L") for price in table["Price"]), "every demo station has both fuels"

    removed = names[1]
    at.selectbox(key="demo-remove").set_value(removed).run()
    at.button(key="demo-remove-button").click().run()
    assert not at.exception
    assert sorted(board(at)["Gazole"]["Station"]) == sorted(set(names) - {removed})

    search(at, FEED_A_TOWN)
    found = tables(at)[-1]
    assert {town.casefold() for town in found["Town"]} == {"agen"}, "the stations of the town searched"
    assert list(found.columns[:2]) == ["Price", "Station"]
    select_row(at, "demo-list", 0)
    add = at.button(key="demo-add")
    assert add.label.startswith("Add ") and add.label.endswith(" to the demo")
    add.click().run()
    assert not at.exception
    shown = list(board(at)["Gazole"]["Station"])
    assert len(shown) == 3 and set(names) - {removed} < set(shown)
    assert any(name.casefold().startswith("agen ") for name in shown)
    assert app.count(CustomStation) == 0 and app.count(User) == 0, "the demo writes nothing"

    other_visit = new_app().run()
    open_page(other_visit, "pages/demo.py")
    assert sorted(board(other_visit)["Gazole"]["Station"]) == sorted(names), "another visit starts afresh"


def select_row(at, key: str, row: int):
    """Select a row of a selectable st.dataframe, as a click on it does (AppTest: through session state)."""
    at.session_state[key] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    return at.run()


def search(at, text: str):
    return text_input(at, "Town, postcode or address").input(text).run()


def custom_names(app: App, user_id: int) -> dict[int, str]:
    with app.session() as session:
        rows = session.execute(
            select(CustomStation.station_id, CustomStation.custom_name).where(CustomStation.user_id == user_id)
        )
        return dict(rows.all())


def test_pages_answer_while_a_price_update_holds_the_write_lock(app, monkeypatch):
    """A feed load keeps the SQLite write lock for its whole transaction; reading pages must not wait for it."""
    monkeypatch.setattr("session.SQLITE_BUSY_TIMEOUT_MS", 300)  # the app's connections: wait 0.3 s, not 15
    account = app.register("alice")
    two_fresh_stations(app)
    follow(app, account.user_id, {101: "Gare"})
    at = new_app().run()
    sign_in(at, "alice", PASSWORD)
    update = sqlite3.connect(app.settings.data_dir / "db.sqlite3", isolation_level=None)
    update.execute("BEGIN IMMEDIATE")  # what passes.run_pass holds while it loads a feed
    try:
        probe = make_engine(app.settings.database_url)
        with pytest.raises(OperationalError, match="database is locked"), writer(probe).begin():
            pass  # the lock is real: a writer is refused
        probe.dispose()
        open_page(at, "pages/dashboard.py")
        assert not at.exception and list(board(at)["Gazole"]["Station"]) == ["Gare"]

        open_page(at, "pages/stations.py")

        assert not at.exception
        assert titles(at) == ["My stations"]
        assert [e.label for e in at.expander] == ["Gare"]
    finally:
        update.rollback()
        update.close()


HOSTILE = "<b>bold</b> **x** [a](javascript:x)"


def test_a_custom_name_with_html_or_markdown_is_shown_as_text(app):
    account = app.register("alice")
    two_fresh_stations(app)
    follow(app, account.user_id, {101: HOSTILE, 102: "Plain"}, fuels=(1,))
    assert custom_names(app, account.user_id)[101] == HOSTILE, "stored as typed"
    at = new_app().run()
    sign_in(at, "alice", PASSWORD)

    assert list(board(at)["Gazole"]["Station"]) == ["Plain", HOSTILE], "a table shows text as it is"
    escaped = widgets.escape_markdown(HOSTILE)
    (line,) = [element.value for element in at.markdown if "saves about" in element.value]
    assert line == f"Filling up at **Plain** rather than **{escaped}** saves about **€65\\.00 a year**."
    assert "<b>" not in line and "](" not in line and "**x**" not in line
    # The sign-in cookie component injects one <style> element of its own; nothing of ours allows HTML.
    html = [element.proto.body for element in at.markdown if element.proto.allow_html]
    assert all("<b>" not in body and "javascript" not in body and "bold" not in body for body in html), html

    open_page(at, "pages/stations.py")
    assert [e.label for e in at.expander] == [escaped, "Plain"]
    assert "<b>" not in " ".join(e.label for e in at.expander)
    with_name = next(e for e in at.expander if e.label == escaped)
    assert text_input(with_name, "Name").value == HOSTILE, "the rename box offers the name as typed"


# --------------------------------------------------------------------------- recovery and admin


def test_forgot_password_with_the_mailed_code(app):
    app.register("alice")
    at = new_app().run()
    open_page(at, "pages/forgot.py")
    assert titles(at) == ["Forgot your password or username?"]
    assert "E-mail is not set up on this server yet" in warnings(at)[0]
    answer = (
        "If an account matches, a code is on its way: it is valid 10 minutes. "
        "Nothing after a few minutes? Check your spam folder, or ask again."
    )

    text_input(at, "Your username or e-mail address").input("nobody")
    button(at, "E-mail me a code").click().run()
    assert successes(at) == [answer]

    text_input(at, "Your username or e-mail address").input("alice")
    button(at, "E-mail me a code").click().run()
    assert successes(at) == [answer], "the same answer whether or not the account exists"
    code = read_code(app.settings)
    assert len(list(app.settings.mail_dir.glob("*.eml"))) == 1, "nobody's request (handled first) sent nothing"

    wrong = f"{(int(code) + 1) % 10**8:08d}"
    reset = {"Code": wrong, "New password": NEW_PASSWORD, "Repeat the new password": NEW_PASSWORD}
    text_input(at, "Your username or e-mail address", 1).input("alice")
    fill(at, reset)
    button(at, "Set my new password").click().run()
    assert errors(at) == ["This code is wrong, expired or already used. Check it, or ask for a new code."]

    text_input(at, "Code").input(code)
    button(at, "Set my new password").click().run()
    assert not at.exception
    assert successes(at) == ["Your password is changed, and you are signed out everywhere. Sign in with it now."]
    assert page_links(at) == {"Sign in": "welcome"}, "to the Welcome page and its form, at any width"
    assert "Username" not in [widget.label for widget in at.main.text_input], "no form that the next run would lose"

    sign_in(at, "alice", PASSWORD)
    assert errors(sign_in_form(at)) == [WRONG_CREDENTIALS]
    sign_in(at, "alice", NEW_PASSWORD)
    assert titles(at) == [DASHBOARD]


SLOW_SMTP_SECONDS = 0.2


@pytest.mark.parametrize("smtp_inbox", [SLOW_SMTP_SECONDS], indirect=True)
def test_asking_for_a_code_takes_as_long_for_an_unknown_account_as_for_a_known_one(monkeypatch, data_dir, smtp_inbox):
    """The page answers at once; the lookup and the mail happen after it answered.

    The real SMTP server takes SLOW_SMTP_SECONDS to accept each message, as a distant one does: an
    answer that waited for the mail would be that much slower for known accounts, far above the
    milliseconds of noise between two reruns of the page.
    """
    port, inbox = smtp_inbox
    app = open_app(monkeypatch, data_dir, SMTP_HOST="127.0.0.1", SMTP_PORT=str(port), SMTP_SECURITY="none")
    tries = 15
    for i in range(tries):
        app.register(f"known{i}")
    at = new_app().run()
    open_page(at, "pages/forgot.py")
    answers = set()

    def ask(name: str) -> float:
        text_input(at, "Your username or e-mail address").input(name)
        started = time.perf_counter()
        button(at, "E-mail me a code").click().run()
        elapsed = time.perf_counter() - started
        answers.add(tuple(successes(at)))
        # The work the answer left behind is done before the next question is timed. The queue is
        # first in, first out: once this is done, so is all the work asked before it.
        shell.resources().accounts.recovery.remind_username_later("drain@example.invalid").result(timeout=30)
        return elapsed

    timings: dict[str, list[float]] = {"known": [], "unknown": []}
    for i in range(tries):
        pair = [("known", f"known{i}"), ("unknown", f"nobody{i}")]
        for kind, name in pair if i % 2 else reversed(pair):
            timings[kind].append(ask(name))

    known, unknown = statistics.median(timings["known"]), statistics.median(timings["unknown"])
    assert abs(known - unknown) < SLOW_SMTP_SECONDS / 4, (known, unknown)
    assert len(answers) == 1, "one answer for everybody"
    assert sorted(message["To"] for message in inbox.received) == sorted(f"known{i}@example.org" for i in range(tries))


def running_scheduler(app: App, other_than: int | None = None, timeout: float = 30) -> int:
    """The pid of the live scheduler of the app's data dir (other than `other_than`), once there is one."""
    deadline = time.monotonic() + timeout
    while (pid := pidfile.running_scheduler(app.settings.pid_file)) in (None, other_than):
        assert time.monotonic() < deadline, "no scheduler is running"
        time.sleep(0.05)
    return pid


def test_a_scheduler_killed_with_sigkill_is_started_again_by_the_next_browser_session(monkeypatch, data_dir):
    app = open_app(monkeypatch, data_dir, ETL_AUTOSTART="on", CARBUROAM_FEED_URL=str(FIXTURES / "feed_a.zip"))
    started: list[int] = []
    try:
        visitor = new_app().run()
        started.append(running_scheduler(app))
        os.kill(started[0], signal.SIGKILL)
        psutil.Process(started[0]).wait(timeout=10)
        run_frame(visitor)
        assert pidfile.running_scheduler(app.settings.pid_file) is None, "checked once per browser session, not per run"

        new_app().run()  # the next browser session

        started.append(running_scheduler(app, other_than=started[0]))
        assert psutil.Process(started[1]).cmdline()[-2:] == [str(ROOT / "etl.py"), "serve"]
    finally:
        for pid in started[1:]:
            os.kill(pid, signal.SIGTERM)
            psutil.Process(pid).wait(timeout=30)


# --------------------------------------------------------------------------- S3 credentials store

REGION = "eu-west-3"
BOB = {"First name": "Bob", "Username": "bob", "E-mail": "bob@example.org"}


class Moto:
    """moto's S3 in server mode on 127.0.0.1, which can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.port = 0
        self.server: ThreadedMotoServer | None = None

    def start(self) -> str:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.port = self.server.get_host_and_port()[1]
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture
def moto(monkeypatch, tmp_path) -> Iterator[Moto]:
    server = Moto()
    endpoint = server.start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    yield server
    server.stop()


@pytest.fixture
def s3(moto, monkeypatch, data_dir) -> Iterator[tuple[App, str]]:
    """The app with its credentials in a fresh bucket of the moto server (LOAD_MODE=remote)."""
    bucket = f"carburoam-test-{uuid.uuid4().hex[:12]}"
    boto3.session.Session().client("s3").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    app = open_app(monkeypatch, data_dir, LOAD_MODE="remote", BUCKET_NAME_STORE=bucket)
    yield app, bucket
    app.engine.dispose()


def read_object(bucket: str) -> bytes:
    return boto3.session.Session().client("s3").get_object(Bucket=bucket, Key="credentials.yaml")["Body"].read()


def test_s3_twenty_concurrent_registrations_all_land(s3, moto):
    app, bucket = s3
    names = [f"user{i:02d}" for i in range(20)]
    barrier = threading.Barrier(len(names))
    failures: list[BaseException] = []

    def register(name: str) -> None:
        barrier.wait()
        try:
            app.register(name)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=register, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    stored = yaml.safe_load(read_object(bucket))["credentials"]["usernames"]
    assert set(stored) == set(names)
    with app.session() as session:
        assert set(session.scalars(select(User.username))) == set(names)
    at = new_app().run()
    sign_in(at, "user07", PASSWORD)
    assert titles(at) == [DASHBOARD]


def test_s3_unreachable_at_the_first_start_is_said_clearly(s3, moto):
    app, bucket = s3
    app.register("alice")
    content = read_object(bucket)
    moto.stop()

    at = new_app().run()
    assert not at.exception
    assert titles(at) == [WELCOME]
    (message,) = errors(at.sidebar)
    assert message.startswith("The account service is unreachable right now")

    open_page(at, "pages/register.py")
    assert not at.exception
    if any(widget.label == REGISTER for widget in at.button):  # saying so at once, without a form, is as good
        register_through_the_page(at, BOB)
    assert not at.exception
    assert successes(at) == []
    assert any(text.startswith("The account service is unreachable right now") for text in errors(at))

    moto.start()
    assert read_object(bucket) == content, "the outage changed nothing"


def test_s3_outage_while_running_keeps_sign_in_and_overwrites_nothing(s3, moto):
    app, bucket = s3
    app.register("alice")
    at = new_app().run()  # the app reads the document while the store is up
    assert errors(at.sidebar) == []
    content = read_object(bucket)
    moto.stop()

    sign_in(at, "alice", PASSWORD)
    assert not at.exception
    assert titles(at) == [DASHBOARD], "a known user signs in from the last good copy"
    assert warnings(at.sidebar) == ["The account service is unreachable; signing in works, changes to accounts don't."]

    newcomer = new_app().run()
    open_page(newcomer, "pages/register.py")
    register_through_the_page(newcomer, BOB)
    assert not newcomer.exception
    assert successes(newcomer) == []
    assert any(text.startswith("The account service is unreachable right now") for text in errors(newcomer))
    assert app.count(User) == 1

    moto.start()
    assert read_object(bucket) == content, "the outage overwrote nothing"
    run_frame(newcomer)
    assert errors(newcomer.sidebar) == [] and warnings(newcomer.sidebar) == [], "back to normal"
    open_page(newcomer, "pages/register.py")
    register_through_the_page(newcomer, BOB)
    assert titles(newcomer) == ["Find a station"], "registered and signed in"
    assert set(yaml.safe_load(read_object(bucket))["credentials"]["usernames"]) == {"alice", "bob"}
