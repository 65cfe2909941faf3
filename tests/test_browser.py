"""What only a browser shows: Debian's Chromium, driven by Playwright, against `streamlit run home.py`.

The real app runs as a subprocess on a free local port, over a temporary data dir whose SQLite
database is loaded from a feed generated at test time. Nothing here needs the internet: the
browser's requests to any other host are aborted and recorded, and the map is configured without
a basemap (MAP_PROVIDER=none). Every wait has a deadline and no fixed sleep: Playwright's expect
and wait_for_*, and the end of each script run read from Streamlit's own websocket messages.

- Accounts: sign up, sign in, reload (still signed in), sign out, reload (still signed out), sign
  in, change the password; a new browser holding the old cookie is signed out, the old password
  is refused and the new one accepted.
- Stations: register, sign in, search a town, select two stations in the results table, follow
  them under custom names, and find them on the dashboard cheapest first, as the database says;
  screenshots of the stations map and of the dashboard go to outputs/screenshots/, and the map's
  screenshot must show its points.
- The demo map: each station a small point inside the first view, and no request for a basemap.
- Sessions: sign in then sign out at once, reload, signed out (ten times, no retry); the same after
  a password change and a page change; a cookie copied before a sign-out signs nobody in; "sign out
  everywhere" ends another browser's session; a page opened by its URL right after signing in.
- Names and an error made of Markdown, HTML and URLs show as text in Streamlit's real renderer.
- The README's nginx block, run by Debian's nginx in front of the app: its headers arrive, and
  signing in, the cookie, the pages and the map work with no content-security-policy violation.
- Strict xfails (raising KnownBug, so any other failure still fails) mark what is wrong today.

Streamlit and the cookie manager: streamlit-authenticator keeps its cookie through an
extra-streamlit-components iframe that reports the cookies on each page load, and each cookie it
sets or deletes, with a rerun of its own. So a message drawn in the run that changes a cookie lasts
one run (messages are read from a recorder installed in every page), and a click sent just as such
a rerun starts can be lost (idempotent clicks are repeated, each repeat is printed at the end).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import math
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Locator, Page, WebSocket, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from sqlalchemy import select
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

import etl
import queries
from accounts.service import Accounts
from accounts.store import credential_store
from models import CustomStation, EtlRun, GasType, Price, Station, User
from preferences import DEFAULT_FUELS, DEFAULT_YEARLY_LITRES
from session import init_db, make_engine, session_factory
from settings import Settings, load_settings
from ui import CHEAP, DEAR, NO_PRICE

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists() and not os.environ.get("CARBUROAM_REQUIRE_BROWSER"):
    pytest.skip(
        f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium); "
        "set CARBUROAM_REQUIRE_BROWSER=1 to make its absence a failure",
        allow_module_level=True,
    )


FIXTURES = Path(__file__).resolve().parent / "fixtures"
GEN_FEED = ROOT.parent / "shared" / "tools" / "gen_feed.py"
SCREENSHOTS = ROOT / "outputs" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # deck.gl draws with WebGL. With --disable-gpu, headless Chromium offers WebGL only through
    # SwiftShader, which recent versions enable for WebGL only with this flag.
    "--enable-unsafe-swiftshader",
]
VIEWPORT = {"width": 1600, "height": 1400}
TIMEOUT_MS = 20_000
ATTEMPT_MS = 4_000
APP_START_SECONDS = 60
COOKIE = "carburoam_auth"
WRONG_CREDENTIALS = "Wrong username or password."
PASSWORD_CHANGED = "Your password is changed."
SIGNED_OUT_PAGES = ["Welcome", "Demo", "Create an account", "Forgot password", "About"]
SIGNED_IN_PAGES = ["My prices", "Stations", "Profile", "About"]
# The page_icon ":material/local_gas_station:" makes Streamlit point the tab's icon at Google Fonts;
# offline the tab just has no icon. Nothing else may leave 127.0.0.1.
TAB_ICON = "https://fonts.gstatic.com/s/i/short-term/release/materialsymbolsrounded/"
POINT_ALPHA = 220 / 255  # the map's points are filled at alpha 220 (ui.station_map)
POINT_MAX_RADIUS = 9 + 3  # pixels: a favourite's or the selected station's radius, and its outline
MAP_DRAWN_SECONDS = 10  # deck.gl draws within a second here
MIN_POINT_PIXELS = 20  # a plain station's point (radius 5) fills ~80 pixels; smaller areas are edges of other things
# Every message box (st.success, st.error...) the page shows, even for one run, and how many values
# components have sent to Streamlit (each one starts a rerun).
RECORDER = """
window.__messages = [];
window.__reports = 0;
new MutationObserver(() => {
  for (const box of document.querySelectorAll('[data-testid="stAlertContainer"]')) {
    const text = box.innerText.trim();
    if (text && !window.__messages.includes(text)) window.__messages.push(text);
  }
}).observe(document, {childList: true, subtree: true, characterData: true});
window.addEventListener("message", event => {
  if (event.data && event.data.type === "streamlit:setComponentValue") window.__reports += 1;
});
"""
RETRIES: list[str] = []  # clicks repeated because a component's rerun swallowed them
LOGS: list[Path] = []  # the server's log, for the details of an error the page only shows redacted
ERRORS = '[data-testid="stException"], [data-testid="stElementContainer"] > [data-testid="stAlertContainer"]'


# --------------------------------------------------------------------------- the app and the browser


@dataclass(frozen=True)
class App:
    url: str
    settings: Settings
    log: Path

    @property
    def database_url(self) -> str:
        return self.settings.database_url

    def register(self, username: str, password: str) -> None:
        """An account made directly, for journeys that are not about signing up."""
        engine = make_engine(self.database_url)
        try:
            accounts = Accounts(self.settings, credential_store(self.settings), engine)
            accounts.register(
                username, f"{username}@example.org", username.split(".")[0].title(), "Tester", password, password
            )
        finally:
            engine.dispose()


class AppError(AssertionError):
    """The page shows an exception (Streamlit's error box, or a component's error boundary)."""


class KnownBug(AssertionError):
    """The bug an xfail names, as opposed to any other failure (which fails the test for real)."""


@contextlib.contextmanager
def known_bug(pattern: str, what: str) -> Iterator[None]:
    """Turn an AppError whose details match `pattern` into the KnownBug `what`."""
    try:
        yield
    except AppError as exc:
        if re.search(pattern, str(exc)):
            raise KnownBug(f"{what}: {exc}") from exc
        raise


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _feed(folder: Path) -> Path:
    """A 300-station feed generated now (stamped an hour ago), or the project's fixture without ../shared."""
    if not GEN_FEED.is_file():
        return FIXTURES / "feed_a.zip"
    out = folder / "feed.zip"
    day = (dt.datetime.now(ZoneInfo("Europe/Paris")) - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    command = [sys.executable, str(GEN_FEED), "--stations", "300", "--seed", "11", "--day", day, "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    return out


def _app_environ(data_dir: Path, feed: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "CARBUROAM_", "AWS_"))}
    env.update(
        CARBUROAM_DATA_DIR=str(data_dir),
        CARBUROAM_FEED_URL=str(feed),  # never the official feed, should a pass ever start
        ETL_AUTOSTART="off",
        REGISTRATION_CAPTCHA="off",
        MAP_PROVIDER="none",
        LOAD_MODE="local",
        STREAMLIT_BROWSER_GATHER_USAGE_STATS="false",
    )
    return env


def _wait_healthy(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + APP_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"streamlit exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.read().strip() == b"ok":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)  # the poll interval, under the deadline above
    pytest.fail(f"no answer from {url}/_stcore/health within {APP_START_SECONDS} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[App]:
    """`streamlit run home.py` on a free port, over a fresh data dir loaded from a generated feed.

    One server for the module: every test signs up an account of its own.
    """
    folder = tmp_path_factory.mktemp("browser")
    data_dir = folder / "data"
    data_dir.mkdir()
    feed = _feed(folder)
    env = _app_environ(data_dir, feed)
    settings = load_settings(env)
    engine = make_engine(settings.database_url)
    init_db(engine)
    etl.run_pass(engine, settings, str(feed))
    engine.dispose()

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = folder / "streamlit.log"
    command = [sys.executable, "-m", "streamlit", "run", "home.py", "--server.port", str(port)]
    command += ["--server.headless", "true", "--server.address", "127.0.0.1"]
    # No file watcher: it would watch the whole project (.venv included) and rerun on any edit.
    command += ["--server.fileWatcherType", "none"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_healthy(process, url, log)
        LOGS.append(log)
        yield App(url, settings, log)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"CARBUROAM_REQUIRE_BROWSER is set but there is no Chromium at {CHROMIUM}")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()
    print(f"\nbrowser tests: clicks repeated after a component's rerun swallowed them: {RETRIES or 'none'}")


@dataclass
class Profile:
    """A browser profile (its own cookies) that reaches only the app; what it asked of other hosts."""

    context: BrowserContext
    elsewhere: list[str]

    def outside_requests(self) -> list[str]:
        return [url for url in self.elsewhere if not url.startswith(TAB_ICON)]


@pytest.fixture
def new_profile(browser: Browser, app: App) -> Iterator[Callable[[], Profile]]:
    made: list[Profile] = []

    def make() -> Profile:
        context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
        context.set_default_timeout(TIMEOUT_MS)
        profile = Profile(context, [])

        def refuse(route) -> None:
            profile.elsewhere.append(route.request.url)
            route.abort()

        context.route(lambda url: not url.startswith(app.url), refuse)
        context.add_init_script(RECORDER)
        made.append(profile)
        return profile

    yield make
    for profile in made:
        profile.context.close()


# --------------------------------------------------------------------------- waiting for Streamlit


def main(page: Page) -> Locator:
    return page.locator('[data-testid="stMain"]')


def sidebar(page: Page) -> Locator:
    return page.locator('[data-testid="stSidebar"]')


class Runs:
    """The script runs of one page, followed on its websocket in Streamlit's own messages.

    Idle means: the last run finished (not interrupted for a rerun) and no rerun was asked since
    it started. Streamlit's "Running" widget is no such signal: it shows only after a delay.
    """

    def __init__(self, page: Page) -> None:
        self.page = page
        self.socket: WebSocket | None = None
        self.running = self.asked = False
        page.on("websocket", self._connect)

    def forget(self) -> None:
        """Before a reload: the next websocket is the one to follow."""
        self.socket = None

    def _connect(self, socket: WebSocket) -> None:
        if socket.url.endswith("/_stcore/stream"):
            self.socket, self.running, self.asked = socket, False, False
            socket.on("framesent", self._sent)
            socket.on("framereceived", self._received)

    def _sent(self, payload: str | bytes) -> None:
        message = BackMsg()
        message.ParseFromString(payload if isinstance(payload, bytes) else payload.encode())
        if message.WhichOneof("type") == "rerun_script":
            self.asked = True

    def _received(self, payload: str | bytes) -> None:
        message = ForwardMsg()
        message.ParseFromString(payload if isinstance(payload, bytes) else payload.encode())
        kind = message.WhichOneof("type")
        if kind == "new_session":
            self.running, self.asked = True, False
        elif kind == "script_finished" and message.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
            self.running = False

    def wait_idle(self) -> None:
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while self.socket is None or self.running or self.asked:
            left = (deadline - time.monotonic()) * 1000
            if left <= 0:
                raise AssertionError(f"the app kept running for {TIMEOUT_MS} ms")
            if self.socket is None:
                self.page.wait_for_event("websocket", timeout=left)
            else:
                self.socket.wait_for_event("framereceived", timeout=left)


RUNS: dict[Page, Runs] = {}


def settle(page: Page) -> None:
    """Wait until no run is in progress or asked for, and the page shows no element of an older run.

    Raises AppError when the page then shows an exception.
    """
    RUNS[page].wait_idle()
    page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')", timeout=TIMEOUT_MS)
    raise_app_errors(page)


TOLERATED: dict[Page, str] = {}  # per page: a pattern of errors already turned into a KnownBug


def raise_app_errors(page: Page) -> None:
    shown = [text.strip() for text in page.locator(ERRORS).all_inner_texts()]
    if page in TOLERATED:
        shown = [text for text in shown if not re.search(TOLERATED[page], text)]
    if shown:
        logged = [line for line in LOGS[-1].read_text(errors="replace").splitlines() if "Error" in line]
        raise AppError(f"the page shows {shown[0][:200]!r}; the server logged {logged[-1:]}")


def loaded(page: Page) -> Page:
    """Wait for a freshly loaded page: drawn, and no run under way."""
    expect(main(page).locator("h1").first).to_be_visible(timeout=TIMEOUT_MS)
    settle(page)
    return page


def open_app(profile: Profile, app: App) -> Page:
    page = profile.context.new_page()
    RUNS[page] = Runs(page)
    page.goto(app.url)
    return loaded(page)


def reload(page: Page) -> None:
    RUNS[page].forget()
    page.reload()
    loaded(page)


def click_until(page: Page, what: str, click: Callable[[], None], *outcomes: Locator) -> None:
    """Click until every outcome shows and still shows once the page settled (idempotent clicks only)."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        if not all(outcome.is_visible() for outcome in outcomes):
            click()
        try:
            for outcome in outcomes:
                expect(outcome).to_be_visible(timeout=ATTEMPT_MS)
            settle(page)
            for outcome in outcomes:
                expect(outcome).to_be_visible(timeout=1_000)
            return
        except AppError:
            raise
        except AssertionError:
            raise_app_errors(page)
            if time.monotonic() > deadline:
                raise
            RETRIES.append(what)


def submit(page: Page, what: str, send: Callable[[], None], message: str) -> None:
    """Fill and send a form until the page has shown `message` (even for one run), then settle.

    A form whose message never came was swallowed by a component's rerun and is sent again.
    """
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        page.evaluate("() => { window.__messages = []; }")
        send()
        try:
            page.wait_for_function(
                "text => window.__messages.some(m => m.includes(text))", arg=message, timeout=ATTEMPT_MS
            )
            settle(page)
            return
        except PlaywrightTimeoutError:
            raise_app_errors(page)
            if time.monotonic() > deadline:
                raise
            RETRIES.append(what)


# --------------------------------------------------------------------------- pages and accounts


def go_to(page: Page, title: str, heading: str) -> None:
    nav = page.locator('[data-testid="stSidebarNav"]')
    current = nav.locator('a[aria-current="page"]', has_text=title)
    heading_shown = main(page).get_by_role("heading", name=heading, exact=True)
    click_until(page, f"open {title}", nav.get_by_role("link", name=title, exact=True).click, heading_shown, current)


def nav_links(page: Page) -> Locator:
    return page.locator('[data-testid="stSidebarNav"] a [data-testid="stMarkdownContainer"]')


def register(page: Page, first: str, username: str, password: str) -> None:
    go_to(page, "Create an account", "Create an account")
    form = main(page)

    def send() -> None:
        form.locator('input[aria-label="First name"]').fill(first)
        form.locator('input[aria-label="Last name"]').fill("Tester")
        form.locator('input[aria-label="E-mail"]').fill(f"{username}@example.org")
        form.locator('input[aria-label="Username"]').fill(username)
        form.locator('input[aria-label="Password"]').fill(password)
        form.locator('input[aria-label="Repeat the password"]').fill(password)
        form.get_by_role("button", name="Create my account").click()

    submit(page, "register", send, f"Welcome, {first} Tester!")
    expect(form.get_by_text(f"Welcome, {first} Tester!")).to_be_visible()


def send_sign_in(page: Page, username: str, password: str) -> Callable[[], None]:
    side = sidebar(page)

    def send() -> None:
        # .first: for a moment after a sign-out the old and the new sidebar can both be on screen.
        side.locator('input[aria-label="Username"]').first.fill(username)
        side.locator('input[aria-label="Password"]').first.fill(password)
        side.get_by_role("button", name="Sign in", exact=True).first.click()

    return send


def sign_in(page: Page, username: str, password: str) -> dict:
    """Sign in with the sidebar form; returns the sign-in cookie the browser then holds."""
    signed_in = sidebar(page).get_by_text(f"Signed in as {username}")
    click_until(page, "sign in", send_sign_in(page, username, password), signed_in)
    expect_signed_in(page, username)
    return wait_for_auth_cookie(page)


def expect_signed_in(page: Page, username: str) -> None:
    expect(sidebar(page).get_by_text(f"Signed in as {username}")).to_be_visible(timeout=TIMEOUT_MS)
    expect(sidebar(page).get_by_role("button", name="Sign out")).to_be_visible()
    expect(sidebar(page).locator('input[aria-label="Password"]')).to_have_count(0)
    expect(nav_links(page)).to_have_text(SIGNED_IN_PAGES)


def expect_signed_out(page: Page) -> None:
    # Waits out the moment when the previous run's sidebar is still drawn beside the new one.
    expect(sidebar(page).locator('input[aria-label="Username"]')).to_have_count(1, timeout=TIMEOUT_MS)
    expect(sidebar(page).locator('input[aria-label="Username"]')).to_be_visible(timeout=TIMEOUT_MS)
    expect(sidebar(page).get_by_role("button", name="Sign in", exact=True)).to_be_visible()
    expect(sidebar(page).get_by_text("Signed in as")).to_have_count(0)
    expect(main(page).get_by_role("heading", name="My prices today")).to_have_count(0)
    expect(nav_links(page)).to_have_text(SIGNED_OUT_PAGES)


def expect_dashboard(page: Page, username: str) -> None:
    expect(main(page).get_by_role("heading", name="My prices today")).to_be_visible(timeout=TIMEOUT_MS)
    expect_signed_in(page, username)


def sign_out(page: Page) -> None:
    button = sidebar(page).get_by_role("button", name="Sign out")
    click_until(page, "sign out", button.click, sidebar(page).locator('input[aria-label="Username"]').first)
    expect_signed_out(page)
    page.wait_for_function(
        "name => !document.cookie.split('; ').some(c => c.startsWith(name + '='))", arg=COOKIE, timeout=TIMEOUT_MS
    )
    settle(page)


def auth_cookie(context: BrowserContext) -> dict | None:
    return next((cookie for cookie in context.cookies() if cookie["name"] == COOKIE), None)


def wait_for_auth_cookie(page: Page, other_than: str = "", timeout_ms: int = TIMEOUT_MS) -> dict:
    """The sign-in cookie, once the browser holds one (other than `other_than`)."""
    page.wait_for_function(
        """([name, old]) => document.cookie.split('; ').some(
               c => c.startsWith(name + '=') && c.slice(name.length + 1) !== old)""",
        arg=[COOKIE, other_than],
        timeout=timeout_ms,
    )
    cookie = auth_cookie(page.context)
    assert cookie is not None and cookie["value"] != other_than
    settle(page)
    return cookie


def change_password(page: Page, current: str, new: str) -> None:
    go_to(page, "Profile", "Profile")
    form = main(page)
    expect(form.get_by_text(PASSWORD_CHANGED)).to_have_count(0)

    def send() -> None:
        form.locator('input[aria-label="Current password"]').fill(current)
        form.locator('input[aria-label="New password"]').fill(new)
        form.locator('input[aria-label="Repeat the new password"]').fill(new)
        form.get_by_role("button", name="Change my password").click()

    submit(page, "change the password", send, PASSWORD_CHANGED)


# --------------------------------------------------------------------------- journey 1: accounts


def test_sign_up_sign_in_reload_sign_out_and_a_changed_password_retires_the_old_cookie(app, new_profile):
    username, old, new = "ada.browser", "Analytical-Engine-1843", "Difference-Engine-1822"
    profile = new_profile()
    page = open_app(profile, app)
    expect_signed_out(page)
    register(page, "Ada", username, old)

    sign_in(page, username, old)
    expect_dashboard(page, username)
    reload(page)
    expect_dashboard(page, username)

    sign_out(page)
    reload(page)
    expect_signed_out(page)
    expect(main(page).get_by_role("heading", name="Carburoam")).to_be_visible()

    sign_in(page, username, old)
    # A fresh session (signed in by the cookie) before the Profile page: in the first runs after a
    # sign-in, changing the password crashes the page most of the time (see the closing report).
    reload(page)
    expect_dashboard(page, username)
    old_cookie = auth_cookie(profile.context)  # the one this browser holds (sign-ins may write several)
    assert old_cookie is not None
    change_password(page, old, new)
    wait_for_auth_cookie(page, other_than=old_cookie["value"])  # this browser gets a new cookie...
    # ...and the confirmation outlives the rerun the new cookie causes
    expect(main(page).get_by_text(PASSWORD_CHANGED)).to_be_visible()
    go_to(page, "My prices", "My prices today")
    reload(page)
    expect_dashboard(page, username)  # ...and this browser stays signed in

    other = new_profile()
    other.context.add_cookies([old_cookie])
    page = open_app(other, app)
    expect_signed_out(page)
    submit(page, "sign in with the old password", send_sign_in(page, username, old), WRONG_CREDENTIALS)
    expect(sidebar(page).get_by_text(WRONG_CREDENTIALS)).to_be_visible()
    expect_signed_out(page)
    sign_in(page, username, new)
    expect_dashboard(page, username)
    assert profile.outside_requests() == other.outside_requests() == []


def test_signing_in_again_after_signing_out_keeps_the_next_reload_signed_in(app, new_profile):
    """After a sign-out the cookie manager's list of cookies is out of date: signing in again in the
    same tab makes it report, and that rerun used to replace the sign-in run before the cookie was written."""
    username, password = "turing.browser", "Bombe-Machine-1940"
    page = open_app(new_profile(), app)
    register(page, "Alan", username, password)
    sign_in(page, username, password)
    reload(page)  # signs in from the cookie: a fresh session, so the sign-out below starts from rest
    sign_out(page)
    signed_in = sidebar(page).get_by_text(f"Signed in as {username}")
    click_until(page, "sign in again", send_sign_in(page, username, password), signed_in)
    wait_for_auth_cookie(page)
    reload(page)
    expect_dashboard(page, username)


def click_sign_in(page: Page, username: str, password: str) -> None:
    """Sign in with one click of the sidebar form (no retry), and wait until the page shows it."""
    send_sign_in(page, username, password)()
    expect_signed_in(page, username)


def open_signed_in(profile: Profile, app: App, username: str, password: str) -> Page:
    """A new tab of `profile` on the app, signed in with one click, once the browser holds the cookie."""
    page = open_app(profile, app)
    click_sign_in(page, username, password)
    wait_for_auth_cookie(page)
    return page


def click_sign_out(page: Page) -> None:
    """Sign out with one click (no retry), and wait until the page shows it."""
    sidebar(page).get_by_role("button", name="Sign out").click()
    expect_signed_out(page)


def wait_for_no_auth_cookie(page: Page) -> None:
    page.wait_for_function(
        "name => !document.cookie.split('; ').some(c => c.startsWith(name + '='))", arg=COOKIE, timeout=TIMEOUT_MS
    )


def test_sign_in_then_sign_out_at_once_then_reload_is_signed_out_ten_times_in_a_row(app, new_profile):
    username, password = "grace.browser", "Compiler-Cobol-1959"
    app.register(username, password)
    page = open_app(new_profile(), app)
    retries_before = len(RETRIES)
    for attempt in range(10):
        print("attempt", attempt)
        click_sign_in(page, username, password)
        click_sign_out(page)  # at once: the cookie may not even be written yet
        reload(page)
        expect_signed_out(page)
        wait_for_no_auth_cookie(page)  # whatever the browser kept is dropped
    assert len(RETRIES) == retries_before


def test_after_a_password_change_and_a_page_change_sign_out_still_signs_out(app, new_profile):
    username, old, new = "hopper.browser", "Mark-One-Harvard-1944", "Univac-Eckert-1951"
    app.register(username, old)
    page = open_app(new_profile(), app)
    click_sign_in(page, username, old)
    change_password(page, old, new)
    go_to(page, "Stations", "Stations")
    click_sign_out(page)
    reload(page)
    expect_signed_out(page)
    click_sign_in(page, username, new)
    wait_for_auth_cookie(page)
    reload(page)
    expect_dashboard(page, username)


def test_a_cookie_copied_before_sign_out_signs_nobody_in(app, new_profile):
    username, password = "lovelace.browser", "Bernoulli-Numbers-1843"
    app.register(username, password)
    page = open_signed_in(new_profile(), app, username, password)
    copied = auth_cookie(page.context)
    click_sign_out(page)

    thief = new_profile()
    thief.context.add_cookies([copied])
    stolen = open_app(thief, app)
    expect_signed_out(stolen)
    expect(main(stolen).get_by_text("Your session has ended")).to_be_visible()
    wait_for_no_auth_cookie(stolen)


def test_sign_out_everywhere_ends_the_session_of_another_browser(app, new_profile):
    username, password = "hamilton.browser", "Apollo-Guidance-1969"
    app.register(username, password)
    laptop = open_signed_in(new_profile(), app, username, password)
    phone = open_signed_in(new_profile(), app, username, password)

    go_to(laptop, "Profile", "Profile")
    sessions = main(laptop).get_by_text(re.compile(r"signed in .*, last used"))
    expect(sessions).to_have_count(2)
    expect(main(laptop).get_by_text("(this device)")).to_have_count(1)
    main(laptop).get_by_role("button", name="Sign out everywhere").click()
    expect_signed_out(laptop)
    expect(main(laptop).get_by_text("You are signed out everywhere.")).to_be_visible()

    reload(phone)
    expect_signed_out(phone)
    expect(main(phone).get_by_text("Your session has ended")).to_be_visible()


def test_a_page_opened_by_its_url_right_after_signing_in_shows_that_page(app, new_profile):
    username, password = "noether.browser", "Symmetry-Theorem-1915"
    app.register(username, password)
    page = open_signed_in(new_profile(), app, username, password)
    for path, heading in (("stations", "Stations"), ("profile", "Profile")):
        RUNS[page].forget()
        page.goto(f"{app.url}/{path}")
        loaded(page)
        expect(main(page).get_by_role("heading", name=heading, exact=True)).to_be_visible()
        expect_signed_in(page, username)
        assert page.url == f"{app.url}/{path}"


# --------------------------------------------------------------------------- the map in pixels


def _blend(colour: tuple[int, ...], background: tuple[int, ...]) -> tuple[float, ...]:
    return tuple(POINT_ALPHA * c + (1 - POINT_ALPHA) * b for c, b in zip(colour, background, strict=True))


def point_mask(image: Image.Image, background: tuple[int, int, int]) -> np.ndarray:
    """Which pixels have a point's colour: on the green-to-red price gradient, or the no-price grey."""
    cheap, dear, grey = (np.array(_blend(c, background)) for c in (CHEAP, DEAR, NO_PRICE))
    pixels = np.asarray(image.convert("RGB"), dtype=float)
    axis = dear - cheap
    share = np.clip((pixels - cheap) @ axis / (axis @ axis), 0, 1)
    on_gradient = np.linalg.norm(pixels - (cheap + share[..., None] * axis), axis=-1) <= 40
    return on_gradient | (np.linalg.norm(pixels - grey, axis=-1) <= 12)


def blobs(mask: np.ndarray) -> list[int]:
    """The sizes of the connected areas of True pixels (8-neighbours), largest first."""
    left = {(int(y), int(x)) for y, x in np.argwhere(mask)}
    sizes = []
    while left:
        todo, size = [left.pop()], 0
        while todo:
            y, x = todo.pop()
            size += 1
            for near in ((y + dy, x + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)):
                if near in left:
                    left.remove(near)
                    todo.append(near)
        sizes.append(size)
    return sorted(sizes, reverse=True)


def map_points(page: Page, chart: Locator, path: Path | None = None, at_least: int = 1) -> list[int]:
    """The points on the map, as the sizes of the areas of point colours in a page screenshot (saved to `path`).

    deck.gl draws a moment after the chart mounts: screenshots are retaken until `at_least` points
    show, or the deadline passes (and then what shows is returned).
    """
    background = page.evaluate(
        """() => getComputedStyle(document.querySelector('[data-testid="stApp"]'))
                   .backgroundColor.match(/\\d+/g).slice(0, 3).map(Number)"""
    )
    chart.scroll_into_view_if_needed()
    deadline = time.monotonic() + MAP_DRAWN_SECONDS
    while True:
        box = chart.bounding_box()
        assert box is not None
        shot = Image.open(io.BytesIO(page.screenshot(path=path)))
        crop = shot.crop((box["x"], box["y"], box["x"] + box["width"], box["y"] + box["height"]))
        points = [size for size in blobs(point_mask(crop, tuple(background))) if size >= MIN_POINT_PIXELS]
        if len(points) >= at_least or time.monotonic() > deadline:
            return points


def demo_map(profile: Profile, app: App) -> tuple[Page, Locator, int]:
    """The demo page (signed out), its map, and how many stations the demo shows."""
    page = open_app(profile, app)
    go_to(page, "Demo", "Demo")
    chart = main(page).locator('[data-testid="stDeckGlJsonChart"]')
    drawn_or_failed = chart.locator("canvas").first.or_(page.locator(ERRORS).first)
    expect(drawn_or_failed).to_be_visible(timeout=TIMEOUT_MS)
    settle(page)
    expect(chart.locator("canvas").first).to_be_visible()
    with session_factory(make_engine(app.database_url))() as session:
        shown = len(queries.demo_stations(session, (1, 2), count=3))
    return page, chart, shown


MAP_CRASH = (
    r"mapStyle\?\.includes is not a function",
    "with MAP_PROVIDER=none the map does not draw at all: Streamlit's chart fails on a map_style dict",
)


def test_the_demo_map_shows_each_station_as_a_small_point_and_asks_no_other_host(app, new_profile):
    profile = new_profile()
    with known_bug(*MAP_CRASH):
        page, chart, shown = demo_map(profile, app)
    assert shown == 3
    points = map_points(page, chart, at_least=shown)
    assert all(size <= math.pi * POINT_MAX_RADIUS**2 for size in points), f"discs, not points: {points} pixels"
    if len(points) != shown:
        raise KnownBug(f"{len(points)} of the {shown} demo stations show as separate points in the first view")
    if profile.outside_requests():
        raise KnownBug(f"the map asked other hosts for {profile.outside_requests()}")


# --------------------------------------------------------------------------- journey 2: stations


@dataclass(frozen=True)
class Pick:
    town: str
    addresses: tuple[str, str]  # the dearer station first, then the cheaper one
    prices: tuple[Decimal, Decimal]
    fresh: bool  # both prices younger than the dashboard's 7 days
    shown: int  # how many stations the search shows


def _age(moment: dt.datetime, now: dt.datetime) -> dt.timedelta:
    return now - (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC))


def pick_town(database_url: str, fuel_id: int) -> Pick:
    """A town whose search shows a few located stations, two of them selling `fuel_id` at different prices.

    Read from the app's database before the browser starts. The dearer station is listed first in
    the results, so that "cheapest first" on the dashboard is not just the order of following.
    """
    engine = make_engine(database_url)
    now = dt.datetime.now(dt.UTC)
    try:
        with session_factory(engine)() as session:
            for town in sorted(set(session.scalars(select(Station.town)))):
                found = queries.find_stations(session, town, 0, fuel_id)
                if not 2 <= len(found) <= 8 or len({s.address for s in found}) != len(found):
                    continue
                if any(s.latitude is None or s.longitude is None for s in found):
                    continue
                ids = [s.id for s in found]
                prices = {
                    row.station_id: row
                    for row in session.scalars(
                        select(Price).where(Price.station_id.in_(ids), Price.gastype_id == fuel_id)
                    )
                }
                buyable = [s for s in found if not s.out_of_stock and getattr(prices.get(s.id), "price", None)]
                for i, dearer in enumerate(buyable):
                    for cheaper in buyable[i + 1 :]:
                        a, b = prices[dearer.id], prices[cheaper.id]
                        fresh = [_age(row.updated_at, now) <= dt.timedelta(days=7) for row in (a, b)]
                        if a.price > b.price and fresh[0] == fresh[1]:
                            return Pick(
                                town, (dearer.address, cheaper.address), (a.price, b.price), fresh[0], len(found)
                            )
    finally:
        engine.dispose()
    pytest.fail("no town in the loaded feed has two stations to follow")


def grid_rows(grid: Locator) -> list[list[str]]:
    """The visible cells of a Streamlit dataframe, read from the grid's accessibility table."""
    rows = grid.locator('table[role="grid"] tbody tr[role="row"]')
    return [[text.strip() for text in row.locator('td[role="gridcell"]').all_inner_texts()] for row in rows.all()]


def select_row(page: Page, grid: Locator, column: int, text: str, *outcomes: Locator) -> None:
    """Tick the row-selection box (the grid's leftmost column) of the row whose `column` cell is `text`."""
    cells = grid.locator(f'td[role="gridcell"][aria-colindex="{column}"]')
    expect(cells.filter(has_text=re.compile(f"^{re.escape(text)}$"))).to_have_count(1)
    index = [row[column - 1] for row in grid_rows(grid)].index(text)
    row = grid.locator(f'tr[role="row"][aria-rowindex="{index + 2}"]')

    def tick() -> None:
        if row.get_attribute("aria-selected") != "true":
            box = grid.locator('[data-testid="data-grid-canvas"]').bounding_box()
            assert box is not None
            header = height = 35  # Streamlit's dataframe: 35 px for the header and for each row
            # The grid's scroller lies over its canvas and takes the clicks: click the spot, not an element.
            page.mouse.click(box["x"] + 15, box["y"] + header + height * index + height / 2)

    click_until(page, f"select {text}", tick, *outcomes)
    expect(row).to_have_attribute("aria-selected", "true")


def follow(page: Page, address: str, name: str) -> None:
    body = main(page)
    grid = body.locator('[data-testid="stDataFrame"]')
    summary = body.locator('[data-testid="stMarkdownContainer"] strong', has_text=address)
    select_row(page, grid, 2, address, body.get_by_role("heading", name="Selected station"), summary)

    def send() -> None:
        body.locator('input[aria-label="Name it (1 to 40 characters)"]').fill(name)
        body.get_by_role("button", name="Follow this station").click()

    submit(page, f"follow {name}", send, f"You already follow this station as “{name}”.")


def test_find_two_stations_follow_them_and_see_them_cheapest_first(app, new_profile):
    with session_factory(make_engine(app.database_url))() as session:
        fuel = session.get(GasType, DEFAULT_FUELS[0]).name  # the first fuel a new account follows
    pick = pick_town(app.database_url, DEFAULT_FUELS[0])
    dearer, cheaper = "Avenue pump (work)", "Zed market (home)"  # neither follow nor name order is price order
    username, password = "linus.browser", "Penguin-Kernel-1991"
    page = open_app(new_profile(), app)
    register(page, "Linus", username, password)
    sign_in(page, username, password)

    go_to(page, "Stations", "Stations")
    body = main(page)
    grid = body.locator('[data-testid="stDataFrame"]')
    chart = body.locator('[data-testid="stDeckGlJsonChart"]')

    def search() -> None:
        body.locator('input[aria-label="Town, postcode or address"]').fill(pick.town)
        body.get_by_role("button", name="Search").click()

    map_bug = None  # a broken map is raised at the end: the table, following and the dashboard are checked first
    try:
        with known_bug(*MAP_CRASH):
            click_until(page, "search", search, grid, chart.locator("canvas").first.or_(page.locator(ERRORS).first))
    except KnownBug as bug:
        map_bug, TOLERATED[page] = bug, MAP_CRASH[0]
        settle(page)
    expect(grid.locator('td[role="gridcell"][aria-colindex="2"]')).to_have_count(pick.shown)

    follow(page, pick.addresses[0], dearer)
    follow(page, pick.addresses[1], cheaper)
    expect(body.locator('[data-testid="stExpander"] summary [data-testid="stMarkdownContainer"]')).to_have_text(
        [dearer, cheaper]
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    if map_bug is None:
        points = map_points(page, chart, SCREENSHOTS / "stations-map.png")
        assert points, "the map shows none of its points: a blank canvas?"
        assert sum(points) >= 60 and all(size <= math.pi * POINT_MAX_RADIUS**2 for size in points), points
    else:
        page.screenshot(path=SCREENSHOTS / "stations-map.png")

    go_to(page, "My prices", "My prices today")
    expect(body.locator("h2, h3").first).to_have_text(fuel)
    board = body.locator('[data-testid="stDataFrame"]').first
    expect(board.locator('td[role="gridcell"][aria-colindex="1"]')).to_have_text([cheaper, dearer])
    prices = [f"{price:.3f} €" for price in pick.prices]
    assert [[row[0], row[2]] for row in grid_rows(board)] == [[cheaper, prices[1]], [dearer, prices[0]]]
    if pick.fresh:  # old prices are shown but left out of the savings
        saving = (pick.prices[0] - pick.prices[1]) * Decimal(str(DEFAULT_YEARLY_LITRES))
        line = body.get_by_text(f"Filling up at {cheaper} rather than {dearer}").first
        expect(line).to_contain_text(f"saves about {saving:.2f} € a year")
    fuels = body.locator("h3")  # one table per followed fuel: wait until each has drawn its rows
    expect(body.locator('[data-testid="stDataFrame"] table[role="grid"]')).to_have_count(fuels.count())
    for table in body.locator('[data-testid="stDataFrame"]').all():
        expect(table.locator('td[role="gridcell"][aria-colindex="1"]')).to_have_count(2)
    settle(page)
    page.screenshot(path=SCREENSHOTS / "dashboard.png", full_page=True)
    if map_bug is not None:
        raise map_bug


# --------------------------------------------------------------------------- text is never markup

PAYLOADS = (
    "[win a prize](http://evil.example/p)",
    "![](http://evil.example/pixel.png)",
    "<img src=x onerror=alert(1)>",
    "see http://evil.example/bare now",
    "visit www.evil.example today",
    "**bold** _it_ :red[red] $x^2$ :smile: mallory@evil.example",
)


def test_names_and_errors_made_of_markup_show_as_text_in_the_browser(app, new_profile):
    """Streamlit's real renderer: payloads in custom names and in a price update's error stay text.

    Runs last in this module: it leaves a failed update as the newest run.
    """
    username, password = "markup.browser", "Plain-Text-Only-2026"
    app.register(username, password)
    engine = make_engine(app.database_url)
    try:
        with session_factory(engine).begin() as session:
            user_id = session.scalar(select(User.id).where(User.username == username))
            fresh = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
            two = session.scalars(
                select(Price.station_id).where(Price.gastype_id == 1, Price.updated_at > fresh).limit(2)
            ).all()
            for station_id, name in zip(two, PAYLOADS[:2], strict=True):
                session.add(CustomStation(user_id=user_id, station_id=station_id, custom_name=name))
            now = dt.datetime.now(dt.UTC)
            session.add(
                EtlRun(
                    kind="run", started_at=now, finished_at=now, status="failed", source="t", error=" | ".join(PAYLOADS)
                )
            )
    finally:
        engine.dispose()
    profile = new_profile()
    page = open_app(profile, app)
    click_sign_in(page, username, password)
    expect_dashboard(page, username)
    expect(main(page).get_by_text("The latest update failed")).to_be_visible()
    expect(main(page).get_by_text("saves about")).to_be_visible()
    settle(page)
    shown = main(page).inner_text().replace("\u2060", "")  # the escaping's invisible word joiners
    assert " | ".join(PAYLOADS) in shown, "the failed update's reason, word for word"
    assert PAYLOADS[0] in shown and PAYLOADS[1] in shown, "the savings line names both stations as written"
    app_area = page.locator('[data-testid="stApp"]')
    expect(app_area.locator('a[href*="evil"], img[src*="evil"], img[src="x"]')).to_have_count(0)
    expect(main(page).locator('[data-testid="stMarkdownContainer"] strong', has_text="bold")).to_have_count(0)
    expect(main(page).locator(".katex")).to_have_count(0)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "markup-as-text.png", full_page=True)
    assert profile.outside_requests() == []


# --------------------------------------------------------------------------- behind a reverse proxy

NGINX = Path("/usr/sbin/nginx")
NGINX_HEADER = re.compile(r'^add_header (\S+) "(.*)" always;$', re.MULTILINE)
CSP_WATCH = """
window.__violations = [];
document.addEventListener(
  "securitypolicyviolation", e => window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`)
);
"""


def readme_nginx_block() -> str:
    """The nginx configuration the README gives for the app's site."""
    return (ROOT / "README.md").read_text().split("```nginx", 1)[1].split("```", 1)[0]


@pytest.fixture(scope="module")
def proxy(app: App, tmp_path_factory) -> Iterator[str]:
    """Debian's nginx on a free port, running the README's block in front of the app; its URL."""
    if not NGINX.exists():
        if os.environ.get("CARBUROAM_REQUIRE_BROWSER"):
            pytest.fail(f"CARBUROAM_REQUIRE_BROWSER is set but there is no nginx at {NGINX}")
        pytest.skip(f"Debian's nginx is not installed at {NGINX} (apt-get install nginx-light)")
    folder, port = tmp_path_factory.mktemp("nginx"), _free_port()
    site = readme_nginx_block().replace("http://127.0.0.1:8501", app.url)
    user = pwd.getpwuid(os.getuid()).pw_name  # the workers write their temporary files in `folder`
    temp = "\n".join(
        f"{kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (folder / "nginx.conf").write_text(
        f"user {user};\nworker_processes 1;\ndaemon off;\npid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'error.log'};\nevents {{}}\n"
        f"http {{\naccess_log off;\n{temp}\nserver {{\nlisten 127.0.0.1:{port};\n{site}\n}}\n}}\n"
    )
    process = subprocess.Popen([str(NGINX), "-p", str(folder), "-c", str(folder / "nginx.conf")])
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(process, url, folder / "error.log")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_the_readmes_proxy_headers_leave_sign_in_and_the_map_working(app, proxy, browser):
    with urllib.request.urlopen(proxy) as answer:
        sent = dict(answer.headers)
    assert dict(NGINX_HEADER.findall(readme_nginx_block())).items() <= sent.items(), "nginx adds every header"
    username, password = "proxy.browser", "Reverse-Proxy-Headers-1"
    app.register(username, password)
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    elsewhere: list[str] = []
    context.route(
        lambda url: not url.startswith(proxy), lambda route: elsewhere.append(route.request.url) or route.abort()
    )
    context.add_init_script(RECORDER + CSP_WATCH)
    try:
        page = context.new_page()
        RUNS[page] = Runs(page)
        page.goto(proxy)
        loaded(page)
        click_sign_in(page, username, password)  # the cookie component is a frame of the app itself
        wait_for_auth_cookie(page)
        reload(page)
        expect_dashboard(page, username)
        go_to(page, "Profile", "Profile")
        click_sign_out(page)
        go_to(page, "Demo", "Demo")
        expect(main(page).locator('[data-testid="stDeckGlJsonChart"] canvas').first).to_be_visible()
        settle(page)
        assert page.evaluate("() => window.__violations") == []
        assert [url for url in elsewhere if not url.startswith(TAB_ICON)] == []
    finally:
        context.close()
