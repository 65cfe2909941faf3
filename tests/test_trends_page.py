"""The Trends page and what it draws: a year of daily prices per station, the market's daily figures, and
the cheapest weekday, named only when the history shows one."""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import Decimal

import pytest
from sqlalchemy import select

from app_helpers import PASSWORD, add_price, add_station, new_app, open_page, sign_in
from ingest import aggregates
from models import DailyAggregate, PriceHistory
from prices import finder, market, preferences
from prices.trends import daily_prices
from ui import trends_ui
from utils import PARIS, utcnow

GAZOLE = 1
HOME, OTHER = 201, 202
MONDAY = dt.date(2026, 1, 5)


def week_days(weeks: int, price_of) -> list[tuple[dt.date, float]]:
    return [(MONDAY + dt.timedelta(days=n), price_of(n)) for n in range(7 * weeks)]


def test_a_weekday_cheaper_every_week_is_named_with_its_gap():
    # Tuesdays 2 cts below a price that otherwise drifts up by a cent a week, at two stations.
    drifting = [
        week_days(12, lambda n, base=base: base + n // 7 * 0.01 - (0.02 if n % 7 == 1 else 0)) for base in (1.8, 1.9)
    ]

    finding = market.cheapest_weekday(drifting)

    assert finding is not None
    assert (finding.weekday, finding.weeks) == (1, 12)
    assert finding.cents == pytest.approx(2.0)  # 2 cts below the other six days of its week
    assert finding.p_value < 0.05


def test_noise_names_no_weekday():
    rng = random.Random(11)
    noisy = [week_days(12, lambda _n: 1.8 + rng.uniform(-0.03, 0.03)) for _ in range(3)]

    assert market.cheapest_weekday(noisy) is None


def test_a_steady_price_or_too_few_weeks_name_no_weekday():
    assert market.cheapest_weekday([week_days(12, lambda _n: 1.8)]) is None
    assert market.cheapest_weekday([week_days(5, lambda n: 1.8 - (0.05 if n % 7 == 2 else 0))]) is None


def test_a_years_chart_holds_each_days_price_in_force(app):
    now = dt.datetime(2026, 3, 31, 10, 0, tzinfo=PARIS)
    with app.session() as session, session.begin():
        add_station(session, HOME, "1 rue du Test", "Lyon", "69001")
        for days_ago, price in [(400, "1.700"), (200, "1.800"), (3, "1.900")]:
            when = now - dt.timedelta(days=days_ago)
            session.add(PriceHistory(station_id=HOME, gastype_id=GAZOLE, updated_at=when, price=Decimal(price)))
    with app.session() as session:
        (series,) = daily_prices(session, [(HOME, GAZOLE)], 365, now).values()

    assert len(series) == 365 and series[-1] == (dt.date(2026, 3, 31), 1.9)
    assert series[0] == (dt.date(2025, 4, 1), 1.7)
    assert {price for _, price in series} == {1.7, 1.8, 1.9}
    assert dict(series)[dt.date(2025, 9, 12)] == 1.8  # 200 days before: the price of that afternoon
    assert dict(series)[dt.date(2025, 9, 11)] == 1.7


@pytest.fixture
def stations(app):
    """Home in Lyon (69), Other in Ajaccio (2A)."""
    with app.session() as session, session.begin():
        add_station(session, HOME, "1 rue du Test", "Lyon", "69001")
        add_station(session, OTHER, "2 rue du Test", "Ajaccio", "20090")
    return app


def signed_in_with(app, follow: bool = True):
    """Alice, following Home (unless not `follow`) for Gazole, on the Trends page."""
    account = app.register("alice")
    with app.session() as session, session.begin():
        if follow:
            preferences.follow_station(session, account.user_id, HOME, "Home")
        preferences.set_fuels(session, account.user_id, [GAZOLE])
    at = new_app().run()
    sign_in(at, "alice", PASSWORD)
    return open_page(at, "pages/trends.py")


def charts(at) -> int:
    return len(at.get("vega_lite_chart"))


def test_without_history_the_page_says_how_it_will_fill_in(stations):
    at = signed_in_with(stations)

    assert at.info[0].value.startswith("No price history yet.")
    assert charts(at) == 0


def test_without_a_station_the_page_says_what_to_do(stations):
    at = signed_in_with(stations, follow=False)

    assert "You don't follow any station yet" in at.info[0].value


def test_the_page_charts_my_stations_and_the_market_of_my_departments(stations):
    app, now = stations, utcnow()
    with app.session() as session, session.begin():
        for station_id, price in [(HOME, "1.800"), (OTHER, "1.950")]:
            for days_ago in (20, 5):
                when = now - dt.timedelta(days=days_ago)
                session.add(
                    PriceHistory(station_id=station_id, gastype_id=GAZOLE, updated_at=when, price=Decimal(price))
                )
            add_price(session, station_id, GAZOLE, price, now - dt.timedelta(days=5))
    with app.engine.begin() as conn:
        aggregates.refresh_after_run(conn, now)
    with app.session() as session:
        scopes = set(session.scalars(select(DailyAggregate.scope)))
    assert scopes == {"FR", "69", "2A"}

    at = signed_in_with(app)

    assert [header.value for header in at.header] == ["Gazole"]
    assert charts(at) == 2  # my stations; France and my department (69, not 2A: I follow no station there)
    assert any("no day of the week was reliably cheaper" in caption.value for caption in at.caption)


def test_the_station_detail_holds_each_fuels_last_30_days(stations):
    now = dt.datetime(2026, 3, 31, 10, 0, tzinfo=PARIS)
    with stations.session() as session, session.begin():
        for when, price in [
            (dt.datetime(2026, 3, 20, 9, tzinfo=PARIS), "1.800"),
            (now - dt.timedelta(days=2), "1.750"),
        ]:
            session.add(PriceHistory(station_id=HOME, gastype_id=GAZOLE, updated_at=when, price=Decimal(price)))
        add_price(session, HOME, GAZOLE, "1.750", now - dt.timedelta(days=2))
    with stations.session() as session:
        detail = finder.station_detail(session, HOME, now)

    (days,) = detail.days.values()
    assert list(detail.days) == ["Gazole"] and len(days) == 30
    assert days[-1] == (dt.date(2026, 3, 31), 1.75) and days[-3] == (dt.date(2026, 3, 29), 1.75)
    assert days[-4] == (dt.date(2026, 3, 28), 1.8) and days[-12] == (dt.date(2026, 3, 20), 1.8)
    assert days[-13] == (dt.date(2026, 3, 19), None)


def chart_axes(at, index: int = 0) -> tuple[list[str], list[dt.date], list[float]]:
    """A chart's price labels as it writes them (two decimals), its day ticks, and its price axis's ends."""
    spec = json.loads(at.get("vega_lite_chart")[index].proto.spec)
    price, day = spec["encoding"]["y"], spec["encoding"]["x"]
    labels = [f"{value:.2f}" for value in price["axis"]["values"]]
    days = [dt.date(tick["year"], tick["month"], tick["date"]) for tick in day["axis"]["values"]]
    return labels, days, price["scale"]["domain"]


def test_a_steady_price_has_distinct_price_labels_around_it_and_one_label_a_day_at_most(stations):
    app, now = stations, utcnow()
    with app.session() as session, session.begin():
        when = now - dt.timedelta(days=2)
        session.add(PriceHistory(station_id=HOME, gastype_id=GAZOLE, updated_at=when, price=Decimal("1.790")))
        add_price(session, HOME, GAZOLE, "1.790", when)

    at = signed_in_with(app)

    labels, days, (low, high) = chart_axes(at)
    assert labels == ["1.78", "1.79", "1.80"], "a flat line between two round prices, each label once"
    assert (low, high) == (1.78, 1.8)
    today = now.astimezone(PARIS).date()
    assert days == [today - dt.timedelta(days=2), today - dt.timedelta(days=1), today], "one label per day, no hours"


def test_a_year_of_prices_labels_its_axes_with_round_prices_and_months():
    assert trends_ui.price_ticks(1.55, 1.95) == [1.5, 1.6, 1.7, 1.8, 1.9, 2.0]
    assert trends_ui.price_ticks(1.789, 1.801) == [1.78, 1.79, 1.8, 1.81]
    year = trends_ui.day_ticks(dt.date(2025, 6, 6), dt.date(2026, 6, 5))
    firsts = [(2025, 7), (2025, 9), (2025, 11), (2026, 1), (2026, 3), (2026, 5)]
    assert year == [dt.date(y, m, 1) for y, m in firsts], "the first of every other month"
    month = trends_ui.day_ticks(dt.date(2026, 5, 7), dt.date(2026, 6, 5))
    assert month[-1] == dt.date(2026, 6, 5) and len(month) <= trends_ui.MAX_DAY_LABELS
    assert len(set(month)) == len(month)
