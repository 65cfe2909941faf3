"""The price-history charts: a period picker, a station's or several stations' daily prices, France's and
departments' daily median and average, and the sentence about the cheapest weekday.

Every sentence shown is in TEXT, whole, with named placeholders, so that it can be translated as one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import altair as alt
import pandas as pd
import streamlit as st

from i18n import weekday_in_sentence
from prices.market import NATIONAL, CheapestWeekday, MarketDay
from ui import widgets

PERIODS = (7, 30, 90, 365)
TEXT = {
    "period": "Period",
    "days": "{days} days",
    "day": "Day",
    "price": "€/L",
    "line": "Line",
    "no_history": (
        "No price history yet. Each price update adds to it: charts fill in over the coming days. "
        "An administrator can also load past years with “python etl.py backfill --year 2025”."
    ),
    "no_station_history": "No price of this fuel over the last 30 days.",
    "last_30_days": "Prices over the last 30 days:",
    "no_market": "No daily figures for France or your departments over this period yet.",
    "mine": "My stations",
    "market": "France and my departments",
    "national_median": "France, median",
    "national_mean": "France, average",
    "department_median": "Department {department}, median",
    "department_mean": "Department {department}, average",
    "weekday": (
        "Over the last 90 days, {weekday} was the cheapest day at your stations: {cents:.1f} cts/L below the other "
        "days of the same week on average, over {weeks} weeks."
    ),
    "no_weekday": "Over the last 90 days, no day of the week was reliably cheaper than the others at your stations.",
    "weekday_method": (
        "How this is worked out: for each station and whole week, each day's price is compared with that "
        "station's average of the week; a day is named only if it was lower than the rest of its week often and "
        "clearly enough that chance would explain it less than once in 20 times (an exact sign-flip test over the "
        "weeks, allowing for having picked the lowest of seven days)."
    ),
    "market_method": (
        "Each day's figure counts every station's price in force at the end of the day (its latest price, for up "
        "to 30 days), in France and in the department of each of your stations."
    ),
}


def period_picker(key: str, default: int = 30) -> int:
    picked = st.segmented_control(
        TEXT["period"],
        PERIODS,
        default=default,
        format_func=lambda days: TEXT["days"].format(days=days),
        key=key,
    )
    return picked or default


def price_chart(
    series: Mapping[str, Sequence[tuple[dt.date, float | None]]], height: int = 320, empty: str = TEXT["no_history"]
) -> None:
    """One line per name: its price each day. Days without a price are left out; without any, `empty` is said."""
    frame = pd.DataFrame(
        [(name, day, price) for name, days in series.items() for day, price in days if price is not None],
        columns=["line", "day", "price"],
    )
    if frame.empty:
        widgets.info(empty)
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
        widgets.caption(TEXT["no_market"])
        return
    _line_chart(frame, height)


def weekday_sentence(finding: CheapestWeekday | None) -> None:
    if finding is None:
        widgets.caption(TEXT["no_weekday"])
    else:
        sentence = TEXT["weekday"].format(
            weekday=weekday_in_sentence(finding.weekday), cents=finding.cents, weeks=finding.weeks
        )
        widgets.markdown(sentence)


def methods() -> None:
    """How the market's figures and the cheapest weekday are worked out, said once under the charts."""
    widgets.caption(TEXT["market_method"])
    widgets.caption(TEXT["weekday_method"])


def _scope_line(scope: str, figure: str) -> str:
    if scope == NATIONAL:
        return TEXT[f"national_{figure}"]
    return TEXT[f"department_{figure}"].format(department=scope)


def _line_chart(frame: pd.DataFrame, height: int) -> None:
    low, high = frame["price"].min(), frame["price"].max()
    margin = max((high - low) * 0.1, 0.005)
    lines = frame["line"].nunique()
    legend = alt.Legend(orient="bottom", columns=2, labelLimit=170) if lines > 1 else None
    chart = (
        alt.Chart(frame)
        .mark_line(point=len(frame["day"].unique()) <= 31, interpolate="step-after")
        .encode(
            x=alt.X("day:T", title=TEXT["day"], axis=alt.Axis(format="%d %b")),
            y=alt.Y(
                "price:Q",
                title=TEXT["price"],
                scale=alt.Scale(domain=[low - margin, high + margin]),
                axis=alt.Axis(format=".2f", tickCount=4),
            ),
            color=alt.Color("line:N", title=None, legend=legend),
            tooltip=[
                alt.Tooltip("line:N", title=TEXT["line"]),
                alt.Tooltip("day:T", title=TEXT["day"], format="%d/%m/%Y"),
                alt.Tooltip("price:Q", title=TEXT["price"], format=".3f"),
            ],
        )
        .properties(height=height)
    )
    st.altair_chart(chart, width="stretch")
