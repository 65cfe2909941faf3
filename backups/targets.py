"""Where backups are kept: a local folder or an S3 prefix (`s3://bucket/prefix`), newest N kept.

Backup files are named `carburoam-backup-<UTC time to the microsecond>.json.gz`, so that names sort
in time order; only files of that name are listed, and deleted by retention. A local backup is
written to a temporary file (0600) in the folder, flushed, then renamed; an S3 backup is one
`put_object` of the complete file. Either way a reader sees a whole backup or none.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import boto3
from botocore.client import BaseClient
from botocore.exceptions import BotoCoreError, ClientError

from accounts.store import S3_CONFIG
from backups.archive import BackupError
from i18n import N_
from utils import first_line

BACKUP_NAME = re.compile(r"carburoam-backup-\d{8}T\d{12}Z\.json\.gz")
WRITE = N_("cannot write the backup to {where}: {reason}")
LIST = N_("cannot list the backups in {where}: {reason}")
READ = N_("cannot read the backup {where}: {reason}")
DELETE = N_("cannot delete the old backup {where}: {reason}")


def backup_name(moment: dt.datetime) -> str:
    return f"carburoam-backup-{moment.astimezone(dt.UTC):%Y%m%dT%H%M%S%f}Z.json.gz"


class Target(Protocol):
    def write(self, name: str, data: bytes) -> str:
        """Store a complete backup file under `name`; return where it is."""
        ...

    def names(self) -> list[str]:
        """The backup files kept here, oldest first."""
        ...

    def read(self, name: str) -> bytes: ...

    def remove(self, name: str) -> None: ...

    def where(self, name: str = "") -> str: ...


@dataclass(frozen=True)
class LocalTarget:
    folder: Path

    def write(self, name: str, data: bytes) -> str:
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{name}.", suffix=".tmp")  # mode 0600
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.folder / name)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise BackupError(WRITE, where=self.folder, reason=exc.strerror or exc) from exc
        return self.where(name)

    def names(self) -> list[str]:
        try:
            return sorted(path.name for path in self.folder.iterdir() if BACKUP_NAME.fullmatch(path.name))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise BackupError(LIST, where=self.folder, reason=exc.strerror or exc) from exc

    def read(self, name: str) -> bytes:
        try:
            return (self.folder / name).read_bytes()
        except OSError as exc:
            raise BackupError(READ, where=self.folder / name, reason=exc.strerror or exc) from exc

    def remove(self, name: str) -> None:
        try:
            (self.folder / name).unlink(missing_ok=True)
        except OSError as exc:
            raise BackupError(DELETE, where=self.folder / name, reason=exc.strerror or exc) from exc

    def where(self, name: str = "") -> str:
        return str(self.folder / name) if name else str(self.folder)


@dataclass(frozen=True)
class S3Target:
    bucket: str
    prefix: str  # "" or ending with "/"
    client: BaseClient

    def write(self, name: str, data: bytes) -> str:
        self._call(WRITE, name, "put_object", Body=data, ContentType="application/gzip")
        return self.where(name)

    def names(self) -> list[str]:
        found = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
                found += [item["Key"][len(self.prefix) :] for item in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as exc:
            raise BackupError(LIST, where=self.where(), reason=_reason(exc)) from exc
        return sorted(name for name in found if BACKUP_NAME.fullmatch(name))

    def read(self, name: str) -> bytes:
        return self._call(READ, name, "get_object")["Body"].read()

    def remove(self, name: str) -> None:
        self._call(DELETE, name, "delete_object")

    def where(self, name: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{name}"

    def _call(self, failure: str, name: str, method: str, **arguments) -> dict:
        """The client's `method` on the object `name`; BackupError with the message `failure` when it fails."""
        try:
            return getattr(self.client, method)(Bucket=self.bucket, Key=self.prefix + name, **arguments)
        except (BotoCoreError, ClientError) as exc:
            raise BackupError(failure, where=self.where(name), reason=_reason(exc)) from exc


def _reason(exc: BotoCoreError | ClientError) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
    return first_line(exc)


def target_of(location: str) -> Target:
    """The target a `BACKUP_TARGET`-style location names: `s3://bucket[/prefix]` or a folder."""
    if location.startswith("s3://"):
        bucket, _, prefix = location.removeprefix("s3://").partition("/")
        if not bucket:
            raise BackupError(N_("{location} names no bucket (expected s3://bucket/prefix)"), location=location)
        prefix = prefix.strip("/")
        client = boto3.session.Session().client("s3", config=S3_CONFIG)
        return S3Target(bucket, f"{prefix}/" if prefix else "", client)
    return LocalTarget(Path(location).expanduser())


def open_backup(location: str) -> tuple[bytes, str]:
    """The bytes of the backup file at `location` and where it is; a folder or prefix means its newest backup."""
    if location.startswith("s3://"):
        parent, _, last = location.rstrip("/").rpartition("/")
        if BACKUP_NAME.fullmatch(last):
            target = target_of(parent)
            return target.read(last), target.where(last)
        target = target_of(location)
    else:
        path = Path(location).expanduser()
        if not path.is_dir():
            return LocalTarget(path.parent).read(path.name), str(path)
        target = LocalTarget(path)
    newest = newest_backup(target)
    if newest is None:
        raise BackupError(N_("there is no backup in {where}"), where=target.where())
    return target.read(newest), target.where(newest)


def newest_backup(target: Target) -> str | None:
    names = target.names()
    return names[-1] if names else None


def prune(target: Target, keep: int) -> list[str]:
    """Delete all but the newest `keep` backups of `target`; return the names deleted."""
    old = target.names()[:-keep]
    for name in old:
        target.remove(name)
    return old
