"""Station brands from OpenStreetMap: `etl.py brands`, its file checks, and the scheduler's weekly refresh.

The brand files are a 256-row cut of the real OSM export (tests/data/brands-osm_cut.csv, see its
README), the full real file from ../shared when present, and broken files made here from the cut.
HTTP sources are real local servers; nothing reaches the internet.
"""

from __future__ import annotations

import bz2
import csv
import dataclasses
import datetime as dt
import io
import logging
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

import etl
from conftest import REAL_FEEDS, ROOT
from db_snapshot import etl_runs, table_rows
from ingest import brands, imports, passes, scheduler
from ingest.runs import EtlError, last_success
from models import EtlRun, StationBrand
from session import init_db, make_engine, writer
from settings import Settings
from test_fetch import FeedHandler, send
from test_scheduler import INTERVAL, Schedulers, run_statuses, stop, wait_for
from utils import fold

DATA = Path(__file__).resolve().parent / "data"
CUT = DATA / "brands-osm_cut.csv"
CUT_TEXT = CUT.read_text(encoding="utf-8")
REAL = REAL_FEEDS / "brands-osm_Aohzan-hass-prixcarburant_2026-06-01.csv"
needs_real = pytest.mark.skipif(not REAL.is_file(), reason=f"{REAL} is absent")
COLUMNS = ["ref:FR:prix-carburants", "brand", "name", "operator", "branch"]
CUT_MIN_STATIONS = 100  # the cut names 186 stations; the real minimum (1,000) is for France

# What the cut holds, counted once by hand from its rows.
CUT_STATIONS, CUT_WITH_BRAND, CUT_RESOLVED, CUT_SKIPPED = 186, 183, 40, 18
CUT_SUMMARY = (
    "imported brands of 186 stations (183 with a brand) from {}; "
    "40 ids on several OSM objects resolved, 18 rows without id skipped"
)
WEEK = 7 * 24 * 3600


@pytest.fixture(autouse=True)
def _cut_is_enough(monkeypatch):
    monkeypatch.setattr(brands, "MIN_STATIONS", CUT_MIN_STATIONS)


def stored(engine) -> dict[int, tuple[str | None, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(select(StationBrand.station_id, StationBrand.brand, StationBrand.name))
        return {station_id: (brand, name) for station_id, brand, name in rows}


def cut_records() -> list[list[str]]:
    return list(csv.reader(io.StringIO(CUT_TEXT, newline="")))[1:]


def csv_bytes(records: list[list[str]], header: list[str] = COLUMNS) -> bytes:
    out = io.StringIO(newline="")
    csv.writer(out).writerows([header, *records])
    return out.getvalue().encode()


def write_csv(path: Path, records: list[list[str]]) -> str:
    path.write_bytes(csv_bytes(records))
    return str(path)


def leftover_downloads(settings: Settings) -> list[Path]:
    return sorted(settings.data_dir.rglob("feed-*.download"))


@pytest.fixture
def preloaded(engine, settings) -> dict[int, tuple]:
    """The cut imported: the previous table a refused file must leave as it is."""
    imports.import_reference(engine, settings, imports.BRANDS, str(CUT))
    before = stored(engine)
    assert len(before) == CUT_STATIONS
    return before


def assert_refused(engine, settings, source: str, match: str, before: dict) -> str:
    """The import fails with a one-line reason matching `match`, is recorded as failed, and changes nothing."""
    runs_before = len(etl_runs(engine))
    prices_before = table_rows(engine)
    with pytest.raises(EtlError, match=match) as excinfo:
        imports.import_reference(engine, settings, imports.BRANDS, source)
    reason = str(excinfo.value)
    assert reason.strip() and "\n" not in reason, f"not one line: {reason!r}"
    assert stored(engine) == before, "the refused file changed the brand table"
    assert table_rows(engine) == prices_before
    runs = etl_runs(engine)
    assert len(runs) == runs_before + 1
    assert (runs[-1].kind, runs[-1].status, runs[-1].source, runs[-1].error) == ("brands", "failed", source, reason)
    assert leftover_downloads(settings) == []
    return reason


# --------------------------------------------------------------------------- the real cut


def test_importing_the_cut_links_stations_to_canonical_brands_and_names(engine, settings):
    table = imports.import_reference(engine, settings, imports.BRANDS, str(CUT))

    assert (len(table.stations), table.with_brand, table.resolved, table.skipped) == (
        CUT_STATIONS,
        CUT_WITH_BRAND,
        CUT_RESOLVED,
        CUT_SKIPPED,
    )
    assert table.describe("CUT") == CUT_SUMMARY.format("CUT")
    rows = stored(engine)
    assert rows == table.stations
    assert rows[30470001] == ("Système U", "Super U"), "the first row of the file: Super U is Système U"
    assert rows[34770001] == ("TotalEnergies", "Total Automat"), "Total is TotalEnergies; the name stays as OSM has it"
    assert rows[1480001] == ("Carrefour", "Carrefour Market"), "a 7-digit id (department 01) is an int like any"
    assert sum(1 for station_id in rows if station_id < 10_000_000) == 20
    assert Counter(brand for brand, _name in rows.values()) == {
        "Système U": 33,
        "TotalEnergies": 27,
        "Intermarché": 23,
        "Avia": 13,
        "Carrefour": 13,
        "E.Leclerc": 8,
        "Esso": 7,
        "TotalEnergies Access": 7,
        "Auchan": 5,
        "Elan": 5,
        "Eni": 5,
        "AS24": 5,
        "bi1": 4,
        "Match": 4,
        "Dyneff": 3,
        None: 3,
        "DATS 24": 3,
        "Indépendant": 3,
        "BP": 3,
        "Casino": 3,
        "G20": 3,
        "8 à Huit": 3,
        "Shell": 2,
        "Netto": 1,
    }
    (run,) = etl_runs(engine)
    assert (run.kind, run.status, run.source, run.stations, run.rejected) == (
        "brands",
        "success",
        str(CUT),
        CUT_STATIONS,
        CUT_SKIPPED,
    )


@pytest.mark.parametrize(
    ("station_id", "osm_rows", "kept"),
    [
        # Two OSM objects, one without a brand: the branded one wins.
        (33240011, [("", ""), ("Total", "Total")], ("TotalEnergies", "Total")),
        (86530001, [("Intermarché", ""), ("", "Q8 Oils")], ("Intermarché", None)),
        # Super U and U are both Système U: two votes against one for Avia.
        (85150001, [("Avia", "Poids-Lourds"), ("U", "U Energy"), ("Super U", "Super U")], ("Système U", "Super U")),
        # One vote each: the smallest brand wins ("Système U" < "TotalEnergies").
        (17120005, [("Total Contact", "Total Contact"), ("Station U", "Station U")], ("Système U", "Station U")),
        (
            75019014,
            [("Total Access", "TotalEnergies"), ("TotalEnergies", "TotalEnergies")],
            ("TotalEnergies", "TotalEnergies"),
        ),
        (
            16360001,
            [("TotalEnergies", "TotalEnergies"), ("", ""), ("", ""), ("", "")],
            ("TotalEnergies", "TotalEnergies"),
        ),
    ],
)
def test_an_id_on_several_osm_objects_keeps_one_row_whatever_the_order(tmp_path, station_id, osm_rows, kept):
    records = [r for r in cut_records() if r[0] == str(station_id)]
    assert [(r[1], r[2]) for r in records] == osm_rows, "the cut holds the real rows"
    aliases = brands.load_aliases()
    others = [r for r in cut_records() if r[0] != str(station_id)]

    for n, ordered in enumerate([records, records[::-1]]):
        table = brands.read_brands(Path(write_csv(tmp_path / f"order-{n}.csv", others + ordered)), aliases)
        assert table.stations[station_id] == kept


def test_rows_without_an_id_or_with_a_bad_one_are_skipped_and_counted(tmp_path):
    extra = [
        ["", "Total", "no id", "", ""],
        ["   ", "Esso", "blank id", "", ""],
        ["3470001x", "Esso", "not a number", "", ""],
        ["0", "Esso", "zero", "", ""],
        ["123456789", "Esso", "over 8 digits", "", ""],
        ["12345678;abc", "Esso", "one bad part", "", ""],
        ["97100001;97100002", "Vito", "one OSM object, two feed ids", "", ""],
        [" 01000099 ", "Avia", "leading zero and spaces", "", ""],
    ]
    table = brands.read_brands(Path(write_csv(tmp_path / "ids.csv", cut_records() + extra)), brands.load_aliases())

    assert table.skipped == CUT_SKIPPED + 6
    assert table.stations[97100001] == table.stations[97100002] == ("Vito", "one OSM object, two feed ids")
    assert table.stations[1000099] == ("Avia", "leading zero and spaces")
    assert len(table.stations) == CUT_STATIONS + 3


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("Total", "TotalEnergies"),
        ("TOTAL", "TotalEnergies"),
        ("Total Énergies", "TotalEnergies"),
        ("Totalenergies", "TotalEnergies"),
        ("Total Contact", "TotalEnergies"),
        ("Total Access", "TotalEnergies Access"),
        ("TotalÉnergies Access", "TotalEnergies Access"),
        ("E. Leclerc", "E.Leclerc"),
        ("Leclerc", "E.Leclerc"),
        ("Super U", "Système U"),
        ("Hyper-U", "Système U"),
        ("u express", "Système U"),
        ("Utile", "Système U"),
        ("Systeme U", "Système U"),
        ("Super U;Station U", "Système U"),
        ("Intermarche", "Intermarché"),
        ("Intermarché Contact", "Intermarché"),
        ("Carrefour Express", "Carrefour"),
        ("Géant Casino", "Casino"),
        ("Esso Express", "Esso"),
        ("ESSO", "Esso"),
        ("BP Express", "BP"),
        ("AS 24", "AS24"),
        ("Élan", "Elan"),
        ("ELAN", "Elan"),
        ("Agip", "Eni"),
        ("  Vito ", "Vito"),
        ("Garage Bahezre", "Garage Bahezre"),
        ("Les Mousquetaires", "Les Mousquetaires"),
        ("", None),
        (" ;Total", None),
    ],
)
def test_brand_spellings_become_one_canonical_brand(raw, canonical):
    assert brands.canonical_brand(raw, brands.load_aliases()) == canonical


def test_the_alias_table_is_consistent_and_refuses_a_contradiction(tmp_path):
    aliases = brands.load_aliases()
    assert all(aliases[fold(brand)] == brand for brand in set(aliases.values())), "a canonical brand is its own alias"

    contradiction = tmp_path / "aliases.csv"
    contradiction.write_text("alias,brand\nTotal,TotalEnergies\nTOTAL,Total\n", encoding="utf-8")
    with pytest.raises(ValueError, match="'TOTAL' maps to both 'TotalEnergies' and 'Total'"):
        brands.load_aliases(contradiction)


def test_texts_are_cleaned_trimmed_and_cut_to_the_columns(tmp_path):
    long_brand, long_name = "B" * 70, "N" * 130
    extra = [
        ["99000001", "Avia\x00\x07", "Garage des Alpes\r\nJ. Girieud", "", ""],
        ["99000002", long_brand, long_name, "", ""],
        ["99000003", "Cafe\u0301 \u202eX", "  \t ", "", ""],
    ]
    table = brands.read_brands(Path(write_csv(tmp_path / "texts.csv", cut_records() + extra)), brands.load_aliases())

    assert table.stations[99000001] == ("Avia", "Garage des Alpes J. Girieud")
    assert table.stations[99000002] == ("B" * 60, "N" * 120)
    assert table.stations[99000003] == ("Café X", None)


@needs_real
def test_the_cut_is_verbatim_rows_of_the_real_file():
    real = REAL.read_text(encoding="utf-8")
    records = list(csv.reader(io.StringIO(real, newline="")))
    assert records[0] == COLUMNS
    assert all(record in records for record in cut_records())


# --------------------------------------------------------------------------- the full real file


@needs_real
def test_the_real_file_imports_every_feed_id_it_holds(engine, settings, monkeypatch):
    monkeypatch.setattr(brands, "MIN_STATIONS", 1_000)  # the real rule
    records = list(csv.DictReader(io.StringIO(REAL.read_text(encoding="utf-8"), newline="")))
    assert len(records) == 12_601, "12,603 lines: the header, and one name spread over two lines"
    ids = {r["ref:FR:prix-carburants"] for r in records if r["ref:FR:prix-carburants"]}
    branded = {r["ref:FR:prix-carburants"] for r in records if r["ref:FR:prix-carburants"] and r["brand"].strip()}
    assert (len(ids), len(branded)) == (10_127, 9_312)

    table = imports.import_reference(engine, settings, imports.BRANDS, str(REAL))

    assert table.describe("REAL") == (
        "imported brands of 10,127 stations (9,312 with a brand) from REAL; "
        "75 ids on several OSM objects resolved, 2,386 rows without id skipped"
    )
    rows = stored(engine)
    assert set(rows) == {int(i) for i in ids}
    assert {station_id for station_id, (brand, _name) in rows.items() if brand} == {int(i) for i in branded}
    aliases = brands.load_aliases()
    assert all(aliases.get(fold(brand), brand) == brand for brand, _name in rows.values() if brand), "an alias left"
    counts = Counter(brand for brand, _name in rows.values())
    assert [brand for brand, _count in counts.most_common(6)] == [
        "TotalEnergies",
        "Intermarché",
        "Carrefour",
        "Système U",
        None,
        "E.Leclerc",
    ]
    assert all(len(brand or "") <= 60 and len(name or "") <= 120 for brand, name in rows.values())

    again = imports.import_reference(engine, settings, imports.BRANDS, str(REAL))
    assert again.stations == table.stations and stored(engine) == rows, "a second import gives the same table"


# --------------------------------------------------------------------------- files that are refused


def _truncated_mid_row() -> bytes:
    data = CUT.read_bytes()
    line_end = data.index(b"\r\n", len(data) // 2)
    return data[: line_end + 2 + 10]  # ten characters into the next row


def _truncated_in_quotes() -> bytes:
    data = CUT.read_bytes()
    return data[: data.index(b',"') + 2]


def _without(column: str) -> bytes:
    header = COLUMNS
    at = header.index(column)
    return csv_bytes([row[:at] + row[at + 1 :] for row in cut_records()], header[:at] + header[at + 1 :])


BROKEN = {
    "missing id column": (
        lambda: CUT.read_bytes().replace(b"ref:FR:prix-carburants", b"ref", 1),
        r"^no 'ref:FR:prix-carburants' column in the header: not the OSM stations CSV$",
    ),
    "missing brand column": (lambda: _without("brand"), r"^no 'brand' column in the header"),
    "binary junk": (
        lambda: random.Random(7).randbytes(50_000),
        r"^not a UTF-8 text file \(byte [\d,]+ cannot be decoded\)$",
    ),
    "truncated mid-row": (
        _truncated_mid_row,
        r"^line [\d,]+ has 2 fields instead of 5: the file is truncated or not the OSM stations CSV$",
    ),
    "truncated inside quotes": (
        _truncated_in_quotes,
        r"^not a readable CSV file \(line \d+: unexpected end of data\)$",
    ),
    "truncated bzip2": (lambda: bz2.compress(CUT.read_bytes())[:1200], r"^the bzip2 file is truncated$"),
    "corrupt bzip2": (lambda: b"BZh9" + b"\x00" * 100, r"^the bzip2 file is corrupt: "),
    "HTML page": (lambda: b"<!DOCTYPE html><html><body>maintenance</body></html>", r"^no 'ref:FR:prix-carburants'"),
    "empty": (lambda: b"", r"^the file is empty$"),
    "header only": (lambda: csv_bytes([]), r"^the file links only 0 stations to an id, fewer than 100: refusing it$"),
    "too few stations": (
        lambda: csv_bytes(cut_records()[:60]),
        r"^the file links only \d\d stations to an id, fewer than 100: refusing it$",
    ),
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_a_broken_file_is_refused_and_the_table_kept(engine, settings, preloaded, tmp_path, kind):
    make, match = BROKEN[kind]
    path = tmp_path / "broken.csv"
    path.write_bytes(make())
    assert_refused(engine, settings, str(path), match, preloaded)


def test_a_missing_file_is_refused(engine, settings, preloaded, tmp_path):
    assert_refused(engine, settings, str(tmp_path / "nowhere.csv"), r"^no brands file at .*nowhere\.csv$", preloaded)


def test_a_file_under_half_the_table_is_refused(engine, settings, preloaded, tmp_path, monkeypatch):
    monkeypatch.setattr(brands, "MIN_STATIONS", 10)
    kept = list(dict.fromkeys(record[0] for record in cut_records() if record[0]))[:80]
    source = write_csv(tmp_path / "shrunk.csv", [record for record in cut_records() if record[0] in kept])
    assert_refused(
        engine,
        settings,
        source,
        r"^the file lists 80 stations, under 50% of the 186 the brand table holds; refusing it$",
        preloaded,
    )


@pytest.mark.parametrize("compressed", [True, False], ids=["bzip2", "plain"])
def test_a_file_over_the_size_cap_is_refused(engine, settings, preloaded, tmp_path, monkeypatch, compressed):
    monkeypatch.setattr(brands, "MAX_CSV_BYTES", 4096)
    path = tmp_path / "big.csv"
    path.write_bytes(bz2.compress(CUT.read_bytes()) if compressed else CUT.read_bytes())
    match = r"^the file decompresses to over the 4,096-byte cap$" if compressed else r"^the file is [\d,]+ bytes, over"
    assert_refused(engine, settings, str(path), match, preloaded)


def test_a_bzip2_file_of_several_streams_is_read_whole(engine, settings, tmp_path):
    data = CUT.read_bytes()
    path = tmp_path / "cut.csv.bz2"
    path.write_bytes(bz2.compress(data[:5000]) + bz2.compress(data[5000:]))

    table = imports.import_reference(engine, settings, imports.BRANDS, str(path))

    assert table.describe("X") == CUT_SUMMARY.format("X")
    assert stored(engine) == brands.read_brands(CUT, brands.load_aliases()).stations


# --------------------------------------------------------------------------- over HTTP


def test_the_export_is_downloaded_and_decompressed(engine, settings, serve):
    body = bz2.compress(CUT.read_bytes())
    server = serve(lambda handler, n: send(handler, body, Content_Type="application/x-bzip2"))

    table = imports.import_reference(engine, dataclasses.replace(settings, brands_url=server.url), imports.BRANDS)

    assert table.describe(server.url) == CUT_SUMMARY.format(server.url)
    assert len(stored(engine)) == CUT_STATIONS
    assert etl_runs(engine)[-1].source == server.url
    assert leftover_downloads(settings) == []


def _cut_off(handler: FeedHandler, _number: int) -> None:
    body = bz2.compress(CUT.read_bytes())
    send(handler, body[: len(body) // 2], length=len(body))
    handler.close_connection = True


@pytest.mark.parametrize(
    ("respond", "match"),
    [
        pytest.param(_cut_off, r"download from 127\.0\.0\.1 was cut off \(IncompleteRead", id="cut-off"),
        pytest.param(
            lambda h, n: send(h, b"gone", status=404),
            r"127\.0\.0\.1 answered HTTP 404 when asked for the brands file",
            id="not-found",
        ),
        pytest.param(
            lambda h, n: send(h, b"x" * (2 << 20)),
            r"the brands file is 2,097,152 bytes, over the 1,048,576-byte download cap",
            id="over-the-download-cap",
        ),
    ],
)
def test_a_failed_download_is_refused_and_the_table_kept(engine, settings, preloaded, serve, respond, match):
    settings = dataclasses.replace(settings, max_download_mb=1)
    server = serve(respond)
    assert_refused(engine, settings, server.url, match, preloaded)


# --------------------------------------------------------------------------- the command line


def test_cli_main_prints_the_summary_and_returns_0(engine, settings, capsys, main_engines):
    assert etl.main(["brands", "--source", str(CUT)]) == 0
    assert capsys.readouterr().out == CUT_SUMMARY.format(CUT) + "\n"
    assert len(stored(engine)) == CUT_STATIONS


def test_cli_main_returns_1_with_one_line_and_keeps_the_table(
    engine, settings, preloaded, tmp_path, caplog, capsys, main_engines
):
    source = tmp_path / "broken.csv"
    source.write_bytes(_truncated_mid_row())
    with caplog.at_level(logging.INFO):
        assert etl.main(["brands", "--source", str(source)]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith("etl: line ") and "\n" not in errors[0]
    assert capsys.readouterr().out == ""
    assert stored(engine) == preloaded


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "etl.py", "brands", *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_real
def test_cli_process_imports_the_real_file(engine, settings):
    result = _run_cli("--source", str(REAL))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"imported brands of 10,127 stations (9,312 with a brand) from {REAL}; "
        "75 ids on several OSM objects resolved, 2,386 rows without id skipped\n"
    )
    assert len(stored(engine)) == 10_127


def test_cli_process_refuses_a_file_under_1000_stations(engine, settings):
    result = _run_cli("--source", str(CUT))
    assert result.returncode == 1
    assert result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last == "etl: the file links only 186 stations to an id, fewer than 1,000: refusing it"
    assert "Traceback" not in result.stderr
    assert stored(engine) == {}
    assert etl_runs(engine)[-1].error == last.removeprefix("etl: ")


# --------------------------------------------------------------------------- the scheduler


@pytest.fixture
def due(sqlite_settings: Settings, tmp_path: Path):
    """Prices every hour from feed_a, brands weekly from the cut, on an initialised SQLite database."""
    settings = dataclasses.replace(
        sqlite_settings, interval_seconds=INTERVAL, retry_seconds=120, brands_url=str(CUT), brands_interval_seconds=WEEK
    )
    engine = make_engine(settings.database_url)
    init_db(engine)
    yield settings, engine
    engine.dispose()


def kinds(engine) -> list[tuple[str, str]]:
    return [(run.kind, run.status) for run in etl_runs(engine)]


def age_runs(engine, kind: str, seconds: float) -> None:
    moment = scheduler.utcnow() - dt.timedelta(seconds=seconds)
    with writer(engine).begin() as conn:
        conn.execute(update(EtlRun).where(EtlRun.kind == kind).values(started_at=moment, finished_at=moment))


def test_brands_are_due_when_the_table_is_empty_then_weekly(due):
    settings, engine = due
    assert imports.import_due(engine, settings, imports.BRANDS), "an empty table is due at once"
    off = dataclasses.replace(settings, brands_interval_seconds=0)
    assert not imports.import_due(engine, off, imports.BRANDS), "0 disables"

    imports.import_reference(engine, settings, imports.BRANDS)
    assert not imports.import_due(engine, settings, imports.BRANDS)
    age_runs(engine, "brands", 6 * 24 * 3600)
    assert not imports.import_due(engine, settings, imports.BRANDS)
    age_runs(engine, "brands", WEEK)
    assert imports.import_due(engine, settings, imports.BRANDS)
    assert not imports.import_due(engine, off, imports.BRANDS)


def test_scheduled_work_loads_prices_then_brands_and_then_waits(due):
    settings, engine = due

    assert INTERVAL - 60 < scheduler._scheduled_work(engine, settings) <= INTERVAL
    assert kinds(engine) == [("run", "success"), ("brands", "success")]
    assert len(stored(engine)) == CUT_STATIONS

    assert INTERVAL - 60 < scheduler._scheduled_work(engine, settings) <= INTERVAL
    assert kinds(engine) == [("run", "success"), ("brands", "success")], "nothing is due within the hour"

    age_runs(engine, "run", 2 * INTERVAL)
    scheduler._scheduled_work(engine, settings)
    assert kinds(engine)[-1] == ("run", "success"), "prices again; brands wait for their week"
    assert len(kinds(engine)) == 3


def test_a_brand_import_never_moves_the_next_price_pass(due):
    settings, engine = due
    passes.run_pass(engine, settings)
    age_runs(engine, "run", 2 * INTERVAL)

    imports.import_reference(engine, settings, imports.BRANDS)

    assert scheduler.next_pass_in(engine, settings) == 0.0, "the price pass is still overdue"
    assert last_success(engine).kind == "run"


@pytest.mark.parametrize("failure", ["broken file", "unexpected error"])
def test_a_failed_brand_import_is_logged_and_prices_keep_their_schedule(due, tmp_path, monkeypatch, caplog, failure):
    settings, engine = due
    if failure == "broken file":
        settings = dataclasses.replace(settings, brands_url=str(tmp_path / "missing.csv"))
        reason = f"no brands file at {tmp_path / 'missing.csv'}"
        logged = f"brand import failed: {reason}"
    else:

        def bug(*_args):
            raise RuntimeError("a bug nobody foresaw")

        monkeypatch.setattr(brands, "read_brands", bug)
        reason = "unexpected error (see the ETL log): RuntimeError: a bug nobody foresaw"
        logged = "unexpected error during an ETL pass"

    with caplog.at_level(logging.ERROR, logger="etl"):
        wait = scheduler._scheduled_work(engine, settings)

    assert INTERVAL - 60 < wait <= INTERVAL, "the next price pass is an interval away, not a retry away"
    assert kinds(engine) == [("run", "success"), ("brands", "failed")]
    assert etl_runs(engine)[-1].error == reason
    assert len(table_rows(engine)["stations"]) == 60
    assert logged in [record.getMessage() for record in caplog.records]
    assert stored(engine) == {}

    age_runs(engine, "run", 2 * INTERVAL)
    scheduler._scheduled_work(engine, settings)
    assert kinds(engine) == [
        ("run", "success"),
        ("brands", "failed"),
        ("run", "success"),
    ], "prices run on time; the failed import waits its retry delay"

    age_runs(engine, "run", 2 * INTERVAL)
    age_runs(engine, "brands", settings.import_retry_seconds)
    scheduler._scheduled_work(engine, settings)
    assert kinds(engine)[-2:] == [("run", "success"), ("brands", "failed")], "then the empty table is tried again"


@pytest.fixture
def schedulers(tmp_path: Path, sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Schedulers]:
    monkeypatch.setenv("ETL_INTERVAL_SECONDS", str(INTERVAL))
    registry = Schedulers(tmp_path, sqlite_settings)
    try:
        yield registry
    finally:
        registry.cleanup()


def test_serve_keeps_loading_prices_when_the_brand_source_is_broken(schedulers: Schedulers, tmp_path: Path):
    missing = tmp_path / "no-brands.csv"
    proc = schedulers.start(CARBUROAM_BRANDS_URL=str(missing), BRANDS_INTERVAL_SECONDS=str(WEEK))

    statuses = wait_for(
        lambda: (
            len(run_statuses(schedulers.settings.database_url)) == 2 and run_statuses(schedulers.settings.database_url)
        ),
        "the price pass and the failed brand import",
        pid=proc.pid,
        log=schedulers.logs[proc.pid],
    )
    assert statuses == ["success", "failed"]
    wait_for(lambda: "brand import failed" in schedulers.log(proc), "the failure in the log", pid=proc.pid)
    assert str(missing) in schedulers.log(proc)
    assert proc.poll() is None, "a failed brand import must not stop the scheduler"
    assert stop(proc) == 0
    assert "Traceback" not in schedulers.log(proc)


@needs_real
def test_serve_imports_the_brands_once_the_prices_are_in(schedulers: Schedulers):
    proc = schedulers.start(CARBUROAM_BRANDS_URL=str(REAL), BRANDS_INTERVAL_SECONDS=str(WEEK))

    statuses = wait_for(
        lambda: (
            len(run_statuses(schedulers.settings.database_url)) == 2 and run_statuses(schedulers.settings.database_url)
        ),
        "the price pass and the brand import",
        pid=proc.pid,
        log=schedulers.logs[proc.pid],
    )
    assert statuses == ["success", "success"]
    wait_for(lambda: "imported brands of 10,127 stations" in schedulers.log(proc), "the summary", pid=proc.pid)
    assert stop(proc) == 0
    engine = make_engine(schedulers.settings.database_url)
    try:
        assert kinds(engine) == [("run", "success"), ("brands", "success")]
        assert len(stored(engine)) == 10_127
    finally:
        engine.dispose()
