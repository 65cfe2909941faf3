"""Writing a parsed feed into the database with bulk, dialect-aware statements.

Every function takes a connection inside a transaction opened by the caller.
The feed is compared with what is stored, in the database's own encoding
(integer thousandths, UTC text on SQLite, JSON text), so only real changes are
written and each distinct value is encoded once rather than once per row.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Dialect,
    MetaData,
    Table,
    TypeDecorator,
    bindparam,
    delete,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from feed import StationEntry, opening_hours_document
from models import Price, PriceHistory, Rupture, Station, json_text, sqlite_time_text
from session import dialect_insert
from utils import UTC, fold

BATCH_ROWS = 5_000
PRICE_ROW = ("station_id", "gastype_id", "price", "updated_at")
HISTORY_ROW = ("station_id", "gastype_id", "updated_at", "price")
NOTHING = (None, None)
RUPTURE_ROW = ("station_id", "gastype_id", "started_at", "ended_at", "kind")
STATION_COLUMNS = (
    "latitude",
    "longitude",
    "zip_code",
    "town",
    "address",
    "road_type",
    "automate_24_24",
    "opening_hours",
    "services",
    "search_text",
)


@dataclass
class Snapshot:
    """A whole instant feed, held in memory between parse and load (about 10,000 stations)."""

    stations: list[dict]
    prices: list[tuple[int, int, int, dt.datetime]]
    ruptures: list[tuple[int, int, dt.datetime | None, dt.datetime | None, str | None]]

    @classmethod
    def collect(cls, entries: Iterable[StationEntry]) -> Snapshot:
        snapshot = cls([], [], [])
        for entry in entries:
            snapshot.stations.append(entry.station)
            snapshot.prices.extend(entry.prices)
            snapshot.ruptures.extend(entry.ruptures)
        return snapshot


@dataclass
class LoadCounts:
    stations: int = 0
    prices: int = 0
    changes: int = 0


@functools.cache
def storage_table(table: Table, dialect_name: str) -> Table:
    """`table` with each column typed as what the database stores, so values bind without conversion."""
    dialect = (postgresql if dialect_name == "postgresql" else sqlite).dialect()
    columns = []
    for column in table.columns:
        kind = column.type.load_dialect_impl(dialect) if isinstance(column.type, TypeDecorator) else column.type
        columns.append(Column(column.name, kind, primary_key=column.primary_key))
    return Table(table.name, MetaData(), *columns)


class Encoder:
    """Encodes feed values the way the models store them, remembering each distinct value."""

    def __init__(self, dialect: Dialect):
        self.sqlite = dialect.name == "sqlite"
        self._times: dict[dt.datetime, Any] = {}
        self._documents: dict[Hashable, str] = {}

    def time(self, moment: dt.datetime | None) -> Any:
        if moment is None or not self.sqlite:
            return moment
        text = self._times.get(moment)
        if text is None:
            text = self._times[moment] = sqlite_time_text(moment)
        return text

    def document(self, value: Hashable, shape=list) -> str | None:
        if value is None:
            return None
        text = self._documents.get(value)
        if text is None:
            text = self._documents[value] = json_text(shape(value))
        return text

    def station_values(self, station: dict) -> tuple:
        """The station's STATION_COLUMNS, encoded."""
        return (
            station["latitude"],
            station["longitude"],
            station["zip_code"],
            station["town"],
            station["address"],
            station["road_type"],
            station["automate_24_24"],
            self.document(station["opening_hours"], opening_hours_document),
            self.document(station["services"]),
            fold(f"{station['address']} {station['zip_code']} {station['town']}"),
        )


def _batches(rows: Iterable, size: int = BATCH_ROWS) -> Iterator[list]:
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def upsert(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Iterable[tuple],
    update_columns: Sequence[str] = (),
    where=None,
) -> int:
    """INSERT ... ON CONFLICT (primary key) DO UPDATE `update_columns`, or DO NOTHING without any.

    `rows` are tuples matching `columns`, already in storage encoding (see
    `storage_table`); an iterator is consumed batch by batch. SQLAlchemy builds
    and compiles the statement once; the driver's executemany then runs it
    with no per-row processing. Returns the number of rows inserted or updated.
    """
    stmt = dialect_insert(conn.dialect.name, table).values({name: bindparam(name) for name in columns})
    keys = [c.name for c in table.primary_key.columns]
    if update_columns:
        set_ = {c: stmt.excluded[c] for c in update_columns}
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_=set_, where=where and where(table, stmt))
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    compiled = stmt.compile(dialect=conn.dialect)
    if compiled.positional:
        order = [columns.index(name) for name in compiled.positiontup]
        if order != list(range(len(columns))):
            rows = (tuple(row[i] for i in order) for row in rows)
    else:
        rows = (dict(zip(columns, row, strict=True)) for row in rows)
    sql = str(compiled)
    return sum(conn.exec_driver_sql(sql, batch).rowcount for batch in _batches(rows))


def _delete_pairs(conn: Connection, table: Table, keys: Sequence[tuple[int, int]]) -> None:
    key_columns = tuple_(table.c.station_id, table.c.gastype_id)
    for batch in _batches(keys, 1_000):
        conn.execute(delete(table).where(key_columns.in_(batch)))


def _storage(conn: Connection, model) -> Table:
    return storage_table(model.__table__, conn.dialect.name)


def load_snapshot(conn: Connection, snapshot: Snapshot, seen_at: dt.datetime) -> LoadCounts:
    """Make the database hold exactly this feed's stations, prices and ruptures; add new history."""
    encoder = Encoder(conn.dialect)
    load_stations(conn, encoder, snapshot.stations, seen_at)
    prices, changes = load_prices(conn, encoder, snapshot.prices)
    load_ruptures(conn, encoder, snapshot.ruptures)
    return LoadCounts(stations=len(snapshot.stations), prices=prices, changes=changes)


def load_stations(conn: Connection, encoder: Encoder, stations: list[dict], seen_at: dt.datetime) -> None:
    table = _storage(conn, Station)
    # Stored rows are kept as a hash of their values: 10,000 stations' JSON would cost megabytes.
    stored = {
        row[0]: hash(tuple(row[1:])) for row in conn.execute(select(table.c.id, *map(table.c.get, STATION_COLUMNS)))
    }
    seen = encoder.time(seen_at)
    changed, unchanged = [], []
    for station in stations:
        values = encoder.station_values(station)
        if stored.get(station["id"]) == hash(values):
            unchanged.append(station["id"])
        else:
            changed.append((station["id"], *values, seen))
    upsert(conn, table, ("id", *STATION_COLUMNS, "last_seen_at"), changed, (*STATION_COLUMNS, "last_seen_at"))
    for batch in _batches(unchanged):
        conn.execute(update(table).where(table.c.id.in_(batch)).values(last_seen_at=seen))


def _pair(station: int, fuel: int) -> int:
    """One int for a (station, fuel) pair: a compact dictionary key (fuel ids are 1-6)."""
    return station << 3 | fuel


def load_prices(conn: Connection, encoder: Encoder, observations: list[tuple]) -> tuple[int, int]:
    """Current prices become the feed's (newest `maj` per pair); new observations go to history.

    Returns (current prices, pairs that are new or whose price or time changed).
    """
    table = _storage(conn, Price)
    # Stored prices as {pair: (price, hash of time)}: compact enough for 40,000 rows.
    stored = {
        _pair(station, fuel): (milli, hash(updated_at))
        for station, fuel, milli, updated_at in conn.execute(
            select(table.c.station_id, table.c.gastype_id, table.c.price, table.c.updated_at)
        )
    }
    current: dict[int, tuple[int, int, int, Any]] = {}
    for station, fuel, milli, maj in observations:
        when = encoder.time(maj)
        newest = current.get(_pair(station, fuel))
        if newest is None or when > newest[3]:  # encoded times sort as the times do
            current[_pair(station, fuel)] = (station, fuel, milli, when)
    history = (
        (station, fuel, when, milli)
        for station, fuel, milli, when in ((s, f, m, encoder.time(t)) for s, f, m, t in observations)
        # A stored current price is already in the history; duplicates are skipped by the database.
        if stored.get(_pair(station, fuel), NOTHING)[1] != hash(when)
    )
    changed = [row for key, row in current.items() if stored.get(key) != (row[2], hash(row[3]))]
    upsert(conn, _storage(conn, PriceHistory), HISTORY_ROW, history)
    upsert(conn, table, PRICE_ROW, changed, ("price", "updated_at"))
    _delete_pairs(conn, table, [(key >> 3, key & 7) for key in stored if key not in current])
    return len(current), len(changed)


def load_ruptures(conn: Connection, encoder: Encoder, ruptures: list[tuple]) -> None:
    """The out-of-stock table becomes the feed's; of two records for one fuel, the latest start wins."""
    table = _storage(conn, Rupture)
    stored = {
        (station, fuel): (started, ended, kind)
        for station, fuel, started, ended, kind in conn.execute(
            select(table.c.station_id, table.c.gastype_id, table.c.started_at, table.c.ended_at, table.c.kind)
        )
    }
    never = dt.datetime.min.replace(tzinfo=UTC)
    latest: dict[tuple[int, int], tuple] = {}
    for station, fuel, started, ended, kind in ruptures:
        kept = latest.get((station, fuel))
        if kept is None or (started or never) >= (kept[0] or never):
            latest[(station, fuel)] = (started, ended, kind)
    current = {key: (encoder.time(s), encoder.time(e), k) for key, (s, e, k) in latest.items()}
    changed = [(*key, *value) for key, value in current.items() if stored.get(key) != value]
    upsert(conn, table, RUPTURE_ROW, changed, RUPTURE_ROW[2:])
    _delete_pairs(conn, table, [key for key in stored if key not in current])


def load_history_batch(conn: Connection, entries: list[StationEntry], seen_at: dt.datetime) -> int:
    """Backfill: add a batch of past observations; current prices move only where the batch is newer.

    Stations unknown so far are added; known stations keep their current details.
    Returns the number of observations added to the history (those already stored are skipped).
    """
    encoder = Encoder(conn.dialect)
    seen = encoder.time(seen_at)
    # A station known only from an archive was last seen at its newest price, not today.
    stations = [
        (
            e.station["id"],
            *encoder.station_values(e.station),
            encoder.time(max(p[3] for p in e.prices)) if e.prices else seen,
        )
        for e in entries
    ]
    upsert(conn, _storage(conn, Station), ("id", *STATION_COLUMNS, "last_seen_at"), stations)
    newest: dict[tuple[int, int], tuple[int, Any]] = {}
    history = []
    for entry in entries:
        for station, fuel, milli, maj in entry.prices:
            when = encoder.time(maj)
            history.append((station, fuel, when, milli))
            kept = newest.get((station, fuel))
            if kept is None or when > kept[1]:
                newest[(station, fuel)] = (milli, when)
    added = upsert(conn, _storage(conn, PriceHistory), HISTORY_ROW, history)
    upsert(
        conn,
        _storage(conn, Price),
        PRICE_ROW,
        [(*key, *value) for key, value in newest.items()],
        ("price", "updated_at"),
        where=lambda table, stmt: table.c.updated_at < stmt.excluded.updated_at,
    )
    return added
