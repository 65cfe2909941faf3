"""What a pass makes true: each running alert read against the current prices, ruptures and history, and the
alerts whose truth changed since the last evaluation (a mail goes once per change, never while it stays true).

Set-based, so 50,000 alerts cost a few queries: the database compares prices and thresholds and returns only
the alerts true now; the 24-hour references of the drops come from the history of the prices that changed
today; the "around a place" alerts search each fuel's stations in memory, in a grid of cells.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Select,
    and_,
    bindparam,
    exists,
    insert,
    select,
    type_coerce,
    update,
)
from sqlalchemy.orm import Session

from alerts.rules import AREA_BELOW, DIGEST, DROP, PRICE_BELOW, RUPTURE
from models import AlertRule, AlertState, Price, PriceHistory, Rupture, Station
from utils import bounding_box, haversine_km

DROP_WINDOW = dt.timedelta(hours=24)
DIGEST_EVERY = dt.timedelta(days=7)
GRID_DEGREES = 0.1  # about 11 km north-south


class Finding(NamedTuple):
    """One running alert as the evaluation found it; `station_id` is the cheapest station for AREA_BELOW."""

    rule_id: int
    user_id: int
    kind: str
    active: bool
    fuel_id: int | None
    station_id: int | None
    price: Decimal | None
    threshold: Decimal | None
    reference: Decimal | None = None  # DROP: the highest price of the 24 hours before
    distance_km: float | None = None  # AREA_BELOW: from the place to the cheapest station
    place: str | None = None
    radius_km: float | None = None


class Fired(NamedTuple):
    finding: Finding
    back: bool = False  # RUPTURE: the fuel is there again


class Evaluation(NamedTuple):
    running: list[tuple[int, int, str, int | None, int | None]]  # (rule, user, kind, station, fuel) of every one
    true: dict[int, Finding]  # the running alerts true now, by rule id, with what makes them true


def evaluate(session: Session, now: dt.datetime, stale_after: dt.timedelta) -> Evaluation:
    """Every running alert, and those true now. Prices older than `stale_after` count as no price.

    Only the true ones are read with their prices: the database compares the prices of the other ones.
    """
    conn = session.connection()  # Core rows: no ORM bookkeeping over tens of thousands of them
    fresh_since = now - stale_after
    running = AlertRule.paused.is_(False)
    rules = conn.execute(
        select(AlertRule.id, AlertRule.user_id, AlertRule.kind, AlertRule.station_id, AlertRule.gastype_id).where(
            running
        )
    ).all()
    true: dict[int, Finding] = {}
    below = conn.execute(_priced(PRICE_BELOW, fresh_since, Price.price <= AlertRule.threshold))
    for rule, user, fuel, station, price, threshold in below:
        true[rule] = Finding(rule, user, PRICE_BELOW, True, fuel, station, price, threshold)
    ruptured = conn.execute(
        select(AlertRule.id, AlertRule.user_id, AlertRule.gastype_id, AlertRule.station_id)
        .join(Rupture, and_(Rupture.station_id == AlertRule.station_id, Rupture.gastype_id == AlertRule.gastype_id))
        .where(running, AlertRule.kind == RUPTURE)
    )
    for rule, user, fuel, station in ruptured:
        true[rule] = Finding(rule, user, RUPTURE, True, fuel, station, None, None)
    true |= _drops(conn, now, fresh_since)
    true |= _areas(conn, fresh_since)
    true |= {
        rule: Finding(rule, user, DIGEST, True, None, None, None, None)
        for rule, user, kind, *_ in rules
        if kind == DIGEST
    }
    return Evaluation(list(rules), true)


def changes(session: Session, evaluation: Evaluation, now: dt.datetime) -> list[Fired]:
    """The findings to tell people about, with each alert's state brought up to date.

    A price alert fires when it becomes true; a rupture alert when the fuel runs out and when it is back; the
    weekly summary when the last one is a week old. No state means false (a new alert, or one resumed).
    """
    conn = session.connection()
    states = dict(conn.execute(select(AlertState.rule_id, AlertState.active)).all())
    digests_sent = dict(
        conn.execute(
            select(AlertState.rule_id, AlertState.changed_at)
            .join(AlertRule, AlertRule.id == AlertState.rule_id)
            .where(AlertRule.kind == DIGEST)
        ).all()
    )
    fired, new, changed = [], [], []
    for rule, user, kind, station, fuel in evaluation.running:
        finding = evaluation.true.get(rule)
        was = states.get(rule)
        if kind == DIGEST:
            if rule in digests_sent and digests_sent[rule] > now - DIGEST_EVERY:
                continue
        elif (finding is not None) == bool(was):
            continue
        if finding is not None:
            fired.append(Fired(finding))
        elif kind == RUPTURE:
            fired.append(Fired(Finding(rule, user, kind, False, fuel, station, None, None), back=True))
        (new if was is None else changed).append({"rule": rule, "user": user, "on": finding is not None})
    states_table = AlertState.__table__  # Core's executemany: one statement, many rows
    if new:
        conn.execute(
            insert(states_table),
            [{"rule_id": r["rule"], "user_id": r["user"], "active": r["on"], "changed_at": now} for r in new],
        )
    if changed:
        conn.execute(
            update(states_table)
            .where(states_table.c.rule_id == bindparam("rule"))
            .values(active=bindparam("on"), changed_at=now),
            [{"rule": r["rule"], "on": r["on"]} for r in changed],
        )
    return fired


def _priced(kind: str, since: dt.datetime, *conditions: ColumnElement[bool]) -> Select:
    """The running alerts of `kind` whose station sells their fuel at a price declared since `since` (not out of
    stock), meeting `conditions`: (rule, user, fuel, station, price, threshold)."""
    return (
        select(
            AlertRule.id,
            AlertRule.user_id,
            AlertRule.gastype_id,
            AlertRule.station_id,
            Price.price,
            AlertRule.threshold,
        )
        .join(Price, and_(Price.station_id == AlertRule.station_id, Price.gastype_id == AlertRule.gastype_id))
        .where(AlertRule.paused.is_(False), AlertRule.kind == kind, Price.updated_at >= since, *conditions)
        .where(~exists().where(Rupture.station_id == Price.station_id, Rupture.gastype_id == Price.gastype_id))
    )


def _drops(conn: Connection, now: dt.datetime, fresh_since: dt.datetime) -> dict[int, Finding]:
    """The drop alerts true now: a price set in the last 24 hours at least the threshold below the reference."""
    references = _drop_references(conn, now)
    recent = conn.execute(_priced(DROP, max(now - DROP_WINDOW, fresh_since)))
    true = {}
    for rule, user, fuel, station, price, threshold in recent:
        reference = references.get((station, fuel))
        if reference is not None and reference - price >= threshold:
            true[rule] = Finding(rule, user, DROP, True, fuel, station, price, threshold, reference)
    return true


def _areas(conn: Connection, fresh_since: dt.datetime) -> dict[int, Finding]:
    """The "cheapest around a place" alerts true now; people around one town share one search."""
    rows = conn.execute(
        select(
            AlertRule.id,
            AlertRule.user_id,
            AlertRule.gastype_id,
            AlertRule.latitude,
            AlertRule.longitude,
            AlertRule.radius_km,
            AlertRule.threshold,
            AlertRule.place,
        ).where(AlertRule.paused.is_(False), AlertRule.kind == AREA_BELOW)
    ).all()
    areas = _Areas(conn, fresh_since)
    true = {}
    for rule, user, fuel, lat, lon, radius, threshold, place in rows:
        best = areas.cheapest(fuel, lat, lon, radius)
        if best is not None and best[2] < threshold:
            station, distance, price = best
            true[rule] = Finding(
                rule, user, AREA_BELOW, True, fuel, station, price, threshold, None, distance, place, radius
            )
    return true


def _drop_references(conn: Connection, now: dt.datetime) -> dict[tuple[int, int], Decimal]:
    """For each (station, fuel) of a running drop alert whose price changed in the last 24 hours: the highest
    price in effect during the 24 hours before that change (the one in effect when they began included)."""
    since = now - DROP_WINDOW
    drops = (
        select(AlertRule.station_id, AlertRule.gastype_id, Price.updated_at)
        .join(Price, and_(Price.station_id == AlertRule.station_id, Price.gastype_id == AlertRule.gastype_id))
        .where(AlertRule.kind == DROP, AlertRule.paused.is_(False), Price.updated_at >= since)
        .distinct()
        .subquery()
    )
    pair = and_(PriceHistory.station_id == drops.c.station_id, PriceHistory.gastype_id == drops.c.gastype_id)
    rows = conn.execute(select(drops.c.station_id, drops.c.gastype_id, drops.c.updated_at)).all()
    references: dict[tuple[int, int], Decimal] = {}
    if not rows:
        return references
    history = conn.execute(
        select(PriceHistory.station_id, PriceHistory.gastype_id, PriceHistory.updated_at, PriceHistory.price)
        .join(drops, pair)
        .where(PriceHistory.updated_at >= since - DROP_WINDOW)
    )
    changed_at = {(station, fuel): updated for station, fuel, updated in rows}
    recent: dict[tuple[int, int], list[tuple[dt.datetime, Decimal]]] = defaultdict(list)
    for station, fuel, updated, price in history:
        recent[(station, fuel)].append((updated, price))
    before = _prices_before(conn, drops, since - DROP_WINDOW)
    for key, current_at in changed_at.items():
        start = current_at - DROP_WINDOW
        observed = sorted(recent.get(key, []))
        in_effect = before.get(key)
        highest = None
        for updated, price in observed:
            if updated <= start:
                in_effect = price
            elif updated < current_at:
                highest = price if highest is None else max(highest, price)
        candidates = [p for p in (in_effect, highest) if p is not None]
        if candidates:
            references[key] = max(candidates)
    return references


def _prices_before(conn: Connection, drops, moment: dt.datetime) -> dict[tuple[int, int], Decimal]:
    """The price each (station, fuel) of `drops` had at `moment`: its newest observation before it."""
    newest = (
        select(PriceHistory.price)
        .where(
            PriceHistory.station_id == drops.c.station_id,
            PriceHistory.gastype_id == drops.c.gastype_id,
            PriceHistory.updated_at < moment,
        )
        .order_by(PriceHistory.updated_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = conn.execute(select(drops.c.station_id, drops.c.gastype_id, newest))
    return {(station, fuel): price for station, fuel, price in rows if price is not None}


class _Areas:
    """The stations selling each fuel in cells of a degree grid, each cell cheapest first: a search reads the
    cells around the place and, in each, stops at the first station dearer than the best found."""

    def __init__(self, conn: Connection, fresh_since: dt.datetime) -> None:
        self._conn, self._fresh_since = conn, fresh_since
        self._grids: dict[int, dict[tuple[int, int], list]] = defaultdict(lambda: defaultdict(list))
        self._answers: dict[tuple, tuple[int, float, Decimal] | None] = {}

    def cheapest(self, fuel: int, lat: float, lon: float, radius: float) -> tuple[int, float, Decimal] | None:
        """(station, km, price) of the cheapest station within `radius` km, the nearest of equals; None if none."""
        key = (fuel, lat, lon, radius)
        if key not in self._answers:
            self._answers[key] = self._search(fuel, lat, lon, radius)
        return self._answers[key]

    def _search(self, fuel: int, lat: float, lon: float, radius: float) -> tuple[int, float, Decimal] | None:
        grid = self._grid(fuel)
        south, west, north, east = bounding_box(lat, lon, radius)
        best: tuple[int, float, int] | None = None  # (station, km, thousandths of a euro)
        for row in range(_cell(south), _cell(north) + 1):
            for column in range(_cell(west), _cell(east) + 1):
                for price, s_lat, s_lon, station in grid.get((row, column), ()):
                    if best is not None and price > best[2]:
                        break
                    if not (south <= s_lat <= north and west <= s_lon <= east):
                        continue
                    distance = haversine_km(lat, lon, s_lat, s_lon)
                    if distance <= radius and (best is None or (price, distance) < (best[2], best[1])):
                        best = (station, distance, price)
        return None if best is None else (best[0], best[1], Decimal(best[2]).scaleb(-3))

    def _grid(self, fuel: int) -> dict[tuple[int, int], list[tuple[int, float, float, int]]]:
        if not self._grids:
            # Every fuel in one reading; prices as stored (thousandths of a euro): no Decimal made for 40,000 rows.
            rows = self._conn.execute(
                select(
                    Price.gastype_id, type_coerce(Price.price, Integer), Station.latitude, Station.longitude, Station.id
                )
                .join(Price, Price.station_id == Station.id)
                .where(
                    Price.updated_at >= self._fresh_since,
                    Station.latitude.is_not(None),
                    Station.longitude.is_not(None),
                    ~exists().where(Rupture.station_id == Station.id, Rupture.gastype_id == Price.gastype_id),
                )
                .order_by(Price.price)
            )
            for fuel_id, thousandths, lat, lon, station in rows:
                self._grids[fuel_id][(_cell(lat), _cell(lon))].append((thousandths, lat, lon, station))
        return self._grids.get(fuel, {})


def _cell(degrees: float) -> int:
    return math.floor(degrees / GRID_DEGREES)
