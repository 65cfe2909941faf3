"""Reading only the stations whose bytes changed since the last run (a run's fast path)."""

from __future__ import annotations

import array
import datetime as dt
import functools
import io
import itertools
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from lxml import etree

from ingest.errors import FeedError
from ingest.parse import PARSER_OPTIONS, parse_feed
from ingest.records import ParseReport, StationEntry
from ingest.source import READ_CHUNK, open_feed

# How a run reads only what changed.
#
# Each run reads a new copy of the whole feed, in which most stations are byte for byte what the
# last run read. A station whose <pdv> bytes are unchanged needs no Python objects, no checks and
# no comparison with the database: its rows already hold exactly what those bytes say. So, in one
# streaming pass over the document that keeps only the bytes of the stations that changed:
#
# 1. Its layout is checked against the genuine feed's: XML declaration, <pdv_liste>, then only
#    <pdv id="..."> elements separated by white space; no comment, CDATA section, processing
#    instruction or DOCTYPE. In such a document every "<pdv " starts a station and the next
#    "</pdv>" ends it, so a station's bytes are found with bytearray.find, without parsing.
#    Any other document is read whole by parse_feed, as always: only the stations before the
#    first sign of another layout get a fingerprint.
# 2. Each station's fingerprint is a CRC-32 of its bytes, seeded with the document's declaration
#    and with the code that reads them (see `rules_seed`), and its length. On the real feed (10,003
#    stations, 12 MB) finding and fingerprinting them all costs ~20-25 ms; serialising each element
#    with etree.tostring to hash it would cost ~100 ms, nearly a whole iterparse (~130 ms).
# 3. libxml2 still reads every byte, with the options of parse_feed but a parser target that builds
#    nothing and calls no Python code: ~45 ms. Any fault sends the document to parse_feed, which
#    refuses it with its usual reason.
# 4. The changed and new stations alone, in their order, make a small document that parse_feed
#    reads as always: the same checks, rejections and counts. It is read whole before any of it is
#    loaded; a whole document is loaded a batch at a time as it is read.
#
# A fingerprint is kept only for a station accepted with nothing rejected and no price unit read
# from the rest of the document (ParseReport.unclean): skipping it hides no rejection, and no
# reading that the other stations could change. If a price of a changed station is read in
# context while others were skipped, or a station is listed twice, the document is read again
# whole, without skipping.

# Above this share of changed stations, one iterparse of the whole document costs less; the share
# is judged from the first stations already (the instant feed lists them in no particular order).
INCREMENTAL_MAX_SHARE = 0.5
INCREMENTAL_SAMPLE = 500
# The changed stations' bytes are held, and their entries, until all are read: past this, read everything in batches.
INCREMENTAL_MAX_BYTES = 4 << 20
# The modules whose code turns a <pdv> into stored rows: any change to them invalidates every fingerprint.
RULES_MODULES = (
    "ingest/records.py",
    "ingest/parse.py",
    "ingest/update.py",
    "ingest/load.py",
    "ingest/bulk.py",
    "models.py",
    "utils.py",
)
_LAYOUT_HEAD = re.compile(rb"<\?xml [^<>]*\?>[ \t\r\n]*<pdv_liste>")
_LAYOUT_ID = re.compile(rb'<pdv id="([1-9][0-9]{0,7})"')
_ROOT_END = b"</pdv_liste>"
_XML_SPACE = b" \t\r\n"


@functools.cache
def rules_seed() -> int:
    """A CRC-32 of the code that reads a <pdv> and stores it, and of lxml's version.

    A fingerprint taken under other rules never matches one taken under these: after an upgrade
    that changes how a station is read, validated or encoded, every station is read again once.
    """
    crc = zlib.crc32(repr(etree.LXML_VERSION).encode())
    project = Path(__file__).resolve().parent.parent
    for name in RULES_MODULES:
        crc = zlib.crc32((project / name).read_bytes(), crc)
    return crc


class LayoutScanner:
    """Finds each <pdv> of a document laid out as the genuine feed is, as its bytes stream by.

    `genuine` turns False at the first sign of another layout, and is final after close().
    `ids` and `fingerprints` hold each station's id (0 when its start tag does not open with
    one) and fingerprint, in document order, as machine integers.

    `on_station(id, fingerprint, bytes)` sees each station as it is found, and must return
    whether its bytes hold a single <pdv> (see `single_station`): a self-closed <pdv/> would
    otherwise hide the next station inside its bytes. By default every station is checked.
    """

    def __init__(self, on_station: Callable[[int, int, bytearray], bool] | None = None):
        self.on_station = on_station or (lambda _id, _fingerprint, data: single_station(data))
        self.genuine = True
        self.head: bytes | None = None  # the XML declaration through <pdv_liste>
        self.ids = array.array("q")
        self.fingerprints = array.array("q")
        self._pending = bytearray()  # bytes after the last station found
        self._seed = 0
        self._last_byte = b""  # for a "<!" or "<?" cut by the chunk's end
        self._root_ended = False

    def feed(self, chunk: bytes) -> None:
        if not self.genuine:
            return
        pending = self._pending
        pending += chunk
        if self.head is None:
            head = _LAYOUT_HEAD.match(pending)
            if head is None:
                self.genuine = len(pending) < 1024  # the declaration may be cut by the chunk's end
                return
            self.head = bytes(pending[: head.end()])
            self._seed = zlib.crc32(self.head, rules_seed())
            del pending[: head.end()]
            chunk = bytes(pending)
        if _other_markup(chunk) or (self._last_byte == b"<" and chunk[:1] in (b"!", b"?")):
            self.genuine = False
            return
        self._last_byte = chunk[-1:]
        self._scan(final=False)

    def close(self) -> None:
        """The document ended: whatever is left must be white space after the root's end tag."""
        if self.genuine and self.head is not None:
            self._scan(final=True)
        self.genuine = (
            self.genuine and self.head is not None and self._root_ended and not self._pending.strip(_XML_SPACE)
        )

    def _scan(self, final: bool) -> None:
        pending = self._pending
        find, startswith, match, crc32 = pending.find, pending.startswith, _LAYOUT_ID.match, zlib.crc32
        ids, fingerprints, seed, on_station = self.ids, self.fingerprints, self._seed, self.on_station
        position = 0
        while (start := find(b"<", position)) >= 0:
            if self._root_ended or (start > position and pending[position:start].strip(_XML_SPACE)):
                self.genuine = False  # text or markup between stations, or after the root
                return
            if len(pending) - start < len(_ROOT_END) and not final:
                break  # too few bytes to tell a station from the root's end
            if startswith(b"<pdv ", start):
                end = find(b"</pdv>", start)
                if end < 0:
                    self.genuine = not final
                    break  # the station's end has not come yet
                position = end + len(b"</pdv>")
                data = pending[start:position]
                found = match(data)
                station_id = int(found[1]) if found else 0
                fingerprint = crc32(data, seed) | len(data) << 32
                ids.append(station_id)
                fingerprints.append(fingerprint)
                if not on_station(station_id, fingerprint, data):
                    self.genuine = False
                    return
            elif startswith(_ROOT_END, start):
                self._root_ended, position = True, start + len(_ROOT_END)
            else:
                self.genuine = False  # another element
                return
        else:
            if pending[position:].strip(_XML_SPACE):
                self.genuine = False  # text after the last tag
                return
            position = len(pending)
        del pending[:position]


def single_station(data: bytearray) -> bool:
    """Whether the bytes of a station found by LayoutScanner hold no other <pdv> than the first."""
    return data.find(b"<pdv", 4) < 0


def _other_markup(data: bytes) -> bool:
    """Whether `data` holds a comment, CDATA section, DOCTYPE or processing instruction: text could hide tags."""
    for mark in b"!?":  # rare characters, found at memchr speed, where "<!" would stop at every "<"
        at = data.find(mark, 1)
        while at >= 0:
            if data[at - 1] == ord("<"):
                return True
            at = data.find(mark, at + 1)
    return False


class _Tee:
    """A stream that shows every chunk read through it to a LayoutScanner."""

    def __init__(self, stream: BinaryIO, scanner: LayoutScanner):
        self._stream, self._scanner = stream, scanner

    def read(self, size: int = READ_CHUNK) -> bytes:
        chunk = self._stream.read(size)
        self._scanner.feed(chunk)
        return chunk


class _NoTree:
    """A parser target that builds nothing: libxml2 checks every byte and calls no Python code."""

    def close(self) -> None:
        return None


class FeedUpdate:
    """A feed read against the fingerprints of the last load, handed out a batch of stations at a time.

    `batches()` yields the stations read now (every one, or only the changed and new ones when
    `incremental`), each with the fingerprint to keep for it (None: read it again next time), and
    can be iterated once. Once it is exhausted, `unchanged` names the stations left unread (the same
    bytes as last time) and `revoked()` the stations whose fingerprint must not be kept after all.
    """

    def __init__(
        self,
        entries: Iterable[tuple[StationEntry, int | None]],
        unchanged: list[int] | None = None,
        scanner: LayoutScanner | None = None,
        twice: set[int] | None = None,
    ):
        self._entries = entries
        self.unchanged = unchanged or []
        self.incremental = unchanged is not None  # the stations read are only the changed and new ones
        # Of a whole reading, complete once the entries are out: what the layout scanner found, the stations read twice.
        self._scanner = scanner
        self._twice = twice or set()

    def batches(self, size: int) -> Iterator[list[tuple[StationEntry, int | None]]]:
        iterator = iter(self._entries)
        while batch := list(itertools.islice(iterator, size)):
            yield batch

    def revoked(self) -> set[int]:
        """The stations given a fingerprint that must not be kept: those the document lists twice."""
        if self._scanner is None:
            return set()  # a station listed twice is never read this way
        found_twice = (station_id for station_id, times in Counter(self._scanner.ids).items() if times > 1)
        return self._twice.union(found_twice)


def parse_update(
    path: Path,
    max_xml_bytes: int,
    report: ParseReport,
    now: dt.datetime,
    known: Mapping[int, int | None] | None = None,
) -> FeedUpdate:
    """Read the feed at `path`, skipping the stations whose fingerprint is in `known` (those of the last load).

    Without `known`, or when skipping would not pay or not be exact, every station is read by
    parse_feed as the batches are taken, and the fingerprints are taken for the next run.
    """
    if known is not None:
        changed = _read_changed(path, max_xml_bytes, known, now)
        if changed is not None:
            update, changed_report = changed
            report.replace_with(changed_report)
            return update
    # The scanner sees each chunk before libxml2 does: a station's fingerprint is known when parse_feed yields it.
    # It stops at the first sign of another layout; the stations found before it keep their fingerprints.
    fingerprints: dict[int, int] = {}

    def found(station_id: int, fingerprint: int, data: bytearray) -> bool:
        if not single_station(data):
            return False
        fingerprints[station_id] = fingerprint
        return True

    scanner = LayoutScanner(found)
    read: set[int] = set()
    twice: set[int] = set()

    def entries() -> Iterator[tuple[StationEntry, int | None]]:
        with open_feed(path, max_xml_bytes) as xml:
            for entry in parse_feed(_Tee(xml, scanner), report, now):
                station_id = entry.station["id"]
                if station_id in read:
                    twice.add(station_id)
                read.add(station_id)
                fingerprint = fingerprints.pop(station_id, None)
                yield entry, None if station_id in report.unclean else fingerprint
        scanner.close()

    return FeedUpdate(entries(), scanner=scanner, twice=twice)


def _read_changed(
    path: Path, max_xml_bytes: int, known: Mapping[int, int | None], now: dt.datetime
) -> tuple[FeedUpdate, ParseReport] | None:
    """Read only the stations whose bytes changed; None when the whole document must be read instead."""
    changed: list[bytearray] = []
    fingerprints: dict[int, int] = {}
    unchanged: list[int] = []
    changed_bytes = 0

    def sort(station_id: int, fingerprint: int, data: bytearray) -> bool:
        nonlocal changed_bytes
        if station_id and known.get(station_id) == fingerprint:
            # The same bytes as a station checked when its fingerprint was kept (the seed covers this code).
            unchanged.append(station_id)
            return True
        changed.append(data)
        fingerprints[station_id] = fingerprint
        changed_bytes += len(data)
        return single_station(data)

    def too_big() -> bool:
        return len(changed) > most or changed_bytes > INCREMENTAL_MAX_BYTES

    def too_many() -> bool:
        read = len(changed) + len(unchanged)
        return too_big() or (read >= INCREMENTAL_SAMPLE and len(changed) > INCREMENTAL_MAX_SHARE * read)

    scanner = LayoutScanner(sort)
    parser = etree.XMLParser(target=_NoTree(), **PARSER_OPTIONS)
    most = INCREMENTAL_MAX_SHARE * len(known)
    with open_feed(path, max_xml_bytes) as xml:
        try:
            while (chunk := xml.read(READ_CHUNK)) and scanner.genuine and not too_many():
                parser.feed(chunk)
                scanner.feed(chunk)
            if chunk:
                return None  # another layout, or too many changes
            parser.close()
        except etree.XMLSyntaxError:
            return None
    scanner.close()
    if not scanner.genuine or too_big() or len(set(scanner.ids)) < len(scanner.ids):
        return None  # another layout, too many changes, or a station listed twice
    report = ParseReport()
    document = scanner.head + b"".join(changed) + _ROOT_END
    del changed[:]
    try:
        # Read whole before any is loaded: a price unit read in context sends the document to a full reading.
        entries = list(parse_feed(io.BytesIO(document), report, now))
    except FeedError:
        return None
    if report.contextual and unchanged:
        return None  # a price unit read without the skipped stations' prices
    report.stations += len(unchanged)
    unclean = report.unclean
    read = [(e, None if e.station["id"] in unclean else fingerprints.get(e.station["id"])) for e in entries]
    return FeedUpdate(read, unchanged), report
