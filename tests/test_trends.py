"""The dashboard's trends on known cases: the 7-day change, the 30-day chart and the rank within 10 km."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from app_helpers import PASSWORD, add_price, add_rupture, add_station, board, new_app, sign_in
from models import PriceHistory
from prices import preferences, queries
from prices.trends import CHART_DAYS, board_trends
from ui.widgets import change_in_cents, rank_phrase
from utils import PARIS

NOW = dt.datetime(2026, 3, 31, 10, 0, tzinfo=PARIS)  # a Tuesday; summer time began two days before
STALE = dt.timedelta(days=7)
GAZOLE, SP95 = 1, 2
HOME, NEIGHBOUR, FAR, OLD, EMPTY, TOWN_B = 101, 102, 103, 104, 105, 106
LYON = (45.7640, 4.8357)


def at_km_east(km: float) -> tuple[float, float]:
    return LYON[0], LYON[1] + km / 78.0  # about 78 km per degree of longitude at Lyon's latitude


def station(session, station_id: int, where: tuple[float, float]) -> None:
    add_station(session, station_id, f"{station_id} rue du Test", "Lyon", "69001", *where)


def observe(session, station_id: int, fuel_id: int, price: str, at: dt.datetime, current: bool = False) -> None:
    session.add(PriceHistory(station_id=station_id, gastype_id=fuel_id, updated_at=at, price=Decimal(price)))
    if current:
        add_price(session, station_id, fuel_id, price, at)


def days_ago(days: float) -> dt.datetime:
    return NOW - dt.timedelta(days=days)


@pytest.fixture
def seeded(app):
    """Home's Gazole: 1.900 forty days ago, 1.850 ten days ago, 1.818 two days ago (now); its neighbours."""
    with app.session() as session, session.begin():
        station(session, HOME, LYON)
        station(session, NEIGHBOUR, at_km_east(3))
        station(session, FAR, at_km_east(25))
        station(session, OLD, at_km_east(1))
        station(session, EMPTY, at_km_east(2))
        station(session, TOWN_B, at_km_east(9))
        observe(session, HOME, GAZOLE, "1.900", days_ago(40))
        observe(session, HOME, GAZOLE, "1.850", days_ago(10))
        observe(session, HOME, GAZOLE, "1.818", days_ago(2), current=True)
        observe(session, HOME, SP95, "1.950", days_ago(3), current=True)  # no price a week ago
        observe(session, NEIGHBOUR, GAZOLE, "1.799", days_ago(1), current=True)  # cheaper, 3 km away
        observe(session, TOWN_B, GAZOLE, "1.830", days_ago(1), current=True)  # dearer, 9 km away
        observe(session, FAR, GAZOLE, "1.500", days_ago(1), current=True)  # cheaper but 25 km away
        observe(session, OLD, GAZOLE, "1.400", days_ago(20), current=True)  # cheaper but too old to count
        observe(session, EMPTY, GAZOLE, "1.300", days_ago(1), current=True)  # cheaper but out of stock
        add_rupture(session, EMPTY, GAZOLE, "temporaire", days_ago(1))
    return app


def home_trends(app) -> dict:
    with app.session() as session:
        rows = queries.board_for(session, {HOME: "Home"}, [GAZOLE, SP95])
        return board_trends(session, rows, NOW, STALE)


def test_the_change_over_seven_days_is_against_the_price_in_force_a_week_ago(seeded):
    trends = home_trends(seeded)

    assert trends[(HOME, GAZOLE)].change == Decimal("-0.032")  # 1.818 now, 1.850 in force a week ago
    assert trends[(HOME, SP95)].change is None, "no price was known a week ago"
    assert change_in_cents(trends[(HOME, GAZOLE)].change) == "−3.2 ct"
    assert change_in_cents(None) == "" and change_in_cents(Decimal("0.0004")) == "no change"
    assert change_in_cents(Decimal("0.005")) == "+0.5 ct"


def test_the_chart_holds_the_price_in_force_at_the_end_of_each_of_the_last_30_days(seeded):
    days = home_trends(seeded)[(HOME, GAZOLE)].days

    assert len(days) == CHART_DAYS
    assert days[0] == 1.9, "the window opens on the price declared before it"
    # days[-1] is today, days[-11] the day ten days ago, when 1.850 was declared at 10:00
    assert days[-12] == 1.9 and days[-11] == 1.85, "the day of a change ends on the new price"
    assert days[-4] == 1.85 and days[-3:] == [1.818, 1.818, 1.818]
    assert home_trends(seeded)[(HOME, SP95)].days[:-4] == [None] * (CHART_DAYS - 4), "nothing known before"


def test_the_rank_counts_current_buyable_prices_within_10_km(seeded):
    trends = home_trends(seeded)

    gazole = trends[(HOME, GAZOLE)]
    assert (gazole.rank, gazole.among) == (2, 3), "the neighbour is cheaper; far, old and empty pumps do not count"
    assert rank_phrase(gazole) == "2nd cheapest of 3"
    assert rank_phrase(trends[(HOME, SP95)]) == "the only one"


def test_a_station_without_coordinates_or_price_ranks_nowhere(app):
    with app.session() as session, session.begin():
        add_station(session, HOME, "1 rue Sans Position", "Lyon", "69001")
        observe(session, HOME, GAZOLE, "1.800", days_ago(1), current=True)
    trend = home_trends(app)[(HOME, GAZOLE)]
    assert (trend.rank, trend.among, rank_phrase(trend)) == (None, 0, "")


def test_the_dashboard_shows_the_change_the_chart_and_the_rank(seeded):
    account = seeded.register("alice")
    with seeded.session() as session, session.begin():
        preferences.follow_station(session, account.user_id, HOME, "Home")
        preferences.set_fuels(session, account.user_id, [GAZOLE])
    at = new_app().run()
    sign_in(at, "alice", PASSWORD)

    gazole = board(at)["Gazole"]
    assert list(gazole.columns[:6]) == ["Station", "Address", "Price", "7 days", "Last 30 days", "Within 10 km"]
    (trend,) = gazole["Last 30 days"]
    assert len(trend) == CHART_DAYS
