"""Station brands and names from OpenStreetMap: read the OSM stations CSV, replace the `station_brands` table.

The file is the data.gouv.fr export of OSM fuel stations (ODbL, © OpenStreetMap
contributors), plain or bzip2-compressed, UTF-8, comma-separated. Only the
columns `ref:FR:prix-carburants` (the feed's station id) and `brand` are
required; `name` is read when present, every other column is ignored.

Rules applied to each row:
- a row whose id cell is empty, or holds anything but station ids (several may
  be separated by ";", as OSM writes multiple values), is skipped and counted;
- texts lose control characters (line breaks become spaces), are trimmed and cut
  to the column lengths; an empty text is NULL;
- a brand keeps its first OSM value ("Super U;Station U" -> "Super U"), then is
  looked up case-, accent- and punctuation-blind in `brand_aliases.csv`
  (alias,brand): a listed alias or canonical spelling becomes the canonical
  brand ("Total" -> "TotalEnergies", "Total Access" -> "TotalEnergies Access",
  "E. Leclerc" -> "E.Leclerc", "Super U" -> "Système U"); any other brand is
  kept as written.

An id found on several OSM objects gets one row, chosen whatever the file's
order: a row with a brand over one without; then the brand most of its rows
carry; then a row with a name over one without; then the smallest (brand, name).

A file is refused whole, the table kept as it was, when it is not such a CSV,
is truncated, is over MAX_CSV_BYTES, names fewer than MIN_STATIONS stations, or
under MIN_RATIO of the stations the table holds.
"""

from __future__ import annotations

import bz2
import csv
import io
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, delete, func, insert, select

from ingest.errors import FeedError
from ingest.records import MAX_STATION_ID
from models import StationBrand
from settings import MB
from utils import fold

ALIASES_FILE = Path(__file__).with_name("brand_aliases.csv")
ID_COLUMN = "ref:FR:prix-carburants"
MAX_BRAND_CHARS = StationBrand.__table__.c.brand.type.length
MAX_NAME_CHARS = StationBrand.__table__.c.name.type.length
# Its 5 useful columns take 0.4 MB; the full export carries more OSM tags, and the cap leaves room for them.
MAX_CSV_BYTES = 64 * MB
# A file naming fewer stations than this, or under MIN_RATIO of the stations the table holds,
# is a broken export, not France (about 10,000 stations): it is refused and the table kept.
MIN_STATIONS = 1_000
MIN_RATIO = 0.5

_STATION_ID = re.compile("[0-9]{1,9}")
_BREAKING_SPACE = re.compile(r"\s*[\t\n\r\v\f\x85\u2028\u2029]\s*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")

Brand = tuple[str | None, str | None]  # (brand, name)


class BrandFileError(FeedError):
    """The OSM stations CSV cannot be used; the message says why in one line."""


@dataclass(frozen=True)
class BrandTable:
    """What a brand file holds once read: one (brand, name) per station id, and what was set aside."""

    stations: dict[int, Brand]
    skipped: int  # rows without a usable station id
    resolved: int  # ids found on several OSM objects, reduced to one row each

    @property
    def with_brand(self) -> int:
        return sum(1 for brand, _name in self.stations.values() if brand is not None)

    def describe(self, source: str) -> str:
        """The one-line summary the `brands` command prints."""
        return (
            f"imported brands of {len(self.stations):,} stations ({self.with_brand:,} with a brand) from {source}; "
            f"{self.resolved:,} ids on several OSM objects resolved, {self.skipped:,} rows without id skipped"
        )


def load_aliases(path: Path = ALIASES_FILE) -> dict[str, str]:
    """The alias table as {folded spelling: canonical brand}; canonical brands are their own aliases.

    Raises ValueError when two rows send one spelling to different brands.
    """
    aliases: dict[str, str] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            alias, brand = row["alias"].strip(), row["brand"].strip()
            for spelling in (alias, brand):
                known = aliases.setdefault(fold(spelling), brand)
                if known != brand:
                    raise ValueError(f"{path.name}: {spelling!r} maps to both {known!r} and {brand!r}")
    return aliases


def clean_text(raw: str, max_chars: int) -> str | None:
    """An OSM text as stored: NFC, no control characters, line breaks made spaces, trimmed, cut; '' is None."""
    text = unicodedata.normalize("NFC", raw)
    text = _CONTROL.sub("", _BREAKING_SPACE.sub(" ", text)).strip()
    return text[:max_chars].rstrip() or None


def canonical_brand(raw: str, aliases: Mapping[str, str]) -> str | None:
    """The brand as stored: its first OSM value, cleaned, then its canonical spelling when the table lists it."""
    brand = clean_text(raw.split(";", 1)[0], MAX_BRAND_CHARS)
    if brand is None:
        return None
    return aliases.get(fold(brand), brand)


def read_brands(path: Path, aliases: Mapping[str, str]) -> BrandTable:
    """Read and check a brand file; raise BrandFileError, naming the problem, if it is not a usable one."""
    text = _csv_text(path)
    if not text.strip():
        raise BrandFileError("the file is empty")
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        header = [column.strip() for column in next(reader, [])]
        for required in (ID_COLUMN, "brand"):
            if required not in header:
                raise BrandFileError(f"no {required!r} column in the header: not the OSM stations CSV")
        id_at, brand_at = header.index(ID_COLUMN), header.index("brand")
        name_at = header.index("name") if "name" in header else None
        rows: defaultdict[int, list[Brand]] = defaultdict(list)
        skipped = 0
        for record in reader:
            if not record:
                continue  # a blank line
            if len(record) != len(header):
                raise BrandFileError(
                    f"line {reader.line_num:,} has {len(record)} fields instead of {len(header)}: "
                    "the file is truncated or not the OSM stations CSV"
                )
            ids = _station_ids(record[id_at])
            if not ids:
                skipped += 1
                continue
            brand = canonical_brand(record[brand_at], aliases)
            name = clean_text(record[name_at], MAX_NAME_CHARS) if name_at is not None else None
            for station_id in ids:
                rows[station_id].append((brand, name))
    except csv.Error as exc:
        raise BrandFileError(f"not a readable CSV file (line {reader.line_num:,}: {exc})") from exc
    if len(rows) < MIN_STATIONS:
        raise BrandFileError(
            f"the file links only {len(rows):,} stations to an id, fewer than {MIN_STATIONS:,}: refusing it"
        )
    return BrandTable(
        stations={station_id: _resolve(choices) for station_id, choices in rows.items()},
        skipped=skipped,
        resolved=sum(1 for choices in rows.values() if len(choices) > 1),
    )


def replace_brands(conn: Connection, table: BrandTable) -> int:
    """Make `station_brands` hold exactly `table`, inside the caller's transaction; return the rows written.

    Raises BrandFileError, before changing anything, when the table would shrink under MIN_RATIO of its size.
    """
    target = StationBrand.__table__
    previous = conn.scalar(select(func.count()).select_from(target))
    if len(table.stations) < MIN_RATIO * previous:
        raise BrandFileError(
            f"the file lists {len(table.stations):,} stations, under {MIN_RATIO:.0%} of the {previous:,} "
            "the brand table holds; refusing it"
        )
    conn.execute(delete(target))
    conn.execute(
        insert(target),
        [{"station_id": sid, "brand": brand, "name": name} for sid, (brand, name) in table.stations.items()],
    )
    return len(table.stations)


def _csv_text(path: Path) -> str:
    """The file's text, decompressed if it is bzip2, within MAX_CSV_BYTES."""
    size = path.stat().st_size
    if size > MAX_CSV_BYTES:
        raise BrandFileError(f"the file is {size:,} bytes, over the {MAX_CSV_BYTES:,}-byte cap")
    data = path.read_bytes()
    if data.startswith(b"BZh"):
        data = _bunzip(data)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BrandFileError(f"not a UTF-8 text file (byte {exc.start:,} cannot be decoded)") from exc


def _bunzip(data: bytes) -> bytes:
    # Stream by stream (parallel compressors write several), never more than the cap.
    out = bytearray()
    while data:
        decompressor = bz2.BZ2Decompressor()
        try:
            out += decompressor.decompress(data, max_length=MAX_CSV_BYTES + 1 - len(out))
        except OSError as exc:
            raise BrandFileError(f"the bzip2 file is corrupt: {exc}") from exc
        if len(out) > MAX_CSV_BYTES:
            raise BrandFileError(f"the file decompresses to over the {MAX_CSV_BYTES:,}-byte cap")
        if not decompressor.eof:
            raise BrandFileError("the bzip2 file is truncated")
        data = decompressor.unused_data
    return bytes(out)


def _station_ids(cell: str) -> list[int]:
    """The station ids in an id cell, or [] when it is empty or holds anything else."""
    parts = [part.strip() for part in cell.split(";")]
    if not all(_STATION_ID.fullmatch(part) for part in parts):
        return []
    ids = [int(part) for part in parts]
    return ids if all(1 <= station_id <= MAX_STATION_ID for station_id in ids) else []


def _resolve(choices: list[Brand]) -> Brand:
    if len(choices) == 1:
        return choices[0]
    votes = Counter(brand for brand, _name in choices if brand is not None)
    return min(
        choices,
        key=lambda choice: (
            choice[0] is None,
            -votes[choice[0]],
            choice[0] or "",
            choice[1] is None,
            choice[1] or "",
        ),
    )
