"""An alert's whole life in Debian's Chromium: set in the profile, fired by a feed, read in the mail a real SMTP
server (aiosmtpd) received, and stopped by the mail's unsubscribe link opened signed out.

The app runs as `streamlit run home.py` (tests/app_server.py) with its mail going to the local SMTP server; the
pass and the alerts after it run in this process, as the scheduler would run them. Screenshots of the profile's
alert section at 1366 px and 390 px, and of the unsubscribe page, go to outputs/screenshots/.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from playwright.sync_api import Page, expect
from sqlalchemy import select

from accounts.service import Accounts
from accounts.store import credential_store
from alerts import texts
from app_server import app_environ, serve
from conftest import Inbox
from ingest import passes
from models import AlertRule, User
from net import free_port
from prices import preferences
from session import init_db, make_engine, session_factory, writer
from settings import load_settings
from test_alerts import BASE, GAZOLE, HOME, feed, scheduled_pass, unsubscribe_link, with_prices
from test_browser import (
    DESKTOP,
    LOGS,
    PHONE,
    RUNS,
    SCREENSHOTS,
    SIGNED_OUT_PAGES,
    TIMEOUT_MS,
    App,
    Runs,
    browser,  # noqa: F401 (a fixture)
    go_to,
    loaded,
    main,
    nav_links,
    new_profile,  # noqa: F401 (a fixture)
    open_app,
    reload,
    settle,
    sidebar,
    sign_in,
)
from ui import alerts_ui

pytestmark = pytest.mark.browser
PASSWORD = "alerts browser 1"


@pytest.fixture(scope="module")
def mail_server() -> Iterator[tuple[int, Inbox]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, server_hostname="mail.test")
    controller.start()
    yield port, inbox
    controller.stop()


@pytest.fixture(scope="module")
def app(tmp_path_factory, mail_server) -> Iterator[App]:
    """The app over three Paris and Marseille stations, mailing through the local SMTP server; alice follows one."""
    folder = tmp_path_factory.mktemp("alerts-browser")
    data_dir = folder / "data"
    data_dir.mkdir()
    first = feed(folder, BASE)
    env = app_environ(data_dir, first) | {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(mail_server[0])}
    env |= {"SMTP_SECURITY": "none"}
    settings = load_settings(env)
    engine = make_engine(settings.database_url)
    init_db(engine)
    passes.run_pass(engine, settings, first)
    account = Accounts(settings, credential_store(settings), engine).register(
        "alice", "alice@example.org", "Alice", "Martin", PASSWORD, PASSWORD
    )
    with session_factory(writer(engine)).begin() as session:
        preferences.follow_station(session, account.user_id, HOME, "Home")
    engine.dispose()
    log = folder / "streamlit.log"
    with serve(env, log) as url:
        LOGS.append(log)
        yield App(url, dataclasses.replace(settings, public_url=url), log, env)


def as_shown(text: str) -> str:
    """A value as ui.widgets.md shows it: an invisible word joiner after each ':' and '@' (so no renderer links it)."""
    return text.replace(":", ":\u2060").replace("@", "@\u2060")


def alert_section(page: Page):
    return main(page).get_by_role("heading", name="Price alerts")


def screenshot(page: Page, name: str, heading: str = "Price alerts") -> None:
    """The alert section at the top of the window, down to the window's end, once every widget is drawn."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    expect_drawn(page)
    main(page).get_by_role("heading", name=heading).evaluate("heading => heading.scrollIntoView({block: 'start'})")
    page.screenshot(path=SCREENSHOTS / name)


def expect_drawn(page: Page) -> None:
    """No widget still waiting for its code: Streamlit draws a labelless grey box (a skeleton) until it comes."""
    expect(main(page).locator('[data-testid="stSkeleton"]')).to_have_count(0, timeout=TIMEOUT_MS)


def expect_new_alert_labels(page: Page, labels: list[str]) -> None:
    """The new-alert form's fields are these, in this order, once its rerun has drawn them all (retried)."""
    form = main(page).locator('[data-testid="stForm"]').filter(has=page.locator('button[kind="primaryFormSubmit"]'))
    drawn = form.first.locator('[data-testid="stWidgetLabel"]')
    expect(drawn).to_have_text(labels, use_inner_text=True, timeout=TIMEOUT_MS)


def test_an_alert_set_in_the_profile_mails_once_and_its_link_stops_it(app, new_profile, mail_server, tmp_path):  # noqa: F811
    _, inbox = mail_server
    page = open_app(new_profile(viewport=DESKTOP), app)
    sign_in(page, "alice", PASSWORD)
    go_to(page, "Profile", "Profile")
    expect(alert_section(page)).to_be_visible()
    expect(main(page).get_by_text(alerts_ui.NO_ALERTS)).to_be_visible()

    main(page).locator('input[aria-label="Price (€/L)"]').fill("1.650")
    main(page).get_by_role("button", name="Save the alert").click()
    description = "Gazole at Home at €1.650/L or less"
    expect(main(page).get_by_text(description, exact=True)).to_be_visible()
    settle(page)
    expect(main(page).get_by_text(alerts_ui.CREATED)).to_be_visible()
    screenshot(page, "alerts-profile-1366.png")
    page.set_viewport_size(PHONE)
    reload(page)  # a page drawn at phone size folds its sidebar
    expect(main(page).get_by_text(description, exact=True)).to_be_visible()
    screenshot(page, "alerts-profile-390.png")

    engine = make_engine(app.settings.database_url)
    try:
        scheduled_pass(engine, app.settings, feed(tmp_path, with_prices(a=(HOME, GAZOLE, "1.640"))))
        scheduled_pass(engine, app.settings, feed(tmp_path, with_prices(a=(HOME, GAZOLE, "1.630"))))
    finally:
        engine.dispose()
    assert len(inbox.received) == 1, "still below: one mail"
    message = inbox.received[0]
    assert message["To"] == "alice@example.org"
    assert "Gazole is at €1.640/L at Home (your alert: €1.650/L or less)." in message.get_body(("plain",)).get_content()
    link = unsubscribe_link(message)
    assert link.startswith(f"{app.url}/unsubscribe?token=")

    stranger = new_profile(viewport=PHONE).context.new_page()  # signed out, on a phone, as a mail app opens a link
    RUNS[stranger] = Runs(stranger)
    stranger.goto(link)
    loaded(stranger)
    expect(main(stranger).get_by_text(texts.UNSUBSCRIBED.format(email=as_shown("alice@example.org")))).to_be_visible()
    stranger.screenshot(path=SCREENSHOTS / "alerts-unsubscribed-390.png")
    stranger.goto(link[:-1] + ("A" if link[-1] != "A" else "B"))  # one letter of the signature changed
    loaded(stranger)
    expect(main(stranger).get_by_text(as_shown(texts.LINK_REFUSED))).to_be_visible()

    engine = make_engine(app.settings.database_url)
    try:
        with session_factory(engine)() as session:
            assert session.scalars(select(AlertRule.paused)).all() == [True]
        scheduled_pass(engine, app.settings, feed(tmp_path, with_prices(a=(HOME, GAZOLE, "1.700"))))
        scheduled_pass(engine, app.settings, feed(tmp_path, with_prices(a=(HOME, GAZOLE, "1.600"))))
    finally:
        engine.dispose()
    assert len(inbox.received) == 1, "no mail after unsubscribing"

    page.set_viewport_size(DESKTOP)
    reload(page)
    expect(main(page).get_by_text(f"{description} (paused)", exact=True)).to_be_visible()
    expect(nav_links(stranger)).to_have_text(SIGNED_OUT_PAGES)  # the unsubscribe page is in no menu


def test_the_new_alert_form_labels_each_field_in_french_at_desktop_and_phone_widths(app, new_profile):  # noqa: F811
    """Every field of the form says what it asks, in French, at 1366 px and 390 px (screenshots of both)."""
    app.register("colette", PASSWORD)
    engine = make_engine(app.settings.database_url)
    try:
        with session_factory(writer(engine)).begin() as session:
            user = session.scalars(select(User).where(User.username == "colette")).one()
            preferences.follow_station(session, user.id, HOME, "Maison")
    finally:
        engine.dispose()
    page = open_app(new_profile(viewport=DESKTOP), app)
    sign_in(page, "colette", PASSWORD)
    sidebar(page).get_by_text("Français", exact=True).click()
    expect(sidebar(page).get_by_role("button", name="Se déconnecter")).to_be_visible()
    go_to(page, "Profil", "Profil")
    heading = "Alertes de prix"
    expect(main(page).get_by_role("heading", name="Nouvelle alerte")).to_be_visible()
    for size in (DESKTOP, PHONE):
        page.set_viewport_size(size)
        reload(page)
        expect_drawn(page)
        expect_new_alert_labels(page, ["Dans ma station", "Carburant", "Prix (€/L)"])
        expect(main(page).get_by_text("Me prévenir pour", exact=True)).to_be_visible()
        screenshot(page, f"alerts-form-fr-{size['width']}.png", heading)

    kinds = main(page).locator('[data-testid="stSelectbox"]').filter(has_text="Me prévenir pour")
    kinds.get_by_role("combobox").click()
    page.get_by_role("option", name="Le prix le plus bas autour d'un lieu").click()
    settle(page)
    expect_drawn(page)
    expect_new_alert_labels(page, ["Carburant", "Autour de", "Rayon (km)", "Prix (€/L)"])
    screenshot(page, "alerts-form-area-fr-390.png", heading)
