"""France's communes as places to find, from the `places` table (La Poste's postcode base, see ingest/places.py).

Read side only. A commune is a folded name in one department ('saint denis' in 93 and in 974 are two), with
its postcodes and coordinates; Paris, Lyon and Marseille are one commune each, not their arrondissements.
Lookups go through the table's indexes: by name key (exact or first letters), by locality key, by postcode.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import NamedTuple

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from models import Place

# Rows a first-letters lookup reads, in the index's order: 'sai' starts 4,000 names, and reading them all to
# find the shortest would cost a suggestion its 20 ms; 200 in name order are more than the places shown.
PREFIX_ROWS = 200


class Commune(NamedTuple):
    key: str
    department: str  # '93', '2A', '974'
    name: str  # La Poste's spelling, in capitals: 'SAINT DENIS'
    postcodes: tuple[str, ...]
    latitude: float
    longitude: float
    locality: str | None = None  # the locality line it was found by, if any: 'BELLE PIERRE'


def same_department(department: str, wanted: str | None) -> bool:
    """Whether `department` is `wanted` (any when None); Corsica's '20', as its postcodes say it, is 2A and 2B."""
    if wanted is None or department == wanted:
        return True
    return {department, wanted} in ({"20", "2A"}, {"20", "2B"})


def named(
    session: Session, key: str, department: str | None = None, prefix: bool = False, rows: int = PREFIX_ROWS
) -> list[Commune]:
    """The communes whose name key is `key` (or starts with it, reading at most `rows` rows), shortest name
    first, then by name."""
    condition = _starts(session, Place.key, key) if prefix else Place.key == key
    return _communes(session, condition, department, limit=rows if prefix else None)


def named_any(session: Session, keys: Iterable[str]) -> list[Commune]:
    """The communes whose name key is one of `keys`."""
    return _communes(session, Place.key.in_(list(keys)), None, limit=None)


def with_locality(
    session: Session, key: str, department: str | None = None, prefix: bool = False, rows: int = PREFIX_ROWS
) -> list[Commune]:
    """The communes holding a locality (La Poste's line 5) whose key is `key` (or starts with it)."""
    column = Place.locality_key
    condition = _starts(session, column, key) if prefix else column == key
    return _communes(session, condition, department, limit=rows if prefix else None, by_locality=True)


def departments_named(session: Session, keys: Iterable[str]) -> dict[str, set[str]]:
    """For each of `keys` that names communes, the departments they are in."""
    found: defaultdict[str, set[str]] = defaultdict(set)
    if keys := set(keys):
        for key, department in session.execute(select(Place.key, Place.department).where(Place.key.in_(keys))):
            found[key].add(department)
    return found


def keys_starting(session: Session, letters: str) -> list[str]:
    """The distinct name keys that start with `letters`: the names a misspelt one is compared with."""
    return list(session.scalars(select(Place.key).where(_starts(session, Place.key, letters)).distinct()))


def with_postcode(session: Session, postcode: str) -> list[Commune]:
    """The communes that share a postcode, by name."""
    communes = _communes(session, Place.postcode == postcode, None, limit=None)
    return sorted(communes, key=lambda commune: commune.key)


def with_postcode_prefix(session: Session, digits: str, rows: int = PREFIX_ROWS) -> list[Commune]:
    return _communes(session, _starts(session, Place.postcode, digits), None, limit=rows)


def _starts(session: Session, column: InstrumentedAttribute, prefix: str) -> ColumnElement[bool]:
    """`column` starts with `prefix`, answered from the column's index: SQLite's LIKE ignores case, and so cannot
    use it, but its GLOB can (keys and postcodes hold no GLOB wildcard); PostgreSQL's index has the LIKE operators."""
    if session.get_bind().dialect.name == "sqlite":
        return column.op("GLOB")(prefix.replace("*", "").replace("?", "").replace("[", "") + "*")
    return column.startswith(prefix, autoescape=True)


def _communes(
    session: Session,
    condition: ColumnElement[bool],
    department: str | None,
    limit: int | None,
    by_locality: bool = False,
) -> list[Commune]:
    columns = (Place.key, Place.department, Place.name, Place.postcode, Place.latitude, Place.longitude)
    statement = select(*columns, Place.locality).where(condition).order_by(Place.key, Place.postcode).limit(limit)
    groups: defaultdict[tuple, list] = defaultdict(list)
    for row in session.execute(statement):
        if same_department(row.department, department):
            groups[(row.key, row.department, row.locality if by_locality else None)].append(row)
    communes = [_commune(rows, locality) for (_key, _dep, locality), rows in groups.items()]
    return sorted(communes, key=lambda commune: (len(commune.key), commune.key, commune.department))


def _commune(rows: list, locality: str | None) -> Commune:
    """One commune from its rows; a city of several arrondissements is centred on their median."""
    first = rows[0]
    latitude, longitude = _median((row.latitude for row in rows), (row.longitude for row in rows))
    postcodes = tuple(sorted({row.postcode for row in rows}))
    name = first.name if len({row.name for row in rows}) == 1 else first.key.upper()
    return Commune(first.key, first.department, name, postcodes, latitude, longitude, locality)


def _median(latitudes: Iterable[float], longitudes: Iterable[float]) -> tuple[float, float]:
    return statistics.median(latitudes), statistics.median(longitudes)
