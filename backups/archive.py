"""The backup file format: one gzip'd JSON document, checked whole before anything is restored.

    {"format": "carburoam-backup", "version": 1, "sha256": "<hex>", "payload": {...}}

`sha256` is the SHA-256 of the payload serialised canonically (keys sorted, no spaces, UTF-8), so a
file whose content changed after it was written is refused, as are a file that is not gzip, is
truncated, is not such a document, or has a version newer than `FORMAT_VERSION`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zlib
from typing import Any

from i18n import N_, _

FORMAT = "carburoam-backup"
FORMAT_VERSION = 1
MAX_PAYLOAD_BYTES = 256 * 1024 * 1024  # far above any real backup; stops a decompression bomb

Payload = dict[str, Any]


REFUSED = N_("{where} was refused, nothing was changed: {reason}")


class BackupError(Exception):
    """A backup or a restore failed or was refused; the message is one line for the operator.

    `message` is an English message of the catalogs (marked with `N_()`), with `{name}` fields filled from
    `values`: it is written in the language active where it is raised (English in the command line and the
    scheduler, the administrator's on the admin page).
    """

    def __init__(self, message: str, **values: object) -> None:
        super().__init__(_(message).format(**values))


def checksum(payload: Payload) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def encode(payload: Payload) -> bytes:
    document = {"format": FORMAT, "version": FORMAT_VERSION, "sha256": checksum(payload), "payload": payload}
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return gzip.compress(text.encode(), mtime=0)


def decode(data: bytes, where: str) -> Payload:
    """The payload of a backup file's bytes; BackupError saying what is wrong with `where` otherwise."""

    def refused(reason: str, **values: object) -> BackupError:
        return BackupError(REFUSED, where=where, reason=_(reason).format(**values))

    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            text = stream.read(MAX_PAYLOAD_BYTES + 1)
    except EOFError:
        raise refused(N_("the file is truncated (its compressed data ends early)")) from None
    except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise refused(N_("the file is corrupt or not a gzip file ({error})"), error=exc) from None
    if len(text) > MAX_PAYLOAD_BYTES:
        raise refused(N_("it holds more than {mib} MiB of data"), mib=MAX_PAYLOAD_BYTES // (1024 * 1024))
    try:
        document = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise refused(N_("the file is corrupt (not a JSON document: {error})"), error=exc) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise refused(N_("it is not a Carburoam backup"))
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise refused(N_("its format version {version} is not valid"), version=repr(version))
    if version > FORMAT_VERSION:
        raise refused(
            N_("it was written by a newer Carburoam (backup format {version}; this one reads up to {readable})"),
            version=version,
            readable=FORMAT_VERSION,
        )
    payload = document.get("payload")
    if not isinstance(payload, dict) or document.get("sha256") != checksum(payload):
        raise refused(N_("its checksum does not match its content (the file was altered or damaged)"))
    return payload
