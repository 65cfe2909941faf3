"""Bulk writing: PostgreSQL's COPY path loads what SQLite's executemany path loads, and either
fails whole; a first load reads nothing back; SQLite's deferred foreign-key check still refuses orphans.
"""

from __future__ import annotations

import uuid
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import event, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy_utils import create_database, drop_database

from conftest import FIXTURES, PG_URL, postgres_available
from db_snapshot import contents, etl_runs
from ingest import load, passes
from models import Price
from session import bulk_writer, init_db, make_engine
from settings import load_settings
from utils import utcnow

FEED_A = FIXTURES / "feed_a.zip"
FEED_B = FIXTURES / "feed_b.zip"

# What COPY's text format must carry through untouched: NULLs (no coordinates, no opening hours, an
# out-of-stock record without times or kind), accents, a backslash, the text "\N" (COPY's NULL
# marker), JSON opening hours and services, a station listed twice (the last one wins).
AWKWARD_FEED = r"""<?xml version="1.0" encoding="ISO-8859-1" standalone="yes"?>
<pdv_liste>
  <pdv id="42000001" latitude="4543210" longitude="439012" cp="42000" pop="R">
    <adresse>12 rue de l'&#338;uvre \N</adresse>
    <ville>Saint-&#201;tienne</ville>
    <horaires automate-24-24="1">
      <jour id="1" nom="Lundi" ferme="">
        <horaire ouverture="07.30" fermeture="21.30"/>
      </jour>
      <jour id="7" nom="Dimanche" ferme="1"/>
    </horaires>
    <services>
      <service>Lavage manuel</service>
      <service>Boutique alimentaire \ "bio"</service>
    </services>
    <prix nom="Gazole" id="1" maj="2024-05-08 10:51:04" valeur="1.789"/>
    <prix nom="SP98" id="6" maj="2024-03-31 02:30:00" valeur="1.999"/>
    <rupture id="3" nom="E85"/>
  </pdv>
  <pdv id="97400001" latitude="" longitude="" cp="97400" pop="A">
    <adresse>Route du Lagon	(RN1)</adresse>
    <ville>Saint-Denis</ville>
    <prix nom="E10" id="5" maj="2024-05-07 23:59:59" valeur="1.901"/>
    <rupture id="2" nom="SP95" debut="2024-05-01 08:00:00" type="temporaire"/>
  </pdv>
  <pdv id="42000001" latitude="4543210" longitude="439012" cp="42000" pop="R">
    <adresse>12 rue de l'&#338;uvre \N (bis)</adresse>
    <ville>Saint-&#201;tienne</ville>
    <prix nom="Gazole" id="1" maj="2024-05-08 11:00:00" valeur="1.779"/>
  </pdv>
</pdv_liste>
"""


def _zipped(path: Path, xml: str) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("PrixCarburants_instantane.xml", xml.encode("latin-1"))
    return path


@pytest.fixture
def both_engines(monkeypatch, tmp_path):
    """A fresh SQLite database (executemany) and a fresh PostgreSQL one (COPY), with their settings."""
    if not postgres_available():
        pytest.skip("no PostgreSQL server answers")
    monkeypatch.setenv("CARBUROAM_DATA_DIR", str(tmp_path))
    pg_url = make_url(PG_URL).set(database=f"carburoam_test_{uuid.uuid4().hex[:12]}").render_as_string(False)
    create_database(pg_url)
    engines = [make_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}"), make_engine(pg_url)]
    for engine in engines:
        init_db(engine)
    try:
        yield [(engine, load_settings()) for engine in engines]
    finally:
        for engine in engines:
            engine.dispose()
        drop_database(pg_url)


@pytest.mark.postgresql
@pytest.mark.parametrize("feeds", [[FEED_A, FEED_B], ["awkward"]], ids=["fixture-feeds", "awkward-values"])
def test_copy_loads_exactly_what_executemany_loads(both_engines, tmp_path, feeds):
    feeds = [_zipped(tmp_path / "awkward.zip", AWKWARD_FEED) if f == "awkward" else f for f in feeds]
    loaded = []
    for engine, settings in both_engines:
        after_each = []
        for feed in feeds:
            passes.run_pass(engine, settings, str(feed))
            after_each.append(contents(engine, last_seen=False))
        loaded.append(after_each)

    sqlite_loads, postgresql_loads = loaded
    assert postgresql_loads == sqlite_loads
    assert all(load["stations"] for load in sqlite_loads)  # the comparison is not of two empty databases


@pytest.mark.postgresql
def test_awkward_values_read_back_as_the_feed_gives_them(both_engines, tmp_path):
    _, (engine, settings) = both_engines
    passes.run_pass(engine, settings, str(_zipped(tmp_path / "awkward.zip", AWKWARD_FEED)))

    with engine.connect() as conn:
        stations = {row.id: row for row in conn.execute(text("SELECT * FROM stations"))}
        ruptures = conn.execute(text("SELECT station_id, gastype_id, started_at, ended_at, kind FROM ruptures")).all()
    assert set(stations) == {42000001, 97400001}
    etienne, lagon = stations[42000001], stations[97400001]
    assert etienne.address == "12 rue de l'Œuvre \\N (bis)"  # the last listing wins; "\N" stays text
    assert etienne.town == "Saint-Étienne"
    assert etienne.opening_hours is None  # the second listing has none
    assert (lagon.latitude, lagon.longitude, lagon.opening_hours) == (None, None, None)
    assert lagon.address == "Route du Lagon (RN1)"
    assert sorted(ruptures, key=lambda row: row[0])[0][2:] == (None, None, None)


@pytest.mark.postgresql
def test_json_documents_survive_copy(both_engines, tmp_path):
    one_station = AWKWARD_FEED.split('  <pdv id="97400001"')[0] + "</pdv_liste>\n"
    _, (engine, settings) = both_engines
    passes.run_pass(engine, settings, str(_zipped(tmp_path / "one.zip", one_station)))

    with engine.connect() as conn:
        hours, services = conn.execute(text("SELECT opening_hours, services FROM stations")).one()
    assert hours == '[{"day":1,"closed":false,"hours":[["07:30","21:30"]]},{"day":7,"closed":true,"hours":[]}]'
    assert services == '["Lavage manuel","Boutique alimentaire \\\\ \\"bio\\""]'


def _rows_failing_half_way(rows, failure: str):
    """`rows` of price_history (station, fuel, updated_at, price), the middle one going wrong as `failure` says."""
    rows = list(rows)
    for number, row in enumerate(rows):
        if number == len(rows) // 2:
            if failure == "python-error":
                raise RuntimeError("the rows broke off")
            wrong = {"refused-row": (99_999_999, *row[1:]), "value-of-another-type": (*row[:2], "not a time", row[3])}
            row = wrong[failure]  # a station that does not exist is refused by the database
        yield row


REASONS = {
    "refused-row": "database error, nothing was changed",
    "python-error": "the rows broke off",
    "value-of-another-type": "unexpected error",
}


@pytest.mark.postgresql
@pytest.mark.parametrize("failure", list(REASONS))
@pytest.mark.parametrize("preloaded", [False, True], ids=["empty-db", "after-feed-a"])
def test_a_failure_in_the_middle_of_a_copy_leaves_nothing(both_engines, monkeypatch, preloaded, failure):
    _, (engine, settings) = both_engines
    if preloaded:
        passes.run_pass(engine, settings, str(FEED_A))
    before, runs_before = contents(engine), etl_runs(engine)
    real_upsert, copied = load.upsert, []

    def upsert_failing_in_history(conn, target, names, rows, *args, **kwargs):
        if target.name == "price_history":
            rows = _rows_failing_half_way(rows, failure)
            copied.append(target.name)
        return real_upsert(conn, target, names, rows, *args, **kwargs)

    monkeypatch.setattr(load, "upsert", upsert_failing_in_history)
    with pytest.raises(passes.EtlError, match=REASONS[failure]):
        passes.run_pass(engine, settings, str(FEED_B))

    assert copied == ["price_history"]  # stations were written in the transaction before it
    assert contents(engine) == before
    assert etl_runs(engine)[: len(runs_before)] == runs_before
    assert etl_runs(engine)[-1].status == "failed"


def test_a_first_load_reads_no_stored_row(engine, settings):
    data_tables = ("stations", "prices", "price_history", "ruptures")
    reads: list[str] = []
    loaded = False  # the load ends with its etl_runs row; the daily figures then read what it wrote, by design

    def remember_reads(_conn, _cursor, statement, *_args):
        nonlocal loaded
        loaded = loaded or statement.lstrip().upper().startswith("INSERT INTO ETL_RUNS")
        if not loaded and statement.lstrip().upper().startswith("SELECT") and "FROM etl_runs" not in statement:
            reads.append(statement)

    event.listen(engine, "before_cursor_execute", remember_reads)
    passes.run_pass(engine, settings, str(FEED_A))
    event.remove(engine, "before_cursor_execute", remember_reads)

    # One look tells the database holds no station; nothing else of the data tables is read.
    data_reads = [s for s in reads if any(f"FROM {table}" in s for table in data_tables)]
    assert all("LIMIT" in s and "FROM stations" in s for s in data_reads)
    assert contents(engine)["stations"]


def test_sqlite_bulk_writer_still_refuses_an_orphan_row_and_keeps_foreign_keys_on(sqlite_settings):
    engine = make_engine(sqlite_settings.database_url)
    init_db(engine)
    orphan = {"station_id": 1, "gastype_id": 1, "price": Decimal("1.5"), "updated_at": utcnow()}
    with pytest.raises(IntegrityError, match="FOREIGN KEY"), bulk_writer(engine) as conn:
        conn.execute(insert(Price), orphan)

    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("SELECT count(*) FROM prices").scalar() == 0
        with pytest.raises(IntegrityError, match="FOREIGN KEY"):
            conn.execute(insert(Price), orphan)
    engine.dispose()


def _fresh_pg_engine():
    url = make_url(PG_URL).set(database=f"carburoam_test_{uuid.uuid4().hex[:12]}").render_as_string(False)
    create_database(url)
    engine = make_engine(url)
    init_db(engine)
    return engine, url


@pytest.mark.postgresql
def test_copy_asks_the_column_types_once_a_process_and_they_serve_another_database(monkeypatch, tmp_path):
    """A run's COPYs need each column's type: once asked, a later run, even into another database, asks none."""
    if not postgres_available():
        pytest.skip("no PostgreSQL server answers")
    monkeypatch.setenv("CARBUROAM_DATA_DIR", str(tmp_path))
    settings = load_settings()
    loaded, asked = [], []

    def remember_type_questions(_conn, _cursor, statement, *_args):
        if "LIMIT" in statement and "FROM copy_" in statement:
            asked[-1] += 1

    for _ in range(2):
        engine, url = _fresh_pg_engine()
        asked.append(0)
        event.listen(engine, "before_cursor_execute", remember_type_questions)
        try:
            for feed in (FEED_A, FEED_B):
                passes.run_pass(engine, settings, str(feed))
            loaded.append(contents(engine, last_seen=False))
        finally:
            engine.dispose()
            drop_database(url)

    assert asked[1] == 0
    assert loaded[1] == loaded[0]
    assert loaded[1]["prices"]  # the comparison is not of two empty databases
