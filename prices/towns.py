"""The towns of the stations: station rows grouped into towns, each town's spelling, label and centre.

A town is a folded name (case, accents, hyphens and 'St'/'Ste' ignored) in one department, so Saint-Denis (93)
and Saint-Denis (974) are two towns, and a city's arrondissements ('LYON 5EME', 'Lyon 3e', 'LYON') are one.
place_search reads what a person typed with these; nothing here writes.
"""

from __future__ import annotations

import functools
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from sqlalchemy import ColumnElement, Select, or_, select
from sqlalchemy.orm import Session

from ingest.places import ABBREVIATIONS as _ABBREVIATIONS
from ingest.places import DISTRICT_CITIES as _CITIES
from ingest.places import name_key as _name_key
from models import Station
from prices.communes import same_department
from utils import fold

_SAINTS = {"saint": "s%t", "sainte": "s%te"}  # LIKE patterns for the words as written in full or abbreviated
# A town named right after one of these words belongs to a street name: 'Route de Lyon'.
LINKS = frozenset({"a", "au", "aux", "d", "de", "des", "du", "en", "l", "la", "le", "les", "sur"})
_SMALL_WORDS = LINKS | {"et", "sous"}  # not capitalised inside a town name
_LETTERS = re.compile(r"[^\W\d_]+")
_CAPITAL = re.compile("[A-Z]")
_CEDEX_MARK = re.compile(r"\s+cedex(?:\s+\d{1,2})?\s*$", re.IGNORECASE)  # 'AMIENS CEDEX 2' is in Amiens


class Row(NamedTuple):
    """One station (of station_rows())."""

    town: str
    zip_code: str
    latitude: float | None
    longitude: float | None
    id: int


class Town(NamedTuple):
    key: str
    department: str
    name: str
    stations: int
    rows: list[Row]


def station_rows(*conditions: ColumnElement[bool]) -> Select:
    columns = (Station.town, Station.zip_code, Station.latitude, Station.longitude, Station.id)
    return select(*columns).where(*conditions)


def fetch_rows(session: Session, statement: Select) -> list[Row]:
    return [Row(*row) for row in session.execute(statement)]


def candidates(words: list[str]) -> ColumnElement[bool]:
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


def group_towns(rows: Iterable[Row], department: str | None = None) -> list[Town]:
    """Rows grouped into towns, most stations first, then by name."""
    groups: defaultdict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        groups[_place(row.town, row.zip_code)].append(row)
    towns = [
        Town(key, dep, _display(key, members), len(members), members)
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


def label_department(code: str) -> str:
    """The department of a label's parentheses: '93', '2A', or that of the postcodes '69002–69009'."""
    code = code.upper()
    return code if code in ("2A", "2B") else _department(re.sub(r"\D", "", code))


def _display(key: str, rows: Sequence[Row]) -> str:
    """The town's best spelling: written out ('Saint', not 'St'), in mixed case, with accents, the most frequent."""
    if key in _CITIES:
        return _CITIES[key][0]
    if len(rows) == 1:
        return pretty(rows[0].town)
    spellings = Counter(row.town for row in rows)
    return pretty(max(spellings, key=lambda spelling: (*_rank(spelling), spellings[spelling], spelling)))


@functools.lru_cache(maxsize=32768)
def _rank(spelling: str) -> tuple[bool, bool, bool]:
    return not _ABBREVIATIONS.keys() & fold(spelling).split(), _mixed_case(spelling), not spelling.isascii()


@functools.lru_cache(maxsize=32768)
def pretty(spelling: str) -> str:
    """A town as people write it: in mixed case, without a business postcode's CEDEX mark."""
    spelling = _CEDEX_MARK.sub("", spelling) or spelling
    return spelling if _mixed_case(spelling) else title(spelling)


@functools.lru_cache(maxsize=20_000)  # the map of France names 10,000 stations a minute
def town_name(town: str) -> str:
    """A station's town as people write it: 'GARGES-LèS-GONESSE' -> 'Garges-lès-Gonesse', 'AMIENS CEDEX 2' -> 'Amiens'.

    The feed writes most towns in capitals, some with a CEDEX mark (see pretty); a town with no capital at
    all is kept as it is written.
    """
    return pretty(town) if _CAPITAL.search(town) else town


def _mixed_case(text: str) -> bool:
    return re.search("[a-z]", text) is not None and re.search("[A-Z]", text) is not None


def title(name: str) -> str:
    """'SAINTE-FOY-LèS-LYON' -> 'Sainte-Foy-lès-Lyon'; "L'ISLE-SUR-LA-SORGUE" -> "L'Isle-sur-la-Sorgue"."""
    return _LETTERS.sub(lambda m: m[0] if m.start() and fold(m[0]) in _SMALL_WORDS else m[0].capitalize(), name.lower())


def town_label(town: Town, codes: str | None = None) -> str:
    return f"{town.name} ({codes or town.department})"


def centre(rows: Sequence[Row]) -> tuple[float | None, float | None]:
    """The median latitude and longitude of the rows with a position; (None, None) without any."""
    if len(rows) == 1:  # most towns
        return rows[0].latitude, rows[0].longitude
    located = [(row.latitude, row.longitude) for row in rows if row.latitude is not None]
    if not located:
        return None, None
    latitudes, longitudes = zip(*located, strict=True)
    return statistics.median(latitudes), statistics.median(longitudes)


def ids(rows: Sequence[Row]) -> tuple[int, ...]:
    return tuple(sorted(row.id for row in rows))
