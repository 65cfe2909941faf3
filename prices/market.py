"""The market around a person's stations: France's and their departments' daily figures per fuel (read from
the daily aggregates, never from the history), and the weekday that is cheapest, when the history shows one.

The cheapest weekday is found by a per-station paired comparison over whole weeks (Monday to Sunday,
every day priced): each day's price minus that station's average of the week, averaged over the
stations, then per weekday over the weeks. The weekday lowest on average is stated only when an exact
sign-flip test over the weeks gives it below the other days of the same week with p < 0.05, after
multiplying p by 7 for having picked the lowest of seven days (Bonferroni), and by at least a tenth of a
cent.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import DailyAggregate, Station
from utils import department_of_postcode

NATIONAL = "FR"  # the scope of the whole country in daily_aggregates
MIN_WEEKS = 8  # below, even a weekday cheaper every week could not pass the test (2**-7 * 7 > 0.05)
MAX_WEEKS = 13  # about 90 days; the exact test enumerates 2**weeks sign flips
SIGNIFICANCE = 0.05
MIN_CENTS = 0.1


class MarketDay(NamedTuple):
    scope: str  # 'FR' or a department
    fuel_id: int
    day: dt.date
    median: float
    mean: float
    stations: int


class CheapestWeekday(NamedTuple):
    weekday: int  # 0 Monday ... 6 Sunday
    cents: float  # how much cheaper than the other days of the same week, on average
    weeks: int
    p_value: float  # after the correction for picking the lowest of seven days


def departments_of(session: Session, station_ids: Iterable[int]) -> list[str]:
    """The departments of these stations, from their postcodes, in order."""
    codes = session.scalars(select(Station.zip_code).where(Station.id.in_(set(station_ids))))
    return sorted({department for code in codes if (department := department_of_postcode(code)) is not None})


def market_days(
    session: Session, scopes: Sequence[str], fuel_ids: Sequence[int], first: dt.date, last: dt.date
) -> list[MarketDay]:
    """The daily figures of these scopes and fuels from `first` to `last`, oldest first."""
    a = DailyAggregate
    statement = (
        select(a.scope, a.gastype_id, a.day, a.median, a.mean, a.stations)
        .where(a.scope.in_(scopes), a.gastype_id.in_(fuel_ids), a.day.between(first, last))
        .order_by(a.day)
    )
    return [MarketDay(*row) for row in session.execute(statement)]


def cheapest_weekday(series: Iterable[Sequence[tuple[dt.date, float | None]]]) -> CheapestWeekday | None:
    """The weekday cheapest at these stations' daily prices (one series per station), or None when the
    history does not show one (see the module's docstring for the method)."""
    deviations: dict[dt.date, list[list[float]]] = defaultdict(lambda: [[] for _ in range(7)])
    for days in series:
        weeks: dict[dt.date, list[float]] = defaultdict(list)
        for day, price in days:
            if price is not None:
                weeks[day - dt.timedelta(days=day.weekday())].append(price)
        for monday, prices in weeks.items():
            if len(prices) == 7:  # whole weeks only: each weekday compared within the same week
                average = sum(prices) / 7
                for weekday, price in enumerate(prices):
                    deviations[monday][weekday].append(price - average)
    recent = sorted(deviations)[-MAX_WEEKS:]
    weeks = [[sum(values) / len(values) for values in deviations[monday]] for monday in recent]
    if len(weeks) < MIN_WEEKS:
        return None
    means = [sum(week[day] for week in weeks) / len(weeks) for day in range(7)]
    best = min(range(7), key=means.__getitem__)
    gaps = [week[best] - (sum(week) - week[best]) / 6 for week in weeks]
    p_value = min(1.0, 7 * _sign_flip_p(gaps))
    cents = -sum(gaps) / len(gaps) * 100
    if p_value >= SIGNIFICANCE or cents < MIN_CENTS:
        return None
    return CheapestWeekday(best, cents, len(weeks), p_value)


def _sign_flip_p(gaps: list[float]) -> float:
    """One-sided exact p-value of a mean below zero: the share of the 2**n sign flips whose sum is as low."""
    observed = sum(gaps)
    magnitudes = [abs(gap) for gap in gaps]
    as_low = sum(
        sum(sign * size for sign, size in zip(signs, magnitudes, strict=True)) <= observed + 1e-12
        for signs in itertools.product((1, -1), repeat=len(gaps))
    )
    return as_low / 2 ** len(gaps)
