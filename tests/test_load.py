"""Loading feeds into the database: idempotence, diffs, atomicity, concurrent readers, backfill.

Expected values come from an independent reading of the feed files with the
standard library (xml.etree, in feed_reader.py), never from the project's own parser.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import subprocess
import sys
import threading
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import OperationalError

from conftest import FIXTURES, SHARED
from db_snapshot import contents, count, current_prices, history
from db_snapshot import etl_runs as runs
from feed_reader import read_feed, xml_bytes
from ingest import load, passes, scheduler
from models import Price, PriceHistory, Rupture, Station
from session import make_engine

UTC = dt.UTC
FEED_A = FIXTURES / "feed_a.zip"
FEED_B = FIXTURES / "feed_b.zip"
QUOTIDIEN = FIXTURES / "quotidien.zip"
GEN_FEED = SHARED / "tools" / "gen_feed.py"
REAL_QUOTIDIEN = SHARED / "feeds" / "real" / "quotidien_thocayla-Ensai_2016-12-16.zip"


# --------------------------------------------------------------------------- database reading


def ruptures(engine) -> dict[tuple[int, int], tuple]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(Rupture.station_id, Rupture.gastype_id, Rupture.started_at, Rupture.ended_at, Rupture.kind)
        )
        return {(s, f): (a, b, k) for s, f, a, b, k in rows}


# --------------------------------------------------------------------------- idempotence and diffs


@pytest.mark.parametrize("force", [False, True], ids=["recognised", "forced-reparse"])
def test_loading_the_same_feed_twice_changes_nothing(engine, settings, force):
    feed = read_feed(FEED_A)
    first = passes.run_pass(engine, settings, str(FEED_A))
    after_first = contents(engine, last_seen=False)
    second = passes.run_pass(engine, settings, str(FEED_A), force=force)

    assert contents(engine, last_seen=False) == after_first
    assert current_prices(engine) == feed.current
    assert history(engine) == feed.observations
    assert (first.changes, second.changes) == (len(feed.current), 0)
    recorded = runs(engine)
    assert [(r.status, r.stations, r.prices, r.changes) for r in recorded] == [
        ("success", len(feed.stations), len(feed.current), len(feed.current)),
        ("success", len(feed.stations), len(feed.current), 0),
    ]
    with engine.connect() as conn:
        seen = set(conn.scalars(select(Station.last_seen_at)))
    assert all(recorded[1].started_at <= when <= recorded[1].finished_at for when in seen)


def _withdraw(source: Path, target: Path, prices: int, ruptures_: int) -> Path:
    """A copy of `source` whose first `prices` <prix> and first `ruptures_` <rupture> lines are gone."""
    data = xml_bytes(source)
    data = re.sub(rb"\n\s*<prix [^>]*/>", b"", data, count=prices)
    data = re.sub(rb"\n\s*<rupture [^>]*/>", b"", data, count=ruptures_)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("PrixCarburants_instantane.xml", data)
    return target


def test_second_feed_replaces_current_state_and_extends_history(engine, settings, tmp_path):
    feed_b_path = _withdraw(FEED_B, tmp_path / "feed_b_minus.zip", prices=4, ruptures_=3)
    a, b = read_feed(FEED_A), read_feed(feed_b_path)
    withdrawn = set(a.current) - set(b.current)
    assert len(withdrawn) == 4 and len(set(a.ruptures) - set(b.ruptures)) == 3  # the scenario is real

    passes.run_pass(engine, settings, str(FEED_A))
    assert current_prices(engine) == a.current
    passes.run_pass(engine, settings, str(feed_b_path))

    assert current_prices(engine) == b.current
    assert not withdrawn & set(current_prices(engine))
    assert history(engine) == {**b.observations, **a.observations}
    assert ruptures(engine) == b.ruptures
    with engine.connect() as conn:
        seen = dict(conn.execute(select(Station.id, Station.last_seen_at)).all())
    assert set(seen) == a.stations | b.stations
    second = runs(engine)[-1]
    assert second.status == "success"
    assert all(second.started_at <= when <= second.finished_at for when in seen.values())


# --------------------------------------------------------------------------- atomicity


def _disk_error(*_args, **_kwargs):
    raise OperationalError("INSERT", {}, Exception("disk I/O error"))


@pytest.mark.parametrize("preloaded", [False, True], ids=["empty-db", "after-feed-a"])
def test_failure_in_the_middle_of_a_load_leaves_every_table_as_it_was(engine, settings, monkeypatch, preloaded):
    if preloaded:
        passes.run_pass(engine, settings, str(FEED_A))
    before, runs_before = contents(engine), runs(engine)
    expected_b = read_feed(FEED_B)
    stations_during = expected_b.stations | (read_feed(FEED_A).stations if preloaded else set())
    inside: dict[str, object] = {}

    def failing_load_ruptures(conn, *args, **kwargs):
        # Stations and prices of feed_b are written in this transaction by now.
        inside["stations"] = conn.scalar(select(func.count()).select_from(Station))
        inside["prices"] = {
            (s, f): (p, u)
            for s, f, p, u in conn.execute(select(Price.station_id, Price.gastype_id, Price.price, Price.updated_at))
        }
        _disk_error()

    monkeypatch.setattr(load, "load_ruptures", failing_load_ruptures)
    with pytest.raises(passes.EtlError, match=r"(?i)database") as failure:
        passes.run_pass(engine, settings, str(FEED_B))

    assert inside, "load_ruptures was never called"
    assert inside["stations"] == len(stations_during)
    assert inside["prices"] == expected_b.current
    assert "disk I/O error" in str(failure.value)
    assert contents(engine) == before
    after = runs(engine)
    assert after[: len(runs_before)] == runs_before
    assert len(after) == len(runs_before) + 1
    failed = after[-1]
    assert failed.status == "failed"
    assert "disk I/O error" in failed.error
    assert str(FEED_B) in failed.source


UNEXPECTED = "unexpected error (see the ETL log): RuntimeError: a bug nobody foresaw"


def _work_then_fail(monkeypatch, step: str, error: BaseException) -> None:
    """Make etl's `step` write its rows in the pass's transaction, then raise `error`."""
    work = getattr(passes, step)

    def work_then_fail(*args, **kwargs):
        work(*args, **kwargs)
        raise error

    monkeypatch.setattr(passes, step, work_then_fail)


@pytest.mark.parametrize(
    ("kind", "step"), [("run", "load_snapshot"), ("backfill", "load_history_batch")], ids=["run", "backfill"]
)
def test_unexpected_error_during_a_load_is_recorded_and_changes_nothing(
    engine, settings, monkeypatch, caplog, kind, step
):
    passes.run_pass(engine, settings, str(FEED_A))
    before = contents(engine)
    _work_then_fail(monkeypatch, step, RuntimeError("a bug nobody foresaw"))

    with caplog.at_level(logging.ERROR, logger="etl"), pytest.raises(passes.EtlError) as failure:
        if kind == "run":
            passes.run_pass(engine, settings, str(FEED_B))
        else:
            passes.backfill(engine, settings, str(QUOTIDIEN))

    assert str(failure.value) == UNEXPECTED
    assert contents(engine) == before
    failed = runs(engine)[-1]
    assert (failed.kind, failed.status, failed.error) == (kind, "failed", UNEXPECTED)
    assert any(r.exc_info and r.exc_info[0] is RuntimeError for r in caplog.records), "the traceback is logged"


def test_interruption_during_a_load_propagates_and_changes_nothing(engine, settings, monkeypatch):
    passes.run_pass(engine, settings, str(FEED_A))
    before = contents(engine)
    _work_then_fail(monkeypatch, "load_snapshot", scheduler.Interrupted())

    with pytest.raises(scheduler.Interrupted):
        passes.run_pass(engine, settings, str(FEED_B))

    assert contents(engine) == before


# --------------------------------------------------------------------------- readers during a load


def _generate(out: Path, *extra: str) -> Path:
    subprocess.run(
        [sys.executable, str(GEN_FEED), "--stations", "3000", "--seed", "5", "--out", str(out), *extra],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


def _state(conn) -> tuple:
    """What a reader sees in one transaction: counts and a fingerprint of the current prices."""
    stations = conn.scalar(select(func.count()).select_from(Station))
    prices = frozenset(conn.execute(select(Price.station_id, Price.gastype_id, Price.price, Price.updated_at)))
    hist = conn.scalar(select(func.count()).select_from(PriceHistory))
    rupt = conn.scalar(select(func.count()).select_from(Rupture))
    orphans = conn.scalar(
        select(func.count())
        .select_from(Price)
        .outerjoin(Station, Station.id == Price.station_id)
        .where(Station.id.is_(None))
    )
    return (stations, len(prices), hash(prices), hist, rupt, orphans)


def test_readers_never_see_a_half_loaded_feed(engine, settings, tmp_path):
    if not GEN_FEED.is_file():
        pytest.skip(f"{GEN_FEED} is absent")
    big_1 = _generate(tmp_path / "big_1.zip")
    big_2 = _generate(tmp_path / "big_2.zip", "--day", "2024-05-09", "--price-drift", "0.5")
    sequence = [FEED_B, big_1, big_2, big_1, big_2]

    passes.run_pass(engine, settings, str(FEED_A))
    expected = set()
    with engine.connect() as conn:
        expected.add(_state(conn))

    separate_engine = make_engine(settings.database_url)  # its own connections, as another process would have
    reader_engine = separate_engine
    if separate_engine.dialect.name == "postgresql":
        # One snapshot per transaction, as SQLite gives every reader in WAL mode.
        reader_engine = separate_engine.execution_options(isolation_level="REPEATABLE READ")
    seen: list[tuple] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    progress = threading.Condition()

    def reader() -> None:
        try:
            while not stop.is_set():
                with reader_engine.connect() as conn, conn.begin():
                    state = _state(conn)
                with progress:
                    seen.append(state)
                    progress.notify_all()
        except BaseException as exc:
            errors.append(exc)
        finally:
            with progress:
                progress.notify_all()

    def wait_for_reads(at_least: int) -> None:
        with progress:
            assert progress.wait_for(lambda: len(seen) >= at_least or errors, timeout=60), "the reader stalled"

    thread = threading.Thread(target=reader, name="reader", daemon=True)
    thread.start()
    try:
        wait_for_reads(1)
        for source in sequence:
            passes.run_pass(engine, settings, str(source))
            with engine.connect() as conn:
                expected.add(_state(conn))
            # Two more reads: the second one starts after this commit, so the reader sees every state.
            wait_for_reads(len(seen) + 2)
            if errors:
                break
    finally:
        stop.set()
        thread.join(timeout=60)
        separate_engine.dispose()

    assert not thread.is_alive()
    assert not errors, f"the reader failed: {errors[0]!r}"
    inconsistent = [state for state in seen if state not in expected]
    assert not inconsistent, f"{len(inconsistent)} of {len(seen)} reads saw a half-loaded database: {inconsistent[:3]}"
    assert set(seen) == expected  # the reader really saw every successive feed
    assert all(state[-1] == 0 for state in seen)


# --------------------------------------------------------------------------- backfill


def _station_row(station_id: int, zip_code: str) -> dict:
    return {
        "id": station_id,
        "latitude": None,
        "longitude": None,
        "zip_code": zip_code,
        "town": "Ailleurs",
        "address": "Déjà connue",
        "road_type": "R",
        "automate_24_24": False,
        "opening_hours": None,
        "services": [],
        "last_seen_at": dt.datetime(2024, 1, 1, tzinfo=UTC),
    }


def test_backfill_loads_every_observation_and_moves_only_older_current_prices(engine, settings):
    feed = read_feed(QUOTIDIEN)
    newest = feed.current
    assert len(feed.observations) > len(newest)  # several observations per (station, fuel)
    (kept_pair, replaced_pair) = sorted(newest)[:2]
    future = dt.datetime(2031, 1, 1, 12, tzinfo=UTC)
    past = dt.datetime(2001, 1, 1, 12, tzinfo=UTC)
    with engine.begin() as conn:
        stations = {kept_pair[0], replaced_pair[0]}
        conn.execute(insert(Station), [_station_row(s, "00000") for s in sorted(stations)])
        conn.execute(
            insert(Price),
            [
                {
                    "station_id": kept_pair[0],
                    "gastype_id": kept_pair[1],
                    "price": Decimal("1.111"),
                    "updated_at": future,
                },
                {
                    "station_id": replaced_pair[0],
                    "gastype_id": replaced_pair[1],
                    "price": Decimal("1.222"),
                    "updated_at": past,
                },
            ],
        )

    first = passes.backfill(engine, settings, str(QUOTIDIEN))

    assert history(engine) == feed.observations
    assert first.changes == len(feed.observations)
    expected = dict(newest)
    expected[kept_pair] = (Decimal("1.111"), future)
    assert current_prices(engine) == expected
    assert count(engine, Station) == len(feed.stations)
    with engine.connect() as conn:
        # A known station keeps its details.
        assert conn.scalar(select(Station.address).where(Station.id == kept_pair[0])) == "Déjà connue"

    snapshot = contents(engine)
    again = passes.backfill(engine, settings, str(QUOTIDIEN))
    assert contents(engine) == snapshot
    assert [(r.kind, r.status) for r in runs(engine)] == [("backfill", "success")] * 2
    assert again.changes == 0  # "added 0 observations"


def test_backfill_of_the_real_2016_daily_file(engine, settings):
    if not REAL_QUOTIDIEN.is_file():
        pytest.skip(f"{REAL_QUOTIDIEN} is absent")
    feed = read_feed(REAL_QUOTIDIEN)

    passes.backfill(engine, settings, str(REAL_QUOTIDIEN))

    stored = history(engine)
    assert set(stored) == set(feed.observations)
    unambiguous = set(feed.observations) - feed.conflicts
    assert {k: stored[k] for k in unambiguous} == {k: feed.observations[k] for k in unambiguous}
    assert count(engine, Station) == len(feed.stations)
    assert set(current_prices(engine)) == set(feed.current)
    assert {k: v[1] for k, v in current_prices(engine).items()} == {k: v[1] for k, v in feed.current.items()}
    before = contents(engine)
    passes.backfill(engine, settings, str(REAL_QUOTIDIEN))
    assert contents(engine) == before
