"""The price-history charts: a period picker, a station's or several stations' daily prices, France's and
departments' daily median and average, and the sentence about the cheapest weekday.

Every sentence shown is in TEXT, whole, with named placeholders, marked for the catalogs and translated where it
is shown (`say(key)`). The charts write numbers, months and days in the session's language (i18n's chart
conventions), and their tooltips say each day and price as the rest of the app does.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal

import altair as alt
import pandas as pd
import streamlit as st

import i18n
from i18n import N_, _, price, weekday_in_sentence
from prices.market import NATIONAL, CheapestWeekday, MarketDay
from ui import widgets

PERIODS = (7, 30, 90, 365)
PRICE_STEPS_CENTS = (1, 2, 5, 10, 20, 50, 100)  # the steps between a price axis's labels, at two decimals
PRICE_PAD = 0.002  # €/L kept between a line and its chart's edge
MAX_PRICE_STEPS = 6  # between the labels of the price axis
MAX_DAY_LABELS = 6  # room for them at 390 px
LEGEND_ROW_PX = 30
TEXT = {
    "period": N_("Period"),
    "days": N_("{days} days"),
    "day": N_("Day"),
    "price": N_("€/L"),
    "line": N_("Line"),
    "no_history": N_(
        "No price history yet. Each price update adds to it: charts fill in over the coming days. "
        "An administrator can also load past years with “python etl.py backfill --year 2025”."
    ),
    "no_station_history": N_("No price of this fuel over the last 30 days."),
    "last_30_days": N_("Prices over the last 30 days:"),
    "no_market": N_("No daily figures for France or your departments over this period yet."),
    "mine": N_("My stations"),
    "market": N_("France and my departments"),
    "national_median": N_("France, median"),
    "national_mean": N_("France, average"),
    "department_median": N_("Department {department}, median"),
    "department_mean": N_("Department {department}, average"),
    "weekday": N_(
        "Over the last 90 days, {weekday} was the cheapest day at your stations: {cents} a litre below the other "
        "days of the same week on average, over {weeks} weeks."
    ),
    "no_weekday": N_(
        "Over the last 90 days, no day of the week was reliably cheaper than the others at your stations."
    ),
    "weekday_method": N_(
        "How this is worked out: for each station and whole week, each day's price is compared with that "
        "station's average of the week; a day is named only if it was lower than the rest of its week often and "
        "clearly enough that chance would explain it less than once in 20 times (an exact sign-flip test over the "
        "weeks, allowing for having picked the lowest of seven days)."
    ),
    "market_method": N_(
        "Each day's figure counts every station's price in force at the end of the day (its latest price, for up "
        "to 30 days), in France and in the department of each of your stations."
    ),
}


def say(key: str) -> str:
    """The sentence TEXT[key] in the session's language."""
    return _(TEXT[key])


def period_picker(key: str, default: int = 30) -> int:
    days_template = say("days")  # translated now, in this run's language
    picked = st.segmented_control(
        say("period"),
        PERIODS,
        default=default,
        format_func=lambda days: days_template.format(days=days),
        key=key,
    )
    return picked or default


def price_chart(
    series: Mapping[str, Sequence[tuple[dt.date, float | None]]], height: int = 320, empty: str = "no_history"
) -> None:
    """One line per name: its price each day. Days without a price are left out; without any, `empty` (a key
    of TEXT) is said."""
    frame = pd.DataFrame(
        [(name, day, price) for name, days in series.items() for day, price in days if price is not None],
        columns=["line", "day", "price"],
    )
    if frame.empty:
        widgets.info(say(empty))
        return
    _line_chart(frame, height)


def market_chart(rows: Sequence[MarketDay], height: int = 320) -> None:
    """The median and average of each scope, one line each."""
    frame = pd.DataFrame(
        [(_scope_line(row.scope, "median"), row.day, row.median) for row in rows]
        + [(_scope_line(row.scope, "mean"), row.day, row.mean) for row in rows],
        columns=["line", "day", "price"],
    )
    if frame.empty:
        widgets.caption(say("no_market"))
        return
    _line_chart(frame, height)


def weekday_sentence(finding: CheapestWeekday | None) -> None:
    if finding is None:
        widgets.caption(say("no_weekday"))
    else:
        sentence = say("weekday").format(
            weekday=weekday_in_sentence(finding.weekday),
            cents=i18n.cents(round(finding.cents, 1), signed=False),
            weeks=i18n.number(finding.weeks),
        )
        widgets.markdown(sentence)


def methods() -> None:
    """How the market's figures and the cheapest weekday are worked out, said once under the charts."""
    widgets.caption(say("market_method"))
    widgets.caption(say("weekday_method"))


def _scope_line(scope: str, figure: str) -> str:
    if scope == NATIONAL:
        return say(f"national_{figure}")
    return say(f"department_{figure}").format(department=scope)


def price_ticks(low: float, high: float) -> list[float]:
    """The price axis's labels, its first and last its ends: round prices a little beyond `low` and `high`, a
    cent or a coarser step apart, so that no two read alike at two decimals and a flat line has two around it."""
    low_cents, high_cents = (low - PRICE_PAD) * 100, (high + PRICE_PAD) * 100
    for step in PRICE_STEPS_CENTS:
        first, last = math.floor(low_cents / step), math.ceil(high_cents / step)
        if last - first <= MAX_PRICE_STEPS:
            break
    return [round((first + n) * step / 100, 2) for n in range(last - first + 1)]


def day_ticks(first: dt.date, last: dt.date) -> list[dt.date]:
    """The day axis's labels: one per day at most, up to the last day; over two months, the first of months."""
    span = (last - first).days
    if span <= 60:
        step = max(1, math.ceil(span / (MAX_DAY_LABELS - 1)))
        return [last - dt.timedelta(days=n * step) for n in range(span // step, -1, -1)]
    months = [dt.date(year, month, 1) for year in range(first.year, last.year + 1) for month in range(1, 13)]
    months = [day for day in months if first <= day <= last]
    return months[:: math.ceil(len(months) / MAX_DAY_LABELS)]


def _line_chart(frame: pd.DataFrame, height: int) -> None:
    prices = price_ticks(frame["price"].min(), frame["price"].max())
    days = [alt.DateTime(year=day.year, month=day.month, date=day.day) for day in day_ticks(*_day_range(frame))]
    lines = frame["line"].nunique()
    legend = alt.Legend(orient="bottom", columns=1, labelLimit=300) if lines > 1 else None  # one column fits 390 px
    height += LEGEND_ROW_PX * lines if legend else 0  # the legend's rows come out of the chart's height
    frame = frame.assign(shown=[price(Decimal(str(value))) for value in frame["price"]])
    chart = (
        alt.Chart(frame)
        .mark_line(point=len(frame["day"].unique()) <= 31, interpolate="step-after")
        .encode(
            x=alt.X("day:T", title=say("day"), axis=alt.Axis(format="%d %b", values=days)),
            y=alt.Y(
                "price:Q",
                title=say("price"),
                scale=alt.Scale(domain=[prices[0], prices[-1]]),
                axis=alt.Axis(format=".2f", values=prices),
            ),
            color=alt.Color("line:N", title=None, legend=legend),
            tooltip=[
                alt.Tooltip("line:N", title=say("line")),
                alt.Tooltip("day:T", title=say("day"), format="%d/%m/%Y"),
                alt.Tooltip("shown:N", title=_("Price")),
            ],
        )
        .properties(height=height)
        .configure(locale=i18n.chart_conventions())
    )
    st.altair_chart(chart, width="stretch")


def _day_range(frame: pd.DataFrame) -> tuple[dt.date, dt.date]:
    return frame["day"].min(), frame["day"].max()
