"""The app's frame, run before every page: language, resources, the scheduler check, sign-in, navigation, sidebar.

`home.py` calls these in order on every run; pages ask `current_account()`, `resources()` and the
`require_*` guards. Who is signed in is decided on every run from the server-side session the
browser's token opens (`Accounts.resume`), never from what the browser or the session state kept.

Every run speaks the session's language, set at the top of the run (ui/language.py).
"""

from __future__ import annotations

import functools
import gc
import logging
from dataclasses import dataclass

import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker
from streamlit.runtime.pages_manager import PagesManager

from accounts.admin import Administration
from accounts.errors import AccountError
from accounts.service import Accounts, CookieSettings, SignedIn
from accounts.sessions import session_id
from accounts.store import CredentialStore, StoreError, credential_store
from accounts.users import Account
from i18n import N_, _
from ingest import scheduler
from session import init_db, make_engine, session_factory, writer
from settings import Settings, load_settings
from ui import authenticator, language, widgets
from utils import first_line

log = logging.getLogger(__name__)

ACCOUNT_KEY = "account"
TOKEN_KEY = "session-token"  # noqa: S105 (a session-state key)
COOKIE_READ_KEY = "cookie-read"  # the browser's cookie is read once per connection
SCHEDULER_CHECKED_KEY = "scheduler-checked"
STARTED_KEY = "started"
# The resources were open at a run of this session: no spinner then, as each costs a thread and a message to the
# browser at every run (twice a run: the frame and the page ask), though only a process's first run waits.
RESOURCES_OPEN_KEY = "resources-open"
PAGE_KEY = "page-shown"  # the page of the last run, to tell a change of page
SIGNED_IN_NOW_KEY = "signed-in-now"
FOLDS_KEY = "sidebar-folds"  # each fold is a new script, which the browser runs once
FOLD_SIDEBAR_SCRIPT = """<script>/* fold %d */
if (window.matchMedia("(max-width: 768px)").matches) {
  document.querySelector('[data-testid="stSidebarCollapseButton"] button')?.click();
}
</script>"""
FLASH_KEY = "flash"  # a confirmation shown after the rerun that follows a change of session
SESSION_ENDED = N_("Your session has ended (signed out elsewhere, or too long unused): please sign in again.")
PAGES_DIR = "pages"
FIND_PAGE = f"{PAGES_DIR}/find.py"
WELCOME_NEW_ACCOUNT = N_(
    "Welcome to Carburoam: your account is ready and you are signed in. Find your stations and follow them."
)


@dataclass(frozen=True)
class Resources:
    settings: Settings
    engine: Engine
    Session: sessionmaker  # for reading
    Writer: sessionmaker  # for writing: on SQLite its transactions take the write lock up front
    store: CredentialStore
    accounts: Accounts
    administration: Administration


def rerun_first_run(page: st.Page) -> None:
    """End a browser session's first run with a rerun of the same page, before any page is drawn.

    With a `pages/` folder beside `st.navigation`, Streamlit computes the ids of the frame's
    widgets under another script hash in a session's first run than in every later run: the
    first form a person sends (the sign-in form, say) would lose its values. After this rerun,
    every widget a person can reach has its lasting id.
    """
    if not st.session_state.get(STARTED_KEY):
        st.session_state[STARTED_KEY] = True
        st.switch_page(page, query_params=st.query_params.to_dict())


@st.cache_resource(show_spinner=False)
def _open_resources() -> Resources:
    settings = load_settings()
    engine = make_engine(settings.database_url)
    init_db(engine)
    store = credential_store(settings)
    reader, writing = session_factory(engine), session_factory(writer(engine))
    accounts = Accounts(settings, store, engine)
    return Resources(
        settings, engine, reader, writing, store, accounts, Administration(accounts, settings, reader, writing)
    )


def through_the_frame() -> None:
    """Make sure this run goes through `home.py`, the frame, and not straight to a page script.

    With a `pages/` folder beside `st.navigation`, a Streamlit process that has not yet run
    `st.navigation` (a server just started) serves a link to a page, such as /find?q=Lyon, by
    running that page's script alone, as in Streamlit's first multipage design: no page setup,
    no sign-in, the wrong menu. Such a run has never been through the frame in its session; it
    tells Streamlit that this app navigates with `st.navigation` (the flag `st.navigation` itself
    sets) and runs again, now through the frame, on the same page and query.
    """
    if PagesManager.uses_pages_directory and not st.session_state.get(STARTED_KEY):
        PagesManager.uses_pages_directory = False
        st.rerun()
    language.speak()


def resources() -> Resources:
    """The process-wide settings, database and account services; a clear stop when they cannot open."""
    through_the_frame()
    try:
        if st.session_state.get(RESOURCES_OPEN_KEY):
            return _open_resources()
        with st.spinner(_("Opening the database…")):
            opened = _open_resources()
        st.session_state[RESOURCES_OPEN_KEY] = True
        return opened
    except ValueError as exc:
        widgets.error(_("Carburoam is not configured correctly: {}"), exc)
    except SQLAlchemyError as exc:
        widgets.error(_("The database cannot be opened: {}"), first_line(exc))
    except StoreError as exc:
        widgets.error("{}", exc)
    st.stop()


def ensure_scheduler(app: Resources) -> None:
    """Once per browser session, start the ETL scheduler unless it runs (it may have died since the last check)."""
    if not app.settings.etl_autostart or st.session_state.get(SCHEDULER_CHECKED_KEY):
        return
    st.session_state[SCHEDULER_CHECKED_KEY] = True
    try:
        scheduler.ensure_scheduler(app.settings)
    except OSError:
        log.exception("could not start the ETL scheduler")


def current_account() -> Account | None:
    return st.session_state.get(ACCOUNT_KEY)


def current_session_id() -> str | None:
    """The id of this browser's session row (to tell "this device" among the account's sessions)."""
    token = st.session_state.get(TOKEN_KEY)
    return session_id(token) if token else None


def sign_in(app: Resources) -> Account | None:
    """Resume this browser's session; returns the signed-in account or None (see `offer_sign_in`)."""
    try:
        cookie = app.accounts.cookie()
        token = _token(cookie)
        account = app.accounts.resume(token) if token else None
    except (StoreError, SQLAlchemyError) as exc:
        _say_accounts_are_unreachable(exc)
        st.session_state.pop(ACCOUNT_KEY, None)  # signed out for this run; the session itself is kept
        return None
    if token is not None and account is None:
        end_session(cookie)
        flash(_(SESSION_ENDED), "info")
    if account is None:
        st.session_state.pop(ACCOUNT_KEY, None)
    _warn_of_a_store_outage(app.store)
    if account is not None:
        st.session_state[TOKEN_KEY] = token
        st.session_state[ACCOUNT_KEY] = account
        language.take_up_profile_language(app, account)
        if st.sidebar.button(_("Sign out"), key="sign-out"):
            sign_out(app)
    authenticator.deliver_cookie()
    return account


def _say_accounts_are_unreachable(exc: StoreError | SQLAlchemyError) -> None:
    if isinstance(exc, StoreError):
        widgets.error("{}", exc, where=st.sidebar)
    else:
        log.exception("the database refused a sign-in operation")
        st.sidebar.error(_("The database is not answering right now; please try again in a moment."))


def _warn_of_a_store_outage(store: CredentialStore) -> None:
    """While the credentials store serves its remembered copy, say so (and look whether it is back)."""
    if store.degraded:
        try:
            store.load()
        except StoreError:
            log.warning("the credentials store is still unreachable")
    if store.degraded:
        st.sidebar.warning(_("The account service is unreachable; signing in works, changes to accounts don't."))


def _token(cookie: CookieSettings) -> str | None:
    """This browser session's token: kept in the session state, or read from the cookie at the first run."""
    token = st.session_state.get(TOKEN_KEY)
    if token is None and not st.session_state.get(COOKIE_READ_KEY):
        st.session_state[COOKIE_READ_KEY] = True
        token = authenticator.session_token(cookie.name, cookie.secret)
        if token is None and authenticator.has_cookie(cookie.name):
            authenticator.drop_cookie(cookie.name)  # forged, expired, or from before server-side sessions
    return token


def _sign_in_form(app: Resources, cookie: CookieSettings, where, key: str) -> SignedIn | None:
    """The sign-in form; the session it opened when it was sent and accepted (the form is then taken away)."""
    slot = where.empty()
    with slot.form(key, clear_on_submit=False):
        st.subheader(_("Sign in"))
        username = st.text_input(_("Username"), autocomplete="username")
        password = st.text_input(_("Password"), type="password", autocomplete="current-password")
        submitted = st.form_submit_button(_("Sign in"), width="stretch")
    if not submitted:
        return None
    try:
        signed_in = app.accounts.sign_in(username, password, user_agent=st.context.headers.get("User-Agent", ""))
    except AccountError as exc:
        widgets.error("{}", exc, where=where)
        return None
    except (StoreError, SQLAlchemyError) as exc:
        _say_accounts_are_unreachable(exc)
        return None
    start_session(cookie, signed_in)
    slot.empty()
    return signed_in


def offer_sign_in(app: Resources, page: st.Page) -> None:
    """The sidebar's sign-in form for a person signed out, except on the Welcome page, which shows its own.

    On a phone the sidebar, and a form in it, are folded away: the Welcome page (the default page when
    signed out) shows the form in the page instead, and only there, so that a person sees one form at
    any width. A sign-in reruns the script, for the signed-in menu.
    """
    if current_account() is None and page.url_path != "":
        _offer_sign_in(app, st.sidebar, "sign-in")


def sign_in_here() -> None:
    """The sign-in form in the page itself: on a phone the sidebar, and its form, are folded away."""
    if current_account() is None:
        _offer_sign_in(resources(), st.container(), "sign-in-page")


def _offer_sign_in(app: Resources, where, key: str) -> None:
    try:
        cookie = app.accounts.cookie()
    except (StoreError, SQLAlchemyError):
        return  # the sidebar already says that accounts cannot be reached
    if _sign_in_form(app, cookie, where, key) is not None:
        st.rerun()  # the frame of this run was drawn signed out


def fold_sidebar_on_phones(page: st.Page) -> None:
    """After a sign-in or a change of page, fold the sidebar away on a narrow screen, where it covers the page.

    Streamlit keeps the sidebar as the person left it (they opened it to sign in or to pick a page);
    this clicks its fold button in the browser, only below Streamlit's own breakpoint for folding it.
    """
    moved = st.session_state.get(PAGE_KEY) != page.url_path
    st.session_state[PAGE_KEY] = page.url_path
    if not (moved or st.session_state.pop(SIGNED_IN_NOW_KEY, False)):
        return
    st.session_state[FOLDS_KEY] = folds = st.session_state.get(FOLDS_KEY, 0) + 1
    st.sidebar.html(FOLD_SIDEBAR_SCRIPT % folds, unsafe_allow_javascript=True)  # code of ours, no input in it


def start_session(cookie: CookieSettings, signed_in: SignedIn) -> None:
    """This browser is now signed in to `signed_in`'s session (after a sign-in or a password change).

    The callers rerun the script; the frame of the run has the browser write the cookie.
    """
    st.session_state[TOKEN_KEY] = signed_in.token
    st.session_state[ACCOUNT_KEY] = signed_in.account
    st.session_state[SIGNED_IN_NOW_KEY] = True
    authenticator.write_cookie(cookie.name, cookie.secret, signed_in.token, signed_in.expires_at)


def end_session(cookie: CookieSettings) -> None:
    """Forget this browser's session (already ended on the server) and have the browser drop its cookie."""
    st.session_state.pop(TOKEN_KEY, None)
    st.session_state.pop(ACCOUNT_KEY, None)
    authenticator.drop_cookie(cookie.name)


def sign_out(app: Resources, message: str | None = None) -> None:
    """End this browser's session on the server first, then in the browser; reruns the script."""
    token = st.session_state.get(TOKEN_KEY)
    if token is not None:
        app.accounts.sign_out(token)
    end_session(app.accounts.cookie())
    if message:
        flash(message)
    st.rerun()


def flash(message: str, kind: str = "success") -> None:
    """Show `message` (written in the code) at the top of the next page drawn, for as long as it stays there.

    It outlives the reruns that follow a change of session (the cookie component's report, say).
    """
    st.session_state[FLASH_KEY] = (message, kind, None)


def show_flash(page: st.Page) -> None:
    """The pending message, on the page it first appeared on; another page drops it."""
    message, kind, shown_on = st.session_state.get(FLASH_KEY, (None, None, None))
    if message is None:
        return
    if shown_on not in (None, page.url_path):
        del st.session_state[FLASH_KEY]
        return
    st.session_state[FLASH_KEY] = (message, kind, page.url_path)
    (st.info if kind == "info" else st.success)(message)


def remember(account: Account) -> None:
    """Keep the session's account as it is after a change of its details."""
    st.session_state[ACCOUNT_KEY] = account


def pages_for(account: Account | None) -> list[st.Page]:
    """The pages this person may open; the admin page exists only for admins."""
    about = st.Page(f"{PAGES_DIR}/about.py", title=_("About"), icon=":material/info:", url_path="about")
    find = st.Page(FIND_PAGE, title=_("Find a station"), icon=":material/search:", url_path="find")
    # Opened from the link of an alert e-mail, signed in or not; never in the menu.
    stop_mail = st.Page(
        f"{PAGES_DIR}/unsubscribe.py", title=_("Alert e-mails"), url_path="unsubscribe", visibility="hidden"
    )
    if account is None:
        return [
            find,
            st.Page(f"{PAGES_DIR}/welcome.py", title=_("Welcome"), icon=":material/home:", default=True),
            st.Page(f"{PAGES_DIR}/demo.py", title=_("Demo"), icon=":material/play_circle:", url_path="demo"),
            st.Page(f"{PAGES_DIR}/register.py", title=_("Create an account"), icon=":material/person_add:"),
            st.Page(f"{PAGES_DIR}/forgot.py", title=_("Forgot password"), icon=":material/key:"),
            about,
            stop_mail,
        ]
    pages = [
        st.Page(f"{PAGES_DIR}/dashboard.py", title=_("My prices"), icon=":material/local_gas_station:", default=True),
        find,
        st.Page(f"{PAGES_DIR}/stations.py", title=_("My stations"), icon=":material/map:"),
        st.Page(f"{PAGES_DIR}/trends.py", title=_("Price trends"), icon=":material/show_chart:", url_path="trends"),
        st.Page(f"{PAGES_DIR}/profile.py", title=_("Profile"), icon=":material/person:"),
        about,
        stop_mail,
    ]
    if account.role == "admin":
        pages.insert(5, st.Page(f"{PAGES_DIR}/admin.py", title=_("Admin"), icon=":material/admin_panel_settings:"))
    return pages


def draw_sidebar(app: Resources, account: Account | None) -> None:
    language.picker(app, account)
    if account is not None:
        widgets.caption(_("Signed in as {}"), account.username, where=st.sidebar)
    st.sidebar.caption(
        _("Prices: prix-carburants.gouv.fr, Licence Ouverte 2.0. Brands: © les contributeurs d'OpenStreetMap, ODbL.")
    )


@functools.cache
def settle_the_heap() -> None:
    """Once per process, after its first page was drawn: leave what lives as long as the process (the modules,
    Streamlit's runtime, the opened resources) out of Python's full garbage collections.

    Each full collection went through all of it, some 270,000 objects: 0.15 s of CPU, about once per person's
    journey (bench/load_bench.py); it now goes through what the runs since made, 10-15 ms. What is left out is
    still freed when nothing refers to it; only a reference cycle among those first objects would stay.
    """
    gc.freeze()


def require_account() -> Account:
    """The signed-in account; the page stops here for anyone signed out (checked on the server)."""
    account = current_account()
    if account is None:
        st.warning(_("Please sign in to see this page."))
        sign_in_here()
        st.stop()
    return account


def require_admin(account: Account | None) -> Account:
    """Refuse the page server-side unless the session belongs to an admin."""
    if account is None or account.role != "admin":
        st.error(_("This page is for administrators."))
        st.stop()
    return account
