"""Understanding the place a person typed: a town, a town's first letters, a postcode, a street in a town, a street.

Read side only: every function takes a `Session`, returns plain named tuples and never writes.
A town is a folded name (case, accents, hyphens and 'St'/'Ste' ignored) in one department, so Saint-Denis (93)
and Saint-Denis (974) are two places, and a city's arrondissements ('LYON 5EME', 'Lyon 3e', 'LYON') are one.
"""

from __future__ import annotations

import functools
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from sqlalchemy import ColumnElement, Select, func, literal, or_, select
from sqlalchemy.orm import Session

from models import Station
from utils import fold

ALTERNATIVES = 5  # at most this many other readings come with a match
STREET_LIMIT = 200  # stations a street search keeps, in SEARCH_ORDER
SEARCH_MAX_CHARS = 100
SEARCH_MAX_WORDS = 8
SEARCH_ORDER = (Station.town, Station.zip_code, Station.address, Station.id)

_ABBREVIATIONS = {"st": "saint", "ste": "sainte"}
_SAINTS = {"saint": "s%t", "sainte": "s%te"}  # LIKE patterns for the words as written in full or abbreviated
# Cities the feed spells with their arrondissement or district: their name and the start of their postcodes.
_CITIES = {"paris": ("Paris", "75"), "lyon": ("Lyon", "6900"), "marseille": ("Marseille", "130")}
_ARRONDISSEMENT = re.compile(r"\d{1,2} ?(?:e|er|eme|ieme)?(?: arrondissement)?")
# A town named right after one of these words belongs to a street name: 'Route de Lyon'.
_LINKS = frozenset({"a", "au", "aux", "d", "de", "des", "du", "en", "l", "la", "le", "les", "sur"})
_SMALL_WORDS = _LINKS | {"et", "sous"}  # not capitalised inside a town name
_LETTERS = re.compile(r"[^\W\d_]+")
_LABEL = re.compile(r"(?P<name>.*\S)\s*\((?P<code>\d[\d\s–-]*)\)")  # 'Saint-Denis (93)', 'Lyon (69002–69009)'
_POSTCODE = re.compile(r"\d{5}")


class PlaceMatch(NamedTuple):
    kind: str  # 'town', 'town_prefix', 'postcode', 'street_town' or 'street'
    label: str  # what was understood: 'Lyon (69002–69009)', '69003 Lyon', 'Rue Garibaldi, Lyon (69003)'
    latitude: float | None  # median of the stations' positions: one misplaced station does not move it
    longitude: float | None
    station_ids: tuple[int, ...]  # the place's stations; for the street kinds, those on the street
    alternatives: tuple[PlaceMatch, ...]  # other readings, biggest first: the name in other departments, other towns
    query: str  # a text resolve_place reads as exactly this place, e.g. 'Lyon (69)': how the UI offers an alternative
    town: str | None  # the town's display name (for a postcode, its biggest town); None for a street alone
    department: str | None
    postcodes: tuple[str, ...]  # of the stations matched, sorted; () for a street alone


class PlaceSuggestion(NamedTuple):
    label: str  # 'Saint-Étienne (42)': resolve_place reads it back as this town
    name: str
    department: str
    stations: int
    latitude: float | None
    longitude: float | None


class _Row(NamedTuple):
    """One station (of _stations()), or the stations of one town spelling and postcode (in place_suggestions)."""

    town: str
    zip_code: str
    latitude: float | None
    longitude: float | None
    stations: int
    id: int | None = None


class _Town(NamedTuple):
    key: str
    department: str
    name: str
    stations: int
    rows: list[_Row]


class SearchTooLong(ValueError):
    """A search text over the limits; the message says them to the person who typed it."""

    def __init__(self) -> None:
        super().__init__(
            f"A search has at most {SEARCH_MAX_CHARS} characters and {SEARCH_MAX_WORDS} words: "
            "try a town, a postcode, or a street and its town."
        )


def words_match(text: str) -> list[ColumnElement[bool]]:
    """One condition per word of `text` (none for a blank text): it starts a word of the station's search text.

    SearchTooLong when `text` is over the limits (each word costs a scan of the search texts).
    """
    if len(text) > SEARCH_MAX_CHARS:
        raise SearchTooLong()
    words = fold(text).split()
    if len(words) > SEARCH_MAX_WORDS:
        raise SearchTooLong()
    # autoescape: a % or _ reaching LIKE is matched literally, never as a wildcard.
    return [
        or_(
            Station.search_text.startswith(word, autoescape=True),
            Station.search_text.contains(f" {word}", autoescape=True),
        )
        for word in words
    ]


def resolve_place(session: Session, text: str) -> PlaceMatch | None:
    """The place `text` names, read in this order: a town's exact name, a town's first letters, a 5-digit postcode,
    street words then a town (or a town then street words), street words alone. None when nothing matches.

    A department in parentheses ('Saint-Denis (93)', as place_suggestions labels towns) restricts the towns.
    Raises SearchTooLong when `text` is over the search limits.
    """
    words_match(text)  # raises SearchTooLong
    name, department = text.strip(), None
    if label := _LABEL.fullmatch(name):
        name, department = label["name"], _department(re.sub(r"\D", "", label["code"]))
    key = _name_key(name)
    if not key:  # blank, or only punctuation
        return None
    words = fold(name).split()
    towns = _towns(_fetch(session, _stations(_candidates(words))), department)
    return (
        _town(towns, key)
        or _postcode(session, name.strip())
        or _street_in_town(session, towns, _splits(words))
        or _street(session, name)
    )


def place_suggestions(session: Session) -> list[PlaceSuggestion]:
    """Every town with stations, most stations first then by name, labelled as resolve_place reads them back.

    A town's centre is the median of the mean positions of its postcodes' stations.
    """
    statement = select(
        Station.town, Station.zip_code, func.avg(Station.latitude), func.avg(Station.longitude), func.count()
    ).group_by(Station.town, Station.zip_code)
    return [
        PlaceSuggestion(_town_label(town), town.name, town.department, town.stations, *_centre(town.rows))
        for town in _towns(_fetch(session, statement))
    ]


# --------------------------------------------------------------------------- the readings, in order


def _town(towns: list[_Town], key: str) -> PlaceMatch | None:
    exact = [town for town in towns if town.key == key]
    if exact:
        return _match("town", exact)
    prefixed = [town for town in towns if town.key.startswith(key)]
    return _match("town_prefix", prefixed) if prefixed else None


def _postcode(session: Session, text: str) -> PlaceMatch | None:
    if not _POSTCODE.fullmatch(text):
        return None
    rows = _fetch(session, _stations(Station.zip_code == text))
    if not rows:
        return None
    towns = _towns(rows)
    label = f"{text} {', '.join(town.name for town in towns[:3])}"
    return PlaceMatch(
        "postcode", label, *_centre(rows), _ids(rows), (), text, towns[0].name, towns[0].department, (text,)
    )


def _splits(words: list[str]) -> list[tuple[str, str]]:
    """(street words, town key) for each way of reading the text as a street then a town, or a town then a street.

    The longest town first, the town last first; never a town right after 'de', 'la'...: 'Route de Lyon' is a street.
    """
    splits = [(words[:i], words[i:]) for i in range(1, len(words)) if words[i - 1] not in _LINKS]
    splits += [(words[i:], words[:i]) for i in range(len(words) - 1, 0, -1)]
    return [(" ".join(street), _name_key(" ".join(town))) for street, town in splits]


def _street_in_town(session: Session, towns: list[_Town], splits: list[tuple[str, str]]) -> PlaceMatch | None:
    for street, key in splits:
        ids = [row.id for town in towns if town.key == key for row in town.rows]
        if ids:
            found = _towns(_fetch(session, _stations(Station.id.in_(ids), *words_match(street))))
            if found:
                return _match("street_town", found, _title(street))
    return None


def _street(session: Session, text: str) -> PlaceMatch | None:
    rows = _fetch(session, _stations(*words_match(text)).order_by(*SEARCH_ORDER).limit(STREET_LIMIT))
    if not rows:
        return None
    label = " ".join(text.split())
    return PlaceMatch("street", label, *_centre(rows), _ids(rows), (), label, None, None, ())


# --------------------------------------------------------------------------- towns


def _stations(*conditions: ColumnElement[bool]) -> Select:
    columns = (Station.town, Station.zip_code, Station.latitude, Station.longitude, literal(1), Station.id)
    return select(*columns).where(*conditions)


def _fetch(session: Session, statement: Select) -> list[_Row]:
    return [_Row(*row) for row in session.execute(statement)]


def _candidates(words: list[str]) -> ColumnElement[bool]:
    """A condition met by every station of a town whose key starts with the text's or is its first or last words.

    Others may meet it too: towns are told apart in Python. The folded search text ends with
    ' <postcode> <folded town>', where 'saint' may be spelt 'st' and a city may be followed by its arrondissement.
    """
    words = [_ABBREVIATIONS.get(word, word) for word in words]
    first = words[:2] if words[0] in _SAINTS and len(words) > 1 else words[:1]
    conditions = [_town_starts(first, cut_short=first == words)]
    if len(words) > 1:
        conditions.append(Station.search_text.like("%" + _SAINTS.get(words[-1], words[-1])))
    conditions += [_town_starts([word]) for word in words[1:] if word in _CITIES]
    return or_(*conditions)


def _town_starts(words: list[str], cut_short: bool = False) -> ColumnElement[bool]:
    parts = [_SAINTS.get(word, word) for word in words]
    if cut_short and "sainte".startswith(words[-1]):  # 'sai' may start 'st'
        parts[-1] = "s"
    return Station.search_text.like("%" + Station.zip_code + " " + " ".join(parts) + "%")


def _towns(rows: Iterable[_Row], department: str | None = None) -> list[_Town]:
    """Rows grouped into towns, most stations first, then by name."""
    groups: defaultdict[tuple[str, str], list[_Row]] = defaultdict(list)
    for row in rows:
        groups[_place(row.town, row.zip_code)].append(row)
    towns = [
        _Town(key, dep, _display(key, members), sum(row.stations for row in members), members)
        for (key, dep), members in groups.items()
        if department in (None, dep)
    ]
    return sorted(towns, key=lambda town: (-town.stations, town.key, town.department))


@functools.lru_cache(maxsize=32768)
def _name_key(name: str) -> str:
    """'ST-ÉTIENNE' -> 'saint etienne'; 'Lyon 3e', 'PARIS 15E ARRONDISSEMENT' -> 'lyon', 'paris'."""
    words = [_ABBREVIATIONS.get(word, word) for word in fold(name).split()]
    if len(words) > 1 and words[0] in _CITIES and _ARRONDISSEMENT.fullmatch(" ".join(words[1:])):
        return words[0]
    return " ".join(words)


@functools.lru_cache(maxsize=32768)
def _place(town: str, zip_code: str) -> tuple[str, str]:
    """(town key, department) of a station."""
    key = _name_key(town)
    city = key.split(" ", 1)[0]
    # 'MARSEILLE VALENTINE' (13011) is Marseille; 'LYON ST EXUPERY AEROPORT' (69125) is not Lyon.
    return city if city in _CITIES and zip_code.startswith(_CITIES[city][1]) else key, _department(zip_code)


def _department(zip_code: str) -> str:
    """'69003' -> '69'; overseas '97400' -> '974'. Corsica stays '20' (its postcodes do not tell 2A from 2B)."""
    return zip_code[:3] if zip_code.startswith("97") else zip_code[:2]


def _display(key: str, rows: Sequence[_Row]) -> str:
    """The town's best spelling: written out ('Saint', not 'St'), in mixed case, with accents, the most frequent."""
    if key in _CITIES:
        return _CITIES[key][0]
    if len(rows) == 1:
        return _pretty(rows[0].town)
    spellings: dict[str, int] = {}
    for row in rows:
        spellings[row.town] = spellings.get(row.town, 0) + row.stations
    return _pretty(max(spellings, key=lambda spelling: (*_rank(spelling), spellings[spelling], spelling)))


@functools.lru_cache(maxsize=32768)
def _rank(spelling: str) -> tuple[bool, bool, bool]:
    return not _ABBREVIATIONS.keys() & fold(spelling).split(), _mixed_case(spelling), not spelling.isascii()


@functools.lru_cache(maxsize=32768)
def _pretty(spelling: str) -> str:
    return spelling if _mixed_case(spelling) else _title(spelling)


def _mixed_case(text: str) -> bool:
    return re.search("[a-z]", text) is not None and re.search("[A-Z]", text) is not None


def _title(name: str) -> str:
    """'SAINTE-FOY-LèS-LYON' -> 'Sainte-Foy-lès-Lyon'; "L'ISLE-SUR-LA-SORGUE" -> "L'Isle-sur-la-Sorgue"."""
    return _LETTERS.sub(lambda m: m[0] if m.start() and fold(m[0]) in _SMALL_WORDS else m[0].capitalize(), name.lower())


# --------------------------------------------------------------------------- matches


def _match(kind: str, towns: list[_Town], street: str | None = None) -> PlaceMatch:
    """The first town, with the next ones as its alternatives."""
    first, others = towns[0], towns[1 : 1 + ALTERNATIVES]
    postcodes = tuple(sorted({row.zip_code for row in first.rows}))
    label = _town_label(first, f"{postcodes[0]}–{postcodes[-1]}" if len(postcodes) > 1 else postcodes[0])
    query = _town_label(first)
    if street:
        label, query = f"{street}, {label}", f"{street} {query}"
    return PlaceMatch(
        kind,
        label,
        *_centre(first.rows),
        _ids(first.rows),
        tuple(_match(kind, [town], street) for town in others),
        query,
        first.name,
        first.department,
        postcodes,
    )


def _town_label(town: _Town, codes: str | None = None) -> str:
    return f"{town.name} ({codes or town.department})"


def _centre(rows: Sequence[_Row]) -> tuple[float | None, float | None]:
    """The median latitude and longitude of the rows with a position; (None, None) without any."""
    if len(rows) == 1:  # most towns
        return rows[0].latitude, rows[0].longitude
    located = [(row.latitude, row.longitude) for row in rows if row.latitude is not None]
    if not located:
        return None, None
    latitudes, longitudes = zip(*located, strict=True)
    return statistics.median(latitudes), statistics.median(longitudes)


def _ids(rows: Sequence[_Row]) -> tuple[int, ...]:
    return tuple(sorted(row.id for row in rows))
