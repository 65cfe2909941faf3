"""The database layer as a user of the service relies on it: schema, reference data, settings, types."""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import delete, func, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError

import models
import settings as settings_module
from conftest import FIXTURES, ROOT
from models import CustomStation, GasType, Price, PriceHistory, Station, User
from session import MIGRATIONS_DIR, init_db, make_engine
from settings import load_settings

UTC = dt.UTC
PARIS = ZoneInfo("Europe/Paris")
SIX_FUELS = {1: "Gazole", 2: "SP95", 3: "E85", 4: "GPLc", 5: "E10", 6: "SP98"}
SEEN = dt.datetime(2024, 5, 8, 10, 30, tzinfo=UTC)


def _station(station_id: int, lat: float | None = 48.8566, lon: float | None = 2.3522) -> dict:
    return {
        "id": station_id,
        "latitude": lat,
        "longitude": lon,
        "zip_code": "75001",
        "town": "Paris",
        "address": "1 Rue de Rivoli",
        "road_type": "R",
        "automate_24_24": False,
        "opening_hours": None,
        "services": [],
        "last_seen_at": SEEN,
    }


def _user(user_id: int, username: str) -> dict:
    return {
        "id": user_id,
        "username": username,
        "email": f"{username}@example.org",
        "name": username.title(),
        "role": "user",
        "created_at": SEEN,
    }


def _fuels(engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(GasType.id, GasType.name).order_by(GasType.id)).all())


def _head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


def _current_revision(engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _schema_drift(engine) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), models.Base.metadata)


@pytest.fixture
def fresh_engine(settings):
    """An engine on a database that init_db() has never touched."""
    engine = make_engine(settings.database_url)
    yield engine
    engine.dispose()


def test_init_db_creates_every_table_seeds_six_fuels_and_is_safe_to_rerun(fresh_engine, settings):
    if fresh_engine.dialect.name == "sqlite":
        assert not Path(fresh_engine.url.database).exists()
    init_db(fresh_engine)

    tables = set(inspect(fresh_engine).get_table_names())
    assert set(models.Base.metadata.tables) <= tables
    assert _fuels(fresh_engine) == SIX_FUELS
    assert _current_revision(fresh_engine) == _head_revision()

    with fresh_engine.begin() as conn:
        conn.execute(insert(User), _user(1, "alice"))
        conn.execute(insert(Station), _station(75001001))
    init_db(fresh_engine)
    init_db(fresh_engine)

    assert _fuels(fresh_engine) == SIX_FUELS
    with fresh_engine.connect() as conn:
        assert conn.execute(select(User.username, User.email)).all() == [("alice", "alice@example.org")]
        assert conn.execute(select(Station.id, Station.town)).all() == [(75001001, "Paris")]
        assert conn.scalar(select(func.count()).select_from(GasType)) == 6


def test_init_db_puts_back_a_missing_fuel_on_a_current_database(fresh_engine):
    init_db(fresh_engine)
    with fresh_engine.begin() as conn:
        conn.execute(delete(GasType).where(GasType.id == 6))

    init_db(fresh_engine)

    assert _fuels(fresh_engine) == SIX_FUELS


def test_models_and_migrations_agree(engine):
    assert _schema_drift(engine) == []


# Tables added by migrations after 0001: a database made before migrations existed cannot have them.
LATER_TABLES = {
    "user_sessions",
    "sign_in_throttle",
    "station_brands",
    "pass_requests",
    "admin_actions",
    "places",
    "daily_aggregates",
    "backfill_progress",
    "alert_rules",
    "alert_states",
    "alert_mail_days",
    "alert_outbox",
}
# Added by later migrations to tables of the first schema.
LATER_COLUMNS = {"users": ("tank_litres", "language"), "stations": ("fingerprint",)}


def test_database_created_before_migrations_is_upgraded_without_losing_rows(fresh_engine):
    first_schema = [table for name, table in models.Base.metadata.tables.items() if name not in LATER_TABLES]
    models.Base.metadata.create_all(fresh_engine, tables=first_schema)
    with fresh_engine.begin() as conn:
        for table, columns in LATER_COLUMNS.items():
            for column in columns:
                conn.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN {column}")
        conn.execute(insert(GasType), [{"id": 1, "name": "Gazole"}])
        conn.execute(insert(Station), _station(1000001))
        conn.execute(insert(User), _user(7, "bob"))
        conn.execute(insert(CustomStation), {"user_id": 7, "station_id": 1000001, "custom_name": "Chez moi"})
    assert _current_revision(fresh_engine) is None

    init_db(fresh_engine)

    assert _current_revision(fresh_engine) == _head_revision()
    assert _fuels(fresh_engine) == SIX_FUELS
    assert _schema_drift(fresh_engine) == []
    with fresh_engine.connect() as conn:
        assert conn.execute(select(Station.id, Station.address)).all() == [(1000001, "1 Rue de Rivoli")]
        assert conn.execute(select(CustomStation.user_id, CustomStation.custom_name)).all() == [(7, "Chez moi")]


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(data_dir):
    engine = make_engine(f"sqlite:///{data_dir / 'pragmas.sqlite3'}")
    try:
        init_db(engine)
        # Two connections at once: the settings hold for every pooled connection, not just the first.
        with engine.connect() as first, engine.connect() as second:
            for conn in (first, second):
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar().lower() == "wal"
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        # Foreign keys are really enforced: a price for an unknown station is refused.
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(
                insert(Price), {"station_id": 999, "gastype_id": 1, "price": Decimal("1.500"), "updated_at": SEEN}
            )
    finally:
        engine.dispose()


def test_sqlite_database_and_its_wal_files_are_readable_by_their_owner_only(data_dir):
    database = data_dir / "private.sqlite3"
    engine = make_engine(f"sqlite:///{database}")
    umask = os.umask(0o022)  # the usual default: files readable by everyone unless created otherwise
    try:
        init_db(engine)
        with engine.begin() as conn:  # a write: SQLite now holds its -wal and -shm files beside the database
            conn.execute(insert(Station), _station(1000001))
            files = [database, *(database.with_name(database.name + suffix) for suffix in ("-wal", "-shm"))]
            modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in files}
    finally:
        os.umask(umask)
        engine.dispose()
    assert modes == {"private.sqlite3": 0o600, "private.sqlite3-wal": 0o600, "private.sqlite3-shm": 0o600}


@pytest.fixture
def no_secrets_file(monkeypatch, tmp_path):
    monkeypatch.setattr(settings_module, "SECRETS_FILE", tmp_path / "absent" / "secrets.toml")


def test_default_database_is_db_sqlite3_in_the_data_dir(tmp_path, no_secrets_file):
    data = tmp_path / "somewhere" / "data"
    data.mkdir(parents=True)
    loaded = load_settings({"CARBUROAM_DATA_DIR": str(data)})
    assert loaded.data_dir == data.resolve()
    assert loaded.database_url == f"sqlite:///{data.resolve() / 'db.sqlite3'}"


def test_relative_sqlite_url_is_anchored_to_the_data_dir(tmp_path, monkeypatch, no_secrets_file):
    data = tmp_path / "data"
    data.mkdir()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = load_settings({"CARBUROAM_DATA_DIR": str(data), "CARBUROAM_DATABASE_URL": "sqlite:///sub/app.sqlite3"})
    assert loaded.database_url == f"sqlite:///{data.resolve() / 'sub' / 'app.sqlite3'}"

    engine = make_engine(loaded.database_url)
    try:
        init_db(engine)
    finally:
        engine.dispose()
    assert (data / "sub" / "app.sqlite3").is_file()
    assert not (elsewhere / "sub").exists()


def test_users_may_share_a_station_and_stations_may_share_coordinates(engine):
    with engine.begin() as conn:
        conn.execute(insert(Station), [_station(13001001, 43.2965, 5.3698), _station(13001002, 43.2965, 5.3698)])
        conn.execute(insert(User), [_user(1, "alice"), _user(2, "bob")])
        conn.execute(
            insert(CustomStation),
            [
                {"user_id": 1, "station_id": 13001001, "custom_name": "Travail"},
                {"user_id": 2, "station_id": 13001001, "custom_name": "Près de chez moi"},
                {"user_id": 2, "station_id": 13001002, "custom_name": "L'autre"},
            ],
        )
    with engine.connect() as conn:
        followers = conn.execute(
            select(CustomStation.user_id, CustomStation.custom_name)
            .where(CustomStation.station_id == 13001001)
            .order_by(CustomStation.user_id)
        ).all()
        same_place = conn.scalars(
            select(Station.id).where(Station.latitude == 43.2965, Station.longitude == 5.3698).order_by(Station.id)
        ).all()
    assert followers == [(1, "Travail"), (2, "Près de chez moi")]
    assert same_place == [13001001, 13001002]


@pytest.mark.parametrize("raw", ["0.629", "1.000", "1.5", "1.999", "2.470", "4.999"])
def test_prices_round_trip_exactly_as_three_place_decimals(engine, raw):
    with engine.begin() as conn:
        conn.execute(insert(Station), _station(1))
        conn.execute(insert(Price), {"station_id": 1, "gastype_id": 1, "price": Decimal(raw), "updated_at": SEEN})
    with engine.connect() as conn:
        stored = conn.scalar(select(Price.price))
    assert isinstance(stored, Decimal)
    assert stored == Decimal(raw)
    assert stored.as_tuple().exponent == -3
    assert str(stored) == str(Decimal(raw).quantize(Decimal("0.001")))


def test_datetimes_come_back_aware_in_utc_and_sort_chronologically(engine):
    summer_paris = dt.datetime(2026, 6, 4, 6, 55, 53, tzinfo=PARIS)  # 04:55:53 UTC
    winter_paris = dt.datetime(2026, 2, 12, 14, 17, 46, tzinfo=PARIS)  # 13:17:46 UTC
    # Earlier instant, later wall clock: text sorting of local times would get it wrong.
    tokyo = dt.datetime(2026, 6, 4, 13, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # 04:00 UTC
    with engine.begin() as conn:
        conn.execute(insert(Station), _station(1))
        conn.execute(
            insert(PriceHistory),
            [
                {"station_id": 1, "gastype_id": 1, "updated_at": when, "price": Decimal("1.800")}
                for when in (summer_paris, winter_paris, tokyo)
            ],
        )
    with engine.connect() as conn:
        stored = conn.scalars(select(PriceHistory.updated_at).order_by(PriceHistory.updated_at)).all()
    assert stored == [
        dt.datetime(2026, 2, 12, 13, 17, 46, tzinfo=UTC),
        dt.datetime(2026, 6, 4, 4, 0, tzinfo=UTC),
        dt.datetime(2026, 6, 4, 4, 55, 53, tzinfo=UTC),
    ]
    for value in stored:
        assert value.tzinfo is not None
        assert value.utcoffset() == dt.timedelta(0)


def test_naive_datetime_is_refused(engine):
    with engine.begin() as conn:
        conn.execute(insert(Station), _station(1))
    with pytest.raises((StatementError, ValueError), match=r"naive|aware|timezone"), engine.begin() as conn:
        conn.execute(
            insert(Price),
            {"station_id": 1, "gastype_id": 1, "price": Decimal("1.700"), "updated_at": dt.datetime(2024, 5, 8, 12)},
        )
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Price)) == 0


def test_cli_run_on_a_fresh_data_dir_creates_the_database_there(tmp_path):
    data = tmp_path / "fresh" / "data"  # does not exist yet
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CARBUROAM_DATA_DIR": str(data),
        "CARBUROAM_FEED_URL": str(FIXTURES / "feed_a.zip"),
    }
    result = subprocess.run(
        [sys.executable, str(ROOT / "etl.py"), "run"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    assert "60" in lines[0]  # feed_a lists 60 stations
    database = data / "db.sqlite3"
    assert database.is_file()
    assert list(cwd.iterdir()) == []

    engine = make_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Station)) == 60
            assert conn.execute(text("SELECT status FROM etl_runs")).scalars().all() == ["success"]
    finally:
        engine.dispose()
