"""Loading feeds into the database: idempotence, diffs, atomicity, concurrent readers, backfill.

Expected values come from an independent reading of the feed files with the
standard library (xml.etree), never from the project's own parser.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import threading
import zipfile
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import OperationalError

import etl
import loader
import models
from conftest import FIXTURES, SHARED
from models import EtlRun, Price, PriceHistory, Rupture, Station
from session import make_engine

UTC = dt.UTC
PARIS = ZoneInfo("Europe/Paris")
FEED_A = FIXTURES / "feed_a.zip"
FEED_B = FIXTURES / "feed_b.zip"
QUOTIDIEN = FIXTURES / "quotidien.zip"
GEN_FEED = SHARED / "tools" / "gen_feed.py"
REAL_QUOTIDIEN = SHARED / "feeds" / "real" / "quotidien_thocayla-Ensai_2016-12-16.zip"
MILLI = Decimal("0.001")


# --------------------------------------------------------------------------- independent reading


@dataclass
class Feed:
    """What a feed file says, read with the standard library only."""

    stations: set[int] = field(default_factory=set)
    # (station, fuel, maj in UTC) -> euros; plausible observations only, first one kept
    observations: dict[tuple[int, int, dt.datetime], Decimal] = field(default_factory=dict)
    # (station, fuel, maj) keys the file lists more than once with different prices
    conflicts: set[tuple[int, int, dt.datetime]] = field(default_factory=set)
    # (station, fuel) -> (started UTC or None, ended UTC or None, kind or None), the latest start wins
    ruptures: dict[tuple[int, int], tuple] = field(default_factory=dict)

    @property
    def current(self) -> dict[tuple[int, int], tuple[Decimal, dt.datetime]]:
        newest: dict[tuple[int, int], tuple[Decimal, dt.datetime]] = {}
        for (station, fuel, maj), price in self.observations.items():
            if (station, fuel) not in newest or maj > newest[(station, fuel)][1]:
                newest[(station, fuel)] = (price, maj)
        return newest


def _xml_bytes(path: Path) -> bytes:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            (name,) = [n for n in archive.namelist() if n.lower().endswith(".xml")]
            return archive.read(name)
    return path.read_bytes()


def _utc(raw: str | None) -> dt.datetime | None:
    if not raw:
        return None
    try:
        wall = dt.datetime.fromisoformat(raw)
    except ValueError:
        return None
    return wall.replace(tzinfo=PARIS).astimezone(UTC) if wall.year >= 2000 else None


def _euros(raw: str, file_in_thousandths: bool) -> Decimal | None:
    raw = raw.strip()
    if "." in raw:
        value = Decimal(raw)
    elif int(raw) >= 100 or file_in_thousandths:
        value = Decimal(raw) / 1000
    else:
        value = Decimal(raw)
    return value.quantize(MILLI) if Decimal("0.10") < value <= Decimal("5.00") else None


def read_feed(path: Path) -> Feed:
    data = _xml_bytes(path)
    in_thousandths = len(re.findall(rb'valeur="\d{3,}"', data)) > len(re.findall(rb'valeur="[\d.]*\.', data))
    feed = Feed()
    for pdv in ElementTree.fromstring(data).iter("pdv"):
        station = int(pdv.get("id"))
        feed.stations.add(station)
        for prix in pdv.iter("prix"):
            if not prix.attrib or int(prix.get("id", 0)) not in range(1, 7):
                continue
            price, maj = _euros(prix.get("valeur"), in_thousandths), _utc(prix.get("maj"))
            if price is not None and maj is not None:
                key = (station, int(prix.get("id")), maj)
                if feed.observations.setdefault(key, price) != price:
                    feed.conflicts.add(key)
        for rupture in pdv.iter("rupture"):
            if not rupture.attrib:
                continue
            key = (station, int(rupture.get("id")))
            started = _utc(rupture.get("debut"))
            kind = rupture.get("type") if rupture.get("type") in ("temporaire", "definitive") else None
            never = dt.datetime.min.replace(tzinfo=UTC)
            if key not in feed.ruptures or (started or never) >= (feed.ruptures[key][0] or never):
                feed.ruptures[key] = (started, _utc(rupture.get("fin")), kind)
    return feed


# --------------------------------------------------------------------------- database reading


def table_rows(engine, table) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(table).order_by(*table.primary_key.columns))]


def contents(engine, *, last_seen: bool = True) -> dict[str, list[tuple]]:
    """Every row of every table but etl_runs (optionally without the stations' last_seen_at)."""
    result = {}
    for table in models.Base.metadata.sorted_tables:
        if table.name == "etl_runs":
            continue
        if table.name == "stations" and not last_seen:
            columns = [c for c in table.columns if c.name != "last_seen_at"]
            with engine.connect() as conn:
                result[table.name] = [tuple(r) for r in conn.execute(select(*columns).order_by(table.c.id))]
        else:
            result[table.name] = table_rows(engine, table)
    return result


def current_prices(engine) -> dict[tuple[int, int], tuple[Decimal, dt.datetime]]:
    with engine.connect() as conn:
        rows = conn.execute(select(Price.station_id, Price.gastype_id, Price.price, Price.updated_at))
        return {(s, f): (p, u) for s, f, p, u in rows}


def history(engine) -> dict[tuple[int, int, dt.datetime], Decimal]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(PriceHistory.station_id, PriceHistory.gastype_id, PriceHistory.updated_at, PriceHistory.price)
        )
        return {(s, f, u): p for s, f, u, p in rows}


def ruptures(engine) -> dict[tuple[int, int], tuple]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(Rupture.station_id, Rupture.gastype_id, Rupture.started_at, Rupture.ended_at, Rupture.kind)
        )
        return {(s, f): (a, b, k) for s, f, a, b, k in rows}


def runs(engine) -> list[EtlRun]:
    with engine.connect() as conn:
        return [row for row in conn.execute(select(EtlRun.__table__).order_by(EtlRun.id))]


def count(engine, model) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(model))


# --------------------------------------------------------------------------- idempotence and diffs


@pytest.mark.parametrize("force", [False, True], ids=["recognised", "forced-reparse"])
def test_loading_the_same_feed_twice_changes_nothing(engine, settings, force):
    feed = read_feed(FEED_A)
    first = etl.run_pass(engine, settings, str(FEED_A))
    after_first = contents(engine, last_seen=False)
    second = etl.run_pass(engine, settings, str(FEED_A), force=force)

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
    data = _xml_bytes(source)
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

    etl.run_pass(engine, settings, str(FEED_A))
    assert current_prices(engine) == a.current
    etl.run_pass(engine, settings, str(feed_b_path))

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
        etl.run_pass(engine, settings, str(FEED_A))
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

    monkeypatch.setattr(loader, "load_ruptures", failing_load_ruptures)
    with pytest.raises(etl.EtlError, match=r"(?i)database") as failure:
        etl.run_pass(engine, settings, str(FEED_B))

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

    etl.run_pass(engine, settings, str(FEED_A))
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
            etl.run_pass(engine, settings, str(source))
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

    first = etl.backfill(engine, settings, str(QUOTIDIEN))

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
    again = etl.backfill(engine, settings, str(QUOTIDIEN))
    assert contents(engine) == snapshot
    assert [(r.kind, r.status) for r in runs(engine)] == [("backfill", "success")] * 2
    assert again.changes == 0  # "added 0 observations"


def test_backfill_of_the_real_2016_daily_file(engine, settings):
    if not REAL_QUOTIDIEN.is_file():
        pytest.skip(f"{REAL_QUOTIDIEN} is absent")
    feed = read_feed(REAL_QUOTIDIEN)

    etl.backfill(engine, settings, str(REAL_QUOTIDIEN))

    stored = history(engine)
    assert set(stored) == set(feed.observations)
    unambiguous = set(feed.observations) - feed.conflicts
    assert {k: stored[k] for k in unambiguous} == {k: feed.observations[k] for k in unambiguous}
    assert count(engine, Station) == len(feed.stations)
    assert set(current_prices(engine)) == set(feed.current)
    assert {k: v[1] for k, v in current_prices(engine).items()} == {k: v[1] for k, v in feed.current.items()}
    before = contents(engine)
    etl.backfill(engine, settings, str(REAL_QUOTIDIEN))
    assert contents(engine) == before
