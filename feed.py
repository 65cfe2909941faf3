"""Reading the government's fuel-price feed: fetch, open, parse.

Nothing here touches the database.  The rules follow `shared/feeds/FORMAT.md`
section 10: the feed is ISO-8859-1 XML, usually zipped, with a handful of
quirks accumulated since 2007 that every function below has to survive.
"""

from __future__ import annotations

import array
import contextlib
import datetime as dt
import functools
import io
import re
import unicodedata
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import BinaryIO, NamedTuple
from urllib.parse import urlsplit

from lxml import etree

from models import Station
from utils import PARIS, UTC, utcnow

FUEL_IDS = frozenset(range(1, 7))
_FUELS_BY_TEXT = {str(i): i for i in FUEL_IDS}
_UNSEEN = object()
ROAD_TYPES = frozenset("RAN")
RUPTURE_KINDS = frozenset({"temporaire", "definitive"})
MIN_PRICE_MILLI, MAX_PRICE_MILLI = 100, 5000  # plausible when 0.10 < price <= 5.00 EUR/L
EARLIEST_PLAUSIBLE_YEAR = 2000
# A feed time may run ahead of the run's clock by clock skew or a UTC/Paris mix-up, never by more than a day.
FUTURE_TOLERANCE = dt.timedelta(days=1)
MAX_STATION_ID = 99_999_999
_STATION_ID = re.compile("[1-9][0-9]{0,7}")  # 1..MAX_STATION_ID, written as the feed writes it
# Texts longer than these cannot be an address, a town or a service label, and would not fit the columns.
MAX_ADDRESS_CHARS = Station.__table__.c.address.type.length
MAX_TOWN_CHARS = Station.__table__.c.town.type.length
MAX_TEXT_CHARS = 500
READ_CHUNK = 1 << 16
# Metropolitan France (Corsica included) with a margin; overseas stations are checked by postcode.
METROPOLE_LAT, METROPOLE_LON = (41.0, 51.6), (-5.8, 10.0)
WEEKDAYS = ("Lundi", "Mardi", "Mercredi", "Jeudi", "Vendredi", "Samedi", "Dimanche")


class FeedError(Exception):
    """The feed could not be fetched, opened or understood; the message says why."""


# --------------------------------------------------------------------------- fetch


@contextlib.contextmanager
def feed_file(source: str, download_dir: Path, settings) -> Iterator[Path]:
    """The feed as a local file: a path is used in place, a URL is downloaded and removed afterwards."""
    if urlsplit(source).scheme in ("http", "https"):
        # Imported here: requests weighs ~6 MB, which a run from a local file never needs.
        from fetch import fetch_feed

        path = fetch_feed(source, download_dir, settings)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)
        return
    path = Path(source.removeprefix("file://")).expanduser()
    if not path.is_file():
        raise FeedError(f"no feed file at {path}")
    yield path


# --------------------------------------------------------------------------- open


class _CappedReader:
    """A read-only stream that fails once more than `cap` bytes have come out of it."""

    def __init__(self, raw: BinaryIO, cap: int):
        self._raw, self._cap, self._read = raw, cap, 0

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


# --------------------------------------------------------------------------- parse


class StationEntry(NamedTuple):
    """One <pdv>: the station's columns, its prices and its out-of-stock records."""

    station: dict
    prices: list[tuple[int, int, int, dt.datetime]]  # (station_id, gastype_id, price in 1/1000 EUR, maj UTC)
    ruptures: list[tuple[int, int, dt.datetime | None, dt.datetime | None, str | None]]


@dataclass
class ParseReport:
    root: str | None = None
    stations: int = 0
    prices: int = 0
    rejected: int = 0
    reasons: Counter = field(default_factory=Counter)
    price_units: Counter = field(default_factory=Counter)
    # Prices whose unit was inferred from the rest of the document ("1": euros or thousandths?).
    contextual: int = 0
    # Stations accepted with a record rejected or a price read in context: read again next time, never skipped.
    unclean: set[int] = field(default_factory=set)

    def reject(self, reason: str) -> None:
        self.rejected += 1
        self.reasons[reason] += 1

    def replace_with(self, other: ParseReport) -> None:
        for name in (f.name for f in fields(self)):
            setattr(self, name, getattr(other, name))


_MOJIBAKE = re.compile("[\xc2-\xf4][\x80-\xbf]+")
_C1 = re.compile("(.?)([\x80-\x9f])")
_CP1252_PUNCTUATION = frozenset("\u2019\u2018\u201c\u201d\u2013\u2014\u2026\u20ac")


def repair_text(text: str | None) -> str:
    """Undo the two encoding accidents of the feed: UTF-8 bytes read as Latin-1, and stray C1 bytes."""
    if not text:
        return ""
    text = text.strip()
    if text.isascii():
        return text
    if _MOJIBAKE.search(text):
        text = _MOJIBAKE.sub(_decode_utf8_run, text)
    if _C1.search(text):
        text = _C1.sub(_map_c1, text)
    return text


class UnfitText(Exception):
    """A text no station could have; the message is the reason its station is rejected."""


# Tab, newline and carriage return are folded (below); any other match is a control character
# (Unicode Cc) or a bidirectional override that would reorder the text around it on screen.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_BREAKING_SPACE = re.compile(r"[ \t\n\r]*[\t\n\r][ \t\n\r]*")


def feed_text(raw: str | None, max_chars: int = MAX_TEXT_CHARS) -> str:
    """A text of a <pdv> as stored: repaired, each run of spaces holding a tab or line break made one space.

    Raises UnfitText when the result holds a control character or is longer than `max_chars`.
    Markup, markdown and links are ordinary text here; whoever displays it escapes it.
    """
    text = repair_text(raw)
    if _CONTROL.search(text):
        text = _BREAKING_SPACE.sub(" ", text)
        if _CONTROL.search(text):
            raise UnfitText("control characters in a text field")
    if len(text) > max_chars:
        raise UnfitText("text field too long")
    return text


def _decode_utf8_run(match: re.Match) -> str:
    run = match.group()
    try:
        return run.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        return run


def _map_c1(match: re.Match) -> str:
    before, c1 = match.groups()
    byte = c1.encode("latin-1")
    as_cp1252 = byte.decode("cp1252", errors="replace")
    if as_cp1252.isalpha() or as_cp1252 in _CP1252_PUNCTUATION:
        return before + as_cp1252
    # A UTF-8 continuation byte whose 0xC3 lead was lost or replaced by the bare letter:
    # "Saint-E\x89tienne" was "Saint-\xc3\x89tienne".
    letter = chr(byte[0] + 0x40)
    if before and unicodedata.normalize("NFD", letter)[0] == before:
        return letter
    return before + letter


def parse_price_milli(raw: str | None, units: Counter | None = None) -> int | None:
    """Price in thousandths of a euro, or None when absent or implausible.

    Old files give integer thousandths ("1167"), newer ones euros ("1.167",
    "2", "2.09"). A decimal point or a value of 100 or more settles the unit;
    a small integer ("1") follows the unit most of the document used so far,
    so the 0.001 EUR placeholders of old files are not read as 1 EUR.
    """
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    if "." in raw:
        in_thousandths = False
    elif value >= 100:
        in_thousandths = True
    else:
        in_thousandths = units is not None and units["thousandths"] > units["euros"]
    if units is not None:
        units["thousandths" if in_thousandths else "euros"] += 1
    milli = round(value) if in_thousandths else round(value * 1000)
    return milli if MIN_PRICE_MILLI < milli <= MAX_PRICE_MILLI else None


def _unit_from_context(raw: str | None) -> bool:
    """Whether `parse_price_milli` reads `raw`'s unit from the document so far (a small integer such as "1")."""
    if raw is None or "." in raw:
        return False
    try:
        value = float(raw)
    except ValueError:
        return False
    return value < 100 and value == value and value != float("-inf")


def parse_paris_time(raw: str | None, cache: dict | None = None) -> dt.datetime | None:
    """A feed timestamp (Paris wall clock, ' ' or 'T', optional fraction) as aware UTC, or None if bogus."""
    if not raw:
        return None
    if cache is not None and raw in cache:
        return cache[raw]
    try:
        wall = dt.datetime.fromisoformat(raw.strip())
    except ValueError:
        value = None
    else:
        value = None if wall.year < EARLIEST_PLAUSIBLE_YEAR else wall.replace(tzinfo=PARIS).astimezone(UTC)
    if cache is not None:
        cache[raw] = value
    return value


def parse_coordinates(lat_raw: str | None, lon_raw: str | None, zip_code: str) -> tuple[float | None, float | None]:
    """Degrees from the feed's "x 100000" strings, repairing the known mistakes; None when unusable."""
    try:
        lat, lon = float(lat_raw), float(lon_raw)
    except (TypeError, ValueError):
        return None, None
    if lat == 0 or lon == 0 or lat != lat or lon != lon:
        return None, None
    if abs(lat) >= 180:
        lat /= 100000
    if abs(lon) >= 180:
        lon /= 100000
    if zip_code.startswith("97"):
        return (lat, lon) if abs(lat) <= 90 and abs(lon) <= 180 else (None, None)
    if METROPOLE_LON[0] <= lat <= METROPOLE_LON[1] and METROPOLE_LAT[0] <= lon <= METROPOLE_LAT[1]:
        lat, lon = lon, lat
    if METROPOLE_LAT[0] <= lat <= METROPOLE_LAT[1] and METROPOLE_LON[0] <= lon <= METROPOLE_LON[1]:
        return round(lat, 7), round(lon, 7)
    return None, None


def _hhmm(raw: str | None) -> str:
    return (raw or "").replace(".", ":")[:5]


# Opening hours travel as hashable tuples, one per day: (day 1-7, closed, ((opens, closes), ...)).
OpeningHours = tuple[tuple[int, bool, tuple[tuple[str, str], ...]], ...]


def opening_hours_document(hours: OpeningHours | None) -> list[dict] | None:
    """The JSON shape stored for a station: [{"day": 1, "closed": false, "hours": [["07:30", "21:30"]]}, ...]."""
    if hours is None:
        return None
    return [{"day": day, "closed": closed, "hours": [list(span) for span in spans]} for day, closed, spans in hours]


def _parse_horaires(element) -> OpeningHours:
    days = []
    for jour in element:
        if jour.tag != "jour":
            continue
        try:
            day = int(jour.get("id", ""))
        except ValueError:
            continue
        spans = tuple((_hhmm(h.get("ouverture")), _hhmm(h.get("fermeture"))) for h in jour if h.tag == "horaire")
        days.append((day, jour.get("ferme") == "1", spans))
    return tuple(days)


def _parse_ouverture(element) -> OpeningHours:
    closed_days = {d.strip() for d in (element.get("saufjour") or "").split(";") if d.strip()}
    spans = ((_hhmm(element.get("debut")), _hhmm(element.get("fin"))),) if element.get("debut") else ()
    return tuple(
        (i, name in closed_days, () if name in closed_days else spans) for i, name in enumerate(WEEKDAYS, start=1)
    )


def _parse_services(element) -> tuple[str, ...]:
    return tuple(_service_label(s.text) for s in element if s.tag == "service" and s.text and s.text.strip())


@functools.lru_cache(maxsize=1024)
def _service_label(raw: str) -> str:
    return feed_text(raw)


class _PdvParser:
    """Turns <pdv> elements into entries, remembering values that repeat across stations.

    A feed holds a few hundred distinct prices, opening-hour blocks and service
    lists for 10,000 stations, so each distinct one is decoded only once.
    """

    def __init__(self, report: ParseReport, now: dt.datetime):
        self.report = report
        self.latest = now + FUTURE_TOLERANCE
        self.times: dict[str, dt.datetime | None] = {}
        self.prices: dict[str, int | None] = {}
        # Small integers read once in the context of the document so far, then kept: "2" stays 2.000 EUR.
        self.contextual_prices: dict[str, int | None] = {}
        self.blocks: dict[bytes, OpeningHours | tuple[str, ...]] = {}

    def price(self, raw: str | None) -> int | None:
        if raw in self.prices:
            return self.prices[raw]
        contextual = _unit_from_context(raw)
        if contextual:
            self.report.contextual += 1
            if raw in self.contextual_prices:
                return self.contextual_prices[raw]
        milli = parse_price_milli(raw, self.report.price_units)
        if raw and ("." in raw or (milli or 0) >= MIN_PRICE_MILLI):  # the unit is settled for this document
            # Context-free values go to the cache the station loop reads directly; the others come back
            # here each time, so that every price read in context is counted.
            (self.contextual_prices if contextual else self.prices)[raw] = milli
        return milli

    def block(self, element, parse):
        key = etree.tostring(element)
        value = self.blocks.get(key)
        if value is None:
            value = self.blocks[key] = parse(element)
        return value

    def entry(self, pdv) -> StationEntry | None:
        """The station of `pdv`, or None when it is rejected (counted in the report with its reason)."""
        report = self.report
        rejected, contextual = report.rejected, report.contextual
        try:
            entry = self._entry(pdv)
        except UnfitText as exc:
            report.reject(str(exc))
            return None
        if entry is not None and (report.rejected != rejected or report.contextual != contextual):
            report.unclean.add(entry.station["id"])
        return entry

    def _entry(self, pdv) -> StationEntry | None:
        report, times, prices_seen, latest = self.report, self.times, self.prices, self.latest
        attrib = pdv.attrib
        raw_id = attrib.get("id", "")
        if not _STATION_ID.fullmatch(raw_id):
            report.reject("station without a valid id")
            return None
        station_id = int(raw_id)
        zip_code = (attrib.get("cp") or "").strip()[:5]
        latitude, longitude = parse_coordinates(attrib.get("latitude"), attrib.get("longitude"), zip_code)
        pop = attrib.get("pop")
        address = town = ""
        automate = False
        opening_hours = None
        services: tuple[str, ...] = ()
        prices: list[tuple] = []
        ruptures: list[tuple] = []
        for child in pdv:
            tag = child.tag
            if tag == "prix":
                raw_fuel = child.get("id")
                if raw_fuel is None and not len(child.attrib):
                    continue  # <prix/>: a station without any price
                fuel = _FUELS_BY_TEXT.get(raw_fuel)
                raw_price = child.get("valeur")
                milli = prices_seen.get(raw_price, _UNSEEN)
                if milli is _UNSEEN:
                    milli = self.price(raw_price)
                raw_time = child.get("maj")
                maj = times.get(raw_time, _UNSEEN)
                if maj is _UNSEEN:
                    maj = parse_paris_time(raw_time, times)
                if fuel is None:
                    report.reject("unknown fuel")
                elif milli is None:
                    report.reject("implausible price")
                elif maj is None:
                    report.reject("missing or implausible price time")
                elif maj > latest:
                    report.reject("price time in the future")
                else:
                    prices.append((station_id, fuel, milli, maj))
            elif tag == "rupture":
                raw_fuel = child.get("id")
                if raw_fuel is None and not len(child.attrib):
                    continue
                fuel = _FUELS_BY_TEXT.get(raw_fuel)
                if fuel is None:
                    report.reject("unknown fuel")
                    continue
                started = parse_paris_time(child.get("debut"), times)
                ended = parse_paris_time(child.get("fin"), times)
                if (started is not None and started > latest) or (ended is not None and ended > latest):
                    report.reject("out-of-stock time in the future")
                    continue
                kind = child.get("type")
                ruptures.append((station_id, fuel, started, ended, kind if kind in RUPTURE_KINDS else None))
            elif tag == "adresse":
                address = feed_text(child.text, MAX_ADDRESS_CHARS)
            elif tag == "ville":
                town = feed_text(child.text, MAX_TOWN_CHARS)
            elif tag == "horaires":
                automate = child.get("automate-24-24") == "1"
                opening_hours = self.block(child, _parse_horaires)
            elif tag == "ouverture":
                if child.attrib:
                    opening_hours = self.block(child, _parse_ouverture)
            elif tag == "services":
                services = self.block(child, _parse_services)
        station = {
            "id": station_id,
            "latitude": latitude,
            "longitude": longitude,
            "zip_code": zip_code,
            "town": town,
            "address": address,
            "road_type": pop if pop in ROAD_TYPES else "R",
            "automate_24_24": automate,
            "opening_hours": opening_hours,
            "services": services,
        }
        return StationEntry(station, prices, ruptures)


# Entities are never resolved, nothing is fetched, no DTD is read and libxml2's size limits stay on.
PARSER_OPTIONS = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
}


def parse_feed(stream: BinaryIO, report: ParseReport, now: dt.datetime | None = None) -> Iterator[StationEntry]:
    """Stream the <pdv> elements of a feed document, one entry each, in constant memory.

    Entities are never resolved, nothing is fetched from the network, and a
    document that carries a DOCTYPE is refused outright. A record that cannot
    be right (bad id, time more than a day after `now`, unfit text...) is
    rejected and counted in `report`, never raised.
    """
    etree.clear_error_log()  # libxml2's log is per thread: its first fatal entry is then this document's
    context = etree.iterparse(stream, events=("end",), tag="pdv", **PARSER_OPTIONS)
    parser = _PdvParser(report, now or utcnow())
    try:
        for _, pdv in context:
            if report.root is None:
                _check_document(pdv.getroottree(), report)
            entry = parser.entry(pdv)
            pdv.clear(keep_tail=False)
            parent = pdv.getparent()
            while parent is not None and pdv.getprevious() is not None:
                del parent[0]
            if entry is None:
                continue
            report.stations += 1
            report.prices += len(entry.prices)
            yield entry
            if len(parser.times) > 100_000:  # a yearly archive has millions of distinct times
                parser.times.clear()
    except etree.XMLSyntaxError as exc:
        first = next(iter(exc.error_log.filter_from_fatals()), None)
        detail = f"{first.message}, line {first.line}, column {first.column}" if first else str(exc)
        raise FeedError(f"the feed's XML is malformed or truncated: {detail}") from exc
    if report.root is None:
        if context.root is None:
            raise FeedError("the feed holds no XML document")
        _check_document(context.root.getroottree(), report)


def _check_document(tree, report: ParseReport) -> None:
    if tree.docinfo.doctype:
        raise FeedError("the feed declares a DOCTYPE, which a genuine feed never does; refused")
    root = tree.getroot().tag
    if root != "pdv_liste":
        raise FeedError(f"the feed's root element is <{root}>, expected <pdv_liste>")
    report.root = root


# --------------------------------------------------------------------------- update: read only what changed
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
#    Any other document is read whole by parse_feed, as always, and gives no fingerprints.
# 2. Each station's fingerprint is a CRC-32 of its bytes, seeded with the document's declaration
#    and with the code that reads them (see `rules_seed`), and its length. On the real feed (10,003
#    stations, 12 MB) finding and fingerprinting them all costs ~20-25 ms; serialising each element
#    with etree.tostring to hash it would cost ~100 ms, nearly a whole iterparse (~130 ms).
# 3. libxml2 still reads every byte, with the options of parse_feed but a parser target that builds
#    nothing and calls no Python code: ~45 ms. Any fault sends the document to parse_feed, which
#    refuses it with its usual reason.
# 4. The changed and new stations alone, in their order, make a small document that parse_feed
#    reads as always: the same checks, rejections and counts.
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
# The modules whose code turns a <pdv> into stored rows: any change to them invalidates every fingerprint.
RULES_MODULES = ("feed.py", "loader.py", "models.py", "utils.py")
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
    here = Path(__file__).resolve().parent
    for name in RULES_MODULES:
        crc = zlib.crc32((here / name).read_bytes(), crc)
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


@dataclass
class FeedUpdate:
    """A feed read against the fingerprints of the last load: the rows of the stations read now."""

    stations: list[dict] = field(default_factory=list)
    prices: list[tuple[int, int, int, dt.datetime]] = field(default_factory=list)
    ruptures: list[tuple[int, int, dt.datetime | None, dt.datetime | None, str | None]] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)  # stations left unread: the same bytes as last time
    # The fingerprint to keep for each station read (None: read it again next time); None
    # altogether when the document is not laid out as the genuine feed is.
    fingerprints: dict[int, int | None] | None = None
    incremental: bool = False  # the stations read are only the changed and new ones

    def collect(self, entries: Iterable[StationEntry]) -> FeedUpdate:
        """Add the rows of `entries`, each freed as soon as it is taken."""
        for entry in entries:
            self.stations.append(entry.station)
            self.prices.extend(entry.prices)
            self.ruptures.extend(entry.ruptures)
        return self


def parse_update(
    path: Path,
    max_xml_bytes: int,
    report: ParseReport,
    now: dt.datetime,
    known: Mapping[int, int | None] | None = None,
) -> FeedUpdate:
    """Read the feed at `path`, skipping the stations whose fingerprint is in `known` (those of the last load).

    Without `known`, or when skipping would not pay or not be exact, every station is read by
    parse_feed, as the fingerprints are taken for the next run.
    """
    if known is not None:
        changed = _read_changed(path, max_xml_bytes, known, now)
        if changed is not None:
            update, changed_report = changed
            report.replace_with(changed_report)
            return update
    scanner = LayoutScanner()
    with open_feed(path, max_xml_bytes) as xml:
        update = FeedUpdate().collect(parse_feed(_Tee(xml, scanner), report, now))
    scanner.close()
    if scanner.genuine:
        update.fingerprints = _fingerprints(scanner, update.stations, report)
    return update


def _read_changed(
    path: Path, max_xml_bytes: int, known: Mapping[int, int | None], now: dt.datetime
) -> tuple[FeedUpdate, ParseReport] | None:
    """Read only the stations whose bytes changed; None when the whole document must be read instead."""
    changed: list[bytearray] = []
    unchanged: list[int] = []

    def sort(station_id: int, fingerprint: int, data: bytearray) -> bool:
        if station_id and known.get(station_id) == fingerprint:
            # The same bytes as a station checked when its fingerprint was kept (the seed covers this code).
            unchanged.append(station_id)
            return True
        changed.append(data)
        return single_station(data)

    def too_many() -> bool:
        read = len(changed) + len(unchanged)
        return len(changed) > most or (read >= INCREMENTAL_SAMPLE and len(changed) > INCREMENTAL_MAX_SHARE * read)

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
    if not scanner.genuine or len(changed) > most or len(set(scanner.ids)) < len(scanner.ids):
        return None  # another layout, too many changes, or a station listed twice
    report = ParseReport()
    document = scanner.head + b"".join(changed) + _ROOT_END
    try:
        update = FeedUpdate(unchanged=unchanged, incremental=True).collect(
            parse_feed(io.BytesIO(document), report, now)
        )
    except FeedError:
        return None
    if report.contextual and unchanged:
        return None  # a price unit read without the skipped stations' prices
    report.stations += len(unchanged)
    update.fingerprints = _fingerprints(scanner, update.stations, report)
    return update, report


def _fingerprints(scanner: LayoutScanner, stations: list[dict], report: ParseReport) -> dict[int, int | None]:
    """The fingerprint to keep for each station read: None unless it is clean and listed once."""
    by_id: dict[int, int | None] = {}
    for station_id, fingerprint in zip(scanner.ids, scanner.fingerprints, strict=True):
        by_id[station_id] = None if station_id in by_id else fingerprint
    kept: dict[int, int | None] = {}
    for station in stations:
        station_id = station["id"]
        clean_and_once = station_id not in kept and station_id not in report.unclean
        kept[station_id] = by_id.get(station_id) if clean_and_once else None
    return kept
