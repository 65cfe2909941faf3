"""The rules that turn the text of one <pdv> into values: text repair, prices, times, coordinates,
opening hours and services, with the limits a plausible record keeps.

The rules follow `shared/feeds/FORMAT.md` section 10: the feed is ISO-8859-1 XML with a handful of
quirks accumulated since 2007 that every function below has to survive. Nothing here touches the
database.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import NamedTuple

from models import Station
from utils import PARIS, UTC

FUEL_IDS = frozenset(range(1, 7))
FUELS_BY_TEXT = {str(i): i for i in FUEL_IDS}
ROAD_TYPES = frozenset("RAN")
RUPTURE_KINDS = frozenset({"temporaire", "definitive"})
MIN_PRICE_MILLI, MAX_PRICE_MILLI = 100, 5000  # plausible when 0.10 < price <= 5.00 EUR/L
EARLIEST_PLAUSIBLE_YEAR = 2000
# A feed time may run ahead of the run's clock by clock skew or a UTC/Paris mix-up, never by more than a day.
FUTURE_TOLERANCE = dt.timedelta(days=1)
MAX_STATION_ID = 99_999_999
STATION_ID_TEXT = re.compile("[1-9][0-9]{0,7}")  # 1..MAX_STATION_ID, written as the feed writes it
# Texts longer than these cannot be an address, a town or a service label, and would not fit the columns.
MAX_ADDRESS_CHARS = Station.__table__.c.address.type.length
MAX_TOWN_CHARS = Station.__table__.c.town.type.length
MAX_TEXT_CHARS = 500
# Metropolitan France (Corsica included) with a margin; overseas stations are checked by postcode.
METROPOLE_LAT, METROPOLE_LON = (41.0, 51.6), (-5.8, 10.0)
WEEKDAYS = ("Lundi", "Mardi", "Mercredi", "Jeudi", "Vendredi", "Samedi", "Dimanche")


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


def unit_from_context(raw: str | None) -> bool:
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
    text = raw.strip()
    try:
        # The wall clock's fields, marked UTC, moved by Paris's offset at that wall time (ZoneInfo reads
        # only the fields): the same instant as replace(tzinfo=PARIS).astimezone(UTC), five times faster.
        wall = dt.datetime.fromisoformat(text + "+00:00")
    except ValueError:
        wall = None
    if wall is None or wall.tzinfo is not UTC:
        value = _paris_time_otherwise(text)  # a date alone, or a time with an offset of its own
    else:
        value = None if wall.year < EARLIEST_PLAUSIBLE_YEAR else wall - PARIS.utcoffset(wall)
    if cache is not None:
        cache[raw] = value
    return value


def _paris_time_otherwise(text: str) -> dt.datetime | None:
    try:
        wall = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return None if wall.year < EARLIEST_PLAUSIBLE_YEAR else wall.replace(tzinfo=PARIS).astimezone(UTC)


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


def parse_horaires(element) -> OpeningHours:
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


def parse_ouverture(element) -> OpeningHours:
    closed_days = {d.strip() for d in (element.get("saufjour") or "").split(";") if d.strip()}
    spans = ((_hhmm(element.get("debut")), _hhmm(element.get("fin"))),) if element.get("debut") else ()
    return tuple(
        (i, name in closed_days, () if name in closed_days else spans) for i, name in enumerate(WEEKDAYS, start=1)
    )


def service_texts(element) -> tuple[str | None, ...]:
    """The texts of a <services> element's <service> children, as written."""
    return tuple([child.text for child in element if child.tag == "service"])


def parse_services(texts: tuple[str | None, ...]) -> tuple[str, ...]:
    """The labels of a station's services (see service_texts), repaired, without the blank ones."""
    return tuple(_service_label(text) for text in texts if text and not text.isspace())


@functools.lru_cache(maxsize=1024)
def _service_label(raw: str) -> str:
    return feed_text(raw)
