"""France's communes and postcodes from La Poste: `etl.py places`, its file checks, its copies in the wild, and
the scheduler's monthly refresh.

The files are a 146-row cut of the real postcode base (tests/data/places-laposte_cut.csv, see its README),
the full real file from ../shared when present, and copies made here from the cut the way a spreadsheet
re-saves it, or broken. HTTP sources are real local servers; nothing reaches the internet.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
from pathlib import Path

import pytest
from sqlalchemy import select

import etl
from conftest import REAL_FEEDS
from db_snapshot import etl_runs
from ingest import imports, places, scheduler
from ingest.runs import EtlError
from models import Place
from session import init_db, make_engine
from settings import Settings
from test_brands import age_runs, kinds
from test_fetch import send
from test_scheduler import INTERVAL

DATA = Path(__file__).resolve().parent / "data"
CUT = DATA / "places-laposte_cut.csv"
REAL = REAL_FEEDS / "places_laposte-hexasmal_giloop-parrainages-communes-2022.csv"
needs_real = pytest.mark.skipif(not REAL.is_file(), reason=f"{REAL} is absent")
CUT_ROWS, CUT_COMMUNES = 146, 128
CUT_SUMMARY = "imported 146 places (128 communes) from {}; 0 unusable rows skipped"


@pytest.fixture(autouse=True)
def _cut_is_enough(monkeypatch):
    monkeypatch.setattr(places, "MIN_PLACES", 100)  # the real minimum (30,000) is for France


def stored(engine) -> list[tuple]:
    columns = [column for column in Place.__table__.columns if column.name != "id"]
    with engine.connect() as conn:
        return sorted((tuple(row) for row in conn.execute(select(*columns))), key=repr)


def cut_records() -> tuple[list[str], list[list[str]]]:
    header, *records = csv.reader(io.StringIO(CUT.read_text(encoding="utf-8")), delimiter=";")
    return header, records


def write(path: Path, header: list[str], records: list[list[str]], delimiter: str = ";", encoding="utf-8") -> str:
    out = io.StringIO(newline="")
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerows([header, *records])
    path.write_bytes(out.getvalue().encode(encoding))
    return str(path)


@pytest.fixture
def preloaded(engine, settings) -> list[tuple]:
    """The cut imported: the table a refused file must leave as it is."""
    imports.import_reference(engine, settings, imports.PLACES, str(CUT))
    before = stored(engine)
    assert len(before) == CUT_ROWS
    return before


def assert_refused(engine, settings, source: str, match: str, before: list[tuple]) -> str:
    """The import fails with a one-line reason matching `match`, is recorded as failed, and changes nothing."""
    with pytest.raises(EtlError, match=match) as excinfo:
        imports.import_reference(engine, settings, imports.PLACES, source)
    reason = str(excinfo.value)
    assert "\n" not in reason
    assert stored(engine) == before, "the refused file changed the places"
    last = etl_runs(engine)[-1]
    assert (last.kind, last.status, last.source, last.error) == ("places", "failed", source, reason)
    return reason


# --------------------------------------------------------------------------- the cut and its copies


def test_importing_the_cut_stores_communes_postcodes_localities_and_departments(engine, settings):
    table = imports.import_reference(engine, settings, imports.PLACES, str(CUT))

    assert table.describe("X") == CUT_SUMMARY.format("X")
    assert (len(table.rows), table.communes) == (CUT_ROWS, CUT_COMMUNES)
    rows = {(row[0], row[4], row[5]): row for row in stored(engine)}  # (insee, postcode, locality)
    assert rows[("93066", "93200", None)][1:4] == ("SAINT DENIS", "saint denis", "93")
    assert rows[("97411", "97400", "BELLE PIERRE")][1:4] == ("SAINT DENIS", "saint denis", "974")
    assert rows[("97411", "97400", "BELLE PIERRE")][6] == "belle pierre"
    assert rows[("2A247", "20137", None)][3] == "2A"  # Porto-Vecchio: Corsica's department from its INSEE code
    assert rows[("75106", "75006", None)][1:3] == ("PARIS 06", "paris")  # an arrondissement is its city
    run = etl_runs(engine)[-1]
    assert (run.kind, run.status, run.stations, run.source) == ("places", "success", CUT_ROWS, str(CUT))


def test_a_spreadsheet_resaved_copy_loads_the_same_places(engine, settings, tmp_path):
    """',' separated, Windows-1252, lower-case headers, codes stripped of their leading zeros, decimal commas."""
    header, records = cut_records()
    header = [column.lower() for column in header]
    resaved = [
        [insee.lstrip("0"), name, postcode.lstrip("0"), line5, label, lat.replace(".", ","), lon.replace(".", ",")]
        for insee, name, postcode, line5, label, lat, lon in records
    ]
    assert any(row[0] != record[0] for row, record in zip(resaved, records, strict=True)), "no code lost a zero"
    imports.import_reference(engine, settings, imports.PLACES, str(CUT))
    expected = stored(engine)

    resaved_file = write(tmp_path / "resaved.csv", header, resaved, ",", "cp1252")
    imports.import_reference(engine, settings, imports.PLACES, resaved_file)

    assert stored(engine) == expected


def test_the_current_headers_and_a_single_coordinates_column_are_read(engine, settings, tmp_path):
    _header, records = cut_records()
    renamed = ["#Code_commune_INSEE", "Nom_de_la_commune", "Code_postal", "Ligne_5", "Libellé_d_acheminement"]
    joined = [[*record[:5], f"{record[5]}, {record[6]}"] for record in records]
    imports.import_reference(engine, settings, imports.PLACES, str(CUT))
    expected = stored(engine)

    gps_file = write(tmp_path / "gps.csv", [*renamed, "coordonnees_gps"], joined)
    imports.import_reference(engine, settings, imports.PLACES, gps_file)

    assert stored(engine) == expected


def test_unusable_rows_are_skipped_and_counted(engine, settings, tmp_path):
    header, records = cut_records()
    broken = [["", "NOWHERE", "01000", "", "NOWHERE", "46", "5"], ["01001", "NOWHERE", "01000", "", "X", "", ""]]
    some_file = write(tmp_path / "some.csv", header, records + broken)
    table = imports.import_reference(engine, settings, imports.PLACES, some_file)
    assert (len(table.rows), table.skipped) == (CUT_ROWS, 2)


# --------------------------------------------------------------------------- refused files


def test_a_file_without_coordinates_is_refused_and_the_places_kept(engine, settings, preloaded, tmp_path):
    header, records = cut_records()
    source = write(tmp_path / "no-gps.csv", header[:5], [record[:5] for record in records])
    reason = assert_refused(engine, settings, source, "no coordinates", preloaded)
    assert reason.startswith("no coordinates (latitude and longitude) column in the header (Code_commune_INSEE, ")


def test_a_truncated_file_is_refused_and_the_places_kept(engine, settings, preloaded, tmp_path):
    before = preloaded
    lines = CUT.read_bytes().splitlines(keepends=True)
    source = tmp_path / "cut-off.csv"
    source.write_bytes(b"".join(lines[:121]) + lines[121][:12])  # 120 places, then a row cut inside its name
    assert_refused(engine, settings, str(source), "^line 122 has 2 fields instead of 7: the file is truncated", before)


def test_a_file_with_too_few_places_is_refused_and_the_places_kept(engine, settings, preloaded, tmp_path):
    header, records = cut_records()
    source = write(tmp_path / "few.csv", header, records[:99])
    reason = "^the file holds only 99 usable places, fewer than 100: refusing it$"
    assert_refused(engine, settings, source, reason, preloaded)


def test_a_failed_download_is_refused_and_the_places_kept(engine, settings, preloaded, serve):
    server = serve(lambda handler, n: send(handler, b"gone", status=404))
    assert_refused(
        engine, settings, server.url, r"^127\.0\.0\.1 answered HTTP 404 when asked for the postcode base$", preloaded
    )


def test_the_base_is_downloaded(engine, settings, serve):
    server = serve(lambda handler, n: send(handler, CUT.read_bytes(), Content_Type="text/csv"))
    table = imports.import_reference(engine, dataclasses.replace(settings, places_url=server.url), imports.PLACES)
    assert table.describe(server.url) == CUT_SUMMARY.format(server.url)
    assert len(stored(engine)) == CUT_ROWS


# --------------------------------------------------------------------------- the command line and the real file


def test_cli_imports_the_cut_and_refuses_a_broken_file_in_one_line(
    engine, settings, tmp_path, capsys, caplog, main_engines
):
    assert etl.main(["places", "--source", str(CUT)]) == 0
    assert capsys.readouterr().out == CUT_SUMMARY.format(CUT) + "\n"
    before = stored(engine)
    source = tmp_path / "empty.csv"
    source.write_text("")
    with caplog.at_level(logging.INFO):
        assert etl.main(["places", "--source", str(source)]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["etl: the file is empty"]
    assert stored(engine) == before


@needs_real
def test_the_real_file_imports_every_row(engine, settings, monkeypatch):
    monkeypatch.setattr(places, "MIN_PLACES", 30_000)  # the real rule
    table = imports.import_reference(engine, settings, imports.PLACES, str(REAL))
    assert (len(table.rows), table.communes, table.skipped) == (39_204, 35_091, 0)
    assert len(stored(engine)) == 39_204


# --------------------------------------------------------------------------- the scheduler's monthly refresh

MONTH = 30 * 24 * 3600


@pytest.fixture
def due(sqlite_settings: Settings):
    """Prices every hour from feed_a, no brands, places monthly from the cut, on an initialised SQLite database."""
    settings = dataclasses.replace(
        sqlite_settings, interval_seconds=INTERVAL, places_url=str(CUT), places_interval_seconds=MONTH
    )
    engine = make_engine(settings.database_url)
    init_db(engine)
    yield settings, engine
    engine.dispose()


def test_places_are_due_when_the_table_is_empty_then_monthly(due):
    settings, engine = due
    assert imports.import_due(engine, settings, imports.PLACES), "an empty table is due at once"
    off = dataclasses.replace(settings, places_interval_seconds=0)
    assert not imports.import_due(engine, off, imports.PLACES), "0 disables"

    imports.import_reference(engine, settings, imports.PLACES)
    assert not imports.import_due(engine, settings, imports.PLACES)
    age_runs(engine, "places", MONTH - 3600)
    assert not imports.import_due(engine, settings, imports.PLACES)
    age_runs(engine, "places", MONTH)
    assert imports.import_due(engine, settings, imports.PLACES)


def test_scheduled_work_loads_prices_then_places(due):
    settings, engine = due

    assert INTERVAL - 60 < scheduler._scheduled_work(engine, settings) <= INTERVAL
    assert kinds(engine) == [("run", "success"), ("places", "success")]
    assert len(stored(engine)) == CUT_ROWS

    age_runs(engine, "run", 2 * INTERVAL)
    scheduler._scheduled_work(engine, settings)
    assert kinds(engine)[-1] == ("run", "success"), "prices again; places wait for their month"
    assert len(kinds(engine)) == 3


def test_a_failed_places_import_is_logged_and_never_blocks_prices(due, tmp_path, caplog):
    settings, engine = due
    settings = dataclasses.replace(settings, places_url=str(tmp_path / "missing.csv"))

    with caplog.at_level(logging.ERROR, logger="etl"):
        wait = scheduler._scheduled_work(engine, settings)

    assert INTERVAL - 60 < wait <= INTERVAL, "the next price pass is an interval away, not a retry away"
    assert kinds(engine) == [("run", "success"), ("places", "failed")]
    assert f"places import failed: no postcode base at {tmp_path / 'missing.csv'}" in caplog.messages
    assert stored(engine) == []


def test_a_refused_places_file_is_not_fetched_again_at_every_wake_up(due, tmp_path, caplog):
    settings, engine = due
    # An edition of the base published without coordinates: every wake-up would fetch and refuse it again.
    no_coordinates = tmp_path / "base-officielle-codes-postaux.csv"
    no_coordinates.write_text(
        "#Code_commune_INSEE;Nom_de_la_commune;Code_postal;Libellé_d_acheminement;Ligne_5\n"
        "01001;L ABERGEMENT CLEMENCIAT;01400;L ABERGEMENT CLEMENCIAT;\n",
        encoding="utf-8",
    )
    settings = dataclasses.replace(settings, places_url=str(no_coordinates), import_retry_seconds=6 * 3600)

    with caplog.at_level(logging.ERROR, logger="etl"):
        scheduler._scheduled_work(engine, settings)
    assert kinds(engine) == [("run", "success"), ("places", "failed")]
    assert any("no coordinates (latitude and longitude) column" in message for message in caplog.messages)

    age_runs(engine, "places", 6 * 3600 - 60)
    refused = "a refused file waits its retry delay, though no place is loaded"
    assert not imports.import_due(engine, settings, imports.PLACES), refused
    age_runs(engine, "places", 6 * 3600)
    assert imports.import_due(engine, settings, imports.PLACES)

    fixed = dataclasses.replace(settings, places_url=str(CUT))
    scheduler._scheduled_work(engine, fixed)
    assert kinds(engine)[-1] == ("places", "success")
    assert len(stored(engine)) == CUT_ROWS
    assert not imports.import_due(engine, fixed, imports.PLACES), "after a success, the month's wait again"


def test_the_retry_delay_never_exceeds_the_interval(due, tmp_path):
    settings, engine = due
    settings = dataclasses.replace(
        settings, places_url=str(tmp_path / "missing.csv"), places_interval_seconds=3600, import_retry_seconds=6 * 3600
    )
    scheduler._scheduled_work(engine, settings)
    age_runs(engine, "places", 3600)
    assert imports.import_due(engine, settings, imports.PLACES)
