"""The read side: price boards, map views, search, freshness; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from decimal import Decimal

import pytest
from sqlalchemy import event, select

import etl
import queries
from conftest import FIXTURES
from models import CustomStation, EtlRun, Price, Rupture, Station, User, UserGasType
from session import session_factory
from utils import UTC, fold, haversine_km

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
    at: tuple[float, float] | None = (48.8686, 2.3314),
) -> None:
    latitude, longitude = at if at else (None, None)
    session.add(
        Station(
            id=station_id,
            latitude=latitude,
            longitude=longitude,
            address=address,
            zip_code=zip_code,
            town=town,
            search_text=fold(f"{address} {zip_code} {town}"),
            last_seen_at=NOW,
        )
    )
    session.flush()  # the models declare no relationships, so the ORM would not insert stations first


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
    etl.run_pass(engine, settings, str(FIXTURES / "feed_a.zip"))
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


# --------------------------------------------------------------------------- map views


@pytest.fixture
def map_stations(session) -> None:
    add_station(session, 1, at=(48.85, 2.35))  # inside
    add_station(session, 2, at=(48.90, 2.30))  # on the north-west corner: inside
    add_station(session, 3, at=(48.95, 2.35))  # north of the box
    add_station(session, 4, at=(48.85, 2.45))  # east of the box
    add_station(session, 5, at=None)  # no coordinates
    add_station(session, 6, at=(48.81, 2.39))  # inside
    add_price(session, 1, GAZOLE, "1.811")
    add_price(session, 6, GAZOLE, "1.755")
    add_rupture(session, 6, GAZOLE, "temporaire")
    add_price(session, 3, GAZOLE, "1.700")
    session.flush()


def test_stations_in_box_returns_exactly_the_stations_inside(session, map_stations):
    box = (48.80, 2.30, 48.90, 2.40)

    with_gazole = {s.id: s for s in queries.stations_in_box(session, *box, GAZOLE)}
    without_fuel = {s.id: s for s in queries.stations_in_box(session, *box, None)}

    assert set(with_gazole) == set(without_fuel) == {1, 2, 6}
    assert (with_gazole[1].price, with_gazole[1].out_of_stock) == (Decimal("1.811"), False)
    assert (with_gazole[2].price, with_gazole[2].out_of_stock) == (None, False)
    assert (with_gazole[6].price, with_gazole[6].out_of_stock) == (Decimal("1.755"), True)
    assert all(s.price is None and s.out_of_stock is False for s in without_fuel.values())
    assert (with_gazole[1].latitude, with_gazole[1].longitude, with_gazole[1].town) == (48.85, 2.35, "Paris")
    assert len(queries.stations_in_box(session, *box, GAZOLE, limit=2)) == 2
    assert queries.stations_in_box(session, 10.0, 10.0, 11.0, 11.0, GAZOLE) == []


def test_stations_in_box_uses_the_coordinates_index(engine, session, map_stations):
    if engine.dialect.name != "sqlite":
        pytest.skip("query plans are checked on SQLite, whose planner is predictable on small tables")
    session.connection()
    with recorded_statements(engine) as statements:
        queries.stations_in_box(session, 48.80, 2.30, 48.90, 2.40, GAZOLE)
    ((sql, parameters),) = statements

    plan = " ".join(row[-1] for row in session.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters))

    assert "ix_stations_lat_lon" in plan


def test_haversine_of_a_known_pair():
    assert 391 <= haversine_km(*NOTRE_DAME, *BELLECOUR) <= 393
    assert haversine_km(*BELLECOUR, *NOTRE_DAME) == pytest.approx(haversine_km(*NOTRE_DAME, *BELLECOUR))
    assert haversine_km(*NOTRE_DAME, *NOTRE_DAME) == 0


def test_stations_near_are_sorted_by_exact_distance(session):
    add_station(session, 1, at=NOTRE_DAME)
    add_station(session, 2, at=BELLECOUR, town="Lyon", zip_code="69002")
    add_station(session, 3, at=(48.8530, 2.4183))  # ~5 km east
    add_station(session, 4, at=(48.9230, 2.4499))  # in the 10 km bounding box, but 10.7 km away
    add_station(session, 5, at=(48.8800, 2.3499))  # 3 km north
    add_station(session, 6, at=None)
    session.flush()

    near = queries.stations_near(session, *NOTRE_DAME, 10)
    far = queries.stations_near(session, *NOTRE_DAME, 400, fuel_id=GAZOLE)

    assert [(hit.station.id, round(hit.distance_km, 1)) for hit in near] == [(1, 0.0), (5, 3.0), (3, 5.0)]
    assert 10 < haversine_km(*NOTRE_DAME, 48.9230, 2.4499) < 11
    assert [hit.station.id for hit in far] == [1, 5, 3, 4, 2]
    assert 391 <= far[-1].distance_km <= 393
    assert [hit.station.id for hit in queries.stations_near(session, *NOTRE_DAME, 400, limit=2)] == [1, 5]


# --------------------------------------------------------------------------- search


@pytest.fixture
def searchable(session) -> None:
    add_station(session, 1, address="12 Rue de la République", zip_code="42000", town="Saint-Étienne")
    add_station(session, 2, address="5 Avenue Jean Jaurès", zip_code="75004", town="Paris")
    add_station(session, 3, address="Route de Bordeaux", zip_code="17500", town="Jonzac")
    add_station(session, 4, address="8 Boulevard Haussmann", zip_code="75009", town="Paris", at=None)
    session.flush()


@pytest.mark.parametrize("text", ["saint etienne", "SAINT-ÉTIENNE", "Étienne", "etienne 42", "  république  "])
def test_search_ignores_case_and_accents(session, searchable, text):
    assert [hit.id for hit in queries.search_stations(session, text)] == [1]


def test_search_by_postcode_prefix_town_or_address(session, searchable):
    assert [hit.id for hit in queries.search_stations(session, "750")] == [2, 4]
    assert [hit.id for hit in queries.search_stations(session, "paris")] == [2, 4]
    assert [hit.id for hit in queries.search_stations(session, "jaures paris")] == [2]
    assert queries.search_stations(session, "500") == []  # 17500 holds '500', but no word starts with it
    hit = queries.search_stations(session, "haussmann")[0]
    assert (hit.address, hit.town, hit.zip_code, hit.latitude, hit.longitude) == (
        "8 Boulevard Haussmann",
        "Paris",
        "75009",
        None,
        None,
    )
    assert len(queries.search_stations(session, "r", limit=1)) == 1


@pytest.mark.parametrize("text", ["%", "_", "%%", "'", "", "   ", "-", "%_%"])
def test_search_wildcards_and_blank_queries_match_nothing(session, searchable, text):
    assert queries.search_stations(session, text) == []


def test_search_treats_wildcards_inside_words_literally(session, searchable):
    assert [hit.id for hit in queries.search_stations(session, "jonz%")] == [3]  # '%' folds to a word break
    assert queries.search_stations(session, "j_nzac") == []


def test_search_finds_a_loaded_station_by_its_town(engine, settings, session):
    etl.run_pass(engine, settings, str(FIXTURES / "feed_a.zip"))
    station = session.scalars(select(Station).order_by(Station.id)).first()

    hits = queries.search_stations(session, station.town.upper())

    assert station.id in {hit.id for hit in hits}
    assert all(fold(station.town) in fold(f"{hit.town} {hit.address}") for hit in hits)


def test_find_stations_by_text_or_around_the_place_found(session):
    add_station(session, 1, address="Place Bellecour", zip_code="69002", town="Lyon", at=BELLECOUR)
    add_station(session, 2, address="Quai Perrache", zip_code="69002", town="Lyon", at=(45.7450, 4.8200))
    add_station(session, 3, address="Rue de Lyon", zip_code="69100", town="Villeurbanne", at=(45.7700, 4.8800))
    add_station(session, 4, address="Route de Vienne", zip_code="69200", town="Vénissieux", at=(45.6970, 4.8860))
    add_station(session, 5, address="Cours Gambetta", zip_code="69003", town="Lyon", at=None)
    add_station(session, 6, at=NOTRE_DAME)
    add_price(session, 2, GAZOLE, "1.777")
    add_rupture(session, 3, GAZOLE, "temporaire")

    matching = queries.find_stations(session, "lyon 6900", 0, GAZOLE)
    around = queries.find_stations(session, "lyon 6900", 5, GAZOLE)

    assert [s.id for s in matching] == [1, 2, 5]  # the town and postcode words, nothing else
    assert (matching[1].price, matching[2].latitude) == (Decimal("1.777"), None)
    assert [s.id for s in around] == [1, 2, 3]  # within 5 km of Lyon's stations, nearest first; not Vénissieux
    assert around[2].out_of_stock
    assert [s.id for s in queries.find_stations(session, "lyon", 10, None)] == [1, 2, 3, 4]
    assert queries.find_stations(session, "gambetta", 10) == []  # found, but nowhere on the map
    assert queries.find_stations(session, " % ", 10) == []


def test_map_stations_for_given_ids(session, map_stations):
    shown = queries.map_stations(session, {6: "Demo", 5: "No place", 1: "One", 404: "Gone"}, GAZOLE)

    assert [(s.id, s.price, s.out_of_stock, s.latitude) for s in shown] == [
        (1, Decimal("1.811"), False, 48.85),
        (5, None, False, None),
        (6, Decimal("1.755"), True, 48.81),
    ]
    assert queries.map_stations(session, [], GAZOLE) == []


def test_demo_stations_are_fresh_neighbours_selling_every_fuel(session):
    fresh, old = NOW, NOW - dt.timedelta(days=20)
    places = {
        1: ("Paris", "Rue de Rivoli", NOTRE_DAME, fresh, None),  # the freshest: the demo is around it
        2: ("Paris", "Quai de la Tournelle", (48.8500, 2.3550), fresh - dt.timedelta(hours=2), None),
        3: ("Ivry-sur-Seine", "Avenue de Verdun", (48.8150, 2.3850), fresh - dt.timedelta(hours=3), None),
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


# --------------------------------------------------------------------------- details and freshness


def test_station_prices_for_tooltips_in_one_statement(engine, session):
    add_station(session, 1)
    add_station(session, 2)
    add_price(session, 1, SP95, "1.900")
    add_price(session, 1, GAZOLE, "1.800", NOW - dt.timedelta(days=2))
    session.flush()
    session.connection()

    with recorded_statements(engine) as statements:
        prices = queries.station_prices(session, [1, 2, 3])

    assert len(statements) == 1
    assert prices == {
        1: [("Gazole", Decimal("1.800"), NOW - dt.timedelta(days=2)), ("SP95", Decimal("1.900"), NOW)],
        2: [],
        3: [],
    }
    assert queries.station_prices(session, []) == {}


def test_freshness_before_any_run_after_a_success_a_failure_and_a_recovery(engine, settings, tmp_path):
    Session = session_factory(engine)
    with Session() as session:
        assert queries.freshness(session) == (None, None, None, None, 0, 0)

    etl.run_pass(engine, settings, str(FIXTURES / "feed_a.zip"))
    with Session() as session:
        loaded = queries.freshness(session)
    assert loaded.last_success_at is not None and loaded.last_success_at == loaded.last_run_at
    assert (loaded.last_run_status, loaded.last_run_failed, loaded.last_run_error) == ("success", False, None)
    assert loaded.stations == 60 and loaded.prices > 100

    with pytest.raises(etl.EtlError):
        etl.run_pass(engine, settings, str(tmp_path / "missing.zip"))
    with Session() as session:
        failed = queries.freshness(session)
    assert failed.last_success_at == loaded.last_success_at
    assert failed.last_run_failed and failed.last_run_at > loaded.last_success_at
    assert "missing.zip" in failed.last_run_error
    assert (failed.stations, failed.prices) == (loaded.stations, loaded.prices)

    etl.run_pass(engine, settings, str(FIXTURES / "feed_b.zip"))
    with Session() as session, session.begin():
        session.add(EtlRun(kind="backfill", started_at=NOW, finished_at=NOW, status="failed", source="x", error="bad"))
    with Session() as session:
        recovered = queries.freshness(session)
    assert recovered.last_success_at == recovered.last_run_at > failed.last_run_at
    assert (recovered.last_run_status, recovered.last_run_error) == ("success", None)  # backfills do not count


def test_a_users_choices_and_the_fuel_list(session):
    add_station(session, 7)
    add_station(session, 3)
    session.flush()
    user = add_user(session, "carol", {7: "Aldi", 3: "Zenith"}, (E10, GAZOLE))

    assert queries.user_fuel_ids(session, user) == [GAZOLE, E10]
    assert queries.user_favourites(session, user) == [(7, "Aldi"), (3, "Zenith")]
    assert queries.fuel_types(session) == [(1, "Gazole"), (2, "SP95"), (3, "E85"), (4, "GPLc"), (5, "E10"), (6, "SP98")]
    assert queries.user_fuel_ids(session, 999) == [] and queries.user_favourites(session, 999) == []
