"""The daily aggregates: known medians on generated history, the days a pass recomputes, and the real 2023-11-25
snapshots, whose figures are worked out here with the standard library from the feed files themselves."""

from __future__ import annotations

import datetime as dt
import statistics
from decimal import Decimal

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

import feed_reader
from app_helpers import add_price, add_station
from ingest import aggregates, passes
from models import DailyAggregate, Price, PriceHistory
from session import session_factory
from test_real_feeds import SNAPSHOT_A, SNAPSHOT_B, real_file
from utils import PARIS, department_of_postcode

GAZOLE, SP98 = 1, 6
DAY = dt.date(2026, 3, 10)
NOW = dt.datetime(2026, 3, 12, 15, 0, tzinfo=PARIS)


def at(day: dt.date, hour: int = 12) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), PARIS)


def days(n: int) -> dt.timedelta:
    return dt.timedelta(days=n)


def observe(session, station_id: int, fuel_id: int, price: str, when: dt.datetime) -> None:
    session.add(PriceHistory(station_id=station_id, gastype_id=fuel_id, updated_at=when, price=Decimal(price)))


def figures(engine, scope: str, fuel_id: int = GAZOLE) -> dict[dt.date, tuple]:
    """{day: (median, mean, lowest, highest, stations)} of one scope and fuel."""
    with session_factory(engine)() as session:
        rows = session.scalars(
            select(DailyAggregate).where(DailyAggregate.scope == scope, DailyAggregate.gastype_id == fuel_id)
        )
        return {r.day: (round(r.median, 4), round(r.mean, 4), r.lowest, r.highest, r.stations) for r in rows}


def refresh(engine, first: dt.date, last: dt.date, through: dt.datetime = NOW) -> None:
    with engine.begin() as conn:
        aggregates.refresh_days(conn, aggregates.day_range(first, last), through)


@pytest.mark.parametrize(
    ("postcode", "department"),
    [
        ("69001", "69"),
        ("01000", "01"),
        ("20090", "2A"),
        ("20167", "2A"),
        ("20200", "2B"),
        ("20600", "2B"),
        ("97100", "971"),
        ("97400", "974"),
        ("97600", "976"),
        ("6900", None),
        ("", None),
        (None, None),
        ("ABCDE", None),
    ],
)
def test_a_postcode_names_its_department_corsica_and_overseas_included(postcode, department):
    assert department_of_postcode(postcode) == department


@pytest.fixture
def history(engine):
    """Gazole at five stations, three of them in Lyon, one in Ajaccio, one in Bastia."""
    with session_factory(engine)() as session, session.begin():
        for station_id, zip_code in [(1, "69001"), (2, "69002"), (3, "69003"), (4, "20090"), (5, "20200")]:
            add_station(session, station_id, "1 rue du Test", "Ville", zip_code)
        observe(session, 1, GAZOLE, "1.800", at(DAY - days(3)))
        observe(session, 2, GAZOLE, "1.700", at(DAY - days(1)))
        observe(session, 3, GAZOLE, "1.900", at(DAY, 8))
        observe(session, 3, GAZOLE, "1.600", at(DAY, 20))  # the price in force at the day's end is this one
        observe(session, 4, GAZOLE, "2.000", at(DAY - days(40)))  # too old to count on DAY
        observe(session, 5, GAZOLE, "1.950", at(DAY, 9))
        observe(session, 5, SP98, "2.050", at(DAY, 9))
        observe(session, 1, GAZOLE, "1.750", at(DAY + days(1)))  # after DAY: not counted in it
        for station_id, fuel_id, price, when in [
            (1, GAZOLE, "1.750", at(DAY + days(1))),
            (2, GAZOLE, "1.700", at(DAY - days(1))),
            (3, GAZOLE, "1.600", at(DAY, 20)),
            (4, GAZOLE, "2.000", at(DAY - days(40))),
            (5, GAZOLE, "1.950", at(DAY, 9)),
            (5, SP98, "2.050", at(DAY, 9)),
        ]:
            add_price(session, station_id, fuel_id, price, when)
    return engine


def test_a_day_counts_each_station_at_its_price_in_force_at_the_days_end_carried_forward(history):
    refresh(history, DAY, DAY)

    assert figures(history, "FR")[DAY] == (1.75, 1.7625, Decimal("1.600"), Decimal("1.950"), 4)
    assert figures(history, "69")[DAY] == (1.7, 1.7, Decimal("1.600"), Decimal("1.800"), 3)
    assert figures(history, "2B")[DAY] == (1.95, 1.95, Decimal("1.950"), Decimal("1.950"), 1)
    assert figures(history, "2A") == {}  # its only price is 40 days old
    assert figures(history, "FR", SP98)[DAY] == (2.05, 2.05, Decimal("2.050"), Decimal("2.050"), 1)


def test_the_next_day_carries_unchanged_prices_and_takes_the_new_one(history):
    refresh(history, DAY, DAY + days(1))

    # Station 1 moved from 1.800 to 1.750; the three others kept their prices of DAY.
    assert figures(history, "FR")[DAY + days(1)] == (1.725, 1.75, Decimal("1.600"), Decimal("1.950"), 4)


def test_a_price_drops_out_once_it_is_older_than_the_carry(history):
    refresh(history, DAY + days(27), DAY + days(29))

    # DAY+29's end is 30 days after DAY began: station 2's price of DAY-1 no longer counts, the others still do.
    counted = {day: row[4] for day, row in figures(history, "FR").items()}
    assert counted == {DAY + days(27): 4, DAY + days(28): 4, DAY + days(29): 3}


def test_a_pass_recomputes_only_the_days_of_its_new_observations(history):
    with history.begin() as conn:
        first = aggregates.refresh_after_run(conn, NOW)
    assert first == [DAY + days(1)]  # the first time, the newest observation's day
    refresh(history, DAY, DAY)
    with history.begin() as conn:  # a mark on an old day shows whether the next pass computes it again
        conn.execute(update(DailyAggregate).where(DailyAggregate.day == DAY).values(stations=99))

    with session_factory(history)() as session, session.begin():
        observe(session, 2, GAZOLE, "1.690", at(DAY + days(2), 10))
        current = session.get(Price, (2, GAZOLE))
        current.price, current.updated_at = Decimal("1.690"), at(DAY + days(2), 10)
    with history.begin() as conn:
        touched = aggregates.refresh_after_run(conn, NOW)

    assert touched == [DAY + days(2)]  # the day of the new observation alone
    assert figures(history, "FR")[DAY][4] == 99
    assert figures(history, "FR")[DAY + days(2)][0] == 1.72
    with history.begin() as conn:
        assert aggregates.refresh_after_run(conn, NOW) == []  # nothing new: nothing recomputed


def _median_in_force(observations: dict, zip_of: dict[int, str], day: dt.date, fuel_id: int, scope: str) -> tuple:
    """The oracle: each station's newest observation before the day's end (and within the carry), among the
    `observations` given."""
    end = dt.datetime.combine(day + days(1), dt.time(), PARIS)
    newest: dict[int, tuple[dt.datetime, Decimal]] = {}
    for (station_id, fuel, when), price in observations.items():
        in_window = fuel == fuel_id and end - days(aggregates.CARRY_DAYS) <= when < end
        if in_window and (station_id not in newest or when > newest[station_id][0]):
            newest[station_id] = (when, price)
    prices = [
        price
        for station_id, (_, price) in newest.items()
        if scope == "FR" or department_of_postcode(zip_of[station_id]) == scope
    ]
    return (round(float(statistics.median(prices)), 4), len(prices)) if prices else None


def test_the_real_snapshots_of_2023_11_25_give_the_medians_worked_out_from_the_files(engine, settings):
    path_a, path_b = real_file(SNAPSHOT_A), real_file(SNAPSHOT_B)
    a, b = feed_reader.read_feed(path_a), feed_reader.read_feed(path_b)
    zip_of = {station_id: raw.cp for station_id, raw in {**a.details, **b.details}.items()}
    everything = {**b.observations, **a.observations}
    # The day under way counts the fuels the stations list now (those of the second snapshot); past days, the history.
    current = set(b.current)
    listed = {key: price for key, price in everything.items() if key[:2] in current}

    passes.run_pass(engine, settings, str(path_a))
    passes.run_pass(engine, settings, str(path_b))
    refresh(engine, dt.date(2023, 11, 24), dt.date(2023, 11, 24))  # a past day, as a backfill would

    for day, observations in [(dt.date(2023, 11, 25), listed), (dt.date(2023, 11, 24), everything)]:
        for scope in ("FR", "75", "2A", "2B", "974"):
            for fuel_id in (1, 3, 5, 6):
                stored = figures(engine, scope, fuel_id).get(day)
                expected = _median_in_force(observations, zip_of, day, fuel_id, scope)
                assert (stored and (stored[0], stored[4])) == expected, (day, scope, fuel_id)
        assert figures(engine, "FR")[day][4] > 5_000


def test_a_failed_aggregate_update_leaves_the_pass_loaded_and_the_next_pass_catches_up(engine, settings, monkeypatch):
    path_a = real_file(SNAPSHOT_A)

    def broken(conn, now):
        raise OperationalError("UPDATE daily_aggregates", {}, Exception("disk I/O error"))

    with monkeypatch.context() as patched:
        patched.setattr(aggregates, "refresh_after_run", broken)
        summary = passes.run_pass(engine, settings, str(path_a))
    assert summary.prices > 0 and figures(engine, "FR") == {}

    passes.run_pass(engine, settings, str(real_file(SNAPSHOT_B)))
    assert figures(engine, "FR")[dt.date(2023, 11, 25)][4] > 5_000
