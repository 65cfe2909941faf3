"""Communes and postcodes of France from La Poste: read the postcode base CSV, replace the `places` table;
and the name keys by which places and stations' towns are searched.

The file is La Poste's "base officielle des codes postaux" (hexasmal; Licence Ouverte, credit
La Poste): one row per commune, postcode and locality line, with the commune's coordinates. It is
read liberally, as it circulates: `;` or `,` separated, UTF-8 or Latin-1, codes with or without
their leading zeros (a spreadsheet drops them), headers in any case, with or without accents or
underscores (`Code_commune_INSEE`, `code_commune_insee`, `Libellé_d_acheminement`...).

A row is skipped and counted when its INSEE code, postcode or name is unusable, or its coordinates
are missing or out of range. A file is refused whole, the table kept as it was, when it lacks a
required column (coordinates included), is truncated, is over MAX_CSV_BYTES, or holds fewer than
MIN_PLACES usable rows.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, delete, insert

from ingest.errors import FeedError
from models import Place
from settings import MB
from utils import fold

MAX_CSV_BYTES = 32 * MB  # the real file is 2.7 MB
# France has about 35,000 communes on 39,000 lines: a file with far fewer is a broken export.
MIN_PLACES = 30_000
MAX_NAME_CHARS = Place.__table__.c.name.type.length
BATCH_ROWS = 5_000

ABBREVIATIONS = {"st": "saint", "ste": "sainte"}
# Cities the feed spells with their arrondissement or district (La Poste too: 'PARIS 06'):
# their display name and the start of their postcodes.
DISTRICT_CITIES = {"paris": ("Paris", "75"), "lyon": ("Lyon", "6900"), "marseille": ("Marseille", "130")}
ARRONDISSEMENT = re.compile(r"(\d{1,2}) ?(?:e|er|eme|ieme)?(?: arrondissement)?")  # its number, group 1
_CEDEX = re.compile(r" cedex(?: \d{1,2})?$")  # a business postcode's mark: 'RUNGIS CEDEX' is in Rungis

# The columns by their folded header (utils.fold); each knows the spellings seen in the wild.
COLUMNS = {
    "insee": ("code commune insee", "code insee", "insee"),
    "name": ("nom commune", "nom de la commune", "commune"),
    "postcode": ("code postal", "codepostal"),
    "locality": ("ligne 5", "ligne5"),
    "latitude": ("latitude", "lat"),
    "longitude": ("longitude", "lon", "lng"),
}
# Older copies hold the coordinates in one column, 'latitude, longitude'.
COORDINATES = ("coordonnees gps", "coordonnees geographiques", "geopoint")
OPTIONAL = frozenset({"locality"})
_INSEE = re.compile(r"(?:\d{1,5}|2[AB]\d{3})")
_POSTCODE = re.compile(r"\d{3,5}")


class PlaceFileError(FeedError):
    """The postcode base cannot be used; the message says why in one line."""


@dataclass(frozen=True)
class PlaceTable:
    """What a postcode base holds once read: its usable rows, and how many were set aside."""

    rows: list[dict]
    skipped: int

    @property
    def communes(self) -> int:
        return len({row["insee"] for row in self.rows})

    def describe(self, source: str) -> str:
        """The one-line summary the `places` command prints."""
        return (
            f"imported {len(self.rows):,} places ({self.communes:,} communes) from {source}; "
            f"{self.skipped:,} unusable rows skipped"
        )


@functools.lru_cache(maxsize=65536)
def name_key(name: str) -> str:
    """'ST-ÉTIENNE' -> 'saint etienne'; 'Lyon 3e', 'PARIS 15E ARRONDISSEMENT', 'PARIS 06' -> 'lyon', 'paris';
    'AMIENS CEDEX 2' -> 'amiens'."""
    words = [ABBREVIATIONS.get(word, word) for word in _CEDEX.sub("", fold(name)).split()]
    if len(words) > 1 and words[0] in DISTRICT_CITIES and ARRONDISSEMENT.fullmatch(" ".join(words[1:])):
        return words[0]
    return " ".join(words)


def department_of(insee: str) -> str:
    """'93066' -> '93'; Corsica '2A004' -> '2A'; overseas '97411' -> '974'."""
    return insee[:3] if insee.startswith("97") or insee.startswith("98") else insee[:2]


def read_places(path: Path) -> PlaceTable:
    """Read and check a postcode base; raise PlaceFileError, naming the problem, if it is not a usable one."""
    text = _text(path)
    if not text.strip():
        raise PlaceFileError("the file is empty")
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") >= first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
        at = _columns(header)
        rows, skipped = [], 0
        for record in reader:
            if not record:
                continue
            if len(record) != len(header):
                raise PlaceFileError(
                    f"line {reader.line_num:,} has {len(record)} fields instead of {len(header)}: "
                    "the file is truncated or not La Poste's postcode base"
                )
            row = _row(record, at)
            if row is None:
                skipped += 1
            else:
                rows.append(row)
    except csv.Error as exc:
        raise PlaceFileError(f"not a readable CSV file (line {reader.line_num:,}: {exc})") from exc
    if len(rows) < MIN_PLACES:
        raise PlaceFileError(f"the file holds only {len(rows):,} usable places, fewer than {MIN_PLACES:,}: refusing it")
    return PlaceTable(rows, skipped)


def replace_places(conn: Connection, table: PlaceTable) -> int:
    """Make `places` hold exactly `table`, inside the caller's transaction; return the rows written."""
    conn.execute(delete(Place))
    for start in range(0, len(table.rows), BATCH_ROWS):
        conn.execute(insert(Place), table.rows[start : start + BATCH_ROWS])
    return len(table.rows)


def _text(path: Path) -> str:
    size = path.stat().st_size
    if size > MAX_CSV_BYTES:
        raise PlaceFileError(f"the file is {size:,} bytes, over the {MAX_CSV_BYTES:,}-byte cap")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")  # a spreadsheet's re-save on Windows


def _columns(header: list[str]) -> dict[str, int | None]:
    """Where each column is; the coordinates either as two columns or as one ('coordinates')."""
    folded = [fold(column) for column in header]
    at: dict[str, int | None] = {"coordinates": _find(folded, COORDINATES)}
    for column, spellings in COLUMNS.items():
        found = _find(folded, spellings)
        if found is None and at["coordinates"] is not None and column in ("latitude", "longitude"):
            continue
        if found is None and column not in OPTIONAL:
            what = "coordinates (latitude and longitude)" if column in ("latitude", "longitude") else column
            raise PlaceFileError(
                f"no {what} column in the header ({', '.join(header)[:200]}): not La Poste's postcode base "
                "with coordinates"
            )
        at[column] = found
    return at


def _find(folded: list[str], spellings: tuple[str, ...]) -> int | None:
    return next((folded.index(spelling) for spelling in spellings if spelling in folded), None)


def _row(record: list[str], at: dict[str, int | None]) -> dict | None:
    """A row as stored, or None when it is unusable."""
    insee, postcode = record[at["insee"]].strip().upper(), record[at["postcode"]].strip()
    name = " ".join(record[at["name"]].split())[:MAX_NAME_CHARS]
    if not _INSEE.fullmatch(insee) or not _POSTCODE.fullmatch(postcode) or not name_key(name):
        return None
    try:
        if at.get("latitude") is None:
            latitude, longitude = (float(part) for part in record[at["coordinates"]].split(","))
        else:
            latitude = float(record[at["latitude"]].replace(",", "."))
            longitude = float(record[at["longitude"]].replace(",", "."))
    except ValueError:  # empty, or not two numbers
        return None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    locality = " ".join(record[at["locality"]].split())[:MAX_NAME_CHARS] if at["locality"] is not None else ""
    insee = insee.zfill(5)
    return {
        "insee": insee,
        "name": name,
        "key": name_key(name),
        "department": department_of(insee),
        "postcode": postcode.zfill(5),
        "locality": locality or None,
        "locality_key": name_key(locality) or None,
        "latitude": latitude,
        "longitude": longitude,
    }
