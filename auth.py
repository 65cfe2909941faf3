"""Accounts: registration, sign-in with throttling, password changes, profile, deletion, admins, recovery.

Credentials live only in the streamlit-authenticator credentials document kept by `credentials.py`;
the `users` table mirrors each account's username, e-mail, name and role so that the rest of the
data can refer to it. Nothing here draws anything: pages call these functions and show the message
of an `AccountError` as it is. `credentials.StoreError` passes through unchanged.

Besides the library's own fields (email, first_name, last_name, password, roles,
failed_login_attempts, logged_in), each user entry of the document holds:

    credential_version      1 at registration, +1 at each password change or reset
    credentials_changed_at  epoch seconds of the registration or the last password change: sign-in
                            cookies issued before it no longer sign in
    not_before              epoch seconds before which sign-in is refused (throttling), when set

and the document's top level holds `recovery_key`, the HMAC key of password-reset codes.

Passwords are taken without leading and trailing spaces, as the library's widgets take them, so a
password set through either signs in through either.

Usage: python auth.py create-admin --username U --email E
(the password comes from CARBUROAM_ADMIN_PASSWORD when set, else it is asked twice)
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import getpass
import hashlib
import hmac
import logging
import math
import os
import re
import secrets
import sys
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session
from streamlit_authenticator.utilities import Hasher, Validator

from credentials import CredentialStore, Document, StoreError, StoreUnavailable, credential_store
from mailer import MailError, Message, send_mail
from models import CustomStation, User, UserGasType, VerificationCode
from preferences import follow_default_fuels
from session import init_db, make_engine, session_factory, writer
from settings import Settings, load_settings
from utils import utcnow

log = logging.getLogger(__name__)

Entry = dict[str, Any]

USERNAME_PATTERN = r"^[a-z0-9_.-]{3,32}$"
EMAIL_PATTERN = (
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
EMAIL_MAX_CHARS = 254
NAME_MAX_CHARS = 50
PASSWORD_MIN_CHARS = 10
PASSWORD_MAX_CHARS = 64
PASSWORD_MAX_BYTES = 72  # bcrypt ignores (bcrypt 5: refuses) anything longer

FREE_FAILURES = 5  # consecutive wrong passwords before waits start
FIRST_WAIT_SECONDS = 30  # the wait after the 5th failure, doubled at each further one
MAX_WAIT_SECONDS = 3600
UNKNOWN_NAMES_REMEMBERED = 10_000

RESET_PURPOSE = "password_reset"
CODE_DIGITS = 8
CODE_MAX_ATTEMPTS = 5
CODE_REQUESTS_PER_HOUR = 3
DEFAULT_CODE_TTL = dt.timedelta(minutes=10)
OLD_CODES_KEPT = dt.timedelta(days=1)  # older code rows of a user are pruned at their next request
ADMIN_PASSWORD_ENV = "CARBUROAM_ADMIN_PASSWORD"  # noqa: S105 (the variable's name)

USERNAME_RULE = "A username is 3 to 32 characters: lower-case letters, digits, '.', '_' or '-'."
USERNAME_TAKEN = "That username is already taken; please choose another one."
EMAIL_INVALID = "Please enter a valid e-mail address, such as name@example.org."
EMAIL_TAKEN = "That e-mail address is already used by another account."
PASSWORD_BLANK = "A password cannot be empty or only spaces."  # noqa: S105 (a message, not a password)
PASSWORD_SHORT = f"A password needs at least {PASSWORD_MIN_CHARS} characters."
PASSWORD_LONG = f"A password has at most {PASSWORD_MAX_CHARS} characters."
PASSWORD_TOO_MANY_BYTES = (
    f"This password is too long to be stored safely (at most {PASSWORD_MAX_BYTES} bytes): "
    "use fewer accented letters or symbols."
)
PASSWORD_HELP = (
    f"Between {PASSWORD_MIN_CHARS} and {PASSWORD_MAX_CHARS} characters (at most {PASSWORD_MAX_BYTES} bytes): "
    "a few unrelated words make a good one."
)
PASSWORDS_DIFFER = "The two passwords do not match."
SAME_PASSWORD = "The new password must be different from the current one."  # noqa: S105 (a message, not a password)
WRONG_CREDENTIALS = "Wrong username or password."
PASSWORD_CHANGED_MEANWHILE = "Your password was changed meanwhile; please sign in again."  # noqa: S105
WRONG_CURRENT_PASSWORD = "The password is wrong."  # noqa: S105 (a message, not a password)
NO_HASHED_PASSWORD = "The registration form gave no usable password; please try again."  # noqa: S105 (a message, not a password)
ADMIN_NEEDS_PASSWORD = "A new admin account needs a password."  # noqa: S105 (a message, not a password)
CODE_REFUSED = "This code is wrong, expired or already used. Check it, or ask for a new code."
ACCOUNT_MISSING = "This account does not exist any more."
STALE_DOCUMENT = "The account service is unreachable, so the accounts cannot be checked right now."

_USERNAME = re.compile(USERNAME_PATTERN)
_EMAIL = re.compile(EMAIL_PATTERN)


# --------------------------------------------------------------------------- errors


class AccountError(Exception):
    """An account operation was refused; the message is fit to show a user as it is."""


class RegistrationRefused(AccountError):
    """A username, e-mail, name or password breaks a rule or is already taken."""


class SignInThrottled(AccountError):
    """Too many wrong passwords: nothing is checked until `wait_seconds` have passed."""

    def __init__(self, wait_seconds: int) -> None:
        self.wait_seconds = wait_seconds
        minutes = max(1, math.ceil(wait_seconds / 60))
        super().__init__(f"Too many attempts. Try again in {minutes} minute{'s' if minutes > 1 else ''}.")


class WrongPassword(AccountError):
    """The password (or username) is wrong; never says which."""


class CodeRefused(AccountError):
    """A recovery code is wrong, expired, used, burnt or belongs to no such account."""


class AccountMissing(AccountError):
    """The account disappeared while it was being changed."""


# --------------------------------------------------------------------------- rules


def normalise_username(username: str) -> str:
    """Usernames are compared and stored as the library does: stripped and lower-cased."""
    return username.strip().lower()


def check_username(username: str) -> str:
    if not _USERNAME.fullmatch(username):
        raise RegistrationRefused(USERNAME_RULE)
    return username


def check_email(email: str) -> str:
    """The address stripped and lower-cased, if it looks deliverable."""
    address = email.strip().lower()
    local = address.partition("@")[0]
    if len(address) > EMAIL_MAX_CHARS or len(local) > 64 or not _EMAIL.fullmatch(address):
        raise RegistrationRefused(EMAIL_INVALID)
    return address


def check_name(name: str, label: str = "name") -> str:
    cleaned = name.strip()
    if not cleaned:
        raise RegistrationRefused(f"Please enter your {label}.")
    if len(cleaned) > NAME_MAX_CHARS:
        raise RegistrationRefused(f"A {label} has at most {NAME_MAX_CHARS} characters.")
    if any(unicodedata.category(char).startswith("C") for char in cleaned):
        raise RegistrationRefused(f"A {label} cannot contain control characters.")
    return cleaned


def check_password_policy(password: str) -> str:
    """The password as it will be hashed (without surrounding spaces), if the policy accepts it."""
    cleaned = password.strip()
    if not cleaned:
        raise RegistrationRefused(PASSWORD_BLANK)
    if len(cleaned) < PASSWORD_MIN_CHARS:
        raise RegistrationRefused(PASSWORD_SHORT)
    if len(cleaned) > PASSWORD_MAX_CHARS:
        raise RegistrationRefused(PASSWORD_LONG)
    if len(cleaned.encode()) > PASSWORD_MAX_BYTES:
        raise RegistrationRefused(PASSWORD_TOO_MANY_BYTES)
    return cleaned


def _new_password(password: str, repeat: str) -> str:
    cleaned = check_password_policy(password)
    if cleaned != repeat.strip():
        raise RegistrationRefused(PASSWORDS_DIFFER)
    return cleaned


def _passes(check: Callable[[str], str], value: str) -> bool:
    try:
        check(value)
    except RegistrationRefused:
        return False
    return True


class AccountValidator(Validator):
    """streamlit-authenticator's validator applying Carburoam's rules inside the library's widgets."""

    def validate_username(self, username: str) -> bool:
        return _passes(check_username, username)

    def validate_email(self, email: str) -> bool:
        return _passes(check_email, email)

    def validate_name(self, name: str) -> bool:
        return _passes(check_name, name)

    def validate_password(self, password: str) -> bool:
        return _passes(check_password_policy, password)

    def diagnose_password(self, password: str) -> str:
        try:
            check_password_policy(password)
        except RegistrationRefused as refusal:
            return str(refusal)
        return ""


# --------------------------------------------------------------------------- document entries


@dataclass(frozen=True)
class Account:
    username: str
    email: str
    first_name: str
    last_name: str
    name: str
    role: str
    credential_version: int
    user_id: int


@dataclass(frozen=True)
class SyncResult:
    created: int
    updated: int
    deleted: int


def _users(document: Document) -> dict[str, Entry]:
    return document["credentials"]["usernames"]


def _email_of(entry: Entry) -> str:
    return str(entry.get("email") or "").strip().lower()


def _name_of(username: str, entry: Entry) -> str:
    full = f"{entry.get('first_name') or ''} {entry.get('last_name') or ''}".strip()
    return (full or username)[:120]


def _role_of(entry: Entry) -> str:
    return "admin" if "admin" in (entry.get("roles") or []) else "user"


def credential_version_in(document: Document, username: str) -> int | None:
    """The account's credential version in `document`; None when it has no account."""
    entry = _users(document).get(normalise_username(username))
    return None if entry is None else _version_of(entry)


def _version_of(entry: Entry) -> int:
    return int(entry.get("credential_version") or 1)


def _email_owner(users: Mapping[str, Entry], email: str) -> str | None:
    return next((name for name, entry in users.items() if _email_of(entry) == email), None)


def _new_entry(
    email: str, first_name: str, last_name: str, password_hash: str, roles: list[str], now: dt.datetime
) -> Entry:
    return {
        "email": email,
        "first_name": first_name,
        "last_name": last_name,
        "password": password_hash,
        "roles": roles,
        "failed_login_attempts": 0,
        "logged_in": False,
        "credential_version": 1,
        # A cookie of an earlier account with the same name (since deleted) must not sign in to this one.
        "credentials_changed_at": now.timestamp(),
    }


def cookie_is_current(document: Document, username: str, cookie_exp_date: float, cookie_expiry_days: float) -> bool:
    """False when the sign-in cookie was issued before the account's credentials last changed (or it has gone).

    streamlit-authenticator's cookie holds only the username and its expiry date, so the issue time
    is the expiry date minus the cookie lifetime.
    """
    entry = _users(document).get(username)
    if entry is None:
        return False
    changed_at = entry.get("credentials_changed_at")
    if changed_at is None:
        return True
    return float(cookie_exp_date) - float(cookie_expiry_days) * 86400 >= float(changed_at)


@functools.cache
def _decoy_hash() -> str:
    """A hash to check unknown names against, so they take as long as known ones."""
    return Hasher.hash(secrets.token_urlsafe(16))


def _password_matches(password: str, entry: Entry | None) -> bool:
    stored = entry.get("password") if entry is not None else None
    real = isinstance(stored, str) and Hasher.is_hash(stored)
    try:
        matches = Hasher.check_pw(password.strip(), stored if real else _decoy_hash())
    except ValueError:  # bcrypt 5 refuses passwords over 72 bytes
        return False
    return real and matches


def _wait_after(failures: int) -> int:
    """Seconds to wait after `failures` consecutive wrong passwords."""
    if failures < FREE_FAILURES:
        return 0
    return min(FIRST_WAIT_SECONDS * 2 ** (failures - FREE_FAILURES), MAX_WAIT_SECONDS)


def _count_failure(document: Document, username: str, now: dt.datetime) -> None:
    entry = _users(document).get(username)
    if entry is None:
        return
    failures = int(entry.get("failed_login_attempts") or 0) + 1
    entry["failed_login_attempts"] = failures
    if wait := _wait_after(failures):
        entry["not_before"] = now.timestamp() + wait


def _clear_failures(document: Document, username: str) -> None:
    entry = _users(document).get(username)
    if entry is not None:
        entry["failed_login_attempts"] = 0
        entry.pop("not_before", None)


class _Failures:
    """Wrong-password counts kept in this process, in a bounded LRU.

    It serves names that have no account, so that they are throttled exactly like real ones (the
    answers never tell whether an account exists) without ever writing strings typed by strangers
    into the credentials document, which would let anyone grow it without bound. Names are kept
    as digests, so memory stays bounded whatever their length. It also stands in for the document
    for real accounts while the document cannot be written (store outage).
    """

    def __init__(self, capacity: int = UNKNOWN_NAMES_REMEMBERED) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[bytes, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(name: str) -> bytes:
        return hashlib.blake2b(name.encode(), digest_size=16).digest()

    def wait(self, name: str, now: dt.datetime) -> float:
        with self._lock:
            _, not_before = self._entries.get(self._key(name), (0, 0.0))
        return not_before - now.timestamp()

    def fail(self, name: str, now: dt.datetime) -> None:
        key = self._key(name)
        with self._lock:
            failures = self._entries.pop(key, (0, 0.0))[0] + 1
            self._entries[key] = (failures, now.timestamp() + _wait_after(failures))
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def clear(self, name: str) -> None:
        with self._lock:
            self._entries.pop(self._key(name), None)


# --------------------------------------------------------------------------- database rows


def _row(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def _row_matches(user: User, username: str, entry: Entry) -> bool:
    return (user.email, user.name, user.role) == (_email_of(entry), _name_of(username, entry), _role_of(entry))


def _write_row(session: Session, user: User | None, username: str, entry: Entry, now: dt.datetime) -> User:
    """Create or update the users row of `username` from its entry; a new user follows the default fuels."""
    if user is None:
        user = User(username=username, created_at=now)
        session.add(user)
        _fill_row(user, username, entry)
        session.flush()
        follow_default_fuels(session, user.id)
    else:
        _fill_row(user, username, entry)
    return user


def _fill_row(user: User, username: str, entry: Entry) -> None:
    user.email, user.name, user.role = _email_of(entry), _name_of(username, entry), _role_of(entry)


def _delete_user_data(session: Session, user_ids: Sequence[int]) -> None:
    """Every row of these users in every table (explicitly: not relying on ON DELETE CASCADE)."""
    for model in (VerificationCode, CustomStation, UserGasType):
        session.execute(delete(model).where(model.user_id.in_(user_ids)))
    session.execute(delete(User).where(User.id.in_(user_ids)))


def _lock_user(session: Session, user_id: int) -> None:
    """Serialise code operations of one user (row lock on PostgreSQL; SQLite writers are serial anyway)."""
    session.execute(select(User.id).where(User.id == user_id).with_for_update())


def _account(username: str, entry: Entry, user: User) -> Account:
    return Account(
        username=username,
        email=_email_of(entry),
        first_name=str(entry.get("first_name") or ""),
        last_name=str(entry.get("last_name") or ""),
        name=_name_of(username, entry),
        role=_role_of(entry),
        credential_version=_version_of(entry),
        user_id=user.id,
    )


# --------------------------------------------------------------------------- accounts


class Accounts:
    """Account operations over the credentials store and the database.

    Keep one instance per process (pages: `st.cache_resource`): it remembers the failed sign-ins
    of names that have no account.
    """

    def __init__(
        self, settings: Settings, store: CredentialStore, engine: Engine, *, code_ttl: dt.timedelta = DEFAULT_CODE_TTL
    ) -> None:
        self.settings = settings
        self.store = store
        self.code_ttl = code_ttl
        self._reader = session_factory(engine)
        self._writer = session_factory(writer(engine))
        self._failures = _Failures()
        self._recovery_key: bytes | None = None

    cookie_is_current = staticmethod(cookie_is_current)

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._writer() as session, session.begin():
            yield session

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
        now = now or utcnow()
        username = check_username(normalise_username(username))
        email = check_email(email)
        first_name, last_name = check_name(first_name, "first name"), check_name(last_name, "last name")
        password = _new_password(password, repeat)
        entry = _new_entry(email, first_name, last_name, Hasher.hash(password), ["user"], now)
        return self._create(username, entry, now)

    def adopt_registration(self, username: str, entry: Mapping[str, Any], now: dt.datetime | None = None) -> Account:
        """Save an account that streamlit-authenticator's `register_user` widget added to an in-memory copy.

        `entry` is that copy's new `credentials.usernames[username]` (its password already hashed by
        the widget, which checked the password rules through `AccountValidator`). It goes through the
        same checks as `register` against the newest document; only its names, e-mail, password hash
        and hint are kept, and the role is always 'user'.
        """
        now = now or utcnow()
        username = check_username(normalise_username(username))
        email = check_email(str(entry.get("email") or ""))
        first_name = check_name(str(entry.get("first_name") or ""), "first name")
        last_name = check_name(str(entry.get("last_name") or ""), "last name")
        password_hash = entry.get("password")
        if not isinstance(password_hash, str) or not Hasher.is_hash(password_hash):
            raise RegistrationRefused(NO_HASHED_PASSWORD)
        new = _new_entry(email, first_name, last_name, password_hash, ["user"], now)
        if isinstance(entry.get("password_hint"), str) and entry["password_hint"].strip():
            new["password_hint"] = entry["password_hint"].strip()
        return self._create(username, new, now)

    def _create(self, username: str, entry: Entry, now: dt.datetime) -> Account:
        """Write a new entry to the document, then its users row; undo the entry if the row fails."""
        email = _email_of(entry)
        self._check_free_in_database(username, email)

        def add(document: Document) -> None:
            users = _users(document)
            if username in users:
                raise RegistrationRefused(USERNAME_TAKEN)
            if _email_owner(users, email) is not None:
                raise RegistrationRefused(EMAIL_TAKEN)
            users[username] = entry

        self.store.update(add)
        try:
            with self._write() as session:
                user = _write_row(session, _row(session, username), username, entry, now)
        except IntegrityError as exc:  # a row that appeared since the check above
            self._undo_entry(username, entry)
            raise RegistrationRefused(EMAIL_TAKEN) from exc
        except BaseException:
            self._undo_entry(username, entry)
            raise
        self._failures.clear(username)  # failures typed under this name before it existed
        log.info("registered account %s", username)
        return _account(username, entry, user)

    def _check_free_in_database(self, username: str, email: str, *, owner: str | None = None) -> None:
        with self._reader() as session:
            if owner is None and _row(session, username) is not None:
                raise RegistrationRefused(USERNAME_TAKEN)
            holders = session.scalars(select(User.username).where(func.lower(User.email) == email))
            if any(holder != owner for holder in holders):
                raise RegistrationRefused(EMAIL_TAKEN)

    def _undo_entry(self, username: str, entry: Entry) -> None:
        """Remove an entry this process wrote, unless someone replaced it since."""

        def remove(document: Document) -> None:
            users = _users(document)
            if users.get(username, {}).get("password") == entry["password"]:
                del users[username]

        self._compensate(remove, f"remove the half-created account {username}")

    def _compensate(self, change: Callable[[Document], None], what: str) -> None:
        try:
            self.store.update(change)
        except StoreError:
            log.exception("could not %s; `sync_all` or the next sign-in will reconcile it", what)

    # ----------------------------------------------------------------- users rows

    def account(self, username: str, now: dt.datetime | None = None) -> Account | None:
        """The account of `username` (its users row made current), or None when there is none."""
        username = normalise_username(username)
        entry = _users(self.store.load().document).get(username)
        if entry is None:
            return None
        return _account(username, entry, self._synced_row(username, entry, now or utcnow()))

    def ensure_user_row(self, username: str, now: dt.datetime | None = None) -> Account:
        """Create or update the users row of an account from the document; AccountMissing if none."""
        account = self.account(username, now)
        if account is None:
            raise AccountMissing(ACCOUNT_MISSING)
        return account

    def _synced_row(self, username: str, entry: Entry, now: dt.datetime) -> User:
        with self._reader() as session:
            user = _row(session, username)
        if user is not None and _row_matches(user, username, entry):
            return user
        try:
            with self._write() as session:
                return _write_row(session, _row(session, username), username, entry, now)
        except IntegrityError:  # the e-mail is still held by a stale or orphan row
            log.warning("users row of %s conflicts with another row; reconciling the whole table", username)
        self.sync_all(now)
        with self._reader() as session:
            user = _row(session, username)
        if user is None:
            raise AccountMissing(ACCOUNT_MISSING)
        return user

    def sync_all(self, now: dt.datetime | None = None) -> SyncResult:
        """Make the users table match the document: create, update, and delete (with all their data) rows."""
        now = now or utcnow()
        with self._write() as session:
            # Rows are read before the document: a registration writes its entry before its row,
            # so every row seen here whose entry is missing from the newer document is truly gone.
            rows = {user.username: user for user in session.scalars(select(User))}
            snapshot = self.store.load()
            if snapshot.stale:
                raise StoreUnavailable(STALE_DOCUMENT)
            users = _users(snapshot.document)
            gone = [user.id for name, user in rows.items() if name not in users]
            _delete_user_data(session, gone)
            changed = [
                rows[name]
                for name, entry in users.items()
                if name in rows and not _row_matches(rows[name], name, entry)
            ]
            for user in changed:  # park the e-mails first, so that two rows can swap theirs
                user.email = f"{user.id}@sync.invalid"
            session.flush()
            for name, entry in users.items():
                _write_row(session, rows.get(name), name, entry, now)
        result = SyncResult(created=len(set(users) - set(rows)), updated=len(changed), deleted=len(gone))
        log.info("users table synchronised with the credentials: %s", result)
        return result

    # ----------------------------------------------------------------- sign-in

    def sign_in(self, username: str, password: str, now: dt.datetime | None = None) -> Account:
        """The account, if the password is right and no wait is pending; SignInThrottled or WrongPassword."""
        now = now or utcnow()
        username = normalise_username(username)
        entry = self._check_password(username, password, now, WRONG_CREDENTIALS)
        return _account(username, entry, self._synced_row(username, entry, now))

    def _check_password(self, username: str, password: str, now: dt.datetime, wrong: str) -> Entry:
        """The entry of `username` if `password` is right; the same refusals whether or not it exists."""
        entry = _users(self.store.load().document).get(username)
        wait = self._failures.wait(username, now)
        if entry is not None and entry.get("not_before"):
            wait = max(wait, float(entry["not_before"]) - now.timestamp())
        if wait > 0:
            raise SignInThrottled(math.ceil(wait))
        if not _password_matches(password, entry):
            self._record_failure(username, entry is not None, now)
            raise WrongPassword(wrong)
        self._failures.clear(username)
        if entry.get("failed_login_attempts") or entry.get("not_before"):
            try:
                self.store.update(lambda document: _clear_failures(document, username))
            except StoreError as exc:
                log.warning("could not reset the failed sign-ins of %s: %s", username, exc)
        return entry

    def _record_failure(self, username: str, known: bool, now: dt.datetime) -> None:
        if known:
            try:
                self.store.update(lambda document: _count_failure(document, username, now))
                return
            except StoreError as exc:
                log.warning(
                    "could not record a failed sign-in of %s in the document, keeping it here: %s", username, exc
                )
        self._failures.fail(username, now)

    # ----------------------------------------------------------------- credentials

    def credential_version(self, username: str) -> int | None:
        return credential_version_in(self.store.load().document, username)

    def change_password(
        self, username: str, current: str, new: str, repeat: str, now: dt.datetime | None = None
    ) -> Account:
        """Set a new password (the current one is required); older sign-in cookies stop working."""
        now = now or utcnow()
        username = normalise_username(username)
        new = _new_password(new, repeat)
        self._check_password(username, current, now, WRONG_CURRENT_PASSWORD)
        if new == current.strip():
            raise RegistrationRefused(SAME_PASSWORD)
        entry = self._set_password(username, Hasher.hash(new), now)
        log.info("password of %s changed", username)
        return _account(username, entry, self._synced_row(username, entry, now))

    def adopt_password_change(
        self, username: str, previous_hash: str, new_hash: str, now: dt.datetime | None = None
    ) -> Account:
        """Store a password the library's change-password widget has just checked and hashed.

        The widget verified the current password against `previous_hash`; the change is refused
        if the stored password is no longer that one (changed meanwhile elsewhere).
        """
        now = now or utcnow()
        username = normalise_username(username)
        entry = self._set_password(username, new_hash, now, previous_hash=previous_hash)
        log.info("password of %s changed", username)
        return _account(username, entry, self._synced_row(username, entry, now))

    def _set_password(
        self, username: str, password_hash: str, now: dt.datetime, *, previous_hash: str | None = None
    ) -> Entry:
        """Store a new password hash, bump the credential version and clear the sign-in throttle."""

        def change(document: Document) -> Entry:
            entry = _users(document).get(username)
            if entry is None:
                raise AccountMissing(ACCOUNT_MISSING)
            if previous_hash is not None and entry.get("password") != previous_hash:
                raise WrongPassword(PASSWORD_CHANGED_MEANWHILE)
            entry["password"] = password_hash
            entry["credential_version"] = _version_of(entry) + 1
            entry["credentials_changed_at"] = now.timestamp()
            _clear_failures(document, username)
            return dict(entry)

        entry = self.store.update(change)
        self._failures.clear(username)
        return entry

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
            users = _users(document)
            entry = users.get(username)
            if entry is None:
                raise AccountMissing(ACCOUNT_MISSING)
            if _email_owner(users, email) not in (None, username):
                raise RegistrationRefused(EMAIL_TAKEN)
            before = {key: entry.get(key) for key in details}
            entry.update(details)
            return before, dict(entry)

        before, entry = self.store.update(change)
        try:
            with self._write() as session:
                user = _write_row(session, _row(session, username), username, entry, now)
        except IntegrityError as exc:
            self._undo_details(username, details, before)
            raise RegistrationRefused(EMAIL_TAKEN) from exc
        except BaseException:
            self._undo_details(username, details, before)
            raise
        return _account(username, entry, user)

    def _undo_details(self, username: str, details: Entry, before: Entry) -> None:
        def restore(document: Document) -> None:
            entry = _users(document).get(username)
            if entry is not None and all(entry.get(key) == value for key, value in details.items()):
                entry.update(before)

        self._compensate(restore, f"restore the details of {username}")

    def delete_account(self, username: str, password: str, now: dt.datetime | None = None) -> None:
        """Remove the account: its credentials entry and every row of it in every table.

        The rows are deleted first, in a transaction that removes the credentials entry before it
        commits. If the document cannot be written, the transaction rolls back and nothing changed;
        if the commit fails after the entry was removed, the entry is put back, so the account can
        still sign in and be deleted again. Never is an entry left whose data is already gone, nor
        data left that its owner can no longer reach.
        """
        now = now or utcnow()
        username = normalise_username(username)
        self._check_password(username, password, now, WRONG_CURRENT_PASSWORD)
        removed: Entry | None = None
        try:
            with self._write() as session:
                _delete_user_data(session, list(session.scalars(select(User.id).where(User.username == username))))
                removed = self.store.update(lambda document: _users(document).pop(username, None))
        except BaseException:
            if removed is not None:
                self._restore_entry(username, removed)
            raise
        self._failures.clear(username)
        log.info("deleted account %s", username)

    def _restore_entry(self, username: str, entry: Entry) -> None:
        def put_back(document: Document) -> None:
            _users(document).setdefault(username, entry)

        self._compensate(put_back, f"put back the credentials of {username} after a failed deletion")

    # ----------------------------------------------------------------- admins

    def create_admin(
        self, username: str, email: str, password: str | None = None, now: dt.datetime | None = None
    ) -> Account:
        """Create an admin account, or promote an existing one (whose e-mail must be `email`; its password stays)."""
        now = now or utcnow()
        username = check_username(normalise_username(username))
        email = check_email(email)
        entry = _users(self.store.load().document).get(username)
        if entry is None:
            if password is None:
                raise RegistrationRefused(ADMIN_NEEDS_PASSWORD)
            hashed = Hasher.hash(check_password_policy(password))
            return self._create(username, _new_entry(email, username, "", hashed, ["user", "admin"], now), now)
        if _email_of(entry) != email:
            raise RegistrationRefused(f"The account {username} has another e-mail address; check the username.")

        def promote(document: Document) -> Entry:
            found = _users(document).get(username)
            if found is None:
                raise AccountMissing(ACCOUNT_MISSING)
            roles = [role for role in found.get("roles") or [] if role != "admin"]
            found["roles"] = [*roles, "admin"]
            return dict(found)

        entry = self.store.update(promote)
        log.info("account %s promoted to admin", username)
        return _account(username, entry, self._synced_row(username, entry, now))

    # ----------------------------------------------------------------- recovery

    def request_password_reset(self, identifier: str, now: dt.datetime | None = None) -> None:
        """E-mail a reset code to the account named by a username or e-mail, if there is one.

        Answers the same whatever happens, except MailError when the mail could not be sent (then
        no code from this request can be used, and older codes still work).
        """
        now = now or utcnow()
        self._key()  # created on first use, whether or not this account exists
        found = self._find(identifier)
        if found is None:
            log.info("password reset asked for an account that does not exist")
            return
        username, entry = found
        user = self._synced_row(username, entry, now)
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        code_id = self._new_code(user.id, self._code_hash(user.id, code), now)
        if code_id is None:
            log.info("password reset of %s refused: %d requests in the last hour", username, CODE_REQUESTS_PER_HOUR)
            return
        minutes = round(self.code_ttl.total_seconds() / 60)
        body = (
            f"Hello,\n\nYour Carburoam password reset code is {code}.\n"
            f"It is valid for {minutes} minutes and can be used once.\n\n"
            "If you did not ask for it, ignore this message: your password has not changed.\n"
        )
        try:
            send_mail(
                self.settings, Message(to=_email_of(entry), subject="Your Carburoam password reset code", body=body)
            )
        except MailError:
            with self._write() as session:
                session.execute(delete(VerificationCode).where(VerificationCode.id == code_id))
            raise
        with self._write() as session:  # only now that the new code is on its way
            session.execute(
                update(VerificationCode)
                .where(*_live_codes(user.id), VerificationCode.id != code_id)
                .values(used_at=now)
            )
        log.info("password reset code sent to %s", username)

    def reset_password(
        self, identifier: str, code: str, new: str, repeat: str, now: dt.datetime | None = None
    ) -> Account:
        """Set a new password with the newest reset code of the account; CodeRefused otherwise."""
        now = now or utcnow()
        new = _new_password(new, repeat)
        found = self._find(identifier)
        if found is None:
            raise CodeRefused(CODE_REFUSED)
        username, entry = found
        user = self._synced_row(username, entry, now)
        typed = self._code_hash(user.id, "".join(code.split()))
        new_hash = Hasher.hash(new)
        updated: Entry | None = None
        with self._write() as session:
            _lock_user(session, user.id)
            row = session.scalars(
                select(VerificationCode)
                .where(*_live_codes(user.id))
                .order_by(VerificationCode.created_at.desc(), VerificationCode.id.desc())
                .limit(1)
            ).first()
            if row is not None and row.expires_at > now:
                if hmac.compare_digest(row.code_hash, typed):
                    row.used_at = now
                    session.flush()
                    # Inside the transaction: if the document cannot be written, the code stays usable.
                    updated = self._set_password(username, new_hash, now)
                else:
                    row.attempts += 1
                    if row.attempts >= CODE_MAX_ATTEMPTS:
                        row.used_at = now
        if updated is None:
            log.info("password reset of %s refused: wrong, expired or used code", username)
            raise CodeRefused(CODE_REFUSED)
        log.info("password of %s reset with a code", username)
        return _account(username, updated, user)

    def remind_username(self, email: str) -> None:
        """E-mail the username of the account with this address, if there is one; MailError if sending failed."""
        address = email.strip().lower()
        username = _email_owner(_users(self.store.load().document), address)
        if username is None:
            log.info("username reminder asked for an unknown address")
            return
        body = (
            f"Hello,\n\nYour Carburoam username is: {username}\n\n"
            "If you did not ask for this reminder, you can ignore this message.\n"
        )
        send_mail(self.settings, Message(to=address, subject="Your Carburoam username", body=body))
        log.info("username reminder sent to %s", username)

    def _find(self, identifier: str) -> tuple[str, Entry] | None:
        """The account named by a username or an e-mail address."""
        users = _users(self.store.load().document)
        wanted = identifier.strip().lower()
        username = _email_owner(users, wanted) if "@" in wanted else wanted
        if username is None or username not in users:
            return None
        return username, users[username]

    def _new_code(self, user_id: int, code_hash: str, now: dt.datetime) -> int | None:
        """Store a new code row; None when the account already had its requests for this hour."""
        mine = (VerificationCode.user_id == user_id, VerificationCode.purpose == RESET_PURPOSE)
        with self._write() as session:
            _lock_user(session, user_id)
            session.execute(delete(VerificationCode).where(*mine, VerificationCode.created_at < now - OLD_CODES_KEPT))
            recent = session.scalar(
                select(func.count()).where(*mine, VerificationCode.created_at > now - dt.timedelta(hours=1))
            )
            if recent >= CODE_REQUESTS_PER_HOUR:
                return None
            row = VerificationCode(
                user_id=user_id,
                code_hash=code_hash,
                purpose=RESET_PURPOSE,
                created_at=now,
                expires_at=now + self.code_ttl,
                attempts=0,
            )
            session.add(row)
            session.flush()
            return row.id

    def _code_hash(self, user_id: int, code: str) -> str:
        message = f"{RESET_PURPOSE}:{user_id}:{code}".encode()
        return hmac.new(self._key(), message, hashlib.sha256).hexdigest()

    def _key(self) -> bytes:
        """The secret HMAC key of reset codes, created in the document on first use."""
        if self._recovery_key is None:
            key = self.store.load().document.get("recovery_key")
            if not isinstance(key, str):
                key = self.store.update(lambda document: document.setdefault("recovery_key", secrets.token_hex(32)))
            self._recovery_key = key.encode()
        return self._recovery_key


def _live_codes(user_id: int) -> tuple:
    return (
        VerificationCode.user_id == user_id,
        VerificationCode.purpose == RESET_PURPOSE,
        VerificationCode.used_at.is_(None),
    )


# --------------------------------------------------------------------------- command line


def _admin_password(username: str) -> str:
    password = os.environ.get(ADMIN_PASSWORD_ENV)
    if password:
        return password
    first = getpass.getpass(f"Password for the new admin {username}: ")
    if first != getpass.getpass("The same password again: "):
        raise RegistrationRefused(PASSWORDS_DIFFER)
    return first


def _create_admin(username: str, email: str) -> str:
    username, email = check_username(normalise_username(username)), check_email(email)
    settings = load_settings()
    engine = make_engine(settings.database_url)
    try:
        init_db(engine)
        accounts = Accounts(settings, credential_store(settings), engine)
        existing = accounts.account(username)
        password = None if existing is not None else _admin_password(username)
        account = accounts.create_admin(username, email, password)
    finally:
        engine.dispose()
    if existing is None:
        return f"Created the admin account {account.username} ({account.email})."
    return f"{account.username} is now an admin."


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python auth.py", description="Carburoam account administration.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser(
        "create-admin",
        help="create an admin account, or promote an existing one",
        description=f"The password of a new account comes from {ADMIN_PASSWORD_ENV} when set, else it is asked twice.",
    )
    create.add_argument("--username", required=True)
    create.add_argument("--email", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        print(_create_admin(args.username, args.email))
    except (AccountError, StoreError, ValueError) as exc:
        print(f"create-admin: {exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        print(
            f"create-admin: the database cannot be used: {str(getattr(exc, 'orig', exc)).splitlines()[0]}",
            file=sys.stderr,
        )
        return 1
    except EOFError:
        print("\ncreate-admin: no password was given.", file=sys.stderr)  # after the unanswered prompt
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
