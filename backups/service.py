"""Backing up, restoring, and restoring a lost database by itself: what `etl.py backup|restore|serve` run.

A backup reads the account rows in one snapshot, then the credentials document (as the users mirror
does: an account registered in between has its entry and gets its row at its next sign-in), writes
one file to the target and deletes all but the newest `BACKUP_KEEP` there. It refuses to write a
backup of nothing (no users row, no credentials entry), and the scheduler backs up only a database
with accounts, so that a database lost and not yet restored never pushes the good backups out of
the retention window nor becomes the newest backup.

A restore checks the whole file first (format, version, checksum, tables), then, in one database
transaction: reads the accounts, then the current credentials document, puts the rows back
(`content.put_back`), and only when the database part has succeeded adds the missing credentials
entries to the document, before committing; if that commit fails the entries are taken out again
(`accounts.changes.DocumentChanges`). Any failure therefore leaves the database and the document as
they were. Restoring the same file twice gives the same result as once.

Deletion rule: the credentials document is the authority on which accounts exist. An account of
the backup that is absent from the current document was deleted after the backup, and is not
restored (unless `with_deleted`), except when the current state is empty (no users row and no
credentials entry): then the disk was lost and every account comes back. An account that still
exists keeps its current credentials entry (a password changed or reset since the backup stays),
and its cookie key is kept; the backup's cookie key comes back only into an empty document.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
from collections.abc import Mapping

from sqlalchemy import Engine, exists, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from accounts.changes import DocumentChanges
from accounts.entries import Entry, users_in
from accounts.store import CredentialStore, Document, StoreError, credential_store
from backups.archive import REFUSED, BackupError, decode, encode
from backups.content import Content, dump, put_back
from backups.targets import backup_name, newest_backup, open_backup, prune, target_of
from i18n import N_, _, ngettext, number
from models import User
from session import SCHEMA_REVISION, session_factory, writer
from settings import Settings
from utils import first_line, utcnow

log = logging.getLogger("etl")


def backup(engine: Engine, settings: Settings, location: str | None = None, now: dt.datetime | None = None) -> str:
    """Write a backup to `location` (default: the configured target), keep the newest; the line to report."""
    now = now or utcnow()
    target = target_of(location or settings.backup_location)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ")  # one snapshot across the tables
            with conn.begin():
                tables = dump(conn)
    except SQLAlchemyError as exc:
        raise BackupError(
            N_("cannot read the accounts from the database, no backup written: {error}"), error=first_line(exc)
        ) from exc
    document = _current_document(credential_store(settings))
    if not tables["users"] and not users_in(document):
        raise BackupError(N_("nothing to back up: the database has no account and the credentials document no entry"))
    data = encode(
        {"created_at": now.isoformat(), "schema_revision": SCHEMA_REVISION, "credentials": document, "tables": tables}
    )
    where = target.write(backup_name(now), data)
    deleted = prune(target, settings.backup_keep)
    return _(
        "backed up {accounts} accounts ({entries} credentials entries), {stations} followed stations and {fuels} "
        "fuels to {where} ({bytes} bytes); {deleted} older backups deleted, keeping {kept}"
    ).format(
        accounts=number(len(tables["users"])),
        entries=number(len(users_in(document))),
        stations=number(len(tables["custom_stations"])),
        fuels=number(len(tables["user_gastypes"])),
        where=where,
        bytes=number(len(data)),
        deleted=number(len(deleted)),
        kept=number(settings.backup_keep),
    )


def scheduled_backup(engine: Engine, settings: Settings) -> str | None:
    """The scheduler's daily backup; None (nothing recorded) while the database has no account.

    A database without accounts is a new one, or a lost one not restored yet: its backup, even with
    the credentials of a document kept elsewhere, would become the newest one that a restore takes.
    """
    if not _has_accounts(engine):
        log.info("the database has no account yet; no backup written")
        return None
    return backup(engine, settings)


def restore(engine: Engine, settings: Settings, location: str, *, with_deleted: bool = False) -> str:
    """Restore the backup at `location` (a folder or prefix: its newest); the line to report."""
    data, where = open_backup(location)
    payload = decode(data, where)
    try:
        content = Content.of(payload)
        backed_up = _backed_up_document(payload)
    except BackupError as exc:
        raise BackupError(REFUSED, where=where, reason=exc) from None
    store = credential_store(settings)
    try:
        with DocumentChanges(store) as changes, session_factory(writer(engine)).begin() as session:
            had_rows = session.scalar(select(exists().select_from(User)))
            now_entries = users_in(_current_document(store))
            lost = not had_rows and not now_entries
            names = {row["username"] for row in content.users} | set(users_in(backed_up))
            deleted = sorted(name for name in names if not lost and name not in now_entries)
            if not with_deleted:
                names -= set(deleted)
            added = {
                name: users_in(backed_up)[name] for name in names - now_entries.keys() if name in users_in(backed_up)
            }
            entries = {name: now_entries.get(name) or added.get(name) for name in names}
            restored = put_back(session, content, {name: entry for name, entry in entries.items() if entry})
            session.flush()
            if added or lost:
                changes.apply(
                    lambda document: _add_entries(document, added, backed_up["cookie"] if lost else None),
                    _take_out,
                    f"take the credentials restored from {where} out again",
                )
    except IntegrityError as exc:
        raise BackupError(
            N_("{where} conflicts with the database, nothing was changed: {error}"), where=where, error=first_line(exc)
        ) from exc
    except SQLAlchemyError as exc:
        raise BackupError(N_("database error, nothing was changed: {error}"), error=first_line(exc)) from exc
    except StoreError as exc:
        raise BackupError(
            N_("the credentials document cannot be written, nothing was changed: {error}"), error=exc
        ) from exc
    summary = _(
        "restored {accounts} accounts ({entries} credentials entries added), {stations} followed stations and "
        "{fuels} fuels from {where}"
    ).format(
        accounts=number(restored.accounts),
        entries=number(len(added)),
        stations=number(restored.stations),
        fuels=number(restored.fuels),
        where=where,
    )
    if deleted and not with_deleted:
        left_out = ngettext(
            "; left out {count} account deleted since the backup ({names}; --with-deleted restores it)",
            "; left out {count} accounts deleted since the backup ({names}; --with-deleted restores them)",
            len(deleted),
        )
        summary += left_out.format(count=number(len(deleted)), names=", ".join(deleted))
    return summary


def restore_if_lost(engine: Engine, settings: Settings) -> str | None:
    """At the scheduler's start: restore the newest backup of BACKUP_TARGET when the database has no account.

    None (nothing to record) when BACKUP_TARGET is not set, the database has accounts, or the target
    holds no backup yet. The credentials document may hold accounts (it may live in S3, which the
    lost disk did not take with it): the deletion rule then leaves out the accounts deleted since.
    """
    if not settings.backup_target or _has_accounts(engine):
        return None
    if newest_backup(target_of(settings.backup_target)) is None:
        log.warning("the database has no account and %s holds no backup: nothing to restore", settings.backup_target)
        return None
    log.info("the database has no account: restoring the newest backup of %s", settings.backup_target)
    return restore(engine, settings, settings.backup_target)


def _has_accounts(engine: Engine) -> bool:
    with session_factory(engine)() as session:
        return bool(session.scalar(select(exists().select_from(User))))


def _current_document(store: CredentialStore) -> Document:
    try:
        snapshot = store.load()
    except StoreError as exc:
        raise BackupError(
            N_("the credentials document cannot be read, nothing was changed: {error}"), error=exc
        ) from exc
    if snapshot.stale:
        raise BackupError(
            N_("the credentials document cannot be read right now (its store is unreachable), nothing was changed")
        )
    return snapshot.document


def _backed_up_document(payload: dict) -> Document:
    document = payload.get("credentials")
    if (
        not isinstance(document, dict)
        or not isinstance(document.get("credentials"), dict)
        or not isinstance(document["credentials"].get("usernames"), dict)
        or not isinstance(document.get("cookie"), dict)
    ):
        raise BackupError(N_("it holds no credentials document"))
    return document


Added = tuple[dict[str, Entry], dict | None, dict | None]  # entries added; cookie section replaced, and by what


def _add_entries(document: Document, entries: Mapping[str, Entry], cookie: dict | None) -> Added:
    """Add the entries the document lacks, and `cookie` into a document without accounts; what was done."""
    users = users_in(document)
    previous_cookie = None
    if cookie is not None and not users:
        previous_cookie, document["cookie"] = document["cookie"], copy.deepcopy(cookie)
    added = {name: copy.deepcopy(entry) for name, entry in entries.items() if name not in users}
    users.update(copy.deepcopy(added))
    return added, previous_cookie, cookie if previous_cookie is not None else None


def _take_out(document: Document, done: Added) -> None:
    """Undo `_add_entries` where the document still holds what it wrote."""
    added, previous_cookie, cookie = done
    users = users_in(document)
    for name, entry in added.items():
        if users.get(name) == entry:
            del users[name]
    if previous_cookie is not None and document.get("cookie") == cookie:
        document["cookie"] = previous_cookie
