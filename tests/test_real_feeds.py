"""Real government feed files (../shared/feeds/real) load completely and correctly.

Every expectation is computed independently with the standard library
(feed_reader.py: xml.etree over the decompressed bytes) or written out by hand from the files
and from ../shared/feeds/FORMAT.md; the project's parser is never the oracle.
The small verbatim extracts (a few KB each) are byte-for-byte copies in tests/data (provenance and
sha256 in its README), so every test on them runs anywhere, CI included; the full zips (~1 MB each)
are read in place from ../shared/feeds/real and their tests skip where that folder is absent.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

import db_snapshot
import feed_reader
from conftest import REAL_FEEDS
from db_snapshot import count
from db_snapshot import current_prices as stored_prices
from db_snapshot import etl_runs as runs
from db_snapshot import history as stored_history
from feed_reader import Feed
from ingest import passes
from ingest.parse import parse_feed
from ingest.records import ParseReport, StationEntry, opening_hours_document
from models import Price, PriceHistory, Rupture, Station
from prices.hours import week

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
EXTRACT_2014 = "extract_course-PDV-allege_2014-09_edited.xml"
# Every extract of ../shared/feeds/real, copied byte for byte into tests/data, and how test ids name it.
EXTRACTS = {
    EXTRACT_2014: "2014-09-course",
    EXTRACT_2016: "quotidien-2016-12-16",
    EXTRACT_2019: "instantane-2019-05-10",
    EXTRACT_2022: "instantane-2022-05-03",
    EXTRACT_2026: "instantane-2026-02-12",
    EXTRACT_RUPTURES: "ruptures-2026-06-05",
}
DATA = Path(__file__).resolve().parent / "data"

# Metropolitan France with a margin, and overseas departments (cp 97xxx) anywhere on Earth.
METROPOLE = ((41.0, 51.6), (-5.8, 10.0))


def real_file(name: str) -> Path:
    if not REAL_FEEDS.is_dir():
        pytest.skip(f"the real feed files are absent ({REAL_FEEDS})")
    path = REAL_FEEDS / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


def extract_file(name: str) -> Path:
    """A verbatim extract, from the project's own copy: never skipped."""
    path = DATA / name
    assert path.is_file(), f"{path} is missing: copy it from ../shared/feeds/real (see tests/data/README.md)"
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
    check_complete_load(engine, settings, real_file(name), instant=name != QUOTIDIEN_ZIP)


@pytest.mark.parametrize("name", [pytest.param(name, id=tag) for name, tag in EXTRACTS.items()])
def test_extract_loads_every_station_price_and_rupture(engine, settings, name):
    # The 2014 extract (edited by a teacher, see tests/data/README.md) is daily-file shaped, not instant.
    check_complete_load(engine, settings, extract_file(name), instant="instantane" in name)


def check_complete_load(engine, settings, path: Path, instant: bool) -> None:
    """Load `path` and compare every station, price, rupture and history row with the independent reading."""
    feed = read_feed(path)

    summary = passes.run_pass(engine, settings, str(path), force=not instant)

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
    problems = _check_station_columns(engine, feed, instant=instant)
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
    (
        "64500006-only-ruptures-ruptures-2026-06-05",
        EXTRACT_RUPTURES,
        64500006,
        {
            "no_prices": True,
            "ruptures": {
                1: (utc(2026, 5, 29, 13, 36, 4), None, "temporaire"),
                5: (utc(2026, 5, 23, 6, 2, 36), None, "temporaire"),
                6: (utc(2021, 3, 3, 13, 1, 26), None, "definitive"),
            },
        },
    ),
    (
        "3210001-untyped-then-definitive-ruptures-2026-06-05",
        EXTRACT_RUPTURES,
        3210001,
        {"ruptures": {6: (utc(2017, 9, 1, 6, 32, 55), None, "definitive")}, "no_price_for": [6]},
    ),
    (
        # Minutes as the 2016 file writes them (they hold the month, FORMAT.md section 7).
        "1000001-rupture-with-end-quotidien-2016-12-16",
        EXTRACT_2016,
        1000001,
        {"ruptures": {5: (utc(2015, 2, 9, 15, 2), utc(2016, 12, 21, 23, 12, 27), None)}, "no_price_for": [5]},
    ),
    (
        # The teacher's edit spells the attribute "début": the start is unknown; the E85 row is listed twice.
        "1000008-duplicate-rupture-2014-09-course",
        EXTRACT_2014,
        1000008,
        {"ruptures": {3: (None, None, None)}, "prices": {5: ("1.435", utc(2014, 9, 29, 3, 9, 49))}},
    ),
    (
        "1000005-empty-prix-2014-09-course",
        EXTRACT_2014,
        1000005,
        {"no_prices": True, "ruptures": {2: (None, None, None)}, "address": "642 Avenue de Trévoux"},
    ),
    (
        "1000004-thousandths-2014-09-course",
        EXTRACT_2014,
        1000004,
        {"prices": {1: ("1.400", utc(2014, 9, 27, 18, 0)), 4: ("0.910", utc(2014, 6, 20, 18, 2))}},
    ),
    # Opening hours, old and new, and services.
    ("92330002-horaires", EXTRACT_2026, 92330002, {"hours_contain": ["06:00", "21:00", "07:00", "08:00", "20:00"]}),
    ("4170002-two-slots-a-day", EXTRACT_2026, 4170002, {"hours_contain": ["08:00", "12:00", "14:00", "19:00"]}),
    ("51120002-ouverture-2016", EXTRACT_2016, 51120002, {"hours_contain": ["01:00"]}),
    ("13130005-ouverture-saufjour", EXTRACT_2016, 13130005, {"hours_contain": ["01:00"], "closed_days": {7}}),
    (
        "1000002-ouverture-hhmm-2014-09-course",
        EXTRACT_2014,
        1000002,
        {"hours_contain": ["08:45", "19:30"], "closed_days": {7}},
    ),
    (
        "1000011-ouverture-every-day-closed-2014-09-course",
        EXTRACT_2014,
        1000011,
        {"closed_days": {1, 2, 3, 4, 5, 6, 7}},
    ),
    (
        "81120001-horaires-weekend-closed-2019-05-10",
        EXTRACT_2019,
        81120001,
        {"hours_contain": ["07:30", "18:45"], "closed_days": {6, 7}},
    ),
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
    path = extract_file(source)
    passes.run_pass(engine, settings, str(path))
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
    passes.run_pass(engine, settings, str(path), force=name == QUOTIDIEN_ZIP)
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

    passes.run_pass(engine, settings, str(path_a))
    history_after_a = count(engine, PriceHistory)
    assert history_after_a == len(a.observations)

    passes.run_pass(engine, settings, str(path_b))
    assert stored_prices(engine) == b.current
    new_observations = set(b.observations) - set(a.observations)
    assert count(engine, PriceHistory) - history_after_a == len(new_observations)
    assert stored_history(engine) == {**b.observations, **a.observations}
    assert count(engine, Station) == len(set(a.stations) | set(b.stations))

    before, runs_before = contents(engine), runs(engine)
    summary = passes.run_pass(engine, settings, str(path_b))

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
    forced = passes.run_pass(engine, settings, str(path_b), force=True)
    assert forced.changes == 0
    assert contents(engine) == before


# --------------------------------------------------------------------------- the copies in tests/data


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", [pytest.param(name, id=tag) for name, tag in EXTRACTS.items()])
def test_extract_copy_is_the_one_its_provenance_names(name):
    digest = _sha256(extract_file(name))
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    assert any(name in line and digest in line for line in readme.splitlines()), (
        f"tests/data/README.md names no sha256 {digest} for {name}"
    )
    original = REAL_FEEDS / name
    if original.is_file():  # where ../shared is present, the copy is still byte for byte
        assert digest == _sha256(original)


# --------------------------------------------------------------------------- parse rules, station by station
#
# The project's parser on the extracts in tests/data, station by station, for each quirk of FORMAT.md.
# Each case first checks that the extract really carries the raw bytes in question (so a cleaned-up copy
# cannot leave a rule untested), then the value a person is shown. Most stations here are not in the
# database-level QUIRKS table above; the repairs and the 2016 coordinate mistakes are, and are marked so.

# After the newest time in every extract, so that no record counts as "in the future".
PARSED_AT = utc(2026, 6, 6)


@functools.cache
def parsed(name: str) -> tuple[dict[int, StationEntry], ParseReport]:
    report = ParseReport()
    with extract_file(name).open("rb") as stream:
        entries = {entry.station["id"]: entry for entry in parse_feed(stream, report, PARSED_AT)}
    return entries, report


def raw_pdv(name: str, station_id: int) -> bytes:
    """The bytes of one station's <pdv> element, as the extract holds them."""
    match = re.search(rb'<pdv id="%d" .*?</pdv>' % station_id, extract_file(name).read_bytes(), re.DOTALL)
    assert match, f"no station {station_id} in {name}"
    return match.group()


def case(name: str, station_id: int, what: str, *values):
    return pytest.param(name, station_id, *values, id=f"{station_id}-{what}-{EXTRACTS[name]}")


TEXT_CASES = [
    # Repairs (the same stations pass through the database in QUIRKS): raw UTF-8 byte pairs in Latin-1 text,
    # a lone C1 byte (the second of a UTF-8 pair whose lead byte was lost), and a cp1252 byte.
    case(EXTRACT_2019, 14500007, "utf8-pair", b"1 Rue \xc3\x89mile", "address", "1 Rue Émile Desvaux"),
    case(EXTRACT_RUPTURES, 92330002, "utf8-pair", b"Avenue \xc3\x89douard", "address", "77 Avenue Édouard Depreux"),
    case(EXTRACT_2016, 13130005, "utf8-pair", b"BERRE-L'\xc3\x89TANG", "town", "BERRE-L'ÉTANG"),
    case(EXTRACT_2019, 42160003, "c1-0x89", b"Saint-E\x89tienne", "address", "2 Avenue de Saint-Étienne"),
    case(EXTRACT_2026, 42160003, "c1-0x89", b"Saint-E\x89tienne", "address", "2 Avenue de Saint-Étienne"),
    case(EXTRACT_2016, 51120002, "cp1252-0x8c", b"ESTERNAYM\x8cURS", "address", "ROUTE D ESTERNAYMŒURS VERDEY"),
    # Plain Latin-1 letters, even next to capitals or a stray C1 byte, are left as they are.
    case(EXTRACT_2019, 81120001, "latin1-in-capitals", b"<ville>R\xe9ALMONT</ville>", "town", "RéALMONT"),
    case(
        EXTRACT_2019,
        81120001,
        "latin1",
        b"G\xe9n\xe9ral",
        "address",
        "42 Avenue du Général de Gaulle",
    ),
    case(EXTRACT_2019, 42160003, "latin1-beside-c1", b"Andr\xe9zieux-Bouth\xe9on", "town", "Andrézieux-Bouthéon"),
    case(EXTRACT_2026, 4170002, "latin1-in-capitals", b"SAINT-ANDR\xe9-LES-ALPES", "town", "SAINT-ANDRé-LES-ALPES"),
    case(EXTRACT_2019, 95320005, "latin1-circumflex", b"la-For\xeat", "town", "Saint-Leu-la-Forêt"),
    # A file declared UTF-8 (the 2014 course extract) is decoded once, not "repaired" a second time.
    case(
        EXTRACT_2014,
        1000001,
        "utf8-declared",
        b"SAINT-DENIS-L\xc3\xa8S-BOURG",
        "town",
        "SAINT-DENIS-LèS-BOURG",
    ),
    case(EXTRACT_2014, 1000007, "utf8-declared", b"Am\xc3\xa9d\xc3\xa9e", "address", "Avenue Amédée Mercier"),
    # Characters outside Latin-1 come as character references, beside Latin-1 bytes.
    case(EXTRACT_2026, 58200008, "entity-8217", b"l&#8217;aerodrome", "address", "9 route de l’aerodrome"),
    case(
        EXTRACT_2016,
        12400007,
        "entity-and-latin1",
        b"D&#8217;ACTIVIT\xc9",
        "address",
        "PARC D’ACTIVITÉ SAINT PIERRE",
    ),
    case(EXTRACT_2016, 22150005, "entity-339", b"Pl&#339;uc", "town", "Plœuc-L'Hermitage"),
    case(EXTRACT_RUPTURES, 33370016, "entity-339", b"Salleb&#339;uf", "town", "Sallebœuf"),
    case(
        EXTRACT_RUPTURES,
        18200011,
        "entity-8211",
        b"Gazonni\xe8reSens Bourges &#8211; Clermond",
        "address",
        "Autoroute A71 - La GazonnièreSens Bourges – Clermond-Ferrand",
    ),
    # Spaces around a text, and an empty element.
    case(
        EXTRACT_2016,
        13130005,
        "leading-space",
        b"<adresse> Avenue Henri Wallon</adresse>",
        "address",
        "Avenue Henri Wallon",
    ),
    case(EXTRACT_2019, 48190001, "empty-ville", b"<ville/>", "town", ""),
]


@pytest.mark.parametrize(("name", "station_id", "raw", "column", "expected"), TEXT_CASES)
def test_text_shown_as_written(name, station_id, raw, column, expected):
    assert raw in raw_pdv(name, station_id)
    entries, _ = parsed(name)
    assert entries[station_id].station[column] == expected


COORDINATE_CASES = [
    # The mistakes of the 2016 daily file (the same stations pass through the database in QUIRKS).
    case(
        EXTRACT_2016,
        17690001,
        "swapped-negative",
        b'latitude="-110266.336" longitude="4611118.101"',
        (46.111181, -1.1026634),
    ),
    case(EXTRACT_2016, 13015012, "zero", b'latitude="0" longitude="0"', (None, None)),
    case(EXTRACT_2016, 1200004, "empty", b'latitude="" longitude=""', (None, None)),
    case(EXTRACT_2016, 14100003, "plain-degrees", b'latitude="49.143" longitude="0.266"', (49.143, 0.266)),
    case(
        EXTRACT_2016,
        91220003,
        "reunion",
        b'latitude="-2094971.3596753" longitude="5529526.0602666" cp="97420"',
        (-20.9497136, 55.2952606),
    ),
    # Degrees x 100000 as integers, as decimals, with negative longitudes west of Greenwich.
    case(EXTRACT_2019, 81120001, "x100000-integer", b'latitude="4377200" longitude="218300"', (43.772, 2.183)),
    case(
        EXTRACT_2019,
        22100006,
        "x100000-decimal-west",
        b'latitude="4845336.8845" longitude="-202551.5676"',
        (48.4533688, -2.0255157),
    ),
    case(
        EXTRACT_2022,
        64170012,
        "x100000-one-decimal-west",
        b'latitude="4342142.6" longitude="-59899.6"',
        (43.421426, -0.598996),
    ),
    case(
        EXTRACT_RUPTURES,
        12270001,
        "x100000-long-decimals",
        b'latitude="4424024.1001506" longitude="203283.20468272"',
        (44.240241, 2.032832),
    ),
    case(EXTRACT_RUPTURES, 20137007, "corsica", b'latitude="4160200" longitude="927600" cp="20137"', (41.602, 9.276)),
    case(
        EXTRACT_2016,
        22150005,
        "x100000-decimal-west",
        b'latitude="4835079.047" longitude="-276064.927"',
        (48.3507905, -2.7606493),
    ),
    case(EXTRACT_2014, 1000001, "x100000-integer", b'latitude="4620114" longitude="519791"', (46.20114, 5.19791)),
    case(
        EXTRACT_2014,
        1000005,
        "x100000-decimal",
        b'latitude="4620093.59235" longitude="519942.024022"',
        (46.2009359, 5.1994202),
    ),
]


@pytest.mark.parametrize(("name", "station_id", "raw", "expected"), COORDINATE_CASES)
def test_coordinates_in_degrees(name, station_id, raw, expected):
    assert raw in raw_pdv(name, station_id)
    entries, _ = parsed(name)
    station = entries[station_id].station
    assert (station["latitude"], station["longitude"]) == tuple(
        None if value is None else pytest.approx(value, abs=1e-7) for value in expected
    )


HOURS_CASES = [
    # <ouverture>, 2014: hh:mm, one range for every day but those of saufjour.
    case(
        EXTRACT_2014,
        1000002,
        "ouverture-hhmm",
        b'<ouverture debut="08:45" fin="19:30" saufjour="Dimanche"/>',
        ["08:45–19:30"] * 6 + ["Closed"],
        False,
    ),
    case(
        EXTRACT_2014,
        1000006,
        "ouverture-placeholder-sunday",
        b'<ouverture debut="01:00" fin="01:00" saufjour="Dimanche"/>',
        ["Unknown"] * 6 + ["Closed"],
        False,
    ),
    case(
        EXTRACT_2014,
        1000011,
        "ouverture-every-day-closed",
        b'saufjour="Lundi;Mardi;Mercredi;Jeudi;Vendredi;Samedi;Dimanche"',
        ["Closed"] * 7,
        False,
    ),
    # <ouverture>, 2016: hh:mm:ss, the seconds dropped; an empty range is no hours at all.
    case(
        EXTRACT_2016,
        5000018,
        "ouverture-empty-range",
        b'<ouverture debut="12:20:00" fin="12:20:00" saufjour=""/>',
        ["Unknown"] * 7,
        False,
    ),
    # <horaires>, 2019-2026: HH.MM, 0 to 2 ranges a day, ferme="1", the automat flag.
    case(
        EXTRACT_2019,
        81120001,
        "horaires-weekend-closed",
        b'<jour id="6" nom="Samedi" ferme="1"/>',
        ["07:30–18:45"] * 5 + ["Closed", "Closed"],
        False,
    ),
    case(
        EXTRACT_2019,
        42160003,
        "horaires-weekend-later",
        b'<horaire ouverture="08.30" fermeture="20.00"/>',
        ["06:30–20:00"] * 5 + ["08:00–20:00", "08:30–20:00"],
        False,
    ),
    case(
        EXTRACT_2019,
        84330004,
        "horaires-automat-only",
        b'<horaires automate-24-24="1">',
        ["Closed"] * 7,
        True,
    ),
    case(EXTRACT_2019, 22100006, "no-horaires", b"<services/>", ["Unknown"] * 7, False),
    case(
        EXTRACT_2022,
        83190005,
        "horaires-two-ranges-then-one",
        b'<horaire ouverture="15.00" fermeture="19.30"/>',
        ["08:30–12:30, 15:00–19:30"] * 4 + ["08:30–20:00", "08:30–20:00", "Closed"],
        True,
    ),
    case(
        EXTRACT_2022,
        22240001,
        "horaires-short-sunday",
        b'<horaire ouverture="10.00" fermeture="12.30"/>',
        ["08:00–19:30"] * 6 + ["10:00–12:30"],
        True,
    ),
    case(
        EXTRACT_RUPTURES,
        13520001,
        "horaires-two-ranges",
        b'<horaire ouverture="14.00" fermeture="19.00"/>',
        ["08:00–12:00, 14:00–19:00"] * 6 + ["Closed"],
        False,
    ),
    case(
        EXTRACT_RUPTURES,
        64500006,
        "horaires-every-day",
        b'<horaire ouverture="07.00" fermeture="20.00"/>',
        ["07:00–20:00"] * 7,
        False,
    ),
]


@pytest.mark.parametrize(("name", "station_id", "raw", "expected", "automat"), HOURS_CASES)
def test_opening_hours_week(name, station_id, raw, expected, automat):
    assert raw in raw_pdv(name, station_id)
    entries, _ = parsed(name)
    station = entries[station_id].station
    days = week(opening_hours_document(station["opening_hours"]), dt.date(2026, 6, 1))
    assert [day.text for day in days] == expected
    assert station["automate_24_24"] is automat


PRICE_CASES = [
    # Integer thousandths (2014, 2016), four digits and three.
    case(
        EXTRACT_2014,
        1000001,
        "thousandths",
        1,
        b'maj="2014-09-27 10:01:27" valeur="1255"',
        "1.255",
        utc(2014, 9, 27, 8, 1, 27),
    ),
    case(EXTRACT_2014, 1000004, "thousandths-3-digits", 4, b'valeur="910"', "0.910", utc(2014, 6, 20, 18, 2)),
    case(EXTRACT_2016, 1000001, "thousandths", 1, b'valeur="1167"', "1.167", utc(2016, 12, 15, 9, 12, 34)),
    case(EXTRACT_2016, 14100003, "thousandths-3-digits", 3, b'valeur="559"', "0.559", utc(2016, 12, 10, 19, 12)),
    case(EXTRACT_2016, 17690001, "thousandths-3-digits", 4, b'valeur="649"', "0.649", utc(2016, 12, 16, 7, 12, 31)),
    # Decimal euros (2019 on), above and below one euro.
    case(EXTRACT_2019, 22100006, "euros", 1, b'valeur="1.459"', "1.459", utc(2019, 5, 7, 7, 20, 16)),
    case(EXTRACT_2022, 59780003, "euros-under-1", 3, b'valeur="0.729"', "0.729", utc(2022, 4, 8, 9, 42, 16)),
    case(EXTRACT_2022, 75007003, "euros-paris", 6, b'valeur="2.600"', "2.600", utc(2022, 4, 4, 7, 20, 55)),
    case(EXTRACT_2026, 38230003, "euros", 2, b'valeur="1.718"', "1.718", utc(2026, 2, 12, 8, 27)),
    case(EXTRACT_RUPTURES, 40500002, "euros-under-1", 4, b'valeur="0.999"', "0.999", utc(2026, 4, 3, 10, 22, 8)),
]


@pytest.mark.parametrize(("name", "station_id", "fuel", "raw", "euros", "when"), PRICE_CASES)
def test_price_in_euros_per_litre(name, station_id, fuel, raw, euros, when):
    assert raw in raw_pdv(name, station_id)
    entries, _ = parsed(name)
    prices = {f: (Decimal(milli) / 1000, maj) for _, f, milli, maj in entries[station_id].prices}
    assert prices[fuel] == (Decimal(euros), when)


@pytest.mark.parametrize(
    ("name", "unit"),
    [
        pytest.param(EXTRACT_2014, "thousandths", id="2014-09-course"),
        pytest.param(EXTRACT_2016, "thousandths", id="quotidien-2016-12-16"),
        pytest.param(EXTRACT_2019, "euros", id="instantane-2019-05-10"),
        pytest.param(EXTRACT_2022, "euros", id="instantane-2022-05-03"),
        pytest.param(EXTRACT_2026, "euros", id="instantane-2026-02-12"),
        pytest.param(EXTRACT_RUPTURES, "euros", id="ruptures-2026-06-05"),
    ],
)
def test_price_unit_of_each_extract(name, unit):
    _, report = parsed(name)
    assert set(report.price_units) == {unit}


# Per extract: the prices left out as implausible, by station and fuel with the raw value, and the reasons counted.
REJECTED = {
    EXTRACT_2014: ({}, {}),
    EXTRACT_2016: ({}, {}),
    EXTRACT_2019: ({35510004: {3: b'valeur="0.001"', 4: b'valeur="0.001"'}}, {"implausible price": 2}),
    EXTRACT_2022: (
        {83190005: {6: b'valeur="7.810"'}, 22240001: {1: b'valeur="7.915"'}},
        {"implausible price": 2},
    ),
    EXTRACT_2026: ({}, {}),
    EXTRACT_RUPTURES: ({}, {}),
}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, id="-".join([*([str(s) for s in REJECTED[name][0]] or ["none"]), "rejected", tag]))
        for name, tag in EXTRACTS.items()
    ],
)
def test_implausible_prices_are_left_out_and_counted(name):
    rejected, reasons = REJECTED[name]
    entries, report = parsed(name)
    for station_id, fuels in rejected.items():
        raw = raw_pdv(name, station_id)
        kept = {fuel for _, fuel, _, _ in entries[station_id].prices}
        for fuel, value in fuels.items():
            assert re.search(rb'<prix [^>]*id="%d"[^>]*%s' % (fuel, value), raw), (station_id, fuel)
            assert fuel not in kept, (station_id, fuel)
        assert kept, f"{station_id} lost its plausible prices too"
    assert (report.rejected, dict(report.reasons)) == (sum(reasons.values()), reasons)


RUPTURE_CASES = [
    case(
        EXTRACT_RUPTURES,
        40500002,
        "temporary-and-definitive",
        b'<rupture nom="E10" id="5" debut="2026-03-23 12:17:24" fin="" type="temporaire"/>',
        [
            (3, utc(2017, 8, 31, 16, 21, 4), None, "definitive"),
            (2, utc(2026, 3, 12, 16, 2, 34), None, "definitive"),
            (5, utc(2026, 3, 23, 11, 17, 24), None, "temporaire"),
        ],
    ),
    case(
        EXTRACT_RUPTURES,
        80570001,
        "untyped",
        b'<rupture nom="E85" id="3" debut="2011-08-16 16:54:00" fin="" type=""/>',
        [
            (3, utc(2011, 8, 16, 14, 54), None, None),
            (4, utc(2017, 10, 18, 5, 25, 9), None, "definitive"),
            (5, utc(2017, 10, 18, 5, 25, 9), None, "definitive"),
        ],
    ),
    case(
        EXTRACT_RUPTURES,
        4170002,
        "untyped-at-midnight",
        b'<rupture nom="E85" id="3" debut="2016-06-01 00:00:00" fin="" type=""/>',
        [
            (3, utc(2016, 5, 31, 22, 0), None, None),
            (4, utc(2025, 8, 7, 14, 24, 9), None, "definitive"),
            (5, utc(2025, 8, 7, 14, 24, 9), None, "definitive"),
        ],
    ),
    case(
        # No type attribute before 2024, and an end (the export time; minutes as written, see FORMAT.md section 7).
        EXTRACT_2016,
        13130005,
        "with-end",
        b'<rupture id="5" nom="E10" debut="2015-11-09T00:11:00" fin="2016-12-22T00:12:35"/>',
        [
            (6, utc(2015, 9, 7, 22, 9), utc(2016, 12, 21, 23, 12, 35), None),
            (5, utc(2015, 11, 8, 23, 11), utc(2016, 12, 21, 23, 12, 35), None),
        ],
    ),
    case(
        EXTRACT_2014,
        1000010,
        "start-misspelt",
        b'<rupture id="4" nom="GPLc" d\xc3\xa9but="2013-08-21 06:15:00" fin=""/>',
        [(4, None, None, None), (3, None, None, None), (2, None, None, None)],
    ),
    case(EXTRACT_2014, 1000001, "empty-element", b"<rupture/>", []),
]


@pytest.mark.parametrize(("name", "station_id", "raw", "expected"), RUPTURE_CASES)
def test_rupture_records(name, station_id, raw, expected):
    assert raw in raw_pdv(name, station_id)
    entries, _ = parsed(name)
    assert [(fuel, started, ended, kind) for _, fuel, started, ended, kind in entries[station_id].ruptures] == expected
