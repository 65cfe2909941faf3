"""Making the database hold a parsed feed: what to write, found by comparing it with what is stored.

Every function takes a connection inside a transaction opened by the caller.
The feed is compared with what is stored, in the database's own encoding
(integer thousandths, UTC text on SQLite, JSON text), so only real changes are
written (by bulk.py) and each distinct value is encoded once rather than once per row.
A first load, into a database without any station, reads nothing back.

A feed is loaded a Snapshot (a batch of stations) at a time: only the stored rows
of its stations, and of the stations gone from the feed, are read and compared.
When only the stations whose <pdv> bytes changed are read (see update.parse_update),
the others keep their rows; their last_seen_at moves in one statement
(`mark_seen_again`). stations.fingerprint says which bytes each station's stored
rows come from.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Connection, select, update

from ingest.bulk import (
    HISTORY_ROW,
    PRICE_ROW,
    RUPTURE_ROW,
    STATION_COLUMNS,
    Encoder,
    batches,
    delete_pairs,
    storage,
    update_rows,
    upsert,
)
from ingest.records import StationEntry
from models import Price, PriceHistory, Rupture, Station
from utils import UTC

NOTHING = (None, None)


@dataclass(frozen=True)
class Basis:
    """The stations the last successful run listed: when it saw them, and each one's fingerprint."""

    seen_at: dt.datetime
    fingerprints: dict[int, int | None]


@dataclass
class Snapshot:
    """A batch of a feed's stations (a few thousand), held in memory between parse and load.

    Loading it replaces the stored rows of the stations it lists and removes the prices and
    out-of-stock records of those `gone` from the feed; only these stations' rows are read.
    """

    stations: list[dict]
    prices: list[tuple[int, int, int, dt.datetime]]
    ruptures: list[tuple[int, int, dt.datetime | None, dt.datetime | None, str | None]]
    fingerprints: dict[int, int | None] = field(default_factory=dict)  # of the stations above; None: unknown
    gone: Sequence[int] = ()
    already_seen: Collection[int] = ()  # stations whose last_seen_at moves in one statement (`mark_seen_again`)
    stored: Collection[int] | None = None  # of its stations, those that may have stored rows; None: any of them

    @classmethod
    def collect(cls, batch: Iterable[tuple[StationEntry, int | None]], already_seen: Collection[int] = ()) -> Snapshot:
        """The rows of each entry of `batch` and the fingerprint that comes with it."""
        snapshot = cls([], [], [], already_seen=already_seen)
        for entry, fingerprint in batch:
            snapshot.stations.append(entry.station)
            snapshot.prices.extend(entry.prices)
            snapshot.ruptures.extend(entry.ruptures)
            snapshot.fingerprints[entry.station["id"]] = fingerprint
        return snapshot


@dataclass
class LoadCounts:
    stations: int = 0
    prices: int = 0
    changes: int = 0


def _stored(conn: Connection, query, key: Column, scope: Collection[int]) -> Iterator:
    """The rows of `query` whose `key` (a station id) is in `scope`."""
    for batch in batches(sorted(scope), 1_000):
        yield from conn.execute(query.where(key.in_(batch)))


def holds_no_station(conn: Connection) -> bool:
    table = storage(conn, Station)
    return conn.scalar(select(table.c.id).limit(1)) is None


def stations_seen_at(conn: Connection, seen_at: dt.datetime) -> Basis:
    """The stations last seen at `seen_at` (those a run of that time listed), with their fingerprints."""
    table = storage(conn, Station)
    query = select(table.c.id, table.c.fingerprint).where(table.c.last_seen_at == Encoder(conn.dialect).time(seen_at))
    return Basis(seen_at, dict(conn.execute(query).all()))


def load_snapshot(conn: Connection, snapshot: Snapshot, seen_at: dt.datetime) -> LoadCounts:
    """Make the database hold exactly this batch's stations, prices and ruptures, none for those gone; add new history.

    Only these stations are compared; `prices` counts the batch's current prices, not the table's.
    """
    encoder = Encoder(conn.dialect)
    listed = {station["id"] for station in snapshot.stations} if snapshot.stored is None else set(snapshot.stored)
    scope = listed.union(snapshot.gone)
    kept = load_stations(conn, encoder, snapshot.stations, seen_at, scope, snapshot.fingerprints, snapshot.already_seen)
    prices, changes, repriced = load_prices(conn, encoder, snapshot.prices, scope, watch=kept)
    restocked = load_ruptures(conn, encoder, snapshot.ruptures, scope, watch=kept)
    # A fingerprint kept for a station read with a rejection holds only while its rows did not move.
    forget_fingerprints(conn, sorted(repriced | restocked))
    return LoadCounts(stations=len(snapshot.stations), prices=prices, changes=changes)


def mark_seen_again(
    conn: Connection, encoder: Encoder, previous: dt.datetime, seen_at: dt.datetime, gone: Sequence[int]
) -> None:
    """Mark the stations seen by the previous run as seen by this one, but those gone from the feed.

    One statement on "seen by the previous run", with no list of ids to send. A station gone keeps
    its time, and loses its fingerprint with its prices.
    """
    table = storage(conn, Station)
    before = encoder.time(previous)
    conn.execute(update(table).where(table.c.last_seen_at == before).values(last_seen_at=encoder.time(seen_at)))
    for batch in batches(gone, 1_000):
        conn.execute(update(table).where(table.c.id.in_(batch)).values(last_seen_at=before, fingerprint=None))


def forget_fingerprints(conn: Connection, station_ids: Sequence[int]) -> None:
    table = storage(conn, Station)
    for batch in batches(station_ids, 1_000):
        conn.execute(update(table).where(table.c.id.in_(batch)).values(fingerprint=None))


def load_stations(
    conn: Connection,
    encoder: Encoder,
    stations: list[dict],
    seen_at: dt.datetime,
    scope: Collection[int],
    fingerprints: dict[int, int | None],
    already_seen: Collection[int],
) -> set[int]:
    """Write the stations that changed, mark the others seen (but those `already_seen`), keep fingerprints.

    Only the stored rows of the stations in `scope` are read. A station without a new fingerprint
    (see update.parse_update) keeps the one it has while its row is unchanged; returns those
    stations, whose fingerprint holds only if nothing else of theirs changes.
    """
    table = storage(conn, Station)
    # Stored rows are kept as a hash of their values: 10,000 stations' JSON would cost megabytes.
    query = select(table.c.id, table.c.fingerprint, *map(table.c.get, STATION_COLUMNS))
    stored, stored_fingerprints = {}, {}
    for row in _stored(conn, query, table.c.id, scope):
        stored[row[0]] = hash(tuple(row[2:]))
        if row[1] is not None:
            stored_fingerprints[row[0]] = row[1]
    seen = encoder.time(seen_at)
    refingerprinted, unchanged, kept = [], [], set()

    def changed() -> Iterator[tuple]:
        """The rows to write, sorting the other stations out on the way (consumed batch by batch)."""
        listed = {station["id"]: station for station in stations}  # a station listed twice: the last wins
        for station_id in sorted(listed):  # in key order, SQLite appends to its tables rather than splits pages
            station = listed[station_id]
            values = encoder.station_values(station)
            fingerprint = fingerprints.get(station_id)
            old_fingerprint = stored_fingerprints.get(station_id)
            if stored.get(station_id) != hash(values):
                yield (station_id, *values, seen, fingerprint)
            elif fingerprint is not None and fingerprint != old_fingerprint:
                refingerprinted.append((station_id, fingerprint, seen))
            else:
                if station_id not in already_seen:
                    unchanged.append(station_id)
                if fingerprint is None and old_fingerprint is not None:
                    kept.add(station_id)

    columns = (*STATION_COLUMNS, "last_seen_at", "fingerprint")  # as the table orders them: no reordering
    upsert(conn, table, ("id", *columns), changed(), columns)
    # The same row from other bytes (a price or out-of-stock record changed): a new fingerprint.
    update_rows(conn, table, ("fingerprint", "last_seen_at"), refingerprinted)
    for batch in batches(unchanged):
        conn.execute(update(table).where(table.c.id.in_(batch)).values(last_seen_at=seen))
    return kept


def _pair(station: int, fuel: int) -> int:
    """One int for a (station, fuel) pair: a compact dictionary key (fuel ids are 1-6)."""
    return station << 3 | fuel


def load_prices(
    conn: Connection,
    encoder: Encoder,
    observations: list[tuple],
    scope: Collection[int],
    watch: Collection[int] = (),
) -> tuple[int, int, set[int]]:
    """Current prices become the feed's (newest `maj` per pair); new observations go to history.

    Only the prices of the stations in `scope` are compared (and removed when not observed).
    Returns (current prices, pairs that are new or whose price or time changed, stations of
    `watch` whose prices or history were written).
    """
    table = storage(conn, Price)
    # Stored prices as {pair: (price, hash of time)}: compact enough for 40,000 rows.
    query = select(table.c.station_id, table.c.gastype_id, table.c.price, table.c.updated_at)
    stored = {
        _pair(station, fuel): (milli, hash(updated_at))
        for station, fuel, milli, updated_at in _stored(conn, query, table.c.station_id, scope)
    }
    time = encoder.time
    encoded = [(station, fuel, milli, time(maj)) for station, fuel, milli, maj in observations]
    current: dict[int, tuple[int, int, int, Any]] = {}
    for row in encoded:
        key = _pair(row[0], row[1])
        newest = current.get(key)
        if newest is None or row[3] > newest[3]:  # encoded times sort as the times do
            current[key] = row
    written: set[int] = set()

    def history() -> Iterator[tuple]:
        for station, fuel, milli, when in encoded:
            # A stored current price is already in the history; duplicates are skipped by the database.
            if stored and stored.get(_pair(station, fuel), NOTHING)[1] == hash(when):
                continue
            if station in watch:
                written.add(station)
            yield station, fuel, when, milli

    changed = [row for key, row in current.items() if stored.get(key) != (row[2], hash(row[3]))]
    removed = [(key >> 3, key & 7) for key in stored if key not in current]
    upsert(conn, storage(conn, PriceHistory), HISTORY_ROW, history())
    upsert(conn, table, PRICE_ROW, changed, ("price", "updated_at"))
    delete_pairs(conn, table, removed)
    written.update(row[0] for row in changed if row[0] in watch)
    written.update(pair[0] for pair in removed if pair[0] in watch)
    return len(current), len(changed), written


def load_ruptures(
    conn: Connection,
    encoder: Encoder,
    ruptures: list[tuple],
    scope: Collection[int],
    watch: Collection[int] = (),
) -> set[int]:
    """The out-of-stock table becomes the feed's; of two records for one fuel, the latest start wins.

    Only the records of the stations in `scope` are compared (and removed when not listed).
    Returns the stations of `watch` whose records were written.
    """
    table = storage(conn, Rupture)
    query = select(table.c.station_id, table.c.gastype_id, table.c.started_at, table.c.ended_at, table.c.kind)
    stored = {
        (station, fuel): (started, ended, kind)
        for station, fuel, started, ended, kind in _stored(conn, query, table.c.station_id, scope)
    }
    never = dt.datetime.min.replace(tzinfo=UTC)
    latest: dict[tuple[int, int], tuple] = {}
    for station, fuel, started, ended, kind in ruptures:
        kept = latest.get((station, fuel))
        if kept is None or (started or never) >= (kept[0] or never):
            latest[(station, fuel)] = (started, ended, kind)
    current = {key: (encoder.time(s), encoder.time(e), k) for key, (s, e, k) in latest.items()}
    changed = [(*key, *value) for key, value in current.items() if stored.get(key) != value]
    removed = [key for key in stored if key not in current]
    upsert(conn, table, RUPTURE_ROW, changed, RUPTURE_ROW[2:])
    delete_pairs(conn, table, removed)
    return {row[0] for row in changed if row[0] in watch}.union(key[0] for key in removed if key[0] in watch)


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
    upsert(conn, storage(conn, Station), ("id", *STATION_COLUMNS, "last_seen_at"), stations)
    newest: dict[tuple[int, int], tuple[int, Any]] = {}
    history = []
    for entry in entries:
        for station, fuel, milli, maj in entry.prices:
            when = encoder.time(maj)
            history.append((station, fuel, when, milli))
            kept = newest.get((station, fuel))
            if kept is None or when > kept[1]:
                newest[(station, fuel)] = (milli, when)
    added = upsert(conn, storage(conn, PriceHistory), HISTORY_ROW, history)
    upsert(
        conn,
        storage(conn, Price),
        PRICE_ROW,
        [(*key, *value) for key, value in newest.items()],
        ("price", "updated_at"),
        where=lambda table, stmt: table.c.updated_at < stmt.excluded.updated_at,
    )
    return added
