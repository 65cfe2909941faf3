"""The store of the streamlit-authenticator credentials document.

The document is the dict `Authenticate` is built from:

    {"credentials": {"usernames": {username: {email, first_name, last_name, password, roles,
                                              failed_login_attempts, logged_in, ...}}},
     "cookie": {"name": ..., "key": ..., "expiry_days": ...}}

It lives in a local YAML file (`LocalCredentialStore`) or in an S3 object
(`S3CredentialStore`); it never touches the SQL database. Every change goes
through `update(change)`, a read-modify-write that never loses a concurrent
writer's change: the local store holds an exclusive lock around it, the S3
store writes with `IfMatch` on the ETag it read and re-applies the change on a
conflict. `change` may therefore run more than once and must only modify the
document it is given.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import logging
import os
import random
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import boto3
import yaml
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ReadTimeoutError
from botocore.exceptions import ConnectionError as S3ConnectionError

from i18n import N_, _
from settings import Settings
from utils import first_line, lock_beside

log = logging.getLogger(__name__)

T = TypeVar("T")
Document = dict[str, Any]

COOKIE_NAME = "carburoam_auth"
COOKIE_EXPIRY_DAYS = 30
MAX_ATTEMPTS = 10
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_MAX_SECONDS = 2.0
S3_CONFIG = Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})
CONFLICT_STATUSES = {409, 412}  # ConditionalRequestConflict, PreconditionFailed
# libyaml's safe loader when PyYAML has it: the same documents, read 8 times faster (every sign-in reads one).
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class StoreError(Exception):
    """The credentials document could not be read or changed; the message is fit to show a user."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or read; nothing was written."""


class StoreConflict(StoreError):
    """Other writers kept changing the document; the change was given up and nothing was written."""


@dataclass(frozen=True)
class Snapshot:
    """A document as read, with an opaque version; `stale` when it is a remembered copy."""

    document: Document
    version: str
    stale: bool = False


class CredentialStore(Protocol):
    degraded: bool  # the last read served a remembered copy: the store could not be reached

    def load(self) -> Snapshot:
        """The newest document (created on first use); raises StoreUnavailable."""
        ...

    def update(self, change: Callable[[Document], T]) -> T:
        """Apply `change` to a copy of the newest document and save it; return what `change` returned.

        An exception from `change` propagates and nothing is written. Raises StoreUnavailable
        or StoreConflict, having written nothing; ValueError if `change` broke the document's shape.
        """
        ...


def new_document() -> Document:
    """An empty credentials document with a fresh random cookie key."""
    return {
        "credentials": {"usernames": {}},
        "cookie": {"name": COOKIE_NAME, "key": secrets.token_urlsafe(32), "expiry_days": COOKIE_EXPIRY_DAYS},
    }


def document_secret(store: CredentialStore, name: str) -> bytes:
    """The server secret `name` kept in the credentials document beside the cookie key, made on first use.

    Secrets live with the credentials, never in the database: a copy of the database cannot forge
    what they sign.
    """
    key = store.load().document.get(name)
    if not isinstance(key, str):
        key = store.update(lambda document: document.setdefault(name, secrets.token_hex(32)))
    return key.encode()


def _check_document(document: object) -> Document:
    """`document` if it has the shape `Authenticate` is built from, else ValueError saying what is wrong."""
    if not isinstance(document, dict):
        raise ValueError("it is not a mapping")
    credentials = document.get("credentials")
    if not isinstance(credentials, dict) or not isinstance(credentials.get("usernames"), dict):
        raise ValueError("it has no credentials.usernames mapping")
    cookie = document.get("cookie")
    if (
        not isinstance(cookie, dict)
        or not cookie.get("name")
        or not cookie.get("key")
        or not isinstance(cookie.get("expiry_days"), int | float)
    ):
        raise ValueError("its cookie section needs a name, a key and expiry_days")
    return document


def _parse(data: bytes, where: str) -> Document:
    """The document in `data`; StoreUnavailable naming `where` (a message of the catalogs, already filled)."""
    try:
        return _check_document(yaml.load(data, Loader=SAFE_LOADER))  # noqa: S506 (a safe loader)
    except (yaml.YAMLError, ValueError) as exc:
        message = _(
            "{where} is not a valid credentials document ({problem}). It was left untouched: "
            "fix it or restore it from a backup."
        )
        raise StoreUnavailable(message.format(where=where, problem=first_line(exc))) from exc


def _dump(document: Document) -> bytes:
    try:
        return yaml.safe_dump(_check_document(document), sort_keys=False, allow_unicode=True).encode()
    except yaml.representer.RepresenterError as exc:
        raise ValueError(f"the document holds a value YAML cannot store: {exc}") from exc


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: a reader sees the old file or the new one, never a partial one."""
    # mkstemp creates the file with mode 0600 before anything is written to it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # makes the rename itself durable
    finally:
        os.close(dir_fd)


class LocalCredentialStore:
    """The document as a YAML file (mode 0600), created with a new cookie key on first use.

    Reads and read-modify-writes hold an exclusive flock on a sibling `.lock` file, so a write
    is always based on the newest document and no update is ever lost, across threads and
    processes alike.
    """

    degraded = False  # a local file is read or refused, never served from memory

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> Snapshot:
        with self._locked():
            return self._read()

    def update(self, change: Callable[[Document], T]) -> T:
        with self._locked():
            document = copy.deepcopy(self._read().document)
            result = change(document)
            self._write(document)
            return result

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(lock_beside(self.path))
            except OSError as exc:
                message = _("The credentials file {path} cannot be locked: {reason}")
                raise StoreUnavailable(message.format(path=self.path, reason=exc.strerror)) from exc
            yield

    def _read(self) -> Snapshot:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            document = new_document()
            version = self._write(document)
            log.info("created the credentials file %s with a new random cookie key", self.path)
            return Snapshot(document, version)
        except OSError as exc:
            message = _("The credentials file {path} cannot be read: {reason}")
            raise StoreUnavailable(message.format(path=self.path, reason=exc.strerror)) from exc
        return Snapshot(_parse(data, _("The credentials file {path}").format(path=self.path)), _sha256(data))

    def _write(self, document: Document) -> str:
        data = _dump(document)
        try:
            _write_atomically(self.path, data)
        except OSError as exc:
            message = _("The credentials file {path} cannot be written: {reason}")
            raise StoreUnavailable(message.format(path=self.path, reason=exc.strerror)) from exc
        return _sha256(data)


def _error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _http_status(exc: ClientError) -> int:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)


class S3CredentialStore:
    """The document as a YAML object in S3, written only with `IfMatch`/`IfNoneMatch` conditions.

    The last document read or written is remembered, so that `load()` during an outage still
    returns it (marked stale) and known users can sign in; `update()` during an outage raises
    `StoreUnavailable` and writes nothing.
    """

    def __init__(self, bucket: str, key: str, client: BaseClient | None = None, *, attempts: int = MAX_ATTEMPTS):
        self.bucket = bucket
        self.key = key
        self.attempts = attempts
        self._client = client
        self._client_lock = threading.Lock()
        self._last_good: Snapshot | None = None
        self.degraded = False

    @property
    def client(self) -> BaseClient:
        # The default boto3 session is not thread-safe, so each store gets a session of its own.
        with self._client_lock:
            if self._client is None:
                self._client = boto3.session.Session().client("s3", config=S3_CONFIG)
            return self._client

    def load(self) -> Snapshot:
        try:
            return self._fetch()
        except StoreUnavailable as exc:
            last = self._last_good
            if last is None:
                raise
            log.warning("serving the last good copy of s3://%s/%s: %s", self.bucket, self.key, exc)
            self.degraded = True
            return dataclasses.replace(last, document=copy.deepcopy(last.document), stale=True)

    def update(self, change: Callable[[Document], T]) -> T:
        for attempt in range(self.attempts):
            snapshot = self._fetch()
            document = copy.deepcopy(snapshot.document)
            result = change(document)
            if self._put(document, IfMatch=snapshot.version):
                return result
            log.debug("s3://%s/%s changed since it was read (attempt %d), retrying", self.bucket, self.key, attempt + 1)
            # Jitter spreads out writers that collided so that they do not collide again.
            time.sleep(random.uniform(0, min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)))  # noqa: S311
        message = _("The accounts were changed by others {attempts} times while saving; please try again.")
        raise StoreConflict(message.format(attempts=self.attempts))

    def _fetch(self) -> Snapshot:
        """The newest document, creating the object on first use."""
        snapshot = self._get()
        if snapshot is None:
            snapshot = self._put(new_document(), IfNoneMatch="*")
            if snapshot is None:
                snapshot = self._get()  # another writer created it first: use theirs
            else:
                log.info("created s3://%s/%s with a new random cookie key", self.bucket, self.key)
        if snapshot is None:
            raise StoreConflict(_("The accounts document was deleted while being created; please try again."))
        return snapshot

    def _get(self) -> Snapshot | None:
        """The stored document, or None if there is no object yet."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key)
            data = response["Body"].read()
        except ClientError as exc:
            if _error_code(exc) == "NoSuchKey":
                return None
            raise self._unavailable(exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable(exc) from exc
        where = _("The credentials object {url}").format(url=f"s3://{self.bucket}/{self.key}")
        snapshot = Snapshot(_parse(data, where), response["ETag"])
        self._remember(snapshot)
        return snapshot

    def _put(self, document: Document, **condition: str) -> Snapshot | None:
        """Write `document` if `condition` holds; None if it does not (someone else wrote first)."""
        try:
            response = self.client.put_object(
                Bucket=self.bucket, Key=self.key, Body=_dump(document), ContentType="application/yaml", **condition
            )
        except ClientError as exc:
            # NoSuchKey: the object was deleted since it was read; the retry recreates it.
            if _http_status(exc) in CONFLICT_STATUSES or _error_code(exc) == "NoSuchKey":
                return None
            raise self._unavailable(exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable(exc) from exc
        snapshot = Snapshot(document, response["ETag"])
        self._remember(snapshot)
        return snapshot

    def _remember(self, snapshot: Snapshot) -> None:
        # A private copy: callers (streamlit-authenticator among them) mutate the documents they get.
        self._last_good = dataclasses.replace(snapshot, document=copy.deepcopy(snapshot.document))
        self.degraded = False

    def _unavailable(self, exc: ClientError | BotoCoreError) -> StoreUnavailable:
        """The error to raise for `exc`, in the active language; the log says why in English."""
        bucket, answer = repr(self.bucket), None
        if isinstance(exc, ClientError):
            code = _error_code(exc)
            if code == "NoSuchBucket":
                reason = N_("its storage bucket {bucket} does not exist")
            elif code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch") or _http_status(exc) == 403:
                reason = N_("access to its storage bucket {bucket} was denied")
            else:
                reason, answer = N_("its storage answered {answer}"), code or _http_status(exc)
        elif isinstance(exc, S3ConnectionError):
            reason = N_("its storage server cannot be reached")
        elif isinstance(exc, ReadTimeoutError):
            reason = N_("its storage server did not answer in time")
        elif isinstance(exc, NoCredentialsError):
            reason = N_("no storage credentials are configured")
        else:
            reason = N_("its storage did not answer properly")
        english = reason.format(bucket=bucket, answer=answer)
        log.warning("credentials store s3://%s/%s unavailable (%s): %r", self.bucket, self.key, english, exc)
        message = _("The account service is unreachable right now ({reason}). Please try again later.")
        return StoreUnavailable(message.format(reason=_(reason).format(bucket=bucket, answer=answer)))


def credential_store(settings: Settings) -> CredentialStore:
    """The store `LOAD_MODE` selects; nothing is read, created or connected until it is used."""
    if settings.load_mode == "remote":
        return S3CredentialStore(settings.bucket_name_store, settings.credentials_object_key)
    return LocalCredentialStore(settings.credentials_file)
