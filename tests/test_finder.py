"""The station finder: its read side on small hand-made databases (SQLite and PostgreSQL), then the public
finder page (/find), "My stations" and the demo's "Add a station" through AppTest.

The service tests place stations at known distances from a point on the meridian of Place Bellecour, so
that each distance and net saving can be worked out by hand (40 L fill, 6.5 L/100 km, roads 1.3 times the
straight line). The page tests read the prices at the real time of the run, so their opening hours are
chosen to be the same at any hour: open 24 hours, closed all week, or unknown.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
from markdown_it import MarkdownIt
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from app_helpers import (
    PASSWORD,
    App,
    add_price,
    add_run,
    add_rupture,
    add_station,
    button,
    captions,
    errors,
    infos,
    markdowns,
    new_app,
    open_page,
    page_links,
    run_frame,
    shown,
    sign_in,
    subheaders,
    successes,
    tables,
    text_input,
    titles,
    warnings,
)
from ingest import imports
from ingest import places as ingest_places
from models import CustomStation, Price, Rupture, Station, StationBrand
from prices import finder, place_search, preferences, towns
from prices.detour import Trip
from session import session_factory
from ui import finder_ui, place_box, widgets
from utils import EARTH_RADIUS_KM, PARIS, UTC, utcnow

pytestmark = pytest.mark.usefixtures("cheap_bcrypt")

GAZOLE, SP95 = 1, 2
NOW = dt.datetime(2024, 5, 8, 10, 30, tzinfo=UTC)  # a Wednesday, 12:30 in Paris
BELLECOUR = (45.7578, 4.8320)
KM_PER_DEGREE = EARTH_RADIUS_KM * math.pi / 180


def week_of_hours(opens: str, closes: str) -> list[dict]:
    return [{"day": day, "closed": False, "hours": [[opens, closes]]} for day in range(1, 8)]


CLOSED_ALL_WEEK = [{"day": day, "closed": True, "hours": []} for day in range(1, 8)]


# =========================================================================== the read side


def north(km: float) -> tuple[float, float]:
    """A point `km` north of Bellecour (south when negative): on a meridian, the distance is exact."""
    return BELLECOUR[0] + km / KM_PER_DEGREE, BELLECOUR[1]


def east(km: float) -> tuple[float, float]:
    return BELLECOUR[0], BELLECOUR[1] + km / (KM_PER_DEGREE * math.cos(math.radians(BELLECOUR[0])))


def station(
    session,
    station_id: int,
    at: tuple[float, float] | None,
    *,
    town: str,
    zip_code: str,
    address: str = "1 Grande Rue",
    brand: str | None = None,
    name: str | None = None,
    **options,
) -> None:
    """`add_station` seen at NOW, "1 Grande Rue" unless said otherwise, with its OpenStreetMap brand and name if given.

    `options` are add_station's: road_type, automat, hours, services.
    """
    add_station(session, station_id, address, town, zip_code, *(at or (None, None)), last_seen_at=NOW, **options)
    if brand or name:
        session.add(StationBrand(station_id=station_id, brand=brand, name=name))
        session.flush()


def price(session, station_id: int, fuel: int, euros: str) -> None:
    session.add(Price(station_id=station_id, gastype_id=fuel, price=Decimal(euros), updated_at=NOW))


def rupture(session, station_id: int, fuel: int, kind: str | None) -> None:
    session.add(Rupture(station_id=station_id, gastype_id=fuel, started_at=NOW, ended_at=None, kind=kind))


@pytest.fixture
def session(engine):
    with session_factory(engine)() as session, session.begin():
        yield session


@pytest.fixture
def around_bellecour(session):
    """Stations at known distances from Bellecour; Gazole prices unless said otherwise.

    1: 1 km N, 1.900, TotalEnergies · Relais Bellecour, 07:00-19:00 (open at NOW)
    2: 3 km N, 1.800, Carrefour, 24/24 automat, 14:00-20:00 (closed at NOW)
    3: 5 km S, 1.700 but out of stock, motorway, no brand, open 24 hours; SP95 out of stock, no price
    4: 2 km E, no Gazole (SP95 1.950), elan, 24/24 automat, hours unknown
    5: 8 km S, 1.750, Avia, hours unknown
    9: 9 km S, 1.880, hours unknown
    6: 12 km N, 1.500 (outside 10 km); 8: 9 km N and 9 km E, 1.600 (inside the 10 km box, 12.7 km away)
    7: no coordinates, 1.400; 10: 60 km N, no price at all
    """
    station(
        session,
        1,
        north(1),
        town="Lyon",
        zip_code="69002",
        hours=week_of_hours("07:00", "19:00"),
        services=["Boutique alimentaire", "Lavage automatique"],
        brand="TotalEnergies",
        name="Relais Bellecour",
    )
    station(
        session,
        2,
        north(3),
        town="LYON",
        zip_code="69001",
        automat=True,
        hours=week_of_hours("14:00", "20:00"),
        brand="Carrefour",
        name="CARREFOUR",
    )
    station(
        session,
        3,
        north(-5),
        town="Solaize",
        zip_code="69360",
        address="Aire de Solaize",
        road_type="A",
        hours=week_of_hours("00:00", "00:00"),
        services=["Toilettes publiques"],
    )
    station(session, 4, east(2), town="Lyon", zip_code="69003", automat=True, brand="elan")
    station(session, 5, north(-8), town="Feyzin", zip_code="69320", brand="Avia")
    station(session, 9, north(-9), town="Vénissieux", zip_code="69200")
    station(session, 6, north(12), town="Caluire", zip_code="69300", name="Relais du Lac")
    station(session, 8, (north(9)[0], east(9)[1]), town="Rillieux", zip_code="69140")
    station(session, 7, None, town="Nulle Part", zip_code="69999")
    station(session, 10, north(60), town="Villefranche", zip_code="69400")
    for station_id, euros in {1: "1.900", 2: "1.800", 3: "1.700", 5: "1.750", 9: "1.880", 6: "1.500"}.items():
        price(session, station_id, GAZOLE, euros)
    price(session, 8, GAZOLE, "1.600")
    price(session, 7, GAZOLE, "1.400")
    price(session, 1, SP95, "1.990")
    price(session, 4, SP95, "1.950")
    rupture(session, 3, GAZOLE, "temporaire")
    rupture(session, 3, SP95, None)
    session.flush()


def around(session, radius_km: float = 10, fuel: int = GAZOLE) -> list[finder.FinderStation]:
    return finder.stations_around(session, *BELLECOUR, radius_km, fuel)


def ids(items) -> list[int]:
    return [getattr(item, "station", item).id for item in items]


def test_stations_around_are_those_within_the_radius_nearest_first(session, around_bellecour):
    found = around(session)

    assert ids(found) == [1, 4, 2, 3, 5, 9], "not 6 (12 km), not 8 (in the box, 12.7 km away), never 7 (no position)"
    assert [s.distance_km for s in found] == pytest.approx([1, 2, 3, 5, 8, 9], abs=0.005)
    assert ids(around(session, 2.5)) == [1, 4]
    assert ids(around(session, 0.5)) == []


def test_stations_around_carry_the_price_of_the_fuel_asked_for(session, around_bellecour):
    gazole = {s.id: (s.price, s.out_of_stock, s.available) for s in around(session)}
    assert gazole[1] == (Decimal("1.900"), False, True)
    assert gazole[3] == (Decimal("1.700"), True, False), "out of stock: its price is kept, not buyable"
    assert gazole[4] == (None, False, False)

    sp95 = {s.id: (s.price, s.out_of_stock) for s in around(session, fuel=SP95)}
    assert sp95[1] == (Decimal("1.990"), False)
    assert sp95[4] == (Decimal("1.950"), False)
    assert sp95[3] == (None, True)
    assert sp95[2] == (None, False)


def test_stations_around_never_look_farther_than_50_km(session, around_bellecour):
    assert ids(around(session, 100)) == ids(around(session, 50)) == [1, 4, 2, 3, 5, 9, 6, 8]
    assert 10 not in ids(around(session, 100)), "60 km away: beyond the 50 km cap"


def test_stations_around_describe_the_station(session, around_bellecour):
    by_id = {s.id: s for s in around(session)}

    assert (by_id[3].motorway, by_id[3].automat, by_id[3].brand) == (True, False, None)
    assert (by_id[2].motorway, by_id[2].automat, by_id[2].brand) == (False, True, "Carrefour")
    assert (by_id[1].town, by_id[1].zip_code, by_id[1].address) == ("Lyon", "69002", "1 Grande Rue")
    assert json.loads(by_id[1].opening_hours) == week_of_hours("07:00", "19:00")
    assert by_id[4].opening_hours is None
    assert by_id[1].updated_at == NOW


def test_stations_by_id_in_id_order_with_distances_when_asked(session, around_bellecour):
    assert ids(finder.stations_by_id(session, [7, 1, 12345], GAZOLE)) == [1, 7], "an unknown id is skipped"
    assert [s.distance_km for s in finder.stations_by_id(session, [7, 1], GAZOLE)] == [None, None]

    located = finder.stations_by_id(session, [7, 2, 1], GAZOLE, origin=BELLECOUR)
    assert [s.distance_km for s in located] == [pytest.approx(1, abs=0.005), pytest.approx(3, abs=0.005), None]
    assert located[2].price == Decimal("1.400"), "a station without position still has its price"


def test_france_holds_every_station_with_a_position(session, around_bellecour):
    everywhere = finder.france(session, GAZOLE)

    assert ids(everywhere) == [1, 2, 3, 4, 5, 6, 8, 9, 10]
    assert all(s.distance_km is None for s in everywhere)


def results(session, **filters) -> list[finder.Result]:
    return finder.results(around(session), NOW, Trip(), **filters)


def test_by_price_buyable_cheapest_first_then_out_of_stock_then_no_price(session, around_bellecour):
    found = results(session)

    assert ids(found) == [5, 2, 9, 1, 3, 4]
    assert [r.station.price for r in found[:4]] == [Decimal(p) for p in ("1.750", "1.800", "1.880", "1.900")]
    assert ids(results(session, sort="price")) == ids(found), "price is the default order"


def test_by_distance_nearest_first(session, around_bellecour):
    assert ids(results(session, sort="distance")) == [1, 4, 2, 3, 5, 9]


def test_savings_against_the_nearest_station_selling_the_fuel(session, around_bellecour):
    savings = {r.station.id: r.saving for r in results(session)}

    assert savings == {
        1: Decimal("0.00"),  # the nearest itself
        2: Decimal("3.39"),  # 0.100 × 40 − 2 × 2 × 1.3 × 0.065 × 1.800 = 4.000 − 0.6084
        5: Decimal("3.93"),  # 0.150 × 40 − 2 × 7 × 1.3 × 0.065 × 1.750 = 6.000 − 2.07025
        9: Decimal("-1.74"),  # 0.020 × 40 − 2 × 8 × 1.3 × 0.065 × 1.880 = 0.800 − 2.54176
        3: None,  # out of stock
        4: None,  # no price
    }


def test_by_saving_biggest_first_and_stations_without_one_last(session, around_bellecour):
    found = results(session, sort="saving")

    assert ids(found)[:4] == [5, 2, 1, 9]
    assert set(ids(found)[4:]) == {3, 4}


def test_the_nearest_out_of_stock_station_is_not_the_reference(session, around_bellecour):
    # Among 3 (5 km, out of stock), 5 (8 km) and 9 (9 km), the nearest selling Gazole is 5.
    subset = [s for s in around(session) if s.id in (3, 5, 9)]
    savings = {r.station.id: r.saving for r in finder.results(subset, NOW, Trip())}

    # 9: (1.750 − 1.880) × 40 − 2 × 1 × 1.3 × 0.065 × 1.880 = −5.200 − 0.31772
    assert savings == {5: Decimal("0.00"), 9: Decimal("-5.52"), 3: None}


def test_no_saving_without_a_station_selling_the_fuel_or_without_distances(session, around_bellecour):
    sp95_out = [s for s in around(session, fuel=SP95) if s.id in (2, 3)]
    assert [r.saving for r in finder.results(sp95_out, NOW, Trip())] == [None, None]

    no_distances = finder.stations_by_id(session, [1, 2], GAZOLE)
    assert [r.saving for r in finder.results(no_distances, NOW, Trip())] == [None, None]
    assert ids(finder.results(no_distances, NOW, Trip(), sort="distance")) == [1, 2]


def test_open_now_keeps_stations_whose_hours_say_open(session, around_bellecour):
    found = results(session, open_now=True)

    assert ids(found) == [1, 3], "2 opens at 14:00; 4, 5 and 9 have unknown hours, even 4 with its automat"
    assert [r.opening.state for r in found] == ["open", "open"]
    assert found[0].saving == Decimal("0.00")


def test_a_station_closes_on_the_second_its_hours_say_whoever_asked_within_that_minute():
    """Statuses are worked out once a minute for everyone: the second before closing time it is still open."""
    week = json.dumps([{"day": day, "closed": False, "hours": [["07:00", "19:00"]]} for day in range(1, 8)])
    station = finder.FinderStation(
        1, 45.76, 4.83, "1 rue X", "Lyon", "69002", False, False, week, None, None, None, None, False
    )
    closing = dt.datetime(2026, 3, 10, 19, 0, tzinfo=PARIS).astimezone(UTC)

    before = [finder.openings([station], closing - dt.timedelta(seconds=s))[1] for s in (59, 30, 1)]
    after = [finder.openings([station], closing + dt.timedelta(seconds=s))[1] for s in (0, 1, 59)]

    assert [o.phrase() for o in before] == ["Open now, closes at 19:00"] * 3
    assert [o.phrase() for o in after] == ["Closed, opens tomorrow at 07:00"] * 3


def test_openings_say_when_each_station_opens_or_closes(session, around_bellecour):
    phrases = {r.station.id: r.opening.phrase() for r in results(session)}

    assert phrases == {
        1: "Open now, closes at 19:00",
        2: "Closed, opens at 14:00 (24/24 automat)",
        3: "Open 24 hours",
        4: "Hours unknown (24/24 automat)",
        5: "Hours unknown",
        9: "Hours unknown",
    }


def test_the_saving_is_against_the_nearest_station_even_when_a_filter_hides_it(session, around_bellecour):
    automats = results(session, automat=True)
    assert ids(automats) == [2, 4]
    assert automats[0].saving == Decimal("3.39"), "against station 1, which the filter hides"

    carrefour = results(session, brand="Carrefour")
    assert ids(carrefour) == [2]
    assert carrefour[0].saving == Decimal("3.39")


def test_filters_combine_and_may_leave_nothing(session, around_bellecour):
    assert ids(results(session, brand="Avia")) == [5]
    assert ids(results(session, brand="Avia", open_now=True)) == [], "Avia's hours are unknown"
    assert ids(results(session, automat=True, open_now=True)) == []
    assert ids(results(session, brand="Nope")) == []
    assert ids(results(session, open_now=True, sort="distance")) == [1, 3]


def test_station_detail_lists_every_fuel_with_a_price_or_out_of_stock(session, around_bellecour):
    detail = finder.station_detail(session, 3, NOW)

    assert detail.station.title == "Solaize, Aire de Solaize", "no brand: the town and address"
    assert detail.station.motorway
    assert detail.services == ["Toilettes publiques"]
    assert detail.fuels == [
        finder.FuelState("Gazole", Decimal("1.700"), NOW, "temporaire", NOW),
        finder.FuelState("SP95", None, None, "unknown", NOW),
    ]


def test_station_detail_with_its_brand_and_services(session, around_bellecour):
    detail = finder.station_detail(session, 1, NOW)

    assert detail.station.title == "TotalEnergies · Relais Bellecour"
    assert (detail.station.brand, detail.station.osm_name) == ("TotalEnergies", "Relais Bellecour")
    assert detail.services == ["Boutique alimentaire", "Lavage automatique"]
    assert [(f.fuel, f.price, f.rupture) for f in detail.fuels] == [
        ("Gazole", Decimal("1.900"), None),
        ("SP95", Decimal("1.990"), None),
    ]
    assert detail.station.price is None and not detail.station.out_of_stock, "the detail is about every fuel"


def test_station_detail_of_a_station_without_prices_or_unknown(session, around_bellecour):
    assert finder.station_detail(session, 10, NOW).fuels == []
    assert finder.station_detail(session, 10, NOW).services == []
    assert finder.station_detail(session, 12345, NOW) is None


def test_titles_brand_and_name_brand_alone_name_alone_or_town_and_address(session, around_bellecour):
    titles_by_id = {s.id: s.title for s in finder.france(session, GAZOLE)}

    assert titles_by_id[1] == "TotalEnergies · Relais Bellecour"
    assert titles_by_id[2] == "Carrefour", "a name that only repeats the brand is not repeated"
    assert titles_by_id[4] == "elan"
    assert titles_by_id[6] == "Relais du Lac"
    assert titles_by_id[9] == "Vénissieux, 1 Grande Rue"


def test_brand_names_sorted_whatever_their_case(session, around_bellecour):
    session.add(StationBrand(station_id=99, brand="Avia", name="Avia Nord"))  # a brand seen twice counts once
    session.flush()

    assert finder.brand_names(session) == ["Avia", "Carrefour", "elan", "TotalEnergies"]


def test_stations_for_a_town_are_those_around_it_and_for_a_street_those_on_it(session, around_bellecour):
    town = place_search.resolve_place(session, "Lyon")
    assert town.kind == "town"
    assert ids(finder.stations_for(session, town, 10, GAZOLE)) == ids(
        finder.stations_around(session, town.latitude, town.longitude, 10, GAZOLE)
    )
    assert {1, 2, 4} <= set(ids(finder.stations_for(session, town, 10, GAZOLE)))

    street = place_search.resolve_place(session, "Aire")
    assert street.kind == "street"
    found = finder.stations_for(session, street, 10, GAZOLE)
    assert ids(found) == [3]
    assert found[0].distance_km is None


# =========================================================================== the pages

FIND = "pages/find.py"
LOADING = "Prices are still loading: the first download takes a minute or two. Come back shortly."
INVITE = "Type a place or press Locate me to see the stations around it, cheapest first."
SIGNED_OUT_CAPTION = "Create an account to follow this station and see it on your dashboard."
FORMULA = (
    "Net saving = (price at the nearest station − price here) × 40\u202fL − 2 × extra distance × 1.3 (roads are "
    "longer than a straight line) × 6.5 L/100 km × price here. Set your fill and consumption in your profile."
)
HOSTILE = "**x** <b>y</b> [a](javascript:x)"
PARSER = MarkdownIt("commonmark", {"linkify": True}).enable(["linkify", "strikethrough"])


def lyon(app: App, prices_age: dt.timedelta = dt.timedelta(hours=1)) -> None:
    """Four stations in and around Lyon, one in Vienne 27 km away; opening states that hold at any hour.

    201 TotalEnergies · Relais Bellecour, Lyon 69002, the centre of Lyon's stations: Gazole 1.899, open 24 hours
    202 Carrefour · Carrefour Market, Lyon 69003, 2.3 km east: Gazole 1.799, closed all week, 24/24 automat
    203 no brand, Lyon 69007, 3.3 km south: Gazole 1.849, hours unknown
    204 Avia, Villeurbanne, 4.5 km north-east: Gazole out of stock
    205 Vienne, 27 km south: Gazole 1.699, outside 10 km
    """
    now = utcnow()
    updated = now - prices_age
    with app.session() as session, session.begin():
        add_station(session, 201, "1 place Bellecour", "Lyon", "69002", 45.7600, 4.8300)
        add_station(session, 202, "10 rue Garibaldi", "Lyon", "69003", 45.7600, 4.8600)
        add_station(session, 203, "3 avenue Jean Jaures", "Lyon", "69007", 45.7300, 4.8300)
        add_station(session, 204, "5 cours Emile Zola", "Villeurbanne", "69100", 45.7800, 4.8800)
        add_station(session, 205, "2 quai Riondet", "Vienne", "38200", 45.5250, 4.8700)
        stations = {s.id: s for s in session.scalars(select(Station))}
        stations[201].opening_hours = week_of_hours("00:00", "00:00")
        stations[201].services = ["Boutique alimentaire", "Lavage automatique"]
        stations[202].opening_hours = CLOSED_ALL_WEEK
        stations[202].automate_24_24 = True
        session.add_all(
            [
                StationBrand(station_id=201, brand="TotalEnergies", name="Relais Bellecour"),
                StationBrand(station_id=202, brand="Carrefour", name="Carrefour Market"),
                StationBrand(station_id=204, brand="Avia", name=None),
            ]
        )
        for station_id, euros in {201: "1.899", 202: "1.799", 203: "1.849", 204: "1.749", 205: "1.699"}.items():
            add_price(session, station_id, GAZOLE, euros, updated)
        add_price(session, 201, SP95, "1.959", updated)
        add_price(session, 203, SP95, "1.939", updated)
        add_rupture(session, 204, GAZOLE, "temporaire", updated)
        add_run(session, "success", now - dt.timedelta(minutes=5))


def find(params: dict[str, str], at: AppTest | None = None) -> AppTest:
    """Open /find?<params> as a link does: in a new browser session unless `at` (a signed-in one) is given."""
    at = at or new_app().run()
    for name, value in params.items():
        at.query_params[name] = value
    return open_page(at, FIND)


def select_row(at: AppTest, key: str, row: int) -> AppTest:
    """Select a row of a selectable st.dataframe, as a click on it does (AppTest: through session state)."""
    at.session_state[key] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    return at.run()


def pick(at: AppTest, key: str, title: str) -> AppTest:
    """Select the row of the station shown as `title`."""
    return select_row(at, key, list(tables(at)[0]["Station"]).index(title))


def maps(at: AppTest) -> list[dict]:
    """The pydeck charts on the page, decoded."""
    return [json.loads(chart.proto.json) for chart in at.get("deck_gl_json_chart")]


def points(chart: dict) -> int:
    return len(next(layer for layer in chart["layers"] if layer["id"] == "stations")["data"])


def sentences(at: AppTest) -> list[str]:
    return [text for text in markdowns(at) if re.match(r"\*\*\d+\*\* stations? ", text)]


def paris_today() -> str:
    return utcnow().astimezone(PARIS).strftime("%A")


def custom_names(app: App, user_id: int) -> dict[int, str]:
    with app.session() as session:
        rows = session.execute(
            select(CustomStation.station_id, CustomStation.custom_name).where(CustomStation.user_id == user_id)
        )
        return dict(rows.all())


def follow(app: App, user_id: int, stations: dict[int, str]) -> None:
    with app.session() as session, session.begin():
        for station_id, name in stations.items():
            preferences.follow_station(session, user_id, station_id, name)


def rendered(markdown_body: str) -> str:
    """The HTML a CommonMark renderer with GFM autolinks makes of a Markdown body."""
    return PARSER.render(markdown_body)


def assert_plain_text(markdown_body: str, expected: str, bold: int = 0) -> None:
    """The body reads `expected` and renders no link, image, HTML or emphasis but the `bold` the code writes."""
    html = rendered(markdown_body)
    for markup in ("<a ", "<b>", "<em>", "<img"):
        assert markup not in html, f"{markup} in {html!r}"
    assert html.count("<strong>") == bold, html
    assert shown(markdown_body) == expected


# --------------------------------------------------------------------------- before any search


def test_find_without_a_search_shows_france_and_invites_to_search(app):
    lyon(app)
    at = find({})

    assert not at.exception
    assert titles(at) == ["Find a station"]
    assert infos(at) == [INVITE]
    assert sentences(at) == [] and tables(at) == []
    (france,) = maps(at)
    assert points(france) == 5, "every station with a position, whatever its price"
    assert warnings(at) == []
    assert any(text.startswith("Prices updated ") for text in captions(at))


def test_find_on_an_empty_database_says_prices_are_still_loading(app):
    at = find({})

    assert not at.exception
    assert LOADING in infos(at)
    assert INVITE not in infos(at)
    assert len(maps(at)) == 1 and points(maps(at)[0]) == 0


def test_find_on_an_empty_database_says_it_once(app):
    assert infos(find({})) == [LOADING]


def test_a_new_pass_shows_at_once_on_the_map_of_france_and_in_the_freshness_line(app):
    """The map and the freshness line are cached until the next pass, not for a while."""
    at = find({})
    assert LOADING in infos(at) and points(maps(at)[0]) == 0

    lyon(app)  # a pass: the stations, their prices and its run, in one go
    at.run()

    assert INVITE in infos(at) and LOADING not in infos(at)
    assert points(maps(at)[0]) == 5


def test_a_new_pass_shows_at_once_in_a_search_of_the_place_it_brought(app):
    """The place a search names is read once per pass for everyone: a town the next pass brings is found at once."""
    lyon(app)
    at = find({"q": "Givors", "fuel": "Gazole", "radius": "10"})
    assert warnings(at) == ["No place called “Givors” was found. Try a town, a postcode, or a street and its town."]

    with app.session() as session, session.begin():  # the next pass: a station in Givors, and its run
        add_station(session, 206, "1 quai Leon Blum", "Givors", "69700", 45.5900, 4.7700)
        add_price(session, 206, GAZOLE, "1.759", utcnow())
        add_run(session, "success", utcnow())
    at.run()

    assert warnings(at) == []
    assert sentences(at) == ["**1** station in and around Givors (69700), 10 km around."]
    assert list(tables(at)[0]["Price"]) == ["€1.759/L"]


def test_a_new_import_of_places_is_offered_at_once_by_the_place_box(app, monkeypatch):
    """The places offered as one types are read once per pass (or import) for everyone, not until later."""
    monkeypatch.setattr(ingest_places, "MIN_PLACES", 100)
    lyon(app)
    box = SimpleNamespace(Session=app.session, settings=app.settings)
    assert place_box.place_choices("calu", box) == ["calu"], "what was typed, and no commune known yet"

    cut = Path(__file__).resolve().parent / "data" / "places-laposte_cut.csv"
    imports.import_reference(app.engine, app.settings, imports.PLACES, str(cut))

    assert place_box.place_choices("calu", box) == ["calu", "Caluire-et-Cuire (69)"]


# --------------------------------------------------------------------------- a place


def test_a_town_lists_its_stations_cheapest_first_with_the_price_and_the_station_first(app):
    lyon(app)
    at = find({"q": "Lyon", "fuel": "Gazole", "radius": "10"})

    assert not at.exception
    assert sentences(at) == ["**4** stations in and around Lyon (69002–69007), 10 km around."]
    (table,) = tables(at)
    assert list(table.columns[:2]) == ["Price", "Station"]
    assert list(table["Price"]) == ["€1.799/L", "€1.849/L", "€1.899/L", "out of stock"]
    assert list(table["Station"]) == [
        "Carrefour · Carrefour Market",
        "Lyon, 3 avenue Jean Jaures",
        "TotalEnergies · Relais Bellecour",
        "Avia",
    ], "Vienne, 27 km away, is not listed"
    assert list(table["Town"]) == ["Lyon", "Lyon", "Lyon", "Villeurbanne"]
    assert list(table["Open"]) == ["closed", "hours unknown", "open", "hours unknown"]
    assert list(table["Distance"]) == ["2.3 km", "3.3 km", "0 m", "4.5 km"]
    assert table["Detour"][0].startswith("saves ") and table["Detour"][0].endswith(" net")
    assert list(table["Updated"]) == ["1 hr ago"] * 4
    assert FORMULA in captions(at)
    assert points(maps(at)[0]) == 4, "the map shows the stations listed"
    assert warnings(at) == []


def test_a_village_without_a_station_is_found_and_suggested_with_the_stations_around_it(app, monkeypatch):
    monkeypatch.setattr(ingest_places, "MIN_PLACES", 100)
    cut = Path(__file__).resolve().parent / "data" / "places-laposte_cut.csv"
    imports.import_reference(app.engine, app.settings, imports.PLACES, str(cut))
    lyon(app)

    at = find({"q": "Caluire-et-Cuire", "fuel": "Gazole", "radius": "5"})

    assert not at.exception
    assert sentences(at) == ["**3** stations in and around Caluire-et-Cuire (69300), 5 km around."]
    assert sorted(tables(at)[0]["Distance"]) == ["3 km", "4.2 km", "4.5 km"]  # from La Poste's centre of Caluire
    offered = place_box.place_choices(
        "calu", SimpleNamespace(Session=app.session, settings=app.settings)
    )  # what the box shows as typed
    assert offered == ["calu", "Caluire-et-Cuire (69)"], "what was typed first, for Enter; then the commune"
    chosen = find({"q": offered[1], "fuel": "Gazole", "radius": "5"})
    assert tables(chosen)[0].equals(tables(at)[0]), "the commune chosen is searched as its name typed is"


def import_places(monkeypatch, app: App) -> None:
    """La Poste's communes of tests/data (a cut of the real file): Caluire-et-Cuire, the Saint-Denis, and others."""
    monkeypatch.setattr(ingest_places, "MIN_PLACES", 100)
    cut = Path(__file__).resolve().parent / "data" / "places-laposte_cut.csv"
    imports.import_reference(app.engine, app.settings, imports.PLACES, str(cut))


def test_no_station_within_the_radius_says_so_and_how_many_the_largest_radius_finds_and_widens_to_it(
    app, monkeypatch, caplog
):
    import_places(monkeypatch, app)
    lyon(app)
    at = find({"q": "Caluire-et-Cuire", "fuel": "Gazole", "radius": "2"})

    assert not at.exception
    assert sentences(at) == [] and tables(at) == []
    assert infos(at) == ["No station within 2 km of Caluire-et-Cuire (69300). There are 5 within 50 km."]
    button(at, "Search within 50 km").click().run()

    assert not at.exception
    assert at.query_params["radius"] == "50", "the link searches the radius widened to"
    assert sentences(at) == ["**5** stations in and around Caluire-et-Cuire (69300), 50 km around."]
    assert len(tables(at)[0]) == 5
    assert [b.label for b in at.button if b.label.startswith("Search within")] == []
    assert not [r for r in caplog.records if "default value" in r.getMessage()], "Streamlit warned of the slider"


def test_no_station_even_within_the_largest_radius_says_there_is_none_near_the_place(app, monkeypatch):
    import_places(monkeypatch, app)
    lyon(app)  # no station in Réunion
    at = find({"q": "Saint-Denis (974)", "fuel": "Gazole", "radius": "10"})

    assert not at.exception
    assert infos(at) == ["There is no station within 50 km of Saint-Denis (97400–97490)."]
    assert [b.label for b in at.button if b.label.startswith("Search within")] == []
    assert warnings(at) == [] and tables(at) == []


def test_near_me_with_no_station_within_the_radius_offers_the_largest(app):
    lyon(app)
    at = find({"lat": "45.8000", "lon": "4.8300", "radius": "2"})  # 4.4 km north of Bellecour

    assert infos(at) == ["No station within 2 km of you. There are 5 within 50 km."]
    button(at, "Search within 50 km").click().run()
    assert sentences(at) == ["**5** stations within 50 km of you."]

    far = find({"lat": "43.3000", "lon": "5.4000", "radius": "50"})  # Marseille
    assert infos(far) == ["There is no station within 50 km of you."]
    assert [b.label for b in far.button if b.label.startswith("Search within")] == []


def test_each_other_reading_of_a_place_is_a_button_that_searches_it(app, monkeypatch):
    import_places(monkeypatch, app)
    lyon(app)
    at = find({"q": "Saint-Denis", "fuel": "Gazole", "radius": "10"})
    with app.session() as session:
        match = place_search.resolve_place(session, "Saint-Denis")
    others = [widgets.md(finder_ui.OTHER_PLACE, other.label) for other in match.alternatives]
    assert len(others) > 1 and "Did you mean:" in captions(at)
    assert [b.label for b in at.button if b.label in others] == others

    button(at, widgets.md(finder_ui.OTHER_PLACE, match.alternatives[1].label)).click().run()

    assert not at.exception
    assert at.query_params["q"] == match.alternatives[1].query
    assert match.alternatives[1].label in "".join(infos(at) + markdowns(at))
    assert match.label not in "".join(infos(at) + markdowns(at))


def test_a_misspelt_place_offers_the_places_spelt_nearly_so_each_a_button_that_searches_it(app, monkeypatch):
    import_places(monkeypatch, app)
    lyon(app)
    at = find({"q": "Villeurbane", "fuel": "Gazole", "radius": "10"})

    assert warnings(at) == [
        "No place called “Villeurbane” was found. Try a town, a postcode, or a street and its town."
    ]
    assert "Did you mean:" in captions(at)
    button(at, widgets.md(finder_ui.OTHER_PLACE, "Villeurbanne (69)")).click().run()

    assert not at.exception
    assert at.query_params["q"] == "Villeurbanne (69)"
    assert sentences(at) == ["**4** stations in and around Villeurbanne (69100), 10 km around."]


def test_a_street_no_station_is_on_says_so_and_lists_the_stations_around_its_town(app):
    lyon(app)
    at = find({"q": "avenue des Frères Lumière Lyon", "fuel": "Gazole", "radius": "10"})

    assert not at.exception
    assert [text for text in markdowns(at) if text.startswith("No station on")] == [
        "No station on “avenue des Frères Lumière Lyon”: **4** stations in and around Lyon (69002–69007), 10 km around."
    ]
    assert len(tables(at)[0]) == 4


def test_the_place_box_offers_the_communes_of_a_postcode_and_homonyms_in_two_departments(app, monkeypatch):
    import_places(monkeypatch, app)
    box = SimpleNamespace(Session=app.session, settings=app.settings)

    shared = place_box.place_choices(" 69380 ", box)
    assert shared[0] == "69380" and {"Chazay-d'Azergues (69)", "Charnay (69)", "Les Cheres (69)"} <= set(shared)
    assert {"Saint-Denis (93)", "Saint-Denis (974)"} <= set(place_box.place_choices("Saint-Den", box))
    assert place_box.place_choices("Saint-Denis (93)", box)[0] == "Saint-Denis (93)", "a label is not offered twice"
    assert place_box.place_choices("   ", box) == []


def test_the_fuel_and_radius_in_the_link_are_used(app):
    lyon(app)

    wide = find({"q": "Lyon", "radius": "30"})
    assert sentences(wide) == ["**5** stations in and around Lyon (69002–69007), 30 km around."]
    assert tables(wide)[0]["Station"][0] == "Vienne, 2 quai Riondet"

    narrow = find({"q": "Lyon", "radius": "3"})
    assert sentences(narrow) == ["**2** stations in and around Lyon (69002–69007), 3 km around."]

    sp95 = find({"q": "Lyon", "fuel": "SP95"})
    assert list(tables(sp95)[0]["Price"]) == ["€1.939/L", "€1.959/L", "—", "—"]


def layer(chart: dict, layer_id: str) -> dict | None:
    return next((layer for layer in chart["layers"] if layer["id"] == layer_id), None)


def test_the_map_marks_the_place_searched_and_the_circle_of_the_radius_under_the_stations(app, monkeypatch):
    import_places(monkeypatch, app)
    lyon(app)
    with app.session() as session:
        caluire = place_search.resolve_place(session, "Caluire-et-Cuire")
    centre = [round(caluire.longitude, 4), round(caluire.latitude, 4)]

    (chart,) = maps(find({"q": "Caluire-et-Cuire", "fuel": "Gazole", "radius": "5"}))
    assert layer(chart, "place")["data"] == [{"p": centre, "t": "Caluire-et-Cuire (69300)"}]
    circle = layer(chart, "radius")
    assert circle["data"] == [{"p": centre}] and circle["getRadius"] == 5000 and circle["radiusUnits"] == "meters"
    assert [layer["id"] for layer in chart["layers"]].index("radius") == 0, "drawn under the stations"
    assert points(chart) == 3

    (empty,) = maps(find({"q": "Caluire-et-Cuire", "fuel": "Gazole", "radius": "2"}))
    assert points(empty) == 0 and layer(empty, "radius")["getRadius"] == 2000
    view = empty["initialViewState"]
    assert view["zoom"] > 9, "a view of the circle, not of France"
    assert abs(view["latitude"] - caluire.latitude) < 0.01 and abs(view["longitude"] - caluire.longitude) < 0.01


def test_near_me_the_map_circles_the_radius_around_the_person(app):
    lyon(app)
    (chart,) = maps(find({"lat": "45.7600", "lon": "4.8300", "radius": "3"}))

    assert layer(chart, "radius")["data"] == [{"p": [4.83, 45.76]}] and layer(chart, "radius")["getRadius"] == 3000
    assert layer(chart, "here")["data"][0]["t"] == "You are here"
    assert layer(chart, "place") is None, "the person's position is the one mark"


def test_a_street_found_in_several_towns_has_no_circle(app):
    lyon(app)
    at = find({"q": "Jaures"})  # the address of a station in Lyon 7e; no town of that name

    assert "No town called “Jaures”: **1** station whose address matches." in markdowns(at)
    assert tables(at)[0]["Station"][0] == "Lyon, 3 avenue Jean Jaures"
    (chart,) = maps(at)
    assert layer(chart, "radius") is None and layer(chart, "place") is None, "its stations are on it, not around it"


def test_an_unknown_place_is_said_and_nothing_is_listed(app):
    lyon(app)
    at = find({"q": "Zzyzx", "fuel": "Gazole", "radius": "10"})

    assert not at.exception
    assert warnings(at) == ["No place called “Zzyzx” was found. Try a town, a postcode, or a street and its town."]
    assert tables(at) == []
    assert FORMULA not in captions(at)


def test_a_blank_place_is_no_search(app):
    lyon(app)
    at = find({"q": "   "})

    assert warnings(at) == []
    assert infos(at) == [INVITE]


def test_the_nearest_order_from_the_link(app):
    lyon(app)
    at = find({"q": "Lyon", "sort": "distance"})

    assert list(tables(at)[0]["Station"]) == [
        "TotalEnergies · Relais Bellecour",
        "Carrefour · Carrefour Market",
        "Lyon, 3 avenue Jean Jaures",
        "Avia",
    ]


def test_sort_distance_in_the_link_orders_by_distance(app):
    lyon(app)
    at = find({"q": "Lyon", "sort": "distance"})

    assert tables(at)[0]["Station"][0] == "TotalEnergies · Relais Bellecour"


def test_the_biggest_saving_order_from_the_link(app):
    lyon(app)
    at = find({"q": "Lyon", "sort": "saving"})

    stations = list(tables(at)[0]["Station"])
    assert stations[0] == "Carrefour · Carrefour Market", "1.799, 2.3 km: the biggest net saving"
    assert stations[-1] == "Avia", "out of stock: no saving"


def test_open_now_from_the_link_keeps_the_station_open_24_hours(app):
    lyon(app)
    at = find({"q": "Lyon", "open": "true"})

    (sentence,) = sentences(at)
    assert sentence.startswith("**1** station") and sentence.endswith(
        " in and around Lyon (69002–69007), 10 km around."
    )
    assert list(tables(at)[0]["Station"]) == ["TotalEnergies · Relais Bellecour"]


def test_automat_and_brand_from_the_link(app):
    lyon(app)

    automat = find({"q": "Lyon", "automat": "true"})
    assert list(tables(automat)[0]["Station"]) == ["Carrefour · Carrefour Market"]

    avia = find({"q": "Lyon", "brand": "Avia"})
    assert sentences(avia)[0].startswith("**1** station")
    assert list(tables(avia)[0]["Price"]) == ["out of stock"]

    options = next(box for box in avia.selectbox if box.label == "Brand").options
    assert options == ["Avia", "Carrefour", "TotalEnergies"]


def test_one_result_is_one_station(app):
    lyon(app)
    at = find({"q": "Lyon", "open": "true"})

    assert sentences(at) == ["**1** station in and around Lyon (69002–69007), 10 km around."]


def test_the_nearest_station_is_not_called_a_detour(app):
    lyon(app)
    at = find({"q": "Lyon", "sort": "distance"})

    table = tables(at)[0]
    assert table["Station"][0] == "TotalEnergies · Relais Bellecour" and table["Distance"][0] == "0 m"
    assert table["Detour"][0] != "not worth the detour"


def test_filters_that_leave_nothing_say_zero_and_show_no_table(app):
    lyon(app)
    at = find({"q": "Lyon", "brand": "Avia", "open": "true"})

    assert not at.exception
    assert sentences(at) == ["**0** stations in and around Lyon (69002–69007), 10 km around."]
    assert tables(at) == []


def feed_spelt_towns(app: App) -> None:
    """Three stations north of Paris whose towns are written as the feed writes them: in capitals, with a
    lower-case accent inside them, or with a CEDEX mark. The one without a brand is named by its town."""
    with app.session() as session, session.begin():
        add_station(session, 301, "1 rue de Paris", "GARGES-LèS-GONESSE", "95140", 48.9730, 2.4000)
        add_station(session, 302, "2 rue de la Gare", "EPINAY SUR SEINE", "93800", 48.9550, 2.3100)
        add_station(session, 303, "3 rue des Halles", "RUNGIS CEDEX", "94150", 48.9600, 2.3600)
        session.add(StationBrand(station_id=302, brand="Esso", name=None))
        for station_id, euros in {301: "1.799", 302: "1.819", 303: "1.839"}.items():
            add_price(session, station_id, GAZOLE, euros, utcnow())
        add_run(session, "success", utcnow())


def test_station_towns_read_as_towns_are_written_not_in_the_feeds_capitals(app):
    feed_spelt_towns(app)
    app.register("alice")
    at = new_app().run()
    sign_in(at, "alice", PASSWORD)
    find({"lat": "48.9650", "lon": "2.3600", "radius": "10"}, at)

    assert not at.exception
    table = tables(at)[0]
    assert list(table["Town"]) == ["Garges-lès-Gonesse", "Epinay sur Seine", "Rungis"]
    assert list(table["Station"]) == [
        "Garges-lès-Gonesse, 1 rue de Paris",
        "Esso",
        "Rungis, 3 rue des Halles",
    ]
    (chart,) = maps(at)
    tooltips = [point["t"] for point in next(layer for layer in chart["layers"] if layer["id"] == "stations")["data"]]
    assert sorted(tip.split("\n")[0] for tip in tooltips) == ["Esso", "Garges-lès-Gonesse", "Rungis"]

    pick(at, "finder-list", "Garges-lès-Gonesse, 1 rue de Paris")
    assert subheaders(at) == ["Garges-lès-Gonesse, 1 rue de Paris"]
    assert "1 rue de Paris, 95140 Garges-lès-Gonesse" in markdowns(at)
    assert text_input(at, "Name it (1 to 40 characters)").value == "Garges-lès-Gonesse 1 rue de Paris"


def test_a_town_name_loses_the_feeds_capitals_and_cedex_mark_and_keeps_a_spelling_of_its_own():
    assert towns.town_name("GENAY") == "Genay"
    assert towns.town_name("GARGES-LèS-GONESSE") == "Garges-lès-Gonesse"
    assert towns.town_name("AMIENS CEDEX 2") == "Amiens"
    assert towns.town_name("RUNGIS CEDEX") == "Rungis"
    assert towns.town_name("Saint-Denis") == "Saint-Denis"
    assert towns.town_name("lyon 3e [x](y)") == "lyon 3e [x](y)", "only capitals are the feed's"
    assert towns.town_name("Cedex") == "Cedex", "a town is never left without a name"


# --------------------------------------------------------------------------- one station


def test_selecting_a_row_shows_the_station_its_week_and_its_opening(app):
    lyon(app)
    at = find({"q": "Lyon"})
    before = paris_today()
    pick(at, "finder-list", "TotalEnergies · Relais Bellecour")
    after = paris_today()

    assert not at.exception
    assert subheaders(at) == ["TotalEnergies · Relais Bellecour"]
    texts = markdowns(at)
    assert "1 place Bellecour, 69002 Lyon" in texts
    assert "**Open 24 hours**" in texts
    (week,) = [text for text in texts if "Monday" in text]
    lines = week.split("  \n")
    assert len(lines) == 7
    (today,) = [line for line in lines if "(today)" in line]
    assert today in {f"**{before}: 24 hours** (today)", f"**{after}: 24 hours** (today)"}
    assert all(line.endswith(": 24 hours") for line in lines if line != today)
    fuels = tables(at)[1]
    assert list(fuels["Fuel"]) == ["Gazole", "SP95"]
    assert list(fuels["Price"]) == ["€1.899/L", "€1.959/L"]
    assert "Services: Boutique alimentaire, Lavage automatique" in captions(at)
    assert SIGNED_OUT_CAPTION in captions(at)
    assert [b.label for b in at.button if b.label == "Follow this station"] == []
    assert FORMULA in captions(at)


def test_a_station_closed_all_week_with_an_automat(app):
    lyon(app)
    at = pick(find({"q": "Lyon"}), "finder-list", "Carrefour · Carrefour Market")

    texts = markdowns(at)
    assert "**Closed (24/24 automat)**" in texts, "the automat named once"
    (week,) = [text for text in texts if "Monday" in text]
    assert f"**{paris_today()}: Closed** (today)" in week


def test_a_station_whose_hours_are_unknown_says_so_once_not_seven_times(app):
    lyon(app)
    at = pick(find({"q": "Lyon"}), "finder-list", "Lyon, 3 avenue Jean Jaures")

    assert not at.exception
    texts = markdowns(at)
    assert "**Hours unknown**" in texts
    assert [text for text in texts if "Monday" in text or "Unknown" in text] == []


def test_an_out_of_stock_station_in_detail(app):
    lyon(app)
    at = pick(find({"q": "Lyon"}), "finder-list", "Avia")

    assert subheaders(at) == ["Avia"]
    assert "**Hours unknown**" in markdowns(at)
    assert list(tables(at)[1]["Price"]) == ["out of stock"]


def test_signed_in_the_follow_form_follows_the_station(app):
    lyon(app)
    account = app.register("alice")
    at = new_app().run()
    sign_in(at, "alice", PASSWORD)
    find({"q": "Lyon"}, at)
    pick(at, "finder-list", "TotalEnergies · Relais Bellecour")

    assert SIGNED_OUT_CAPTION not in captions(at)
    name_box = text_input(at, "Name it (1 to 40 characters)")
    assert name_box.value == "TotalEnergies 1 place Bellecour"
    name_box.input("  Bellecour  ")
    button(at, "Follow this station").click().run()

    assert not at.exception
    assert errors(at) == []
    assert custom_names(app, account.user_id) == {201: "Bellecour"}
    assert "You follow this station as “Bellecour”." in infos(at)
    assert [b.label for b in at.button if b.label == "Follow this station"] == []
    assert at.session_state["flash"][0] == "Followed: it is on your dashboard now."
    run_frame(at)  # the next run of the frame shows the confirmation
    assert "Followed: it is on your dashboard now." in successes(at)


def test_following_without_a_name_is_refused_and_nothing_is_stored(app):
    lyon(app)
    account = app.register("alice")
    at = new_app().run()
    sign_in(at, "alice", PASSWORD)
    pick(find({"q": "Lyon"}, at), "finder-list", "Avia")

    text_input(at, "Name it (1 to 40 characters)").input("   ")
    button(at, "Follow this station").click().run()

    assert not at.exception
    assert errors(at) == ["Give the station a name."]
    assert custom_names(app, account.user_id) == {}
    assert "flash" not in at.session_state


def test_signed_in_with_a_tank_of_its_own_the_formula_says_so(app):
    lyon(app)
    account = app.register("alice")
    with app.session() as session, session.begin():
        preferences.set_trip(session, account.user_id, tank_litres=60, litres_per_100km=5.2)
    at = new_app().run()
    sign_in(at, "alice", PASSWORD)
    find({"q": "Lyon"}, at)

    (formula,) = [text for text in captions(at) if text.startswith("Net saving")]
    assert "× 60\u202fL −" in formula and "× 5.2 L/100 km" in formula


# --------------------------------------------------------------------------- freshness


def test_fresh_prices_raise_no_warning(app):
    lyon(app, prices_age=dt.timedelta(hours=2))
    at = find({"q": "Lyon"})

    assert warnings(at) == []
    assert any(text.startswith("Prices updated ") and "(2 hr ago)" in text for text in captions(at))


def test_a_feed_that_has_not_moved_for_days_is_warned_of(app):
    lyon(app, prices_age=dt.timedelta(days=3))
    at = find({"q": "Lyon"})

    (warning,) = warnings(at)
    assert warning.startswith("The official feed's newest price was declared on ")
    assert "(3 days ago)" in warning
    assert list(tables(at)[0]["Updated"]) == ["3 days ago"] * 4


# --------------------------------------------------------------------------- located by the browser


def test_a_position_in_the_link_lists_the_stations_within_reach_of_it(app):
    lyon(app)
    at = find({"lat": "45.7600", "lon": "4.8300", "radius": "3"})

    assert not at.exception
    assert sentences(at) == ["**2** stations within 3 km of you."]
    assert list(tables(at)[0]["Station"]) == ["Carrefour · Carrefour Market", "TotalEnergies · Relais Bellecour"]
    assert infos(at) == []
    (chart,) = maps(at)
    assert any(layer["id"] == "here" for layer in chart["layers"]), "the person's position is marked"


def test_a_place_typed_wins_over_a_position(app):
    lyon(app)
    at = find({"lat": "45.5250", "lon": "4.8700", "q": "Lyon"})

    assert sentences(at) == ["**4** stations in and around Lyon (69002–69007), 10 km around."]
    assert "lat" not in at.query_params and "lon" not in at.query_params


@pytest.mark.parametrize(
    "position",
    [
        {"lat": "abc", "lon": "4.83"},
        {"lat": "999", "lon": "4.83"},
        {"lat": "45.76", "lon": "-181"},
        {"lat": "nan", "lon": "4.83"},
        {"lat": "45.76"},
    ],
)
def test_a_broken_position_in_the_link_is_ignored(app, position):
    lyon(app)
    at = find(position)

    assert not at.exception
    assert infos(at) == [INVITE]
    assert tables(at) == []
    assert points(maps(at)[0]) == 5, "France"


# --------------------------------------------------------------------------- my stations


def test_my_stations_lists_the_followed_stations_by_their_names(app):
    lyon(app)
    account = app.register("alice")  # follows Gazole, SP95 and E10: Gazole comes first
    follow(app, account.user_id, {201: "Bellecour", 202: "Garibaldi"})
    at = new_app().run()
    sign_in(at, "alice", PASSWORD)
    open_page(at, "pages/stations.py")

    assert not at.exception
    assert titles(at) == ["My stations"]
    assert page_links(at) == {"Add a station: find it, open it and press Follow": "find"}
    assert "Prices of Gazole, cheapest first. Select a station to see its hours and every fuel." in captions(at)
    (table,) = tables(at)
    assert list(table["Station"]) == ["Garibaldi", "Bellecour"]
    assert list(table["Price"]) == ["€1.799/L", "€1.899/L"]
    assert [e.label for e in at.expander] == ["Bellecour", "Garibaldi"]

    select_row(at, "list", 1)
    assert subheaders(at)[-1] == "TotalEnergies · Relais Bellecour"
    assert "**Open 24 hours**" in markdowns(at)


def test_my_stations_rename_and_stop_following(app):
    lyon(app)
    account = app.register("alice")
    follow(app, account.user_id, {203: "Jaures"})
    at = new_app().run()
    sign_in(at, "alice", PASSWORD)
    open_page(at, "pages/stations.py")

    text_input(at.expander[0], "Name").input("Jean Jaurès")
    button(at.expander[0], "Rename").click().run()
    assert not at.exception
    assert custom_names(app, account.user_id) == {203: "Jean Jaurès"}
    assert [e.label for e in at.expander] == ["Jean Jaurès"]
    assert list(tables(at)[0]["Station"]) == ["Jean Jaurès"]

    text_input(at.expander[0], "Name").input("   ")
    button(at.expander[0], "Rename").click().run()
    assert errors(at) == ["Give the station a name."]
    assert custom_names(app, account.user_id) == {203: "Jean Jaurès"}

    button(at.expander[0], "Stop following").click().run()
    assert not at.exception
    assert custom_names(app, account.user_id) == {}
    assert at.expander.len == 0
    assert "You don't follow any station yet." in infos(at)
    assert "None yet." in captions(at)


def test_a_station_followed_in_the_finder_shows_on_my_stations(app):
    lyon(app)
    account = app.register("alice")
    at = new_app().run()
    sign_in(at, "alice", PASSWORD)
    pick(find({"q": "Lyon"}, at), "finder-list", "Carrefour · Carrefour Market")
    text_input(at, "Name it (1 to 40 characters)").input("Garibaldi")
    button(at, "Follow this station").click().run()
    assert custom_names(app, account.user_id) == {202: "Garibaldi"}

    open_page(at, "pages/stations.py")
    assert list(tables(at)[0]["Station"]) == ["Garibaldi"]


# --------------------------------------------------------------------------- the demo


def add_box(at: AppTest, text: str) -> AppTest:
    text_input(at, "Town, postcode or address").input(text)
    return at.run()


def demo_board(at: AppTest) -> list[str]:
    """The Gazole board's stations (the board's first table)."""
    return list(tables(at)[0]["Station"])


def test_the_demo_adds_a_station_found_by_its_town(app):
    lyon(app)
    at = new_app().run()
    open_page(at, "pages/demo.py")
    assert not at.exception
    first = demo_board(at)
    assert first, "the demo starts with stations selling Gazole and SP95"

    add_box(at, "Villeurbanne")
    assert not at.exception
    found = tables(at)[-1]
    assert list(found["Town"]) == ["Lyon", "Lyon", "Villeurbanne"], "within 5 km of Villeurbanne: not 203, 6.8 km"
    assert list(found["Station"])[-1] == "Avia"

    select_row(at, "demo-list", 0)
    add = at.button(key="demo-add")
    assert add.label == "Add 10 rue Garibaldi, Lyon to the demo"
    add.click().run()
    assert not at.exception
    assert "Lyon 10 rue Garibaldi" in demo_board(at)
    assert set(first) <= set(demo_board(at))
    assert app.count(CustomStation) == 0, "the demo writes nothing"


def test_the_demo_says_when_no_place_matches(app):
    lyon(app)
    at = new_app().run()
    open_page(at, "pages/demo.py")
    before = len(tables(at))

    add_box(at, "Zzyzx")

    assert not at.exception
    assert warnings(at) == ["No place called “Zzyzx” was found. Try a town, a postcode, or a street and its town."]
    assert len(tables(at)) == before, "no list of stations"


# --------------------------------------------------------------------------- hostile text


def hostile_station(app: App) -> None:
    """Two Lyon stations whose feed address is Markdown and HTML; the first one's OpenStreetMap brand too."""
    with app.session() as session, session.begin():
        add_station(session, 301, HOSTILE, "Lyon", "69008", 45.7400, 4.8700)
        add_station(session, 302, HOSTILE, "Lyon", "69009", 45.7700, 4.8050)
        add_price(session, 301, GAZOLE, "1.799", utcnow())
        add_price(session, 302, GAZOLE, "1.809", utcnow())
        session.add(StationBrand(station_id=301, brand=HOSTILE, name=None))


def test_a_hostile_address_searched_for_is_echoed_as_text(app):
    lyon(app)
    hostile_station(app)
    at = find({"q": HOSTILE})

    assert not at.exception
    (sentence,) = [element for element in at.markdown if "stations whose address matches" in element.value]
    assert_plain_text(sentence.value, f"No town called “{HOSTILE}”: **2** stations whose address matches.", bold=1)
    assert list(tables(at)[0]["Station"]) == [HOSTILE, f"Lyon, {HOSTILE}"], "a table shows text as it is"


def test_a_hostile_address_in_the_detail_is_shown_as_text(app):
    lyon(app)
    hostile_station(app)
    at = pick(find({"q": "Lyon"}), "finder-list", HOSTILE)

    (address,) = [element for element in at.markdown if element.value.endswith("69008 Lyon")]
    assert_plain_text(address.value, f"{HOSTILE}, 69008 Lyon")
    assert widgets.escape_markdown(HOSTILE) in address.value


def test_a_hostile_brand_in_the_detail_title_is_shown_as_text(app):
    lyon(app)
    hostile_station(app)
    at = pick(find({"q": "Lyon"}), "finder-list", HOSTILE)

    (title,) = at.subheader
    assert_plain_text(title.value, HOSTILE)


# --------------------------------------------------------------------------- the query plan


def test_stations_around_read_the_coordinates_index(engine, session, around_bellecour):
    if engine.dialect.name != "sqlite":
        pytest.skip("query plans are checked on SQLite, whose planner is predictable on small tables")
    from sqlalchemy import event

    session.connection()  # the transaction is open: only the finder's own statement is recorded
    statements: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        found = around(session)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    ((sql, parameters),) = statements

    plan = " ".join(row[-1] for row in session.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters))

    assert "ix_stations_lat_lon" in plan, plan
    assert ids(found) == [1, 4, 2, 3, 5, 9]
