"""The accounts service: what pages and the command line do with accounts.

Registration, sign-in into a server-side session, sign-out (here or everywhere), password
changes, profile details, deletion and administrators. Each operation checks its rules, then
changes the credentials document and the database together (`DocumentChanges` undoes the first
when the second fails). Messages of `AccountError` are fit to show as they are;
`store.StoreError` passes through unchanged.

Keep one instance per process (pages: `st.cache_resource`): it owns the background worker.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from accounts import sessions
from accounts.background import Background
from accounts.changes import DocumentChanges
from accounts.entries import (
    Entry,
    email_of,
    email_owner,
    entry_of,
    new_entry,
    set_password,
    users_in,
)
from accounts.errors import AccountMissing, RegistrationRefused, WrongPassword
from accounts.passwords import hash_password, is_hash, password_matches
from accounts.recovery import DEFAULT_CODE_TTL, Recovery
from accounts.rules import (
    check_email,
    check_name,
    check_new_password,
    check_password_policy,
    check_username,
    normalise_username,
)
from accounts.sessions import SessionPolicy, SessionRow
from accounts.store import CredentialStore, Document
from accounts.throttle import Throttle, forget
from accounts.users import Account, UsersMirror, delete_user_data, user_row, write_row
from i18n import N_
from mailer import delete_mail_of
from models import User
from session import session_factory, writer
from settings import Settings
from utils import utcnow

log = logging.getLogger(__name__)

USERNAME_TAKEN = N_("That username is already taken; please choose another one.")
EMAIL_TAKEN = N_("That e-mail address is already used by another account.")
SAME_PASSWORD = N_("The new password must be different from the current one.")
WRONG_CREDENTIALS = N_("Wrong username or password.")
WRONG_CURRENT_PASSWORD = N_("The password is wrong.")
NO_HASHED_PASSWORD = N_("The registration form gave no usable password; please try again.")
ADMIN_NEEDS_PASSWORD = N_("A new admin account needs a password.")


class CookieSettings(NamedTuple):
    name: str
    secret: str


@dataclass(frozen=True)
class SignedIn:
    """A new session: the account, the token for the browser's cookie, and when the session ends at the latest."""

    account: Account
    token: str
    expires_at: dt.datetime


class Accounts:
    def __init__(
        self, settings: Settings, store: CredentialStore, engine: Engine, *, code_ttl: dt.timedelta = DEFAULT_CODE_TTL
    ) -> None:
        self.settings = settings
        self.store = store
        self.policy = SessionPolicy(
            lifetime=dt.timedelta(days=settings.session_max_days), idle=dt.timedelta(days=settings.session_idle_days)
        )
        self._reader = session_factory(engine)
        self._writer = session_factory(writer(engine))
        self.users = UsersMirror(store, self._reader, self._writer)
        self.throttle = Throttle(self._writer)
        self.recovery = Recovery(
            settings, store, self._writer, self.users, self.throttle, Background(), code_ttl=code_ttl
        )
        self._cookie: CookieSettings | None = None

    def account(self, username: str, now: dt.datetime | None = None) -> Account | None:
        """The account of `username` (its users row made current), or None when there is none."""
        return self.users.account(normalise_username(username), now or utcnow())

    def _existing(self, username: str, now: dt.datetime) -> Account:
        account = self.account(username, now)
        if account is None:
            raise AccountMissing()
        return account

    # ----------------------------------------------------------------- registration

    def register(
        self,
        username: str,
        email: str,
        first_name: str,
        last_name: str,
        password: str,
        repeat: str,
        now: dt.datetime | None = None,
    ) -> Account:
        """Create an account with the 'user' role; RegistrationRefused says which rule was broken."""
        username = check_username(normalise_username(username))
        email = check_email(email)
        first_name, last_name = check_name(first_name, "first name"), check_name(last_name, "last name")
        password = check_new_password(password, repeat)
        entry = new_entry(email, first_name, last_name, hash_password(password), ["user"])
        return self._create(username, entry, now or utcnow())

    def adopt_registration(self, username: str, entry: Mapping[str, Any], now: dt.datetime | None = None) -> Account:
        """Save an account that streamlit-authenticator's registration widget made in its own copy.

        `entry` is that copy's new entry (its password already hashed by the widget, which checked
        the password rules). It goes through the same checks as `register` against the newest
        document; only its names, e-mail, password hash and hint are kept, and the role is 'user'.
        """
        username = check_username(normalise_username(username))
        email = check_email(str(entry.get("email") or ""))
        first_name = check_name(str(entry.get("first_name") or ""), "first name")
        last_name = check_name(str(entry.get("last_name") or ""), "last name")
        password_hash = entry.get("password")
        if not is_hash(password_hash):
            raise RegistrationRefused(NO_HASHED_PASSWORD)
        new = new_entry(email, first_name, last_name, password_hash, ["user"])
        if isinstance(entry.get("password_hint"), str) and entry["password_hint"].strip():
            new["password_hint"] = entry["password_hint"].strip()
        return self._create(username, new, now or utcnow())

    def _create(self, username: str, entry: Entry, now: dt.datetime) -> Account:
        """Write a new entry to the document, then its users row; the entry goes if the row fails."""
        email = email_of(entry)
        self._check_free_in_database(username, email)

        def add(document: Document) -> None:
            users = users_in(document)
            if username in users:
                raise RegistrationRefused(USERNAME_TAKEN)
            if email_owner(users, email) is not None:
                raise RegistrationRefused(EMAIL_TAKEN)
            users[username] = entry

        def remove(document: Document, _: None) -> None:
            users = users_in(document)
            if users.get(username, {}).get("password") == entry["password"]:
                del users[username]

        try:
            with DocumentChanges(self.store) as changes:
                changes.apply(add, remove, f"remove the half-created account {username}")
                with self._writer.begin() as session:
                    user = write_row(session, user_row(session, username), username, entry, now)
        except IntegrityError as exc:  # a row that appeared since the check above
            raise RegistrationRefused(EMAIL_TAKEN) from exc
        self.throttle.clear(username)  # failures typed under this name before it existed
        log.info("registered account %s", username)
        return Account.of(user)

    def _check_free_in_database(self, username: str, email: str, *, owner: str | None = None) -> None:
        with self._reader() as session:
            if owner is None and user_row(session, username) is not None:
                raise RegistrationRefused(USERNAME_TAKEN)
            holders = session.scalars(select(User.username).where(func.lower(User.email) == email))
            if any(holder != owner for holder in holders):
                raise RegistrationRefused(EMAIL_TAKEN)

    # ----------------------------------------------------------------- sign-in and sessions

    def sign_in(
        self, username: str, password: str, now: dt.datetime | None = None, *, user_agent: str = ""
    ) -> SignedIn:
        """A new session, if the password is right and no wait is pending; SignInThrottled or WrongPassword."""
        now = now or utcnow()
        username = normalise_username(username)
        entry = self._check_password(username, password, now, WRONG_CREDENTIALS)
        signed_in = self.open_session(Account.of(self.users.synced(username, entry, now)), now, user_agent=user_agent)
        log.info("%s signed in", username)
        return signed_in

    def open_session(self, account: Account, now: dt.datetime | None = None, *, user_agent: str = "") -> SignedIn:
        """A new session of `account`: after its password was checked, or the registration that just created it."""
        now = now or utcnow()
        with self._writer.begin() as session:
            token = sessions.open_session(session, account.user_id, sessions.device_label(user_agent), now, self.policy)
        return SignedIn(account, token, now + self.policy.lifetime)

    def resume(self, token: str, now: dt.datetime | None = None) -> Account | None:
        """The account of a live session, or None: unknown, revoked, expired or idle too long.

        At most once a minute (when its last use is recorded) the account is checked against the
        credentials document: an account removed there ends the session, a changed role applies.
        """
        now = now or utcnow()
        with self._reader() as session:
            live = sessions.live_session(session, token, now, self.policy)
        if live is None:
            return None
        if not sessions.needs_touch(live, now):
            return Account.of(live.user)
        entry = users_in(self.store.load().document).get(live.user.username)
        with self._writer.begin() as session:
            if entry is None:
                sessions.revoke_all(session, live.user.id, now)
                log.warning("%s is no longer in the credentials: its sessions are ended", live.user.username)
                return None
            sessions.touch(session, live.id, now)
        return Account.of(self.users.synced(live.user.username, entry, now))

    def sign_out(self, token: str, now: dt.datetime | None = None) -> None:
        """End the session a token opens (whatever state it is in)."""
        now = now or utcnow()
        with self._writer.begin() as session:
            live = sessions.live_session(session, token, now, self.policy)
            if live is not None:
                sessions.revoke(session, live.id, live.user.id, now)
                log.info("%s signed out", live.user.username)

    def live_sessions(self, user_id: int, now: dt.datetime | None = None) -> list[SessionRow]:
        with self._reader() as session:
            return sessions.live_sessions(session, user_id, now or utcnow(), self.policy)

    def end_session(self, user_id: int, session_id: str, now: dt.datetime | None = None) -> bool:
        """Sign one device of `user_id` out; never another person's."""
        with self._writer.begin() as session:
            return sessions.revoke(session, session_id, user_id, now or utcnow())

    def sign_out_everywhere(self, username: str, now: dt.datetime | None = None) -> int:
        """End every session of an account; returns how many were open. AccountMissing if there is none."""
        now = now or utcnow()
        account = self._existing(username, now)
        with self._writer.begin() as session:
            ended = sessions.revoke_all(session, account.user_id, now)
        log.info("%s signed out everywhere (%d sessions)", username, ended)
        return ended

    def cookie(self) -> CookieSettings:
        """The sign-in cookie's name and signing key, from the credentials document (read once)."""
        if self._cookie is None:
            cookie = self.store.load().document["cookie"]
            self._cookie = CookieSettings(str(cookie["name"]), str(cookie["key"]))
        return self._cookie

    def _check_password(self, username: str, password: str, now: dt.datetime, wrong: str) -> Entry:
        """The entry of `username` if `password` is right; the same refusals whether or not it exists.

        The document is read first: an outage of the store refuses the attempt without counting it.
        """
        entry = users_in(self.store.load().document).get(username)
        self.throttle.reserve(username, now)
        if not password_matches(password, entry.get("password") if entry else None):
            raise WrongPassword(wrong)
        self.throttle.clear(username)
        return entry

    # ----------------------------------------------------------------- credentials

    def change_password(
        self,
        username: str,
        current: str,
        new: str,
        repeat: str,
        now: dt.datetime | None = None,
        *,
        user_agent: str = "",
    ) -> SignedIn:
        """Set a new password (the current one is required); every session ends, and a new one starts here."""
        now = now or utcnow()
        username = normalise_username(username)
        new = check_new_password(new, repeat)
        entry = self._check_password(username, current, now, WRONG_CURRENT_PASSWORD)
        if new == current.strip():
            raise RegistrationRefused(SAME_PASSWORD)
        return self._replace_password(username, entry["password"], hash_password(new), user_agent, now)

    def _replace_password(
        self, username: str, previous_hash: str, new_hash: str, user_agent: str, now: dt.datetime
    ) -> SignedIn:
        def restore(document: Document, _: Entry) -> None:
            entry = users_in(document).get(username)
            if entry is not None and entry.get("password") == new_hash:
                entry["password"] = previous_hash

        account = self._existing(username, now)
        with DocumentChanges(self.store) as changes, self._writer.begin() as session:
            sessions.revoke_all(session, account.user_id, now)
            token = sessions.open_session(session, account.user_id, sessions.device_label(user_agent), now, self.policy)
            changes.apply(
                lambda document: set_password(document, username, new_hash, previous_hash),
                restore,
                f"put back the password of {username} after a failed change",
            )
        self.throttle.clear(username)
        log.info("password of %s changed; every other session of the account ended", username)
        return SignedIn(account, token, now + self.policy.lifetime)

    # ----------------------------------------------------------------- profile

    def update_details(
        self, username: str, first_name: str, last_name: str, email: str, now: dt.datetime | None = None
    ) -> Account:
        """Change names and e-mail (unique regardless of case); the users row follows."""
        now = now or utcnow()
        username = normalise_username(username)
        first_name, last_name = check_name(first_name, "first name"), check_name(last_name, "last name")
        email = check_email(email)
        self._check_free_in_database(username, email, owner=username)
        details = {"email": email, "first_name": first_name, "last_name": last_name}

        def change(document: Document) -> tuple[Entry, Entry]:
            entry = entry_of(document, username)
            if email_owner(users_in(document), email) not in (None, username):
                raise RegistrationRefused(EMAIL_TAKEN)
            before = {key: entry.get(key) for key in details}
            entry.update(details)
            return before, dict(entry)

        def restore(document: Document, change_made: tuple[Entry, Entry]) -> None:
            entry = users_in(document).get(username)
            if entry is not None and all(entry.get(key) == value for key, value in details.items()):
                entry.update(change_made[0])

        try:
            with DocumentChanges(self.store) as changes:
                _, entry = changes.apply(change, restore, f"restore the details of {username}")
                with self._writer.begin() as session:
                    user = write_row(session, user_row(session, username), username, entry, now)
        except IntegrityError as exc:
            raise RegistrationRefused(EMAIL_TAKEN) from exc
        return Account.of(user)

    def delete_account(self, username: str, password: str, now: dt.datetime | None = None) -> None:
        """Remove the account: its credentials entry, every row of it in every table, and its mails.

        The rows are deleted in a transaction that removes the credentials entry before it
        commits: if the document cannot be written, nothing changed; if the commit fails, the
        entry is put back, so the account can still sign in and be deleted again.
        """
        now = now or utcnow()
        username = normalise_username(username)
        self._check_password(username, password, now, WRONG_CURRENT_PASSWORD)
        self.remove_account(username)

    def remove_account(self, username: str) -> None:
        """Delete the account as `delete_account` does, without its password: for administrators."""

        def put_back(document: Document, removed: Entry | None) -> None:
            if removed is not None:
                users_in(document).setdefault(username, removed)

        with DocumentChanges(self.store) as changes, self._writer.begin() as session:
            delete_user_data(session, list(session.scalars(select(User.id).where(User.username == username))))
            forget(session, username)
            changes.apply(
                lambda document: users_in(document).pop(username, None),
                put_back,
                f"put back the credentials of {username} after a failed deletion",
            )
        delete_mail_of(self.settings, username)
        log.info("deleted account %s", username)

    # ----------------------------------------------------------------- administrators

    def create_admin(
        self, username: str, email: str, password: str | None = None, now: dt.datetime | None = None
    ) -> Account:
        """Create an admin account, or promote an existing one (whose e-mail must be `email`; its password stays)."""
        now = now or utcnow()
        username = check_username(normalise_username(username))
        email = check_email(email)
        entry = users_in(self.store.load().document).get(username)
        if entry is None:
            if password is None:
                raise RegistrationRefused(ADMIN_NEEDS_PASSWORD)
            hashed = hash_password(check_password_policy(password))
            return self._create(username, new_entry(email, username, "", hashed, ["user", "admin"]), now)
        if email_of(entry) != email:
            raise RegistrationRefused(
                N_("The account {username} has another e-mail address; check the username."), username=username
            )

        def promote(document: Document) -> Entry:
            found = entry_of(document, username)
            found["roles"] = [*(role for role in found.get("roles") or [] if role != "admin"), "admin"]
            return dict(found)

        entry = self.store.update(promote)
        log.info("account %s promoted to admin", username)
        return Account.of(self.users.synced(username, entry, now))
