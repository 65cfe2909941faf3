"""The app's frame, shared by every page: resources, sign-in, navigation by role, sidebar.

`home.py` calls these in order on every run; pages only ask `current_account()`
and `resources()`. Session-state keys used for the signed-in person live here.
"""

from __future__ import annotations

from dataclasses import dataclass

import jwt
import streamlit as st
import streamlit_authenticator as stauth
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

import etl
from auth import (
    PASSWORD_HELP,
    Account,
    AccountError,
    Accounts,
    AccountValidator,
    credential_version_in,
)
from credentials import CredentialStore, StoreError, credential_store
from session import init_db, make_engine, session_factory, writer
from settings import Settings, load_settings
from utils import utcnow

ACCOUNT_KEY = "account"
AUTHENTICATOR_KEY = "authenticator"
STORE_ERROR_KEY = "store-error"
COOKIE_RUNS_KEY = "cookie-runs"
COOKIE_REISSUE_RUNS = 3
PAGES_DIR = "pages"


@dataclass(frozen=True)
class Resources:
    settings: Settings
    engine: Engine
    Session: sessionmaker  # for reading
    Writer: sessionmaker  # for writing: on SQLite its transactions take the write lock up front
    store: CredentialStore
    accounts: Accounts


@st.cache_resource(show_spinner="Opening the database…")
def _open_resources() -> Resources:
    settings = load_settings()
    engine = make_engine(settings.database_url)
    init_db(engine)
    store = credential_store(settings)
    return Resources(
        settings,
        engine,
        session_factory(engine),
        session_factory(writer(engine)),
        store,
        Accounts(settings, store, engine),
    )


def resources() -> Resources:
    """The process-wide settings, database and account services; a clear stop when they cannot open."""
    try:
        return _open_resources()
    except ValueError as exc:
        st.error(f"Carburoam is not configured correctly: {exc}")
    except SQLAlchemyError as exc:
        st.error(f"The database cannot be opened: {str(getattr(exc, 'orig', exc)).splitlines()[0]}")
    except StoreError as exc:
        st.error(str(exc))
    st.stop()


@st.cache_resource(show_spinner=False)
def start_scheduler(_settings: Settings) -> int | None:
    """Start the ETL scheduler once per server process (it guards itself against duplicates)."""
    if not _settings.etl_autostart:
        return None
    return etl.ensure_scheduler(_settings)


def current_account() -> Account | None:
    return st.session_state.get(ACCOUNT_KEY)


def authenticator() -> stauth.Authenticate:
    """This run's streamlit-authenticator, built by `sign_in` over the newest credentials document."""
    found = st.session_state.get(AUTHENTICATOR_KEY)
    if found is None:
        st.error(st.session_state.get(STORE_ERROR_KEY) or "The account service is unreachable right now.")
        st.stop()
    return found


def library_entry(username: str) -> dict:
    """The credentials entry of `username` as this run's authenticator holds it (changed by its widgets)."""
    return authenticator().authentication_controller.authentication_model.credentials["usernames"][username]


def remember(account: Account) -> None:
    """Keep the session signed in as `account` after its own credentials changed."""
    st.session_state[ACCOUNT_KEY] = account


def sign_out() -> None:
    """End the session's sign-in and forget its cookie (after an account deletion, say)."""
    authenticator().logout(location="unrendered")
    _drop_session_account()


def _authenticator(app: Resources, document: dict) -> stauth.Authenticate:
    cookie = document["cookie"]
    return stauth.Authenticate(
        document["credentials"],
        cookie["name"],
        cookie["key"],
        cookie["expiry_days"],
        validator=AccountValidator(),
        auto_hash=False,
        login_sleep_time=0,
        password_instructions=PASSWORD_HELP,
    )


def _cookie_username(document: dict, accounts: Accounts) -> str | None:
    """The username in a valid, current sign-in cookie; None when absent, forged, expired or outdated."""
    cookie = document["cookie"]
    token = st.context.cookies.get(cookie["name"])
    if not token:
        return None
    try:
        payload = jwt.decode(token, cookie["key"], algorithms=["HS256"])
    except jwt.PyJWTError:
        return None
    username, expires = payload.get("username"), payload.get("exp_date")
    if not isinstance(username, str) or not isinstance(expires, int | float):
        return None
    if expires <= utcnow().timestamp():
        return None
    if not accounts.cookie_is_current(document, username, expires, cookie["expiry_days"]):
        return None
    return username


def sign_in(app: Resources) -> Account | None:
    """Restore, check or open the session's sign-in; returns the signed-in account or None."""
    try:
        snapshot = app.store.load()
    except StoreError as exc:
        st.sidebar.error(str(exc))
        st.session_state[STORE_ERROR_KEY] = str(exc)
        st.session_state.pop(AUTHENTICATOR_KEY, None)
        return _drop_session_account()
    if snapshot.stale:
        st.sidebar.warning("The account service is unreachable; signing in works, changes to accounts don't.")
    document = snapshot.document
    authenticator = _authenticator(app, document)
    st.session_state[AUTHENTICATOR_KEY] = authenticator
    account = current_account()
    if account is not None:
        sign_out_slot = st.sidebar.empty()
        if credential_version_in(document, account.username) != account.credential_version:
            sign_out()
            st.sidebar.info("Your password changed, or your account was removed: please sign in again.")
        elif sign_out_slot.button("Sign out", key="sign-out"):
            sign_out()
            sign_out_slot.empty()
        else:
            _finish_setting_cookie(authenticator)
            return account
    elif not st.session_state.get("logout"):
        username = _cookie_username(document, app.accounts)
        if username is not None:
            return _remember(authenticator, app.accounts.account(username))
    return _sign_in_form(app, authenticator)


def _sign_in_form(app: Resources, authenticator: stauth.Authenticate) -> Account | None:
    # No st.rerun() after a sign-in or sign-out: the library sets and deletes its cookie through a
    # component that only reaches the browser if this run goes on to the end.
    slot = st.sidebar.empty()
    with slot.form("sign-in", clear_on_submit=False):
        st.subheader("Sign in")
        username = st.text_input("Username", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", width="stretch")
    if not submitted:
        return None
    try:
        account = app.accounts.sign_in(username.strip().lower(), password, utcnow())
    except (AccountError, StoreError) as exc:
        st.sidebar.error(str(exc))
        return None
    _remember(authenticator, account)
    authenticator.cookie_controller.set_cookie()
    st.session_state[COOKIE_RUNS_KEY] = COOKIE_REISSUE_RUNS
    slot.empty()
    st.sidebar.button("Sign out", key="sign-out")  # acted on in the next run, like the one above
    return account


def reissue_cookie() -> None:
    """Write a new sign-in cookie in the next runs, as after a sign-in (after a password change, say)."""
    st.session_state[COOKIE_RUNS_KEY] = COOKIE_REISSUE_RUNS


def _finish_setting_cookie(authenticator: stauth.Authenticate) -> None:
    # The cookie component reports back at once, and the rerun that follows can replace the
    # component before it wrote the cookie; so the next few runs after a sign-in write it again.
    if st.session_state.get(COOKIE_RUNS_KEY):
        st.session_state[COOKIE_RUNS_KEY] -= 1
        authenticator.cookie_controller.set_cookie()


def _remember(authenticator: stauth.Authenticate, account: Account | None) -> Account | None:
    if account is None:
        return None
    st.session_state.update(
        {
            ACCOUNT_KEY: account,
            "authentication_status": True,
            "username": account.username,
            "name": account.name,
            "email": account.email,
            "roles": [account.role],
            "logout": None,
        }
    )
    return account


def _drop_session_account() -> None:
    st.session_state.pop(ACCOUNT_KEY, None)
    return None


def pages_for(account: Account | None) -> list[st.Page]:
    """The pages this person may open; the admin page exists only for admins."""
    about = st.Page(f"{PAGES_DIR}/about.py", title="About", icon=":material/info:", url_path="about")
    if account is None:
        return [
            st.Page(f"{PAGES_DIR}/welcome.py", title="Welcome", icon=":material/home:", default=True),
            st.Page(f"{PAGES_DIR}/demo.py", title="Demo", icon=":material/play_circle:", url_path="demo"),
            st.Page(f"{PAGES_DIR}/register.py", title="Create an account", icon=":material/person_add:"),
            st.Page(f"{PAGES_DIR}/forgot.py", title="Forgot password", icon=":material/key:"),
            about,
        ]
    pages = [
        st.Page(f"{PAGES_DIR}/dashboard.py", title="My prices", icon=":material/local_gas_station:", default=True),
        st.Page(f"{PAGES_DIR}/stations.py", title="Stations", icon=":material/map:"),
        st.Page(f"{PAGES_DIR}/profile.py", title="Profile", icon=":material/person:"),
        about,
    ]
    if account.role == "admin":
        pages.insert(3, st.Page(f"{PAGES_DIR}/admin.py", title="Admin", icon=":material/admin_panel_settings:"))
    return pages


def draw_sidebar(account: Account | None) -> None:
    if account is not None:
        st.sidebar.caption(f"Signed in as {account.username}")
    st.sidebar.caption("Prices: prix-carburants.gouv.fr, Licence Ouverte 2.0")


def require_account() -> Account:
    """The signed-in account; the page stops here for anyone signed out (checked on the server)."""
    account = current_account()
    if account is None:
        st.warning("Please sign in with the form in the sidebar to see this page.")
        st.stop()
    return account


def require_admin(account: Account | None) -> Account:
    """Refuse the page server-side unless the session belongs to an admin."""
    if account is None or account.role != "admin":
        st.error("This page is for administrators.")
        st.stop()
    return account
