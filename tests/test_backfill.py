"""Backfilling archives: the yearly archive's address, the progress shown on the terminal and the admin page,
resuming after a failure without loading anything twice, and the daily aggregates that follow."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

import etl
from app_helpers import PASSWORD, new_app, open_app, open_page, sign_in
from conftest import FIXTURES
from db_snapshot import contents, history
from ingest import load, passes, progress
from ingest.errors import FeedError
from ingest.source import yearly_archive_url
from models import BackfillProgress, DailyAggregate
from session import session_factory
from utils import utcnow

QUOTIDIEN = FIXTURES / "quotidien.zip"


def test_the_yearly_archive_address_is_the_official_one():
    assert yearly_archive_url(2025, 2026) == "https://donnees.roulez-eco.fr/opendata/annee/2025"
    assert yearly_archive_url(2007, 2026).endswith("/annee/2007")


@pytest.mark.parametrize("year", [2006, 2027, 1970])
def test_a_year_without_an_archive_is_refused_in_plain_words(year):
    with pytest.raises(FeedError, match=f"from 2007 to 2026, not {year}"):
        yearly_archive_url(year, 2026)


def test_the_command_refuses_a_year_without_archive_before_downloading(settings, main_engines, caplog):
    assert etl.main(["backfill", "--year", "1999"]) == 1
    assert "there is a yearly archive for each year from 2007" in caplog.text


def latest_progress(engine) -> BackfillProgress:
    with session_factory(engine)() as session:
        return progress.latest(session)


def aggregate_days(engine) -> list[dt.date]:
    with engine.connect() as conn:
        return list(conn.scalars(select(DailyAggregate.day).where(DailyAggregate.scope == "FR").distinct()))


def test_a_backfill_shows_its_progress_and_computes_the_days_it_covers(settings, main_engines, capsys):
    assert etl.main(["backfill", "--source", str(QUOTIDIEN)]) == 0

    err = capsys.readouterr().err
    assert "reading the archive: 100%" in err and "daily figures: 100%" in err
    (engine,) = main_engines
    row = latest_progress(engine)
    assert (row.phase, row.source) == ("done", str(QUOTIDIEN))
    days = aggregate_days(engine)
    assert days, "the file's days have their figures"
    with engine.connect() as conn:
        observed = conn.scalar(select(func.count()).select_from(DailyAggregate))
    assert observed > 0


def test_a_failed_backfill_resumes_after_what_it_committed_and_loads_nothing_twice(engine, settings, monkeypatch):
    monkeypatch.setattr(passes, "BACKFILL_BATCH_PRICES", 20)
    real_load, calls = load.load_history_batch, []

    def failing_third_batch(conn, batch, seen_at):
        calls.append(len(batch))
        if len(calls) == 3:
            raise OperationalError("INSERT INTO price_history", {}, Exception("database or disk is full"))
        return real_load(conn, batch, seen_at)

    monkeypatch.setattr(passes, "load_history_batch", failing_third_batch)
    with pytest.raises(passes.EtlError, match="run the same file again to finish"):
        passes.backfill(engine, settings, str(QUOTIDIEN))
    stopped = latest_progress(engine)
    assert stopped.phase == "loading" and stopped.stations_done == sum(calls[:2]) > 0
    assert 0 < stopped.done < stopped.total
    loaded_before = len(history(engine))

    calls.clear()
    monkeypatch.setattr(
        passes,
        "load_history_batch",
        lambda conn, batch, seen_at: calls.append(len(batch)) or real_load(conn, batch, seen_at),
    )
    resumed = passes.backfill(engine, settings, str(QUOTIDIEN))

    finished = latest_progress(engine)
    assert (finished.id, finished.phase) == (stopped.id, "done")
    assert sum(calls) == resumed.stations - stopped.stations_done, "the stations committed before are not read again"
    assert resumed.changes == len(history(engine)) - loaded_before > 0
    loaded_in_two = contents(engine)
    assert history(engine), "the history holds the whole file"
    again = passes.backfill(engine, settings, str(QUOTIDIEN))
    assert again.changes == 0 and contents(engine) == loaded_in_two


def test_the_admin_page_shows_a_backfill_under_way_and_one_that_stopped(monkeypatch, data_dir):
    app = open_app(monkeypatch, data_dir)
    app.accounts.create_admin("root", "root@example.org", PASSWORD)
    started = utcnow() - dt.timedelta(hours=1)
    row = {"source": "https://donnees.roulez-eco.fr/opendata/annee/2025", "feed_size": 400, "feed_crc32": 1}
    with app.session() as session, session.begin():
        session.add(
            BackfillProgress(
                **row, started_at=started, updated_at=utcnow(), phase="loading", done=100, total=400, stations_done=10
            )
        )
    app.engine.dispose()

    at = new_app().run()
    sign_in(at, "root", PASSWORD)
    at = open_page(at, "pages/admin.py")

    (bar,) = at.get("progress")
    assert r"Reading the archive (25\%)" in bar.proto.text and bar.proto.value == 25  # Markdown, escaped
    assert not [caption for caption in at.caption if "Last progress" in caption.value]

    with app.session() as session, session.begin():
        session.get(BackfillProgress, 1).updated_at = started
    at.run()
    assert [caption for caption in at.caption if "run the same backfill again; it resumes" in caption.value]
