"""What a pass makes true: each running alert read against the current prices, ruptures and history, and the
alerts whose truth changed since the last evaluation (a mail goes once per change, never while it stays true).

Set-based, so 50,000 alerts cost a few queries: one for the rules with their station's current price, one
for the ruptures, two for the 24-hour references of the drops that changed today, and one per fuel of the
"around a place" alerts, whose stations are searched in memory by latitude band.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.orm import Session

from alerts.rules import AREA_BELOW, DIGEST, DROP, PRICE_BELOW, RUPTURE
from models import AlertRule, AlertState, Price, PriceHistory, Rupture, Station
from utils import bounding_box, haversine_km

DROP_WINDOW = dt.timedelta(hours=24)
DIGEST_EVERY = dt.timedelta(days=7)


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


def evaluate(session: Session, now: dt.datetime, stale_after: dt.timedelta) -> list[Finding]:
    """Every running alert, true or false now. Prices older than `stale_after` count as no price."""
    fresh_since = now - stale_after
    rows = session.execute(
        select(
            AlertRule.id,
            AlertRule.user_id,
            AlertRule.kind,
            AlertRule.gastype_id,
            AlertRule.station_id,
            AlertRule.threshold,
            AlertRule.place,
            AlertRule.latitude,
            AlertRule.longitude,
            AlertRule.radius_km,
            Price.price,
            Price.updated_at,
        )
        .outerjoin(Price, and_(Price.station_id == AlertRule.station_id, Price.gastype_id == AlertRule.gastype_id))
        .where(AlertRule.paused.is_(False))
    ).all()
    out = {(station, fuel) for station, fuel in session.execute(select(Rupture.station_id, Rupture.gastype_id))}
    references = _drop_references(session, now)
    areas = _Areas(session, fresh_since, out)
    findings = []
    for rule_id, user_id, kind, fuel, station, threshold, place, lat, lon, radius, price, updated_at in rows:
        usable = price is not None and updated_at >= fresh_since and (station, fuel) not in out
        if kind == PRICE_BELOW:
            findings.append(
                Finding(rule_id, user_id, kind, usable and price <= threshold, fuel, station, price, threshold)
            )
        elif kind == DROP:
            reference = references.get((station, fuel)) if usable and updated_at >= now - DROP_WINDOW else None
            active = reference is not None and reference - price >= threshold
            findings.append(Finding(rule_id, user_id, kind, active, fuel, station, price, threshold, reference))
        elif kind == RUPTURE:
            findings.append(Finding(rule_id, user_id, kind, (station, fuel) in out, fuel, station, price, threshold))
        elif kind == AREA_BELOW:
            best = areas.cheapest(fuel, lat, lon, radius)
            cheapest, distance, found = best if best else (None, None, None)
            active = found is not None and found < threshold
            findings.append(
                Finding(rule_id, user_id, kind, active, fuel, cheapest, found, threshold, None, distance, place, radius)
            )
        elif kind == DIGEST:
            findings.append(Finding(rule_id, user_id, kind, True, None, None, None, None))
    return findings


def changes(session: Session, findings: list[Finding], now: dt.datetime) -> list[Fired]:
    """The findings to tell people about, with each alert's state brought up to date.

    A price alert fires when it becomes true; a rupture alert when the fuel runs out and when it is back; the
    weekly summary when the last one is a week old. No state means false (a new alert, or one resumed).
    """
    states = dict(
        (rule_id, (active, changed_at))
        for rule_id, active, changed_at in session.execute(
            select(AlertState.rule_id, AlertState.active, AlertState.changed_at)
        )
    )
    fired, new, changed = [], [], []
    for finding in findings:
        active, changed_at = states.get(finding.rule_id, (False, None))
        if finding.kind == DIGEST:
            if changed_at is not None and changed_at > now - DIGEST_EVERY:
                continue
        elif finding.active == active:
            continue
        if finding.active or finding.kind == RUPTURE:
            fired.append(Fired(finding, back=finding.kind == RUPTURE and not finding.active))
        row = {"rule": finding.rule_id, "user": finding.user_id, "on": finding.active}
        (new if changed_at is None else changed).append(row)
    if new:
        session.execute(
            insert(AlertState),
            [{"rule_id": r["rule"], "user_id": r["user"], "active": r["on"], "changed_at": now} for r in new],
        )
    if changed:
        states = AlertState.__table__  # Core's executemany: one statement, many rows
        session.execute(
            update(states).where(states.c.rule_id == bindparam("rule")).values(active=bindparam("on"), changed_at=now),
            [{"rule": r["rule"], "on": r["on"]} for r in changed],
        )
    return fired


def _drop_references(session: Session, now: dt.datetime) -> dict[tuple[int, int], Decimal]:
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
    rows = session.execute(select(drops.c.station_id, drops.c.gastype_id, drops.c.updated_at)).all()
    references: dict[tuple[int, int], Decimal] = {}
    if not rows:
        return references
    history = session.execute(
        select(PriceHistory.station_id, PriceHistory.gastype_id, PriceHistory.updated_at, PriceHistory.price)
        .join(drops, pair)
        .where(PriceHistory.updated_at >= since - DROP_WINDOW)
    )
    changed_at = {(station, fuel): updated for station, fuel, updated in rows}
    recent: dict[tuple[int, int], list[tuple[dt.datetime, Decimal]]] = defaultdict(list)
    for station, fuel, updated, price in history:
        recent[(station, fuel)].append((updated, price))
    before = _prices_before(session, drops, since - DROP_WINDOW)
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


def _prices_before(session: Session, drops, moment: dt.datetime) -> dict[tuple[int, int], Decimal]:
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
    rows = session.execute(select(drops.c.station_id, drops.c.gastype_id, newest))
    return {(station, fuel): price for station, fuel, price in rows if price is not None}


class _Areas:
    """The stations selling each fuel, sorted by latitude, to find the cheapest around a place in memory."""

    def __init__(self, session: Session, fresh_since: dt.datetime, out: set) -> None:
        self._session, self._fresh_since, self._out = session, fresh_since, out
        self._by_fuel: dict[int, tuple[list[float], list[tuple[float, float, Decimal, int]]]] = {}
        self._answers: dict[tuple, tuple[int, float, Decimal] | None] = {}

    def cheapest(self, fuel: int, lat: float, lon: float, radius: float) -> tuple[int, float, Decimal] | None:
        """(station, km, price) of the cheapest station within `radius` km, the nearest of equals; None if none."""
        key = (fuel, lat, lon, radius)
        if key not in self._answers:
            self._answers[key] = self._search(fuel, lat, lon, radius)
        return self._answers[key]

    def _search(self, fuel: int, lat: float, lon: float, radius: float) -> tuple[int, float, Decimal] | None:
        latitudes, stations = self._stations(fuel)
        south, west, north, east = bounding_box(lat, lon, radius)
        best = None
        for index in range(bisect.bisect_left(latitudes, south), bisect.bisect_right(latitudes, north)):
            s_lat, s_lon, price, station = stations[index]
            if not west <= s_lon <= east or (best is not None and price > best[2]):
                continue
            distance = haversine_km(lat, lon, s_lat, s_lon)
            if distance <= radius and (best is None or (price, distance) < (best[2], best[1])):
                best = (station, distance, price)
        return best

    def _stations(self, fuel: int):
        if fuel not in self._by_fuel:
            rows = self._session.execute(
                select(Station.latitude, Station.longitude, Price.price, Station.id)
                .join(Price, Price.station_id == Station.id)
                .where(
                    Price.gastype_id == fuel,
                    Price.updated_at >= self._fresh_since,
                    Station.latitude.is_not(None),
                    Station.longitude.is_not(None),
                )
            )
            stations = sorted(tuple(row) for row in rows if (row[3], fuel) not in self._out)
            self._by_fuel[fuel] = ([row[0] for row in stations], stations)
        return self._by_fuel[fuel]
