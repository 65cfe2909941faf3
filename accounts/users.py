"""The `users` table: the database's mirror of the accounts in the credentials document.

Each account has one row (username, e-mail, name, role) so that the rest of the data can refer to
it; the document stays the authority. Rows are brought up to date when an account is used, and
`sync_all` reconciles the whole table (deleting the data of accounts gone from the document).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from accounts.entries import Entry, email_of, name_of, role_of, users_in
from accounts.errors import AccountMissing
from accounts.store import CredentialStore, StoreUnavailable
from i18n import N_, _
from models import (
    AlertMailDay,
    AlertOutbox,
    AlertRule,
    AlertState,
    CustomStation,
    User,
    UserGasType,
    UserSession,
    VerificationCode,
)
from prices.preferences import follow_default_fuels

log = logging.getLogger(__name__)

STALE_DOCUMENT = N_("The account service is unreachable, so the accounts cannot be checked right now.")


@dataclass(frozen=True)
class Account:
    """A person's account as the pages see it."""

    username: str
    email: str
    name: str
    role: str
    user_id: int

    @classmethod
    def of(cls, user: User) -> Account:
        return cls(username=user.username, email=user.email, name=user.name, role=user.role, user_id=user.id)


@dataclass(frozen=True)
class SyncResult:
    created: int
    updated: int
    deleted: int


def user_row(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def _row_matches(user: User, username: str, entry: Entry) -> bool:
    return (user.email, user.name, user.role) == (email_of(entry), name_of(username, entry), role_of(entry))


def write_row(session: Session, user: User | None, username: str, entry: Entry, now: dt.datetime) -> User:
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
    user.email, user.name, user.role = email_of(entry), name_of(username, entry), role_of(entry)


def delete_user_data(session: Session, user_ids: Sequence[int]) -> None:
    """Every row of these users in every table (explicitly: not relying on ON DELETE CASCADE)."""
    alerts = (AlertOutbox, AlertMailDay, AlertState, AlertRule)
    for model in (*alerts, UserSession, VerificationCode, CustomStation, UserGasType):
        session.execute(delete(model).where(model.user_id.in_(user_ids)))
    session.execute(delete(User).where(User.id.in_(user_ids)))


def lock_user(session: Session, user_id: int) -> None:
    """Serialise the changes of one user (row lock on PostgreSQL; SQLite writers are serial anyway)."""
    session.execute(select(User.id).where(User.id == user_id).with_for_update())


class UsersMirror:
    def __init__(self, store: CredentialStore, reader: sessionmaker, writer: sessionmaker) -> None:
        self._store = store
        self._reader = reader
        self._writer = writer

    def account(self, username: str, now: dt.datetime) -> Account | None:
        """The account of `username` (its row made current), or None when the document has none."""
        entry = users_in(self._store.load().document).get(username)
        if entry is None:
            return None
        return Account.of(self.synced(username, entry, now))

    def synced(self, username: str, entry: Entry, now: dt.datetime) -> User:
        """The users row of `username`, created or updated from `entry` when it differs."""
        with self._reader() as session:
            user = user_row(session, username)
        if user is not None and _row_matches(user, username, entry):
            return user
        try:
            with self._writer.begin() as session:
                return write_row(session, user_row(session, username), username, entry, now)
        except IntegrityError:  # the e-mail is still held by a stale or orphan row
            log.warning("users row of %s conflicts with another row; reconciling the whole table", username)
        self.sync_all(now)
        with self._reader() as session:
            user = user_row(session, username)
        if user is None:
            raise AccountMissing()
        return user

    def sync_all(self, now: dt.datetime) -> SyncResult:
        """Make the users table match the document: create, update, and delete (with all their data) rows."""
        with self._writer.begin() as session:
            # Rows are read before the document: a registration writes its entry before its row,
            # so every row seen here whose entry is missing from the newer document is truly gone.
            rows = {user.username: user for user in session.scalars(select(User))}
            snapshot = self._store.load()
            if snapshot.stale:
                raise StoreUnavailable(_(STALE_DOCUMENT))
            users = users_in(snapshot.document)
            gone = [user.id for name, user in rows.items() if name not in users]
            delete_user_data(session, gone)
            changed = [
                rows[name]
                for name, entry in users.items()
                if name in rows and not _row_matches(rows[name], name, entry)
            ]
            for user in changed:  # park the e-mails first, so that two rows can swap theirs
                user.email = f"{user.id}@sync.invalid"
            session.flush()
            for name, entry in users.items():
                write_row(session, rows.get(name), name, entry, now)
        result = SyncResult(created=len(set(users) - set(rows)), updated=len(changed), deleted=len(gone))
        log.info("users table synchronised with the credentials: %s", result)
        return result
