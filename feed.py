"""Reading the government's fuel-price feed: fetch, open, parse.

Nothing here touches the database.  The rules follow `shared/feeds/FORMAT.md`
section 10: the feed is ISO-8859-1 XML, usually zipped, with a handful of
quirks accumulated since 2007 that every function below has to survive.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import re
import unicodedata
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
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

    def reject(self, reason: str) -> None:
        self.rejected += 1
        self.reasons[reason] += 1


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
        self.blocks: dict[bytes, OpeningHours | tuple[str, ...]] = {}

    def price(self, raw: str | None) -> int | None:
        if raw in self.prices:
            return self.prices[raw]
        milli = parse_price_milli(raw, self.report.price_units)
        if raw and ("." in raw or (milli or 0) >= MIN_PRICE_MILLI):  # the unit did not depend on context
            self.prices[raw] = milli
        return milli

    def block(self, element, parse):
        key = etree.tostring(element)
        value = self.blocks.get(key)
        if value is None:
            value = self.blocks[key] = parse(element)
        return value

    def entry(self, pdv) -> StationEntry | None:
        """The station of `pdv`, or None when it is rejected (counted in the report with its reason)."""
        try:
            return self._entry(pdv)
        except UnfitText as exc:
            self.report.reject(str(exc))
            return None

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


def parse_feed(stream: BinaryIO, report: ParseReport, now: dt.datetime | None = None) -> Iterator[StationEntry]:
    """Stream the <pdv> elements of a feed document, one entry each, in constant memory.

    Entities are never resolved, nothing is fetched from the network, and a
    document that carries a DOCTYPE is refused outright. A record that cannot
    be right (bad id, time more than a day after `now`, unfit text...) is
    rejected and counted in `report`, never raised.
    """
    etree.clear_error_log()  # libxml2's log is per thread: its first fatal entry is then this document's
    context = etree.iterparse(
        stream,
        events=("end",),
        tag="pdv",
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
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
