"""The daily aggregates: each day's median, mean, lowest and highest price of each fuel, in France and per department.

A day's price at a station is the price in force at the end of that day (Paris time): the last price
observed for that station and fuel at or before the midnight that closes the day (for today, the latest
one so far). It is carried forward from earlier days, so a station whose price did not change still
counts, for at most CARRY_DAYS: a station that stops declaring a fuel (closed, or no longer selling it)
drops out a month later instead of weighing on the figures for ever. A station counts in France
('FR') and in the department of its postcode ('69', '2A', '974'); one without a readable postcode, in
France only.

A past day costs one look-up per station and fuel in the history's key (the newest observation before
the day's end), never a scan of the history; the day under way reads the current prices instead (so a
fuel a station no longer lists drops out of it at once). After a run, `refresh_after_run` recomputes
only the days its new observations fall in, usually today alone (a declaration reaching the feed after
a newer one was counted, and dated on an earlier day, is carried into the days after it but its own day
is not recomputed); after a backfill, `backfill_days` names the days its file covers (see Span.covered)
and the month after them that its prices are carried into.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import Connection, Engine, Integer, delete, func, select, true, type_coerce

from ingest import progress
from ingest.records import StationEntry
from models import DailyAggregate, GasType, Price, PriceHistory, Station
from session import writer
from utils import PARIS, department_of_postcode, utcnow

CARRY_DAYS = 30
NATIONAL = "FR"
COVERED_SHARE = 0.05
DAYS_AT_ONCE = 7  # a backfill's aggregates commit a week at a time: no run waits long for the write lock


def paris_day(moment: dt.datetime) -> dt.date:
    return moment.astimezone(PARIS).date()


def day_end(day: dt.date) -> dt.datetime:
    """The midnight (Paris) that closes `day`."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), PARIS)


def refresh_after_run(conn: Connection, now: dt.datetime) -> list[dt.date]:
    """Recompute the days holding observations newer than those counted so far; return them.

    The first time, only the day of the newest observation: earlier days come with a backfill.
    """
    newest = conn.scalar(select(func.max(Price.updated_at)))
    if newest is None:
        return []
    counted = conn.scalar(select(func.max(DailyAggregate.through)).where(DailyAggregate.scope == NATIONAL))
    if counted is None:
        first = paris_day(newest)
    else:
        fresh = conn.scalar(select(func.min(Price.updated_at)).where(Price.updated_at > counted))
        if fresh is None:
            return []
        first = paris_day(fresh)
    days = day_range(first, min(paris_day(newest), paris_day(now)))
    refresh_days(conn, days, min(newest, now))
    return days


def backfill_days(conn: Connection, covered: set[dt.date], now: dt.datetime) -> tuple[list[dt.date], dt.datetime]:
    """The days a backfilled file changes: the days it covers and the month they are carried into, up to the
    newest day already computed (or the file's last); and the moment up to which every observation is known."""
    known = conn.scalar(select(func.max(DailyAggregate.day)).where(DailyAggregate.scope == NATIONAL))
    horizon = min(max(max(covered), known or max(covered)), paris_day(now))
    days = {day for first in covered for day in day_range(first, min(first + dt.timedelta(days=CARRY_DAYS), horizon))}
    newest = conn.scalar(select(func.max(Price.updated_at))) or now
    return sorted(days), min(newest, now)


def day_range(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def refresh_days(conn: Connection, days: list[dt.date], through: dt.datetime) -> None:
    """Replace the aggregates of `days`, computed from every observation up to `through`."""
    for day in days:
        rows = day_aggregates(conn, day, min(through, day_end(day)))
        conn.execute(delete(DailyAggregate).where(DailyAggregate.day == day))
        if rows:
            conn.execute(DailyAggregate.__table__.insert(), rows)


def day_aggregates(conn: Connection, day: dt.date, through: dt.datetime) -> list[dict]:
    """The rows of `day`: per scope and fuel, the figures over each station's price in force at the day's end.

    For the day `through` falls in, not over yet, that price is the current one (the newest observation of
    each station and fuel), read from the prices table rather than looked up in the history.
    """
    end = day_end(day)
    carried_from = end - dt.timedelta(days=CARRY_DAYS)
    if paris_day(through) == day:
        statement = (
            select(Station.zip_code, Price.gastype_id, type_coerce(Price.price, Integer))
            .join(Price, Price.station_id == Station.id)
            .where(Price.updated_at >= carried_from)
        )
    else:
        history = PriceHistory
        in_force = (
            select(type_coerce(history.price, Integer))
            .where(
                history.station_id == Station.id,
                history.gastype_id == GasType.id,
                history.updated_at < end,
                history.updated_at >= carried_from,
            )
            .order_by(history.updated_at.desc())
            .limit(1)
            .correlate(Station, GasType)
            .scalar_subquery()
        )
        statement = select(Station.zip_code, GasType.id, in_force).select_from(Station).join(GasType, true())
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    department = functools.cache(department_of_postcode)  # a postcode comes once for each fuel of each station there
    for zip_code, fuel_id, milli in conn.execute(statement).all():
        if milli is None:
            continue
        groups[(NATIONAL, fuel_id)].append(milli)
        if (scope := department(zip_code)) is not None:
            groups[(scope, fuel_id)].append(milli)
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


@dataclass
class Span:
    """How many observations of a backfilled file fall in each day (Paris time)."""

    per_day: Counter = field(default_factory=Counter)

    def add(self, entry: StationEntry) -> None:
        self.per_day.update(paris_day(maj) for *_, maj in entry.prices)

    def covered(self, stations: int) -> set[dt.date]:
        """The days the file is about: those holding a price declared by at least COVERED_SHARE of its stations.

        A daily file also carries the prices a station has not changed for months or years: those go into
        the history and count in the days they are carried into, but no day is computed for them alone.
        """
        return {day for day, count in self.per_day.items() if count >= COVERED_SHARE * stations}


def refresh_backfilled(engine: Engine, span: Span, stations: int, tracker: progress.Tracker) -> None:
    """Recompute the aggregates of the days a backfilled file changes, a week per transaction."""
    covered = span.covered(stations)
    if not covered:
        return
    with engine.connect() as conn:
        days, through = backfill_days(conn, covered, utcnow())
    for start in range(0, len(days), DAYS_AT_ONCE):
        with writer(engine).begin() as conn:
            refresh_days(conn, days[start : start + DAYS_AT_ONCE], through)
            tracker.step(conn, progress.AGGREGATES, min(start + DAYS_AT_ONCE, len(days)), len(days))
