"""Backups on schedule: the daily backup job, the restore of a lost database when `etl.py serve` starts,
and the backup settings.

The helpers (three people with their stations, losing the disk, reading the user data back) are
test_backups.py's; an unreachable S3 target is a closed port on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, update
from sqlalchemy.engine import Engine

import etl
from backups import service
from db_snapshot import etl_runs
from ingest import scheduler
from models import CustomStation, EtlRun
from net import free_port
from session import init_db, make_engine, session_factory, writer
from settings import Settings, load_settings
from test_backups import ACCOUNT_TABLES, backups_in, document, lose_the_disk, people, user_data
from test_credentials import aws_env
from test_scheduler import Schedulers, stop, wait_for


@pytest.fixture
def sqlite_engine(sqlite_settings: Settings) -> Iterator[Engine]:
    engine = make_engine(sqlite_settings.database_url)
    init_db(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def schedulers(tmp_path: Path, sqlite_settings: Settings) -> Iterator[Schedulers]:
    """`etl.py serve` processes, all killed at teardown (as in test_scheduler.py)."""
    registry = Schedulers(tmp_path, sqlite_settings)
    try:
        yield registry
    finally:
        registry.cleanup()


def test_the_scheduler_restores_a_lost_disk_when_it_starts(
    schedulers: Schedulers, sqlite_engine: Engine, tmp_path, cheap_bcrypt
):
    settings, engine = dataclasses.replace(schedulers.settings, smtp_host=""), sqlite_engine
    people(engine, settings)
    before, credentials = user_data(engine), document(settings)
    folder = tmp_path / "backups"
    service.backup(engine, settings, str(folder))
    lose_the_disk(engine, settings)

    proc = schedulers.start(BACKUP_TARGET=str(folder), BACKUP_INTERVAL_SECONDS="0")
    wait_for(
        lambda: "success" in [r.status for r in etl_runs(engine) if r.kind == "run"],
        "the first price pass after the restore",
        pid=proc.pid,
        log=schedulers.logs[proc.pid],
    )
    assert stop(proc) == 0

    log = schedulers.log(proc)
    assert "the database has no account: restoring the newest backup of" in log
    assert "restored 3 accounts (3 credentials entries added)" in log
    assert [(r.kind, r.status) for r in etl_runs(engine)][:2] == [("restore", "success"), ("run", "success")]
    assert user_data(engine) == before
    restored = document(settings)
    restored.pop("unsubscribe_key", None)  # made when the restored alerts first mail, if they did before the stop
    assert restored == credentials


def test_the_scheduler_restores_nothing_over_existing_accounts(settings: Settings, engine, tmp_path, cheap_bcrypt):
    people(engine, settings)
    folder = tmp_path / "backups"
    service.backup(engine, settings, str(folder))
    with session_factory(writer(engine)).begin() as session:
        session.execute(delete(CustomStation))
    before = user_data(engine)

    assert service.restore_if_lost(engine, dataclasses.replace(settings, backup_target=str(folder))) is None
    assert service.restore_if_lost(engine, settings) is None, "no BACKUP_TARGET, no automatic restore"
    assert user_data(engine) == before


@pytest.fixture
def closed_s3(settings: Settings, monkeypatch, tmp_path) -> Settings:
    """Settings backing up to S3 through an endpoint where nothing listens."""
    aws_env(monkeypatch, f"http://127.0.0.1:{free_port()}", tmp_path)
    return dataclasses.replace(settings, backup_target="s3://nowhere/nightly", interval_seconds=3600, retry_seconds=120)


def test_a_failed_backup_is_recorded_and_never_blocks_the_price_passes(closed_s3: Settings, engine, cheap_bcrypt):
    settings = dataclasses.replace(closed_s3, smtp_host="")
    jobs, _startup = etl.scheduler_jobs(settings)

    people(engine, settings)  # its price pass is the first run
    scheduler._scheduled_jobs(engine, jobs, scheduler._scheduled_work(engine, settings))

    backup = [r for r in etl_runs(engine) if r.kind == "backup"]
    assert [(r.status, r.source) for r in backup] == [("failed", "s3://nowhere/nightly")]
    assert backup[0].error.startswith("cannot write the backup to s3://nowhere/nightly/carburoam-backup-")
    two_hours_ago = scheduler.utcnow() - dt.timedelta(hours=2)
    with writer(engine).begin() as conn:
        conn.execute(update(EtlRun).values(started_at=two_hours_ago, finished_at=two_hours_ago))

    assert scheduler._scheduled_jobs(engine, jobs, scheduler._scheduled_work(engine, settings)) <= 3600

    runs = [(r.kind, r.status) for r in etl_runs(engine)]
    assert runs.count(("run", "success")) == 2, runs
    assert runs.count(("backup", "failed")) == 2, "a failed backup is due again at the next wake-up"


def test_an_automatic_restore_that_cannot_reach_its_target_is_recorded(closed_s3: Settings, engine):
    _jobs, (lost_disk,) = etl.scheduler_jobs(closed_s3)

    scheduler.run_job(engine, lost_disk)

    ((kind, status, source, error),) = [(r.kind, r.status, r.source, r.error) for r in etl_runs(engine)]
    assert (kind, status, source) == ("restore", "failed", "s3://nowhere/nightly")
    assert error.startswith("cannot list the backups in s3://nowhere/nightly/: ")
    assert user_data(engine) == {model.__tablename__: [] for model in ACCOUNT_TABLES}


def test_a_backup_is_due_daily_and_never_with_a_zero_interval(settings: Settings, engine, tmp_path, cheap_bcrypt):
    people(engine, settings)
    settings = dataclasses.replace(settings, backup_target=str(tmp_path / "daily"))
    (job,), _ = etl.scheduler_jobs(settings)

    assert scheduler.job_due(engine, job)
    scheduler.run_job(engine, job)
    assert not scheduler.job_due(engine, job)
    assert len(backups_in(settings)) == 1
    yesterday = scheduler.utcnow() - dt.timedelta(days=1, minutes=1)
    with writer(engine).begin() as conn:
        conn.execute(update(EtlRun).where(EtlRun.kind == "backup").values(finished_at=yesterday))
    assert scheduler.job_due(engine, job)
    (off,), _ = etl.scheduler_jobs(dataclasses.replace(settings, backup_interval_seconds=0))
    assert not scheduler.job_due(engine, off)


def test_the_scheduler_backs_up_nothing_while_the_database_has_no_account(settings: Settings, engine, tmp_path):
    settings = dataclasses.replace(settings, backup_target=str(tmp_path / "daily"))
    (job,), _ = etl.scheduler_jobs(settings)

    scheduler.run_job(engine, job)

    assert not (tmp_path / "daily").exists()
    assert etl_runs(engine) == [], "nothing done, nothing recorded: the backup is due again at the next wake-up"
    assert not settings.credentials_file.exists(), "the credentials store is not even opened"


def test_the_backup_settings(monkeypatch, data_dir: Path):
    monkeypatch.setenv("CARBUROAM_DATA_DIR", str(data_dir))
    defaults = load_settings()
    assert (defaults.backup_interval_seconds, defaults.backup_keep) == (86400, 14)
    assert defaults.backup_location == str(data_dir.resolve() / "backups")
    monkeypatch.setenv("BACKUP_TARGET", "elsewhere")
    assert load_settings().backup_location == str(data_dir.resolve() / "elsewhere")
    monkeypatch.setenv("BACKUP_TARGET", "s3:///prefix")
    with pytest.raises(ValueError, match="BACKUP_TARGET must name a bucket"):
        load_settings()
    monkeypatch.setenv("BACKUP_TARGET", "s3://bucket/prefix")
    monkeypatch.setenv("BACKUP_KEEP", "0")
    with pytest.raises(ValueError, match="BACKUP_KEEP must be at least 1"):
        load_settings()
