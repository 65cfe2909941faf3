"""Opening a feed file: zip or bare XML, its identity, a size-capped stream of its XML.

Nothing here touches the network or the database; `fetch` brings a remote feed to a file first.
"""

from __future__ import annotations

import contextlib
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from ingest.errors import FeedError
from settings import FIRST_ARCHIVE_YEAR, YEARLY_ARCHIVE_URL

READ_CHUNK = 1 << 16


@contextlib.contextmanager
def feed_file(source: str, download_dir: Path, settings, what: str = "feed file") -> Iterator[Path]:
    """The feed (or the reference file `what` names) as a local file: a path is used in place, a URL is downloaded
    and removed afterwards."""
    if urlsplit(source).scheme in ("http", "https"):
        # Imported here: requests weighs ~6 MB, which a run from a local file never needs.
        from ingest.fetch import fetch_feed

        path = fetch_feed(source, download_dir, settings, what)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)
        return
    path = Path(source.removeprefix("file://")).expanduser()
    if not path.is_file():
        raise FeedError(f"no {what} at {path}")
    yield path


def yearly_archive_url(year: int, this_year: int) -> str:
    """The official archive of every price change of `year`; a year it cannot have is refused in plain words."""
    if not FIRST_ARCHIVE_YEAR <= year <= this_year:
        raise FeedError(f"there is a yearly archive for each year from {FIRST_ARCHIVE_YEAR} to {this_year}, not {year}")
    return YEARLY_ARCHIVE_URL.format(year=year)


class _CappedReader:
    """A read-only stream that fails once more than `cap` bytes have come out of it."""

    def __init__(self, raw: BinaryIO, cap: int):
        self._raw, self._cap, self._read = raw, cap, 0

    @property
    def consumed(self) -> int:
        """How many bytes of XML came out so far."""
        return self._read

    def read(self, size: int = READ_CHUNK) -> bytes:
        try:
            data = self._raw.read(size)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise FeedError(f"the zip archive is corrupt: {exc}") from exc
        self._read += len(data)
        if self._read > self._cap:
            raise FeedError(f"the feed's XML is larger than the {self._cap:,}-byte cap")
        return data


@dataclass(frozen=True)
class FeedIdentity:
    """Size and CRC-32 of a feed's XML: equal identities mean the same document."""

    size: int
    crc32: int


def identify_feed(path: Path, max_xml_bytes: int) -> FeedIdentity:
    """The identity of the XML in `path`; from the zip directory when zipped, else by reading the file."""
    with _opened(path) as (fh, head):
        if _is_zip(head):
            with _zip_archive(fh) as archive:
                member = _xml_member(archive, max_xml_bytes)
                return FeedIdentity(member.file_size, member.CRC)
        _check_xml_head(head)
        size = path.stat().st_size
        if size > max_xml_bytes:
            raise FeedError(f"the feed's XML is {size:,} bytes, over the {max_xml_bytes:,}-byte cap")
        crc = 0
        while chunk := fh.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
        return FeedIdentity(fh.tell(), crc)


@contextlib.contextmanager
def open_feed(path: Path, max_xml_bytes: int) -> Iterator[BinaryIO]:
    """The XML document inside `path` (a zip with one .xml member, or a bare .xml), as a capped stream."""
    with _opened(path) as (fh, head):
        if _is_zip(head):
            with _zip_archive(fh) as archive:
                member = _xml_member(archive, max_xml_bytes)
                try:
                    stream = archive.open(member)
                except (zipfile.BadZipFile, RuntimeError, NotImplementedError) as exc:
                    raise FeedError(f"cannot read {member.filename} from the zip archive: {exc}") from exc
                with stream:
                    yield _CappedReader(stream, max_xml_bytes)
            return
        _check_xml_head(head)
        yield _CappedReader(fh, max_xml_bytes)


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[tuple[BinaryIO, bytes]]:
    with path.open("rb") as fh:
        head = fh.read(512)
        fh.seek(0)
        if not head:
            raise FeedError("the feed file is empty")
        yield fh, head


def _is_zip(head: bytes) -> bool:
    return head.startswith(b"PK")


def _check_xml_head(head: bytes) -> None:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if re.match(rb"(?i)<!doctype\s+html|<html|<head|<body", start):
        raise FeedError("the server sent a web page (HTML) instead of the feed")
    if not start.startswith(b"<"):
        raise FeedError("the feed is neither a zip archive nor an XML document")


@contextlib.contextmanager
def _zip_archive(fh: BinaryIO) -> Iterator[zipfile.ZipFile]:
    try:
        archive = zipfile.ZipFile(fh)
    except zipfile.BadZipFile as exc:
        raise FeedError(f"the zip archive is truncated or corrupt ({exc})") from exc
    with archive:
        yield archive


def _xml_member(archive: zipfile.ZipFile, max_xml_bytes: int) -> zipfile.ZipInfo:
    members = [m for m in archive.infolist() if not m.is_dir()]
    xml_members = [m for m in members if m.filename.lower().endswith(".xml")]
    if len(xml_members) != 1:
        names = ", ".join(m.filename for m in members[:5]) or "nothing"
        raise FeedError(f"the zip archive must hold exactly one .xml file; it holds {names}")
    member = xml_members[0]
    if member.file_size > max_xml_bytes:
        raise FeedError(
            f"the zip archive would expand to {member.file_size:,} bytes, over the {max_xml_bytes:,}-byte cap"
        )
    return member
