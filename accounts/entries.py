"""The user entries of the credentials document, in the shape streamlit-authenticator reads.

    credentials.usernames[username] = {email, first_name, last_name, password (bcrypt hash),
                                       roles, failed_login_attempts, logged_in[, password_hint]}

The last two fields belong to the library's own sign-in widget, which Carburoam does not use; they
are written so that the document stays one the library accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from accounts.errors import PASSWORD_CHANGED_MEANWHILE, AccountMissing, WrongPassword
from accounts.rules import normalise_email, normalise_username
from accounts.store import Document

Entry = dict[str, Any]
NAME_STORED_CHARS = 120


def users_in(document: Document) -> dict[str, Entry]:
    return document["credentials"]["usernames"]


def email_of(entry: Entry) -> str:
    return normalise_email(str(entry.get("email") or ""))


def name_of(username: str, entry: Entry) -> str:
    full = f"{entry.get('first_name') or ''} {entry.get('last_name') or ''}".strip()
    return (full or username)[:NAME_STORED_CHARS]


def role_of(entry: Entry) -> str:
    return "admin" if "admin" in (entry.get("roles") or []) else "user"


def email_owner(users: Mapping[str, Entry], email: str) -> str | None:
    """The username whose entry has this (normalised) address, if any."""
    return next((name for name, entry in users.items() if email_of(entry) == email), None)


def new_entry(email: str, first_name: str, last_name: str, password_hash: str, roles: list[str]) -> Entry:
    return {
        "email": email,
        "first_name": first_name,
        "last_name": last_name,
        "password": password_hash,
        "roles": roles,
        "failed_login_attempts": 0,
        "logged_in": False,
    }


def find_account(document: Document, identifier: str) -> tuple[str, Entry] | None:
    """The account named by a username or an e-mail address, if there is one."""
    users = users_in(document)
    username = email_owner(users, normalise_email(identifier)) if "@" in identifier else normalise_username(identifier)
    if username is None or username not in users:
        return None
    return username, users[username]


def entry_of(document: Document, username: str) -> Entry:
    """The entry of `username`; AccountMissing when the document has none."""
    entry = users_in(document).get(username)
    if entry is None:
        raise AccountMissing()
    return entry


def set_password(document: Document, username: str, password_hash: str, previous_hash: str | None = None) -> Entry:
    """Store a new password hash; refused when the stored one is no longer `previous_hash` (if given)."""
    entry = entry_of(document, username)
    if previous_hash is not None and entry.get("password") != previous_hash:
        raise WrongPassword(PASSWORD_CHANGED_MEANWHILE)
    entry["password"] = password_hash
    return dict(entry)
