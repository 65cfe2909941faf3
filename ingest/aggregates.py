"""The daily aggregates: each day's median, mean, lowest and highest price of each fuel, in France and per department.

A day's price at a station is the price in force at the end of that day (Paris time): the last price
observed for that station and fuel at or before the midnight that closes the day (for today, the latest
one so far). It is carried forward from earlier days, so a station whose price did not change still
counts, for at most CARRY_DAYS: a station that stops declaring a fuel (closed, or no longer selling it)
drops out a month later instead of weighing on the figures for ever. A station counts in France
('FR') and in the department of its postcode ('69', '2A', '974'); one without a readable postcode, in
France only.

A day costs one look-up per station and fuel in the history's key (the newest observation before the
day's end), never a scan of the history. After a run, `refresh_after_run` recomputes only the days its
new observations fall in; after a backfill, `refresh_after_backfill` recomputes the days of its file and
the month after them that its prices are carried into.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal

from sqlalchemy import Connection, Integer, delete, func, select, true, type_coerce

from models import DailyAggregate, GasType, Price, PriceHistory, Station
from utils import PARIS, department_of_postcode

CARRY_DAYS = 30
NATIONAL = "FR"
# A declaration reaching the feed up to this late still counts in its day: the day it fell in is recomputed.
LATE_MARGIN = dt.timedelta(hours=6)


def paris_day(moment: dt.datetime) -> dt.date:
    return moment.astimezone(PARIS).date()


def day_end(day: dt.date) -> dt.datetime:
    """The midnight (Paris) that closes `day`."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), PARIS)


def refresh_after_run(conn: Connection, now: dt.datetime) -> list[dt.date]:
    """Recompute the days holding observations newer than those counted so far; return them.

    The first time, the month before the newest observation is computed.
    """
    newest = conn.scalar(select(func.max(Price.updated_at)))
    if newest is None:
        return []
    counted = conn.scalar(select(func.max(DailyAggregate.through)).where(DailyAggregate.scope == NATIONAL))
    if counted is None:
        first = paris_day(newest) - dt.timedelta(days=CARRY_DAYS)
    else:
        fresh = conn.scalar(select(func.min(Price.updated_at)).where(Price.updated_at > counted))
        if fresh is None:
            return []
        first = min(paris_day(fresh), paris_day(counted - LATE_MARGIN))
    last = min(paris_day(newest), paris_day(now))
    return refresh_days(conn, first, last, min(newest, now))


def refresh_after_backfill(
    conn: Connection,
    first_seen: dt.datetime,
    last_seen: dt.datetime,
    now: dt.datetime,
    progress: Callable | None = None,
) -> list[dt.date]:
    """Recompute the days of a backfilled file's observations and the month they are carried into, up to the newest
    day already computed (or the file's last day); return them."""
    known = conn.scalar(select(func.max(DailyAggregate.day)).where(DailyAggregate.scope == NATIONAL))
    last = paris_day(last_seen)
    if known is not None:
        last = max(last, min(known, last + dt.timedelta(days=CARRY_DAYS)))
    newest = conn.scalar(select(func.max(Price.updated_at))) or last_seen
    return refresh_days(conn, paris_day(first_seen), min(last, paris_day(now)), min(newest, now), progress)


def refresh_days(
    conn: Connection, first: dt.date, last: dt.date, through: dt.datetime, progress: Callable | None = None
) -> list[dt.date]:
    """Replace the aggregates of the days from `first` to `last`, computed from every observation up to `through`."""
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    for day in days:
        rows = day_aggregates(conn, day, min(through, day_end(day)))
        conn.execute(delete(DailyAggregate).where(DailyAggregate.day == day))
        if rows:
            conn.execute(DailyAggregate.__table__.insert(), rows)
        if progress is not None:
            progress(1)
    return days


def day_aggregates(conn: Connection, day: dt.date, through: dt.datetime) -> list[dict]:
    """The rows of `day`: per scope and fuel, the figures over each station's price in force at the day's end."""
    end = day_end(day)
    history = PriceHistory
    in_force = (
        select(type_coerce(history.price, Integer))
        .where(
            history.station_id == Station.id,
            history.gastype_id == GasType.id,
            history.updated_at < end,
            history.updated_at >= end - dt.timedelta(days=CARRY_DAYS),
        )
        .order_by(history.updated_at.desc())
        .limit(1)
        .correlate(Station, GasType)
        .scalar_subquery()
    )
    statement = select(Station.zip_code, GasType.id, in_force).select_from(Station).join(GasType, true())
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for zip_code, fuel_id, milli in conn.execute(statement):
        if milli is None:
            continue
        groups[(NATIONAL, fuel_id)].append(milli)
        if (department := department_of_postcode(zip_code)) is not None:
            groups[(department, fuel_id)].append(milli)
    return [_figures(day, scope, fuel_id, prices, through) for (scope, fuel_id), prices in sorted(groups.items())]


def _figures(day: dt.date, scope: str, fuel_id: int, prices: list[int], through: dt.datetime) -> dict:
    return {
        "day": day,
        "scope": scope,
        "gastype_id": fuel_id,
        "median": statistics.median(prices) / 1000,
        "mean": math.fsum(prices) / len(prices) / 1000,
        "lowest": Decimal(min(prices)).scaleb(-3),
        "highest": Decimal(max(prices)).scaleb(-3),
        "stations": len(prices),
        "through": through,
    }
