"""Understanding the place a person typed: a town, a town's first letters, a locality, a postcode, a street in a
town, a street; and the places to suggest for what was typed.

Read side only: every function takes a `Session`, returns plain named tuples and never writes.
A town is a folded name (case, accents, hyphens and 'St'/'Ste' ignored) in one department, so Saint-Denis (93)
and Saint-Denis (974) are two places, and a city's arrondissements ('LYON 5EME', 'Lyon 3e', 'LYON') are one.
Towns are the stations' towns and La Poste's communes (see communes.py): a village without a station is found
too, after the towns with stations of the same name.
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

from i18n import _
from ingest.places import ABBREVIATIONS as _ABBREVIATIONS
from ingest.places import DISTRICT_CITIES as _CITIES
from ingest.places import name_key as _name_key
from models import Station
from prices import communes
from prices.communes import Commune, same_department
from utils import fold

ALTERNATIVES = 5  # at most this many other readings come with a match
STREET_LIMIT = 200  # stations a street search keeps, in SEARCH_ORDER
SEARCH_MAX_CHARS = 100
SEARCH_MAX_WORDS = 8
SEARCH_ORDER = (Station.town, Station.zip_code, Station.address, Station.id)
SUGGESTIONS = 12  # places suggest() offers
SUGGESTION_ROWS = 4 * SUGGESTIONS  # places rows it reads for them, of names and of localities

_SAINTS = {"saint": "s%t", "sainte": "s%te"}  # LIKE patterns for the words as written in full or abbreviated
# A town named right after one of these words belongs to a street name: 'Route de Lyon'.
_LINKS = frozenset({"a", "au", "aux", "d", "de", "des", "du", "en", "l", "la", "le", "les", "sur"})
_SMALL_WORDS = _LINKS | {"et", "sous"}  # not capitalised inside a town name
_LETTERS = re.compile(r"[^\W\d_]+")
# 'Saint-Denis (93)', 'Lyon (69002–69009)', 'Ajaccio (2A)'
_LABEL = re.compile(r"(?P<name>.*\S)\s*\((?P<code>2[AB]|\d[\d\s–-]*)\)", re.IGNORECASE)
_POSTCODE = re.compile(r"\d{5}")
_ELISION = re.compile(r"\b([dlDL]) (?=[aeiouyhAEIOUYH])")  # La Poste's 'CHAZAY D AZERGUES' is Chazay d'Azergues
_DIGITS = re.compile(r"\d{2,5}")


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
    """A search text over the limits; the message says them to the person who typed it, in the active language."""

    def __init__(self) -> None:
        super().__init__(
            _(
                "A search has at most {} characters and {} words: try a town, a postcode, or a street and its town."
            ).format(SEARCH_MAX_CHARS, SEARCH_MAX_WORDS)
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
    A town with stations comes before a commune without any of the same name; a locality (La Poste's line 5,
    'Belle Pierre') is read after the towns. Raises SearchTooLong when `text` is over the search limits.
    """
    words_match(text)  # raises SearchTooLong
    name, department = text.strip(), None
    if label := _LABEL.fullmatch(name):
        name, department = label["name"], _label_department(label["code"])
    key = _name_key(name)
    if not key:  # blank, or only punctuation
        return None
    words = fold(name).split()
    towns = _towns(_fetch(session, _stations(_candidates(words))), department)
    return (
        _town(session, towns, key, department, name)
        or _locality(session, key, department)
        or _postcode(session, name.strip())
        or _street_in_town(session, towns, _splits(words))
        or _street(session, name)
    )


def suggest(session: Session, text: str) -> list[str]:
    """Labels of the communes and localities whose name starts with `text` (or whose postcode starts with its
    digits): the towns with stations first, most stations first and spelt as place_suggestions spells them, then
    the shortest of the first names in alphabetical order. resolve_place reads each back as its place.
    [] for under two characters."""
    key = _name_key(text[:SEARCH_MAX_CHARS])
    if len(key) < 2:
        return []
    if _DIGITS.fullmatch(key):
        found = communes.with_postcode_prefix(session, key, SUGGESTION_ROWS)
    else:
        found = communes.named(session, key, prefix=True, rows=SUGGESTION_ROWS)
        found += communes.with_locality(session, key, prefix=True, rows=SUGGESTION_ROWS)
    postcodes = {postcode for commune in found for postcode in commune.postcodes}
    towns = _towns(_fetch(session, _stations(Station.zip_code.in_(postcodes)))) if postcodes else []
    ranked = []
    for commune in found:
        town = None if commune.locality else next((t for t in towns if _has_stations(commune, [t])), None)
        label = _town_label(town) if town else _commune_reading("town", commune, text).query
        ranked.append((-town.stations if town else 0, label))
    ranked.sort(key=lambda entry: entry[0])  # stable: the others keep their order
    return list(dict.fromkeys(label for _stations, label in ranked))[:SUGGESTIONS]


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


def _town(session: Session, towns: list[_Town], key: str, department: str | None, typed: str) -> PlaceMatch | None:
    """The towns with stations of that name, then the communes without any; else the same by first letters."""
    for kind, prefix in (("town", False), ("town_prefix", True)):
        found = [town for town in towns if town.key.startswith(key)] if prefix else [t for t in towns if t.key == key]
        others = [c for c in communes.named(session, key, department, prefix) if not _has_stations(c, found)]
        if found or others:
            return _readings(kind, found, others, typed)
    return None


def _locality(session: Session, key: str, department: str | None) -> PlaceMatch | None:
    found = communes.with_locality(session, key, department)
    return _readings("town", [], found) if found else None


def _postcode(session: Session, text: str) -> PlaceMatch | None:
    """The stations of a postcode, centred on them; without any, its communes. Shared, its communes are offered."""
    if not _POSTCODE.fullmatch(text):
        return None
    rows = _fetch(session, _stations(Station.zip_code == text))
    sharing = communes.with_postcode(session, text)
    if not rows and not sharing:
        return None
    towns = _towns(rows)
    names = [town.name for town in towns] or [_commune_name(commune) for commune in sharing]
    label = f"{text} {', '.join(names[:3])}"
    if rows:
        centre = _centre(rows)
    else:
        centre = statistics.median([c.latitude for c in sharing]), statistics.median([c.longitude for c in sharing])
    department = towns[0].department if towns else sharing[0].department
    offered = tuple(_commune_reading("town", commune) for commune in sharing) if len(sharing) > 1 else ()
    return PlaceMatch("postcode", label, *centre, _ids(rows), offered, text, names[0], department, (text,))


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
        if same_department(dep, department)
    ]
    return sorted(towns, key=lambda town: (-town.stations, town.key, town.department))


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


def _label_department(code: str) -> str:
    """The department of a label's parentheses: '93', '2A', or that of the postcodes '69002–69009'."""
    code = code.upper()
    return code if code in ("2A", "2B") else _department(re.sub(r"\D", "", code))


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
    return _readings(kind, towns, [], street=street)


def _readings(
    kind: str, towns: list[_Town], others: list[Commune], typed: str | None = None, street: str | None = None
) -> PlaceMatch:
    """The first of the towns then the communes, with the next ones as its alternatives."""
    readings = [_town_reading(kind, town, street) for town in towns[: 1 + ALTERNATIVES]]
    readings += [_commune_reading(kind, commune, typed) for commune in others[: 1 + ALTERNATIVES - len(readings)]]
    return readings[0]._replace(alternatives=tuple(readings[1:]))


def _has_stations(commune: Commune, towns: list[_Town]) -> bool:
    return any(town.key == commune.key and same_department(town.department, commune.department) for town in towns)


def _commune_reading(kind: str, commune: Commune, typed: str | None = None) -> PlaceMatch:
    """A commune (or a locality of it) as a place: centred on La Poste's coordinates, its stations found around."""
    name = _commune_name(commune, typed)
    codes = commune.postcodes
    label = f"{name} ({codes[0]}–{codes[-1]})" if len(codes) > 1 else f"{name} ({codes[0]})"
    query = f"{name} ({commune.department})"
    if commune.locality:
        place = _commune_name(commune._replace(key=_name_key(commune.locality), name=commune.locality), typed)
        label, query = f"{place}, {label}", f"{place} ({commune.department})"
    return PlaceMatch(kind, label, commune.latitude, commune.longitude, (), (), query, name, commune.department, codes)


def _commune_name(commune: Commune, typed: str | None = None) -> str:
    """La Poste's capitals in title case, or the person's own spelling of the name when it has accents or hyphens."""
    if commune.key in _CITIES:
        return _CITIES[commune.key][0]
    if typed and _name_key(typed) == commune.key and (not typed.isascii() or "-" in typed):
        return _pretty(typed.strip())
    return _ELISION.sub(r"\1'", _title(commune.name))


def _town_reading(kind: str, first: _Town, street: str | None) -> PlaceMatch:
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
        (),
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
