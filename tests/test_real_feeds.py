"""Real government feed files (../shared/feeds/real) load completely and correctly.

Every expectation is computed independently with the standard library
(feed_reader.py: xml.etree over the decompressed bytes) or written out by hand from the files
and from ../shared/feeds/FORMAT.md; the project's parser is never the oracle.
The real files are read in place and never copied into the project.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

import db_snapshot
import etl
import feed_reader
from conftest import REAL_FEEDS
from db_snapshot import count
from db_snapshot import current_prices as stored_prices
from db_snapshot import etl_runs as runs
from db_snapshot import history as stored_history
from feed_reader import Feed
from models import Price, PriceHistory, Rupture, Station

UTC = dt.UTC

INSTANT_ZIPS = [
    "instantane_bbohec-carber_2019-05-10.zip",
    "instantane_Jopruvo-isoc631_2022-05-03.zip",
    "instantane_yzpt-dataflow_2023-11-25a.zip",
    "instantane_yzpt-dataflow_2023-11-25b.zip",
    "instantane_mariush444-Osmand-tools_2026-02-12.zip",
    "instantane_ruptures_jstoudji1-carburant-app_2026-06-05.zip",
]
QUOTIDIEN_ZIP = "quotidien_thocayla-Ensai_2016-12-16.zip"
SNAPSHOT_A, SNAPSHOT_B = "instantane_yzpt-dataflow_2023-11-25a.zip", "instantane_yzpt-dataflow_2023-11-25b.zip"
EXTRACT_2016 = "extract_quotidien_2016-12-16_selected-pdv.xml"
EXTRACT_2019 = "extract_instantane_2019-05-10_selected-pdv.xml"
EXTRACT_2022 = "extract_instantane_2022-05-03_selected-pdv.xml"
EXTRACT_2026 = "extract_instantane_2026-02-12_selected-pdv.xml"
EXTRACT_RUPTURES = "extract_instantane_ruptures_2026-06-05_selected-pdv.xml"

# Metropolitan France with a margin, and overseas departments (cp 97xxx) anywhere on Earth.
METROPOLE = ((41.0, 51.6), (-5.8, 10.0))


def real_file(name: str) -> Path:
    if not REAL_FEEDS.is_dir():
        pytest.skip(f"the real feed files are absent ({REAL_FEEDS})")
    path = REAL_FEEDS / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


# --------------------------------------------------------------------------- independent reading

# The real files are large and several tests read the same one: read each once.
read_feed = functools.cache(feed_reader.read_feed)


# --------------------------------------------------------------------------- database reading


def contents(engine) -> dict[str, list[tuple]]:
    """Every row of every table but etl_runs; stations without last_seen_at (see the a/b test)."""
    return db_snapshot.contents(engine, last_seen=False)


# --------------------------------------------------------------------------- every real file loads completely

_MOJIBAKE_OR_C1 = re.compile("[\x80-\x9f]|Ã[\x80-\xbf]")


def _check_station_columns(engine, feed: Feed, instant: bool) -> list[str]:
    """Compare every stored station with the raw file; returns one line per problem."""
    problems = []
    with engine.connect() as conn:
        rows = {row.id: row for row in conn.execute(select(Station))}
    for station_id, raw in feed.details.items():
        row = rows[station_id]
        if row.zip_code != raw.cp:
            problems.append(f"{station_id}: zip_code {row.zip_code!r} != {raw.cp!r}")
        if row.road_type != raw.pop:
            problems.append(f"{station_id}: road_type {row.road_type!r} != {raw.pop!r}")
        if row.automate_24_24 != raw.automate:
            problems.append(f"{station_id}: automate_24_24 {row.automate_24_24!r} != {raw.automate!r}")
        if (row.opening_hours is not None) != raw.has_hours:
            problems.append(f"{station_id}: opening hours {'lost' if raw.has_hours else 'invented'}")
        if len(row.services) != len(raw.services):
            problems.append(f"{station_id}: {len(row.services)} services stored, {len(raw.services)} in the file")
        elif any(s != o for s, o in zip(row.services, raw.services, strict=True) if not _MOJIBAKE_OR_C1.search(o)):
            problems.append(f"{station_id}: services {row.services} != {raw.services}")
        for column, stored, original in (("address", row.address, raw.address), ("town", row.town, raw.town)):
            if _MOJIBAKE_OR_C1.search(stored) or stored != stored.strip():
                problems.append(f"{station_id}: {column} {stored!r} still has encoding debris or spaces")
            elif not _MOJIBAKE_OR_C1.search(original) and stored != original.strip():
                problems.append(f"{station_id}: clean {column} {original!r} was altered to {stored!r}")
        if instant:
            # Instant files 2019-2026 have every station inside metropolitan France, in degrees x 100000.
            expected = (float(raw.latitude) / 100000, float(raw.longitude) / 100000)
            got = (row.latitude, row.longitude)
            if None in got or abs(got[0] - expected[0]) > 1e-6 or abs(got[1] - expected[1]) > 1e-6:
                problems.append(f"{station_id}: coordinates {got} != {expected}")
        elif raw.latitude in ("", "0") or raw.longitude in ("", "0"):
            if (row.latitude, row.longitude) != (None, None):
                problems.append(f"{station_id}: unusable coordinates stored as {(row.latitude, row.longitude)}")
        elif row.latitude is not None and not raw.cp.startswith("97"):
            (lat_min, lat_max), (lon_min, lon_max) = METROPOLE
            if not (lat_min <= row.latitude <= lat_max and lon_min <= row.longitude <= lon_max):
                problems.append(f"{station_id}: coordinates {(row.latitude, row.longitude)} outside France")
    return problems


@pytest.mark.parametrize("name", [*INSTANT_ZIPS, QUOTIDIEN_ZIP])
def test_real_feed_loads_every_station_price_and_rupture(engine, settings, name):
    path = real_file(name)
    feed = read_feed(path)

    summary = etl.run_pass(engine, settings, str(path), force=name == QUOTIDIEN_ZIP)

    assert count(engine, Station) == len(feed.stations)
    prices = stored_prices(engine)
    assert len(prices) == len(feed.current)
    assert set(prices) == set(feed.current)
    ambiguous = {(s, f) for s, f, _ in feed.conflicts}
    assert {k: v for k, v in prices.items() if k not in ambiguous} == {
        k: v for k, v in feed.current.items() if k not in ambiguous
    }
    assert count(engine, Rupture) == len(feed.rupture_pairs)
    with engine.connect() as conn:
        assert {tuple(r) for r in conn.execute(select(Rupture.station_id, Rupture.gastype_id))} == feed.rupture_pairs
    assert set(stored_history(engine)) == set(feed.observations)

    assert summary.stations == len(feed.stations)
    (run,) = runs(engine)
    assert (run.status, run.stations, run.prices, run.rejected) == (
        "success",
        len(feed.stations),
        len(feed.current),
        feed.rejected,
    )
    problems = _check_station_columns(engine, feed, instant=name != QUOTIDIEN_ZIP)
    assert not problems, f"{len(problems)} station problems, e.g. " + "; ".join(problems[:10])


# --------------------------------------------------------------------------- the stations FORMAT.md calls out


@dataclass
class StationView:
    row: object
    prices: dict[int, tuple[Decimal, dt.datetime]]
    ruptures: dict[int, tuple]
    history: dict[int, list[tuple[dt.datetime, Decimal]]]


def station_view(engine, station_id: int) -> StationView:
    with engine.connect() as conn:
        row = conn.execute(select(Station).where(Station.id == station_id)).first()
        assert row is not None, f"station {station_id} is missing"
        prices = {
            f: (p, u)
            for f, p, u in conn.execute(
                select(Price.gastype_id, Price.price, Price.updated_at).where(Price.station_id == station_id)
            )
        }
        ruptures = {
            f: (a, b, k)
            for f, a, b, k in conn.execute(
                select(Rupture.gastype_id, Rupture.started_at, Rupture.ended_at, Rupture.kind).where(
                    Rupture.station_id == station_id
                )
            )
        }
        history: dict[int, list] = {}
        for f, u, p in conn.execute(
            select(PriceHistory.gastype_id, PriceHistory.updated_at, PriceHistory.price)
            .where(PriceHistory.station_id == station_id)
            .order_by(PriceHistory.updated_at)
        ):
            history.setdefault(f, []).append((u, p))
    return StationView(row, prices, ruptures, history)


def _hours_text(opening_hours) -> str:
    return json.dumps(opening_hours, ensure_ascii=False).replace(".", ":")


def check_station(view: StationView, expected: dict) -> None:
    row = view.row
    for column in ("address", "town", "zip_code", "road_type", "services", "automate_24_24"):
        if column in expected:
            assert getattr(row, column) == expected[column], column
    for column in ("address", "town", "services"):
        for fragment in expected.get(f"{column}_contains", ()):
            assert fragment in getattr(row, column), (column, getattr(row, column))
    if "coordinates" in expected:
        lat, lon = expected["coordinates"]
        if lat is None:
            assert (row.latitude, row.longitude) == (None, None)
        else:
            assert row.latitude == pytest.approx(lat, abs=1e-4)
            assert row.longitude == pytest.approx(lon, abs=1e-4)
    for fuel, (price, when) in expected.get("prices", {}).items():
        assert view.prices.get(fuel) == (Decimal(price), when), fuel
    for fuel in expected.get("no_price_for", ()):
        assert fuel not in view.prices, fuel
        assert fuel not in view.history, fuel
    if expected.get("no_prices"):
        assert view.prices == {}
        assert view.history == {}
    for fuel, rupture in expected.get("ruptures", {}).items():
        assert view.ruptures.get(fuel) == rupture, fuel
    for fuel, rows in expected.get("history_rows", {}).items():
        assert len(view.history.get(fuel, [])) == rows, fuel
    if "hours_contain" in expected:
        assert row.opening_hours, "opening hours were lost"
        text = _hours_text(row.opening_hours)
        for hhmm in expected["hours_contain"]:
            assert hhmm in text, (hhmm, row.opening_hours)
    if "closed_days" in expected:
        closed = {day["day"] for day in row.opening_hours if day["closed"]}
        assert closed == expected["closed_days"]


SERVICES_82800001 = [
    "Boutique alimentaire",
    "Boutique non alimentaire",
    "Restauration à emporter",
    "Vente de fioul domestique",
    "Vente de pétrole lampant",
    "Station de gonflage",
    "Location de véhicule",
    "Piste poids lourds",
    "Lavage automatique",
    "Lavage manuel",
    "Vente de gaz domestique (Butane, Propane)",
    "DAB (Distributeur automatique de billets)",
]

QUIRKS = [
    # Text: raw UTF-8 inside Latin-1, lone 0x89, cp1252 0x8C, entities, stray spaces.
    ("92330002-utf8-bytes-2026", EXTRACT_2026, 92330002, {"address": "77 Avenue Édouard Depreux", "town": "SCEAUX"}),
    ("92330002-utf8-bytes-ruptures", EXTRACT_RUPTURES, 92330002, {"address": "77 Avenue Édouard Depreux"}),
    ("42160003-lone-0x89-2019", EXTRACT_2019, 42160003, {"address": "2 Avenue de Saint-Étienne"}),
    ("42160003-lone-0x89-2026", EXTRACT_2026, 42160003, {"address_contains": ["Saint-Étienne"]}),
    ("14500007-utf8-bytes", EXTRACT_2019, 14500007, {"address": "1 Rue Émile Desvaux", "town": "Vire"}),
    ("13130005-utf8-bytes-town", EXTRACT_2016, 13130005, {"town": "BERRE-L'ÉTANG", "address": "Avenue Henri Wallon"}),
    ("51120002-cp1252-oe", EXTRACT_2016, 51120002, {"address": "ROUTE D ESTERNAYMŒURS VERDEY"}),
    ("33370016-oe-entity", EXTRACT_2026, 33370016, {"town": "Sallebœuf"}),
    ("37250005-gt-entity", EXTRACT_2026, 37250005, {"address": "RD 910 Les Gués de Veigné sens Montbazon > Tours"}),
    ("82800001-leading-space", EXTRACT_2026, 82800001, {"address": "Rue des Marchats", "town": "NEGREPELISSE"}),
    ("18200011-motorway-en-dash", EXTRACT_2026, 18200011, {"road_type": "A", "address_contains": ["A71", "–"]}),
    # Coordinates.
    ("58240003-float-coordinates", EXTRACT_2026, 58240003, {"coordinates": (46.7535172, 3.1406912), "services": []}),
    ("14100003-plain-degrees", EXTRACT_2016, 14100003, {"coordinates": (49.143, 0.266)}),
    ("17690001-swapped-negative", EXTRACT_2016, 17690001, {"coordinates": (46.1111810, -1.1026634)}),
    ("1200004-empty-coordinates", EXTRACT_2016, 1200004, {"coordinates": (None, None), "no_prices": True}),
    ("13015012-zero-coordinates", EXTRACT_2016, 13015012, {"coordinates": (None, None)}),
    ("91220003-reunion", EXTRACT_2016, 91220003, {"coordinates": (-20.9497136, 55.2952606), "zip_code": "97420"}),
    # Road types.
    ("95320005-pop-N-2016", EXTRACT_2016, 95320005, {"road_type": "N"}),
    ("95320005-pop-N-2019", EXTRACT_2019, 95320005, {"road_type": "N"}),
    ("13500010-pop-N", EXTRACT_2016, 13500010, {"road_type": "N"}),
    # Prices, placeholders, outliers, duplicates, time zones.
    ("5560001-no-price", EXTRACT_2026, 5560001, {"no_prices": True, "zip_code": "05560", "automate_24_24": True}),
    (
        "35510004-0.001-placeholders",
        EXTRACT_2019,
        35510004,
        {"prices": {1: ("1.499", utc(2019, 5, 7, 6, 47, 55))}, "no_price_for": [3, 4]},
    ),
    (
        "22240001-gazole-7.915",
        EXTRACT_2022,
        22240001,
        {"no_price_for": [1], "prices": {5: ("1.767", utc(2022, 5, 3, 7, 12, 27))}},
    ),
    (
        "12270001-summer-time",
        EXTRACT_RUPTURES,
        12270001,
        {"prices": {1: ("1.981", utc(2026, 6, 4, 4, 55, 53)), 5: ("1.999", utc(2026, 6, 4, 4, 55, 11))}},
    ),
    ("58240003-winter-time", EXTRACT_2026, 58240003, {"prices": {1: ("1.684", utc(2026, 2, 12, 8, 0, 0))}}),
    (
        "5000018-duplicate-price",
        EXTRACT_2016,
        5000018,
        {"prices": {1: ("1.274", utc(2016, 12, 16, 5, 12))}, "history_rows": {1: 1, 5: 1, 6: 1}},
    ),
    # Ruptures.
    (
        "59540002-two-ruptures-one-fuel",
        EXTRACT_RUPTURES,
        59540002,
        {
            "ruptures": {
                6: (utc(2017, 8, 29, 8, 45, 39), None, "definitive"),
                4: (utc(2018, 1, 4, 8, 56, 2), None, "temporaire"),
            },
            "no_price_for": [6],
        },
    ),
    (
        "69380009-year-0216",
        EXTRACT_RUPTURES,
        69380009,
        {"ruptures": {3: (None, None, None), 2: (utc(2016, 3, 1, 23, 0), None, None)}},
    ),
    (
        "13520001-epoch-rupture",
        EXTRACT_RUPTURES,
        13520001,
        {
            "ruptures": {
                3: (utc(2017, 8, 30, 7, 27, 25), None, "definitive"),
                4: (utc(2017, 8, 30, 7, 27, 26), None, "definitive"),
            }
        },
    ),
    (
        "34700005-price-and-rupture",
        EXTRACT_RUPTURES,
        34700005,
        {
            "prices": {3: ("0.714", utc(2026, 3, 9, 8, 59))},
            "ruptures": {3: (utc(2026, 3, 9, 8, 46), None, "temporaire")},
        },
    ),
    # Opening hours, old and new, and services.
    ("92330002-horaires", EXTRACT_2026, 92330002, {"hours_contain": ["06:00", "21:00", "07:00", "08:00", "20:00"]}),
    ("4170002-two-slots-a-day", EXTRACT_2026, 4170002, {"hours_contain": ["08:00", "12:00", "14:00", "19:00"]}),
    ("51120002-ouverture-2016", EXTRACT_2016, 51120002, {"hours_contain": ["01:00"]}),
    ("13130005-ouverture-saufjour", EXTRACT_2016, 13130005, {"hours_contain": ["01:00"], "closed_days": {7}}),
    ("82800001-services", EXTRACT_2026, 82800001, {"services": SERVICES_82800001}),
    (
        "13015012-services-2016",
        EXTRACT_2016,
        13015012,
        {"services_contains": ["Carburant qualité supérieure", "Vente de fioul domestique"]},
    ),
]


@pytest.mark.parametrize(("source", "station_id", "expected"), [pytest.param(*q[1:], id=q[0]) for q in QUIRKS])
def test_quirk_station_is_stored_right(engine, settings, source, station_id, expected):
    path = real_file(source)
    etl.run_pass(engine, settings, str(path))
    check_station(station_view(engine, station_id), expected)


# The same stations inside the full files, where they sit among ~10,000 others.
QUIRKS_IN_FULL_FILES = {
    "instantane_bbohec-carber_2019-05-10.zip": [
        (14500007, {"address": "1 Rue Émile Desvaux"}),
        (42160003, {"address": "2 Avenue de Saint-Étienne"}),
        (95320005, {"road_type": "N"}),
        (35510004, {"prices": {1: ("1.499", utc(2019, 5, 7, 6, 47, 55))}, "no_price_for": [3, 4]}),
    ],
    "instantane_Jopruvo-isoc631_2022-05-03.zip": [
        (22240001, {"no_price_for": [1], "prices": {5: ("1.767", utc(2022, 5, 3, 7, 12, 27))}}),
        (42160003, {"address": "2 Avenue de Saint-Étienne"}),
    ],
    "instantane_mariush444-Osmand-tools_2026-02-12.zip": [
        (92330002, {"address": "77 Avenue Édouard Depreux"}),
        (33370016, {"town": "Sallebœuf"}),
        (37250005, {"address": "RD 910 Les Gués de Veigné sens Montbazon > Tours"}),
        (82800001, {"address": "Rue des Marchats", "services": SERVICES_82800001}),
        (58240003, {"coordinates": (46.7535172, 3.1406912), "prices": {1: ("1.684", utc(2026, 2, 12, 8, 0))}}),
        (18200011, {"road_type": "A"}),
        (5560001, {"no_prices": True}),
    ],
    "instantane_ruptures_jstoudji1-carburant-app_2026-06-05.zip": [
        (59540002, {"ruptures": {6: (utc(2017, 8, 29, 8, 45, 39), None, "definitive")}}),
        (69380009, {"ruptures": {3: (None, None, None)}}),
        (
            34700005,
            {
                "prices": {3: ("0.714", utc(2026, 3, 9, 8, 59))},
                "ruptures": {3: (utc(2026, 3, 9, 8, 46), None, "temporaire")},
            },
        ),
        (12270001, {"prices": {1: ("1.981", utc(2026, 6, 4, 4, 55, 53))}}),
    ],
    QUOTIDIEN_ZIP: [
        (5000018, {"prices": {1: ("1.274", utc(2016, 12, 16, 5, 12))}, "history_rows": {1: 1}}),
        (1200004, {"coordinates": (None, None), "no_prices": True}),
        (13015012, {"coordinates": (None, None)}),
        (14100003, {"coordinates": (49.143, 0.266)}),
        (17690001, {"coordinates": (46.1111810, -1.1026634)}),
        (91220003, {"coordinates": (-20.9497136, 55.2952606)}),
        (13500010, {"road_type": "N"}),
        (95320005, {"road_type": "N"}),
        (51120002, {"address": "ROUTE D ESTERNAYMŒURS VERDEY"}),
        (13130005, {"town": "BERRE-L'ÉTANG", "closed_days": {7}}),
    ],
}


@pytest.mark.parametrize("name", list(QUIRKS_IN_FULL_FILES))
def test_quirk_stations_in_full_files(engine, settings, name):
    path = real_file(name)
    etl.run_pass(engine, settings, str(path), force=name == QUOTIDIEN_ZIP)
    failures = []
    for station_id, expected in QUIRKS_IN_FULL_FILES[name]:
        try:
            check_station(station_view(engine, station_id), expected)
        except AssertionError as exc:
            failures.append(f"{station_id}: {exc}")
    assert not failures, "\n".join(failures)


# --------------------------------------------------------------------------- two snapshots two hours apart


def test_second_snapshot_of_the_day_replaces_prices_and_adds_only_new_observations(engine, settings):
    path_a, path_b = real_file(SNAPSHOT_A), real_file(SNAPSHOT_B)
    a, b = read_feed(path_a), read_feed(path_b)
    assert not a.conflicts and not b.conflicts

    etl.run_pass(engine, settings, str(path_a))
    history_after_a = count(engine, PriceHistory)
    assert history_after_a == len(a.observations)

    etl.run_pass(engine, settings, str(path_b))
    assert stored_prices(engine) == b.current
    new_observations = set(b.observations) - set(a.observations)
    assert count(engine, PriceHistory) - history_after_a == len(new_observations)
    assert stored_history(engine) == {**b.observations, **a.observations}
    assert count(engine, Station) == len(set(a.stations) | set(b.stations))

    before, runs_before = contents(engine), runs(engine)
    summary = etl.run_pass(engine, settings, str(path_b))

    assert summary.changes == 0
    assert contents(engine) == before
    after = runs(engine)
    assert after[:-1] == runs_before
    assert (after[-1].status, after[-1].changes) == ("success", 0)
    # The only column a repeated feed moves is when each station was last seen.
    with engine.connect() as conn:
        seen = set(conn.scalars(select(Station.last_seen_at)))
    assert all(after[-1].started_at <= when <= after[-1].finished_at for when in seen)

    # Forced to parse and diff the same feed again, the loader still finds nothing to change.
    forced = etl.run_pass(engine, settings, str(path_b), force=True)
    assert forced.changes == 0
    assert contents(engine) == before
