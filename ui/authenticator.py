"""The one module that talks to streamlit-authenticator and to its cookie component.

Carburoam uses the library for two widgets (registration with its captcha, and the change of a
detail). Everything that depends on how the library works inside lives here: its session-state
keys, the in-memory credentials dict its widgets change, and its messages (told in the active
language, as are the labels its forms are given). A library upgrade touches this file only.

The sign-in cookie holds the session's random token, signed (a JWT with the credentials
document's cookie key). The browser writes or deletes it with a small script of ours, drawn by the
run that signs in or out. The library's cookie component (extra-streamlit-components' CookieManager,
a frame) did it before, and then reported back with a script run of its own: one more run for each
sign-in, and a sign-out clicked while that report came in could be lost. A rerun can replace the
script before the browser ran it: so the cookie to write or delete is kept in the session state and
the script is drawn on every run, and the browser applies each change once (it remembers the
change's nonce).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import secrets
from collections.abc import Mapping
from typing import Any

import jwt
import streamlit as st
import streamlit_authenticator as stauth
from streamlit_authenticator.utilities import RegisterError, UpdateError, Validator

from accounts.errors import RegistrationRefused
from accounts.passwords import spend_a_hash
from accounts.rules import (
    EMAIL_INVALID,
    NAME_MAX_CHARS,
    PASSWORD_HELP,
    PASSWORDS_DIFFER,
    USERNAME_RULE,
    check_email,
    check_name,
    check_password_policy,
    check_username,
    passes,
    say,
)
from accounts.service import EMAIL_TAKEN
from accounts.store import Document
from accounts.users import Account
from i18n import N_, _

PENDING_COOKIE = "cookie-pending"  # ("set", value, expires) or ("delete",), with a nonce for the component key
JWT_ALGORITHM = "HS256"
# Code of ours; the cookie is a JWT (base64url and dots), its name and options our settings'.
COOKIE_SCRIPT = """<script>(() => {
  const change = %s;
  if (window.carburoamCookie !== change) { document.cookie = %s; window.carburoamCookie = change; }
})();</script>"""
# Messages the library raises when an e-mail or username is taken: it says so before hashing the password.
TAKEN = {"Email already taken", "Username/email already taken", "User already exists"}
TAKEN_EITHER = N_("That username or e-mail address is already used by another account.")
LIBRARY_MESSAGES = {
    "Username is not valid": USERNAME_RULE,
    "Email is not valid": EMAIL_INVALID,
    "First name is not valid": N_("Please enter your first name (at most {count} characters)."),
    "Last name is not valid": N_("Please enter your last name (at most {count} characters)."),
    "Password/repeat password fields cannot be empty": N_("Please type the password twice."),
    "Passwords do not match": PASSWORDS_DIFFER,
    "Email already taken": EMAIL_TAKEN,
    "Username/email already taken": TAKEN_EITHER,
    "User already exists": TAKEN_EITHER,
    "New and current values are the same": N_("Nothing changed."),
}


class AccountValidator(Validator):
    """The library's validator applying Carburoam's rules inside its widgets."""

    def validate_username(self, username: str) -> bool:
        return passes(check_username, username)

    def validate_email(self, email: str) -> bool:
        return passes(check_email, email)

    def validate_name(self, name: str) -> bool:
        return passes(check_name, name)

    def validate_password(self, password: str) -> bool:
        return passes(check_password_policy, password)

    def diagnose_password(self, password: str) -> str:
        try:
            check_password_policy(password)
        except RegistrationRefused as refusal:
            return str(refusal)
        return ""


def explain(message: str) -> str:
    """The library's terse messages in plain language, in the active language (ours pass through unchanged)."""
    if message not in LIBRARY_MESSAGES:
        return message
    return _(LIBRARY_MESSAGES[message]).format(count=NAME_MAX_CHARS)


# --------------------------------------------------------------------------- widgets


def _library(document: Document, account: Account | None) -> stauth.Authenticate:
    """The library over `document`, with its session keys saying who is signed in (its widgets read them)."""
    cookie = document["cookie"]
    library = stauth.Authenticate(
        document["credentials"],
        cookie["name"],
        cookie["key"],
        cookie["expiry_days"],
        validator=AccountValidator(),
        auto_hash=False,
        password_instructions=say(PASSWORD_HELP),
    )
    st.session_state.update(
        authentication_status=account is not None,
        username=account.username if account else None,
        name=account.name if account else None,
        email=account.email if account else None,
        roles=[account.role] if account else None,
    )
    return library


def _entry(library: stauth.Authenticate, username: str) -> dict[str, Any]:
    return library.authentication_controller.authentication_model.credentials["usernames"][username]


def registration_form(document: Document) -> tuple[str, Mapping[str, Any]] | None:
    """The library's registration form; the (username, entry) it made when submitted, else None.

    RegistrationRefused carries the library's refusal in plain language. A refusal because the
    e-mail or username is taken costs a password hash, as an accepted form does, so its timing
    does not tell that the address has an account.
    """
    library = _library(document, None)
    try:
        _email, username, _name = library.register_user(
            location="main",
            captcha=False,  # ui/captcha.py draws and checks its own, larger and renewable
            roles=["user"],
            password_hint=False,
            key="register",
            fields={
                "Form name": _("Your details"),
                "First name": _("First name"),
                "Last name": _("Last name"),
                "Email": _("E-mail"),
                "Username": _("Username"),
                "Password": _("Password"),
                "Repeat password": _("Repeat the password"),
                "Register": _("Create my account"),
            },
        )
    except RegisterError as exc:
        if str(exc) in TAKEN:
            spend_a_hash()
        raise RegistrationRefused(explain(str(exc))) from exc
    if not username:
        return None
    return username, _entry(library, username)


def details_form(document: Document, account: Account) -> Mapping[str, Any] | None:
    """The library's change-a-detail form; the account's new entry when it was submitted, else None."""
    library = _library(document, account)
    try:
        changed = library.update_user_details(
            account.username,
            key="details",
            fields={
                "Form name": _("Change a detail"),
                "Field": _("Detail"),
                "First name": _("First name"),
                "Last name": _("Last name"),
                "Email": _("E-mail"),
                "New value": _("New value"),
                "Update": _("Save"),
            },
        )
    except UpdateError as exc:
        raise RegistrationRefused(explain(str(exc))) from exc
    return _entry(library, account.username) if changed else None


# --------------------------------------------------------------------------- the sign-in cookie


def session_token(cookie_name: str, secret: str) -> str | None:
    """The session token in the sign-in cookie this browser sent; None when absent, forged or expired.

    Streamlit reads the cookies once, when the browser connects: a cookie written since then is
    seen at the next page load.
    """
    value = st.context.cookies.get(cookie_name)
    if not value:
        return None
    try:
        payload = jwt.decode(value, secret, algorithms=[JWT_ALGORITHM], options={"require": ["exp", "sid"]})
    except jwt.PyJWTError:
        return None
    token = payload["sid"]
    return token if isinstance(token, str) else None


def has_cookie(cookie_name: str) -> bool:
    return bool(st.context.cookies.get(cookie_name))


def write_cookie(cookie_name: str, secret: str, token: str, expires_at: dt.datetime) -> None:
    """Have the browser keep the sign-in cookie of session `token` until `expires_at`."""
    value = jwt.encode({"sid": token, "exp": int(expires_at.timestamp())}, secret, algorithm=JWT_ALGORITHM)
    st.session_state[PENDING_COOKIE] = ("set", cookie_name, value, expires_at, secrets.token_hex(4))


def drop_cookie(cookie_name: str) -> None:
    """Have the browser forget the sign-in cookie."""
    st.session_state[PENDING_COOKIE] = ("delete", cookie_name, None, None, secrets.token_hex(4))


def deliver_cookie() -> None:
    """Have the browser make the last cookie change of this session, once (see the module's docstring)."""
    pending = st.session_state.get(PENDING_COOKIE)
    if pending is None:
        return
    action, name, value, expires_at, nonce = pending
    if action == "set":
        secure = "; Secure" if (st.context.url or "").startswith("https:") else ""
        cookie = f"{name}={value}; path=/; expires={email.utils.format_datetime(expires_at, usegmt=True)}"
        cookie += f"; SameSite=Strict{secure}"
    else:
        cookie = f"{name}=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT; SameSite=Strict"
    st.sidebar.html(COOKIE_SCRIPT % (json.dumps(nonce), json.dumps(cookie)), unsafe_allow_javascript=True)
