"""Writing a parsed feed into the database with bulk, dialect-aware statements.

Every function takes a connection inside a transaction opened by the caller,
and compares the feed with what is stored so that only real changes are
written: an unchanged feed costs one read of each table and no row writes
besides the stations' `last_seen_at`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Connection, Table, delete, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from feed import StationEntry
from models import Price, PriceHistory, Rupture, Station

BATCH_ROWS = 5_000
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


def _insert(conn: Connection, table: Table):
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


def _batches(rows: Sequence, size: int = BATCH_ROWS) -> Iterable[Sequence]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def upsert(conn: Connection, table: Table, rows: Sequence[dict], update_columns: Sequence[str] = ()) -> None:
    """INSERT ... ON CONFLICT (primary key) DO UPDATE the given columns, or DO NOTHING without any."""
    if not rows:
        return
    stmt = _insert(conn, table)
    keys = [c.name for c in table.primary_key.columns]
    if update_columns:
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in update_columns})
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    for batch in _batches(rows):
        conn.execute(stmt, list(batch))


def _delete_keys(conn: Connection, table: Table, keys: Sequence[tuple[int, int]]) -> None:
    key_columns = tuple_(table.c.station_id, table.c.gastype_id)
    for batch in _batches(keys, 1_000):
        conn.execute(delete(table).where(key_columns.in_(list(batch))))


def _euros(milli: int) -> Decimal:
    return Decimal(milli).scaleb(-3)


def load_snapshot(conn: Connection, snapshot: Snapshot, seen_at: dt.datetime) -> LoadCounts:
    """Make the database hold exactly this feed's stations, prices and ruptures; add new history."""
    counts = LoadCounts(stations=len(snapshot.stations))
    load_stations(conn, snapshot.stations, seen_at)
    counts.prices, counts.changes = load_prices(conn, snapshot.prices)
    load_ruptures(conn, snapshot.ruptures)
    return counts


def load_stations(conn: Connection, stations: list[dict], seen_at: dt.datetime) -> None:
    table = Station.__table__
    stored = {
        row[0]: tuple(row[1:]) for row in conn.execute(select(table.c.id, *(table.c[name] for name in STATION_COLUMNS)))
    }
    changed, unchanged = [], []
    for station in stations:
        values = tuple(station[name] for name in STATION_COLUMNS)
        if stored.get(station["id"]) == values:
            unchanged.append(station["id"])
        else:
            changed.append({**station, "last_seen_at": seen_at})
    upsert(conn, table, changed, (*STATION_COLUMNS, "last_seen_at"))
    for batch in _batches(unchanged):
        conn.execute(update(table).where(table.c.id.in_(list(batch))).values(last_seen_at=seen_at))


def load_prices(conn: Connection, observations: list[tuple[int, int, int, dt.datetime]]) -> tuple[int, int]:
    """Current prices become the feed's (newest `maj` per pair); new observations go to history.

    Returns (current prices, pairs whose price or time changed or that are new).
    """
    table = Price.__table__
    stored = {
        (station, fuel): (price, updated_at)
        for station, fuel, price, updated_at in conn.execute(
            select(table.c.station_id, table.c.gastype_id, table.c.price, table.c.updated_at)
        )
    }
    current: dict[tuple[int, int], tuple[int, dt.datetime]] = {}
    for station, fuel, milli, maj in observations:
        newest = current.get((station, fuel))
        if newest is None or maj > newest[1]:
            current[(station, fuel)] = (milli, maj)

    history, seen = [], set()
    for station, fuel, milli, maj in observations:
        key = (station, fuel, maj)
        known = stored.get((station, fuel))
        if key in seen or (known is not None and known[1] == maj):
            continue  # a stored current price is already in the history
        seen.add(key)
        history.append({"station_id": station, "gastype_id": fuel, "updated_at": maj, "price": _euros(milli)})

    changed = []
    for (station, fuel), (milli, maj) in current.items():
        price = _euros(milli)
        if stored.get((station, fuel)) != (price, maj):
            changed.append({"station_id": station, "gastype_id": fuel, "price": price, "updated_at": maj})
    gone = [key for key in stored if key not in current]

    upsert(conn, PriceHistory.__table__, history)
    upsert(conn, table, changed, ("price", "updated_at"))
    _delete_keys(conn, table, gone)
    return len(current), len(changed)


def load_ruptures(conn: Connection, ruptures: list[tuple]) -> None:
    """The out-of-stock table becomes the feed's; of two records for one fuel, the latest start wins."""
    table = Rupture.__table__
    stored = {
        (station, fuel): (started, ended, kind)
        for station, fuel, started, ended, kind in conn.execute(
            select(table.c.station_id, table.c.gastype_id, table.c.started_at, table.c.ended_at, table.c.kind)
        )
    }
    current: dict[tuple[int, int], tuple] = {}
    never = dt.datetime.min.replace(tzinfo=dt.UTC)
    for station, fuel, started, ended, kind in ruptures:
        kept = current.get((station, fuel))
        if kept is None or (started or never) >= (kept[0] or never):
            current[(station, fuel)] = (started, ended, kind)
    changed = [
        {"station_id": s, "gastype_id": f, "started_at": v[0], "ended_at": v[1], "kind": v[2]}
        for (s, f), v in current.items()
        if stored.get((s, f)) != v
    ]
    upsert(conn, table, changed, ("started_at", "ended_at", "kind"))
    _delete_keys(conn, table, [key for key in stored if key not in current])


def load_history_batch(conn: Connection, entries: list[StationEntry], seen_at: dt.datetime) -> int:
    """Backfill: add a batch of past observations; current prices move only where the batch is newer.

    Stations unknown so far are added; known stations keep their current details.
    Returns the number of observations sent (duplicates of stored ones are ignored).
    """
    upsert(conn, Station.__table__, [{**e.station, "last_seen_at": seen_at} for e in entries])
    newest: dict[tuple[int, int], tuple[int, dt.datetime]] = {}
    history: dict[tuple[int, int, dt.datetime], dict] = {}
    for entry in entries:
        for station, fuel, milli, maj in entry.prices:
            history.setdefault(
                (station, fuel, maj),
                {"station_id": station, "gastype_id": fuel, "updated_at": maj, "price": _euros(milli)},
            )
            kept = newest.get((station, fuel))
            if kept is None or maj > kept[1]:
                newest[(station, fuel)] = (milli, maj)
    upsert(conn, PriceHistory.__table__, list(history.values()))

    table = Price.__table__
    stmt = _insert(conn, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["station_id", "gastype_id"],
        set_={"price": stmt.excluded.price, "updated_at": stmt.excluded.updated_at},
        where=table.c.updated_at < stmt.excluded.updated_at,
    )
    rows = [
        {"station_id": s, "gastype_id": f, "price": _euros(milli), "updated_at": maj}
        for (s, f), (milli, maj) in newest.items()
    ]
    for batch in _batches(rows):
        conn.execute(stmt, list(batch))
    return len(history)
