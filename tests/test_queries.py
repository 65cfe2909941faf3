"""The read side: price boards, the demo's stations, freshness, a user's choices and data; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager, suppress
from decimal import Decimal

import pytest
from sqlalchemy import event, select

import app_helpers
from conftest import FIXTURES
from ingest import passes
from models import AlertRule, CustomStation, EtlRun, Price, Rupture, User, UserGasType
from prices import queries
from session import session_factory
from utils import UTC, haversine_km

NOW = dt.datetime(2024, 5, 8, 10, 30, tzinfo=UTC)
GAZOLE, SP95, E10 = 1, 2, 5
NOTRE_DAME = (48.8530, 2.3499)
BELLECOUR = (45.7578, 4.8320)


@pytest.fixture
def session(engine):
    with session_factory(engine)() as session, session.begin():
        yield session


def add_station(
    session,
    station_id: int,
    *,
    address: str = "1 Rue de la Paix",
    zip_code: str = "75002",
    town: str = "Paris",
    at: tuple[float, float] = (48.8686, 2.3314),
) -> None:
    """`app_helpers.add_station` with this module's defaults: a station of Paris, seen at NOW."""
    app_helpers.add_station(session, station_id, address, town, zip_code, *at, last_seen_at=NOW)


def add_price(session, station_id: int, fuel: int, euros: str, updated_at: dt.datetime = NOW) -> None:
    session.add(Price(station_id=station_id, gastype_id=fuel, price=Decimal(euros), updated_at=updated_at))


def add_rupture(session, station_id: int, fuel: int, kind: str | None) -> None:
    session.add(Rupture(station_id=station_id, gastype_id=fuel, started_at=NOW, ended_at=None, kind=kind))


def add_user(session, username: str, favourites: dict[int, str], fuels: tuple[int, ...]) -> int:
    user = User(username=username, email=f"{username}@example.org", name=username, created_at=NOW)
    session.add(user)
    session.flush()
    session.add_all(CustomStation(user_id=user.id, station_id=s, custom_name=n) for s, n in favourites.items())
    session.add_all(UserGasType(user_id=user.id, gastype_id=fuel) for fuel in fuels)
    session.flush()
    return user.id


@contextmanager
def recorded_statements(engine):
    """The SQL statements (with their parameters) sent to the database inside the block."""
    statements: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def board_pairs(rows) -> list[tuple]:
    return [(row.fuel, row.station_id, row.price, row.rupture) for row in rows]


# --------------------------------------------------------------------------- price boards


@pytest.fixture
def five_stations(session) -> int:
    """A user following five stations and Gazole + SP95, with every kind of price situation."""
    for station_id in range(1, 6):
        add_station(session, station_id, address=f"{station_id} Rue du Marché")
    add_price(session, 1, GAZOLE, "1.900")
    add_price(session, 2, GAZOLE, "1.800")
    add_price(session, 4, GAZOLE, "1.650")  # the cheapest, but out of stock
    add_rupture(session, 4, GAZOLE, "temporaire")
    add_price(session, 5, GAZOLE, "1.700")
    add_price(session, 1, SP95, "1.950")
    add_price(session, 3, SP95, "1.930")
    add_price(session, 3, E10, "1.700")  # E10 is not followed
    session.flush()
    return add_user(session, "alice", {i: f"Station {i}" for i in range(1, 6)}, (SP95, GAZOLE))


def test_board_lists_every_pair_cheapest_first_with_missing_prices_last(session, five_stations):
    rows = queries.favourites_board(session, five_stations)

    assert board_pairs(rows) == [
        ("Gazole", 5, Decimal("1.700"), None),
        ("Gazole", 2, Decimal("1.800"), None),
        ("Gazole", 1, Decimal("1.900"), None),
        ("Gazole", 4, Decimal("1.650"), "temporaire"),  # out of stock: after every available price
        ("Gazole", 3, None, None),
        ("SP95", 3, Decimal("1.930"), None),
        ("SP95", 1, Decimal("1.950"), None),
        ("SP95", 2, None, None),
        ("SP95", 4, None, None),
        ("SP95", 5, None, None),
    ]
    assert [row.available for row in rows] == [True, True, True, False, False, True, True, False, False, False]
    first = rows[0]
    assert (first.name, first.address, first.town, first.zip_code) == ("Station 5", "5 Rue du Marché", "Paris", "75002")
    assert first.fuel_id == GAZOLE
    assert first.updated_at == NOW and first.updated_at.utcoffset() == dt.timedelta(0)
    assert rows[4].updated_at is None


@pytest.mark.parametrize(
    ("kind", "with_price", "shown_as"),
    [
        ("temporaire", True, "temporaire"),
        ("temporaire", False, "temporaire"),
        ("definitive", False, "definitive"),
        ("definitive", True, "definitive"),
        (None, True, "unknown"),
    ],
)
def test_out_of_stock_pairs_are_flagged_and_never_available(session, kind, with_price, shown_as):
    add_station(session, 1)
    add_station(session, 2)
    if with_price:
        add_price(session, 1, GAZOLE, "1.500")
    add_rupture(session, 1, GAZOLE, kind)
    add_price(session, 2, GAZOLE, "1.900")
    add_rupture(session, 2, SP95, "definitive")  # another fuel's rupture does not touch Gazole
    session.flush()
    user = add_user(session, "bob", {1: "Out", 2: "In"}, (GAZOLE,))

    out, fine = sorted(queries.favourites_board(session, user), key=lambda row: row.station_id)

    assert (out.rupture, out.out_of_stock, out.available) == (shown_as, True, False)
    assert out.price == (Decimal("1.500") if with_price else None)
    assert (fine.rupture, fine.out_of_stock, fine.available) == (None, False, True)


def test_each_user_sees_their_own_names_and_choices(session):
    add_station(session, 1, address="Route de Lyon")
    add_station(session, 2)
    add_price(session, 1, GAZOLE, "1.800")
    add_price(session, 1, SP95, "1.900")
    session.flush()
    alice = add_user(session, "alice", {1: "Work"}, (GAZOLE,))
    bob = add_user(session, "bob", {1: "Mum's <b>place</b>", 2: "Gym"}, (SP95,))

    assert [(r.station_id, r.name, r.fuel) for r in queries.favourites_board(session, alice)] == [(1, "Work", "Gazole")]
    assert [(r.station_id, r.name, r.fuel) for r in queries.favourites_board(session, bob)] == [
        (1, "Mum's <b>place</b>", "SP95"),
        (2, "Gym", "SP95"),
    ]


def test_board_is_empty_without_stations_or_fuels(session):
    add_station(session, 1)
    session.flush()
    no_fuels = add_user(session, "nofuel", {1: "Home"}, ())
    no_stations = add_user(session, "nostation", {}, (GAZOLE,))

    assert queries.favourites_board(session, no_fuels) == []
    assert queries.favourites_board(session, no_stations) == []
    assert queries.favourites_board(session, 999) == []


def test_the_board_is_one_sql_statement(engine, session, five_stations):
    session.connection()  # the transaction is open: only the board's own statements are recorded
    with recorded_statements(engine) as statements:
        rows = queries.favourites_board(session, five_stations)
        demo = queries.board_for(session, {1: "A", 2: "B", 3: "C"}, [GAZOLE, SP95])

    assert len(rows) == 10 and len(demo) == 6
    assert len(statements) == 2
    assert all(sql.lstrip().upper().startswith("SELECT") for sql, _ in statements)


def test_demo_board_uses_the_given_names_or_the_address(session, five_stations):
    rows = queries.board_for(session, {2: "Demo B", 3: "   ", 4: "Demo D", 404: "Gone"}, [GAZOLE, SP95])

    assert [(r.fuel, r.station_id, r.name, r.price, r.available) for r in rows] == [
        ("Gazole", 2, "Demo B", Decimal("1.800"), True),
        ("Gazole", 4, "Demo D", Decimal("1.650"), False),
        ("Gazole", 3, "3 Rue du Marché", None, False),
        ("SP95", 3, "3 Rue du Marché", Decimal("1.930"), True),
        ("SP95", 2, "Demo B", None, False),
        ("SP95", 4, "Demo D", None, False),
    ]
    assert queries.board_for(session, {}, [GAZOLE]) == []
    assert queries.board_for(session, {2: "B"}, []) == []


def test_board_of_a_loaded_feed_matches_its_prices(engine, settings, session):
    passes.run_pass(engine, settings, str(FIXTURES / "feed_a.zip"))
    stored = {
        (s, f): (p, t)
        for s, f, p, t in session.execute(select(Price.station_id, Price.gastype_id, Price.price, Price.updated_at))
    }
    out_of_stock = {tuple(row) for row in session.execute(select(Rupture.station_id, Rupture.gastype_id))}
    stations = sorted({station for station, _ in stored})[:8]

    rows = queries.board_for(session, dict.fromkeys(stations, ""), [GAZOLE, SP95, E10])

    assert len(rows) == len(stations) * 3
    for row in rows:
        assert (row.price, row.updated_at) == stored.get((row.station_id, row.fuel_id), (None, None))
        assert row.out_of_stock == ((row.station_id, row.fuel_id) in out_of_stock)
    for fuel in (GAZOLE, SP95, E10):
        prices = [r.price for r in rows if r.fuel_id == fuel and r.available]
        assert prices == sorted(prices)


# --------------------------------------------------------------------------- distances
# Stations around a place, and the search for a place, are tested in test_finder.py and test_place_search.py.


def test_haversine_of_a_known_pair():
    assert 391 <= haversine_km(*NOTRE_DAME, *BELLECOUR) <= 393
    assert haversine_km(*BELLECOUR, *NOTRE_DAME) == pytest.approx(haversine_km(*NOTRE_DAME, *BELLECOUR))
    assert haversine_km(*NOTRE_DAME, *NOTRE_DAME) == 0


# --------------------------------------------------------------------------- the demo


def test_demo_stations_are_fresh_neighbours_selling_every_fuel(session):
    fresh, old = NOW, NOW - dt.timedelta(days=20)
    places = {
        1: ("Paris", "Rue de Rivoli", NOTRE_DAME, fresh, None),  # the freshest: the demo is around it
        2: ("Paris", "Quai de la Tournelle", (48.8500, 2.3550), fresh - dt.timedelta(hours=2), None),
        3: ("IVRY-SUR-SEINE", "Avenue de Verdun", (48.8150, 2.3850), fresh - dt.timedelta(hours=3), None),
        4: ("Lyon", "Place Bellecour", BELLECOUR, fresh - dt.timedelta(hours=1), None),  # fresh but far
        5: ("Paris", "Rue Saint-Jacques", (48.8510, 2.3450), fresh, "temporaire"),  # out of stock
        6: ("Paris", "Boulevard Saint-Michel", (48.8520, 2.3440), old, None),  # old, but near
    }
    for station_id, (town, address, at, updated, rupture) in places.items():
        add_station(session, station_id, address=address, town=town, at=at)
        add_price(session, station_id, GAZOLE, "1.800", updated)
        add_price(session, station_id, SP95, "1.900", updated)
        if rupture:
            add_rupture(session, station_id, SP95, rupture)
    add_station(session, 7, at=(48.8531, 2.3498))
    add_price(session, 7, GAZOLE, "1.700")  # no SP95
    session.flush()

    demo = queries.demo_stations(session, [GAZOLE, SP95], count=3)

    assert demo == [
        (1, "Paris Rue de Rivoli"),
        (2, "Paris Quai de la Tournelle"),
        (3, "Ivry-sur-Seine Avenue de Verdun"),
    ]
    assert queries.demo_stations(session, [E10]) == []


# --------------------------------------------------------------------------- freshness


def test_freshness_before_any_run_after_a_success_a_failure_and_a_recovery(engine, settings, tmp_path):
    Session = session_factory(engine)
    with Session() as session:
        assert queries.freshness(session) == (None, None, None, None, 0, 0, None)

    passes.run_pass(engine, settings, str(FIXTURES / "feed_a.zip"))
    with Session() as session:
        loaded = queries.freshness(session)
    assert loaded.last_success_at is not None and loaded.last_success_at == loaded.last_run_at
    assert (loaded.last_run_status, loaded.last_run_failed, loaded.last_run_error) == ("success", False, None)
    assert loaded.stations == 60 and loaded.prices > 100
    assert loaded.newest_price_at == newest_price(Session) and loaded.newest_price_at.utcoffset() == dt.timedelta(0)

    with pytest.raises(passes.EtlError):
        passes.run_pass(engine, settings, str(tmp_path / "missing.zip"))
    with Session() as session:
        failed = queries.freshness(session)
    assert failed.last_success_at == loaded.last_success_at
    assert failed.last_run_failed and failed.last_run_at > loaded.last_success_at
    assert "missing.zip" in failed.last_run_error
    assert (failed.stations, failed.prices, failed.newest_price_at) == (
        loaded.stations,
        loaded.prices,
        loaded.newest_price_at,
    )

    passes.run_pass(engine, settings, str(FIXTURES / "feed_b.zip"))
    with Session() as session, session.begin():
        session.add(EtlRun(kind="backfill", started_at=NOW, finished_at=NOW, status="failed", source="x", error="bad"))
    with Session() as session:
        recovered = queries.freshness(session)
    assert recovered.last_success_at == recovered.last_run_at > failed.last_run_at
    assert (recovered.last_run_status, recovered.last_run_error) == ("success", None)  # backfills do not count
    assert recovered.newest_price_at == newest_price(Session)


def test_the_data_version_moves_with_every_pass_whatever_its_outcome(engine, settings, tmp_path):
    """Caches of what passes write are keyed on it: a load, a failure and an unchanged feed each move it."""
    Session = session_factory(engine)
    versions = []
    for source in ("feed_a.zip", "missing.zip", "feed_a.zip"):
        with Session() as session:
            versions.append(queries.data_version(session))
        with suppress(passes.EtlError):
            passes.run_pass(engine, settings, str(FIXTURES / source))
    with Session() as session:
        versions.append(queries.data_version(session))

    assert versions[0] == 0
    assert versions == sorted(set(versions)), "each pass gives a new version"


def newest_price(Session) -> dt.datetime:
    """The most recent declaration among the current prices, read row by row: an oracle for freshness."""
    with Session() as session:
        return max(session.scalars(select(Price.updated_at)))


def test_the_newest_price_is_the_latest_declaration_whatever_the_station(session):
    add_station(session, 1)
    add_station(session, 2)
    add_price(session, 1, GAZOLE, "1.800", NOW - dt.timedelta(days=3))
    add_price(session, 2, SP95, "1.900", NOW - dt.timedelta(hours=5))
    add_price(session, 1, E10, "1.700", NOW - dt.timedelta(days=1))
    session.flush()

    assert queries.freshness(session).newest_price_at == NOW - dt.timedelta(hours=5)


def test_a_users_choices_and_the_fuel_list(session):
    add_station(session, 7)
    add_station(session, 3)
    session.flush()
    user = add_user(session, "carol", {7: "Aldi", 3: "Zenith"}, (E10, GAZOLE))

    assert queries.user_fuel_ids(session, user) == [GAZOLE, E10]
    assert queries.user_favourites(session, user) == [(7, "Aldi"), (3, "Zenith")]
    assert queries.fuel_types(session) == [(1, "Gazole"), (2, "SP95"), (3, "E85"), (4, "GPLc"), (5, "E10"), (6, "SP98")]
    assert queries.user_fuel_ids(session, 999) == [] and queries.user_favourites(session, 999) == []


def test_a_users_data_holds_the_account_choices_and_trip_settings(session):
    add_station(session, 7)
    session.flush()
    user_id = add_user(session, "dora", {7: "Work"}, (SP95, GAZOLE))
    user = session.get(User, user_id)
    user.litres_per_year, user.km_per_year, user.litres_per_100km, user.tank_litres = 1200.0, 15000.0, 6.1, 55.0
    session.add(
        AlertRule(
            user_id=user_id,
            kind="price_below",
            station_id=7,
            gastype_id=GAZOLE,
            threshold=Decimal("1.6"),
            created_at=NOW,
        )
    )
    session.flush()

    data = queries.user_data(session, user_id)

    assert data["account"] == {
        "username": "dora",
        "email": "dora@example.org",
        "name": "dora",
        "role": "user",
        "created_at": NOW.isoformat(),
    }
    assert data["fuels"] == ["Gazole", "SP95"]
    assert data["stations"] == [{"station_id": 7, "name": "Work"}]
    assert data["settings"] == {
        "litres_per_year": 1200.0,
        "km_per_year": 15000.0,
        "litres_per_100km": 6.1,
        "litres_per_fill": 55.0,
        "language": None,
    }
    assert data["alerts"] == [
        {
            "kind": "price_below",
            "station_id": 7,
            "fuel": "Gazole",
            "threshold": "1.600",
            "place": None,
            "radius_km": None,
            "paused": False,
            "created_at": NOW.isoformat(),
        }
    ]
    assert data["sign_in_sessions"] == []
