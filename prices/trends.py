"""How each price of a board moved and where it stands: its change over 7 days, its last 30 days, and its
rank among the stations around; and the day-by-day prices of a few stations over up to a year, for charts.

Three statements whatever the size of the history: one reads the observations of the board's
(station, fuel) pairs within the window, one each pair's last observation before it (the price in
force when the window opened); one reads the current prices around the board's stations.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import and_, false, or_, select, true
from sqlalchemy.orm import Session

from models import GasType, Price, PriceHistory, Rupture, Station
from prices.queries import BoardRow
from utils import PARIS, bounding_box, haversine_km

CHANGE_DAYS = 7
CHART_DAYS = 30
NEARBY_KM = 10.0

Pair = tuple[int, int]  # (station id, fuel id)


class Trend(NamedTuple):
    change: Decimal | None  # euros per litre since 7 days ago; None without a price then and now
    days: list[float | None]  # the price in force at the end of each of the last 30 days (Paris time), oldest first
    rank: int | None  # 1: the cheapest current price within 10 km for this fuel; None when this one has none
    among: int  # how many stations within 10 km (this one included) sell this fuel at a current price


def board_trends(
    session: Session, rows: Sequence[BoardRow], now: dt.datetime, stale_after: dt.timedelta
) -> dict[Pair, Trend]:
    """The trend of each (station, fuel) pair of the board; prices older than `stale_after` rank nowhere."""
    pairs = sorted({(row.station_id, row.fuel_id) for row in rows})
    if not pairs:
        return {}
    observed = _observations(session, pairs, now - dt.timedelta(days=CHART_DAYS))
    nearby = _prices_around(session, {row.station_id for row in rows}, {row.fuel_id for row in rows}, now - stale_after)
    day_ends = _day_ends(now, CHART_DAYS)
    trends = {}
    for row in rows:
        seen = observed.get((row.station_id, row.fuel_id), [])
        [then] = _in_force(seen, [now - dt.timedelta(days=CHANGE_DAYS)])
        change = row.price - then if row.price is not None and then is not None else None
        days = [_as_float(price) for price in _in_force(seen, day_ends)]
        trends[(row.station_id, row.fuel_id)] = Trend(change, days, *_rank(row, nearby))
    return trends


def daily_prices(
    session: Session, pairs: Sequence[Pair], days: int, now: dt.datetime
) -> dict[Pair, list[tuple[dt.date, float | None]]]:
    """For each pair, (day, the price in force at its end) over the last `days` days (Paris time), oldest first;
    today's is the price now. None before the first price observed."""
    if not pairs:
        return {}
    observed = _observations(session, sorted(set(pairs)), now - dt.timedelta(days=days))
    ends = _day_ends(now, days)
    labels = [(end - dt.timedelta(microseconds=1)).astimezone(PARIS).date() for end in ends]
    return {
        pair: [
            (day, _as_float(price)) for day, price in zip(labels, _in_force(observed.get(pair, []), ends), strict=True)
        ]
        for pair in pairs
    }


def _observations(session: Session, pairs: list[Pair], start: dt.datetime) -> dict[Pair, list[tuple]]:
    """(time, price) of each pair within the window, after the price in force when it opened (given the window's
    start as its time), oldest first.

    Both statements reach the history by its key, pair by pair: one range from `start`, and one look-up of
    the newest observation before it.
    """
    history = PriceHistory
    stations, fuels = {station for station, _ in pairs}, {fuel for _, fuel in pairs}
    wanted = set(pairs)
    observed: dict[Pair, list[tuple]] = defaultdict(list)
    before = (
        select(history.price)
        .where(history.station_id == Station.id, history.gastype_id == GasType.id, history.updated_at < start)
        .order_by(history.updated_at.desc())
        .limit(1)
        .correlate(Station, GasType)
        .scalar_subquery()
    )
    opening = (
        select(Station.id, GasType.id, before)
        .select_from(Station)
        .join(GasType, true())
        .where(Station.id.in_(stations), GasType.id.in_(fuels))
    )
    for station_id, fuel_id, price in session.execute(opening):
        if price is not None and (station_id, fuel_id) in wanted:
            observed[(station_id, fuel_id)].append((start, price))
    window = select(history.station_id, history.gastype_id, history.updated_at, history.price).where(
        history.station_id.in_(stations), history.gastype_id.in_(fuels), history.updated_at >= start
    )
    for station_id, fuel_id, at, price in session.execute(window.order_by(history.updated_at)):
        if (station_id, fuel_id) in wanted:
            observed[(station_id, fuel_id)].append((at, price))
    return observed


def _prices_around(
    session: Session, station_ids: set[int], fuel_ids: set[int], fresh_since: dt.datetime
) -> list[tuple[int, float, float, int, Decimal]]:
    """(station, latitude, longitude, fuel, price) of every current, buyable price near the board's stations."""
    centres = session.execute(
        select(Station.latitude, Station.longitude).where(Station.id.in_(station_ids), Station.latitude.is_not(None))
    ).all()
    boxes = [bounding_box(latitude, longitude, NEARBY_KM) for latitude, longitude in centres]
    near = or_(
        false(),
        *(and_(Station.latitude.between(s, n), Station.longitude.between(w, e)) for s, w, n, e in boxes),
    )
    statement = (
        select(Station.id, Station.latitude, Station.longitude, Price.gastype_id, Price.price)
        .join(Price, Price.station_id == Station.id)
        .outerjoin(Rupture, and_(Rupture.station_id == Price.station_id, Rupture.gastype_id == Price.gastype_id))
        .where(near, Price.gastype_id.in_(fuel_ids), Price.updated_at >= fresh_since, Rupture.station_id.is_(None))
    )
    return list(session.execute(statement))


def _rank(row: BoardRow, nearby: list[tuple]) -> tuple[int | None, int]:
    here = next(((lat, lon) for station_id, lat, lon, _, _ in nearby if station_id == row.station_id), None)
    if here is None:  # no coordinates, or no current price for any fuel here
        return None, 0
    prices = [
        price
        for _, lat, lon, fuel_id, price in nearby
        if fuel_id == row.fuel_id and haversine_km(*here, lat, lon) <= NEARBY_KM
    ]
    own = next(
        (
            price
            for station_id, _, _, fuel_id, price in nearby
            if (station_id, fuel_id) == (row.station_id, row.fuel_id)
        ),
        None,
    )
    if own is None:
        return None, len(prices)
    return 1 + sum(price < own for price in prices), len(prices)


def _day_ends(now: dt.datetime, days: int) -> list[dt.datetime]:
    """The end of each of the last `days` days in Paris, today's being now."""
    today = now.astimezone(PARIS).date()
    ends = [
        dt.datetime.combine(today - dt.timedelta(days=back - 1), dt.time(), PARIS) for back in range(days - 1, 0, -1)
    ]
    return [*ends, now]


def _in_force(seen: list[tuple], moments: list[dt.datetime]) -> list[Decimal | None]:
    """The price last observed at or before each of `moments` (in time order), in one sweep of `seen`."""
    prices, price, index = [], None, 0
    for moment in moments:
        while index < len(seen) and seen[index][0] <= moment:
            price = seen[index][1]
            index += 1
        prices.append(price)
    return prices


def _as_float(price: Decimal | None) -> float | None:
    return float(price) if price is not None else None
