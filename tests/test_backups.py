"""Backups of what people create: `etl.py backup`, `etl.py restore`, retention (schedule: test_backup_schedule.py).

Targets are a local folder and a bucket on moto's S3 server (a real HTTP server on 127.0.0.1, as in
test_credentials.py). The story each test tells: people sign up and choose stations, fuels and
settings; a backup is taken; the disk is lost (every table emptied, the credentials document gone);
the restore brings back exactly what was there, and refuses any file it cannot trust.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import delete, event, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

import etl
from accounts.service import Accounts
from accounts.store import LocalCredentialStore, StoreUnavailable, credential_store
from alerts import rules as alert_rules
from backups import archive, service
from backups.archive import BackupError
from backups.targets import BACKUP_NAME, backup_name, target_of
from conftest import ROOT
from ingest import passes
from models import AlertRule, Base, CustomStation, GasType, Station, User, UserGasType
from prices import preferences
from session import session_factory, writer
from settings import Settings
from test_credentials import aws_env, create_bucket, s3_client, start_moto
from utils import utcnow

PASSWORD = "correct horse battery"
PEOPLE = ("alice", "bob", "carol")
ACCOUNT_TABLES = (User, UserGasType, CustomStation, AlertRule)
T0 = dt.datetime(2026, 11, 30, 3, 0, tzinfo=dt.UTC)


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server, endpoint = start_moto()
    yield endpoint
    server.stop()


@pytest.fixture(params=["folder", "s3"])
def place(request, settings: Settings, monkeypatch, tmp_path) -> Settings:
    """The test's settings with backups in a local folder (credentials in a local file), or in an S3
    bucket on moto's server (the credentials document in that bucket too, as a hosted app keeps it)."""
    if request.param == "folder":
        return dataclasses.replace(settings, backup_target=str(tmp_path / "backups"), smtp_host="")
    aws_env(monkeypatch, request.getfixturevalue("moto_endpoint"), tmp_path)
    bucket = create_bucket()
    return dataclasses.replace(
        settings, backup_target=f"s3://{bucket}/nightly", load_mode="remote", bucket_name_store=bucket, smtp_host=""
    )


def people(engine: Engine, settings: Settings) -> None:
    """Three accounts with stations (renamed), fuels and settings of their own; stations from feed_a."""
    passes.run_pass(engine, settings)
    accounts = Accounts(settings, credential_store(settings), engine)
    for name in PEOPLE:
        accounts.register(name, f"{name}@example.org", name.capitalize(), "Test", PASSWORD, PASSWORD)
    with session_factory(engine)() as session:
        stations = list(session.scalars(select(Station.id).order_by(Station.id)))
        ids = dict(session.execute(select(User.username, User.id)).all())
    with session_factory(writer(engine)).begin() as session:
        preferences.follow_station(session, ids["alice"], stations[0], "Near the office")
        preferences.follow_station(session, ids["alice"], stations[1], "Mum's")
        preferences.follow_station(session, ids["bob"], stations[1], "Motorway")
        preferences.set_fuels(session, ids["alice"], [6])
        preferences.set_fuels(session, ids["bob"], [1, 3])
        preferences.set_consumption(session, ids["alice"], km_per_year=15000, litres_per_100km=5.5)
        preferences.set_trip(session, ids["bob"], tank_litres=55, litres_per_100km=7.2)
        now = utcnow()
        alert_rules.create(
            session, ids["alice"], "price_below", now, station_id=stations[0], fuel_id=6, threshold=Decimal("1.799")
        )
        alert_rules.create(
            session, ids["bob"], "drop", now, station_id=stations[1], fuel_id=1, threshold=Decimal("0.05")
        )
        alert_rules.create(session, ids["bob"], "digest", now)


def user_data(engine: Engine) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        return {
            model.__tablename__: [
                tuple(row) for row in conn.execute(select(model).order_by(*model.__table__.primary_key))
            ]
            for model in ACCOUNT_TABLES
        }


def document(settings: Settings) -> dict:
    return credential_store(settings).load().document


def credentials_bytes(settings: Settings) -> bytes:
    if settings.load_mode == "remote":
        return (
            s3_client()
            .get_object(Bucket=settings.bucket_name_store, Key=settings.credentials_object_key)["Body"]
            .read()
        )
    return settings.credentials_file.read_bytes()


def lose_the_disk(engine: Engine, settings: Settings) -> None:
    """Every table emptied but the fuels (init_db's reference data), and the credentials document gone."""
    with writer(engine).begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name != GasType.__tablename__:
                conn.execute(delete(table))
        if conn.dialect.name == "postgresql":  # as in a new database, ids start again from 1
            conn.execute(text("SELECT setval(pg_get_serial_sequence('users', 'id'), 1, false)"))
    if settings.load_mode == "remote":
        s3_client().delete_object(Bucket=settings.bucket_name_store, Key=settings.credentials_object_key)
    else:
        settings.credentials_file.unlink()


def backups_in(settings: Settings) -> list[str]:
    return target_of(settings.backup_target).names()


# --------------------------------------------------------------------------- backup, lose everything, restore


def test_restore_after_a_lost_disk_gives_back_identical_user_data(place: Settings, engine, cheap_bcrypt):
    people(engine, place)
    before, credentials = user_data(engine), document(place)

    summary = service.backup(engine, place)

    (name,) = backups_in(place)
    assert f"to {place.backup_target.rstrip('/')}/{name}" in summary
    assert summary.startswith("backed up 3 accounts (3 credentials entries), 3 followed stations and 6 fuels")
    lose_the_disk(engine, place)
    assert user_data(engine) == {model.__tablename__: [] for model in ACCOUNT_TABLES}

    summary = service.restore(engine, place, place.backup_target)

    assert summary.startswith("restored 3 accounts (3 credentials entries added), 3 followed stations and 6 fuels")
    assert user_data(engine) == before
    assert document(place) == credentials, "every entry, and the cookie key, come back into the empty document"
    accounts = Accounts(place, credential_store(place), engine)
    assert accounts.sign_in("alice", PASSWORD).account.username == "alice"
    newcomer = accounts.register("dave", "dave@example.org", "Dave", "Test", PASSWORD, PASSWORD)
    assert newcomer.user_id not in {row[0] for row in before["users"]}, "new ids follow the restored ones"


def test_the_backup_file_is_gzip_json_with_its_format_and_checksum(settings: Settings, engine, tmp_path, cheap_bcrypt):
    people(engine, settings)
    folder = tmp_path / "out"

    service.backup(engine, settings, str(folder), now=T0)

    path = folder / backup_name(T0)
    assert path.stat().st_mode & 0o777 == 0o600
    document = json.loads(gzip.decompress(path.read_bytes()))
    assert (document["format"], document["version"]) == ("carburoam-backup", 1)
    assert document["sha256"] == archive.checksum(document["payload"])
    payload = document["payload"]
    assert set(payload["tables"]) == {"users", "user_gastypes", "custom_stations", "alert_rules", "stations"}
    assert [row["threshold"] for row in payload["tables"]["alert_rules"]] == ["1.799", "0.050", None], "exact amounts"
    assert "user_sessions" not in payload["tables"], "sessions are not backed up"
    assert set(payload["credentials"]["credentials"]["usernames"]) == set(PEOPLE)
    assert [row["tank_litres"] for row in payload["tables"]["users"]] == [None, 55, None]
    assert list(folder.iterdir()) == [path], "no temporary file is left behind"


def test_etl_backup_and_restore_commands(settings: Settings, engine, tmp_path, capsys, cheap_bcrypt, main_engines):
    people(engine, settings)
    before = user_data(engine)
    folder = tmp_path / "cli"

    assert etl.main(["backup", "--to", str(folder)]) == 0
    assert capsys.readouterr().out.startswith("backed up 3 accounts")
    lose_the_disk(engine, settings)
    (name,) = [path.name for path in folder.iterdir()]

    assert etl.main(["restore", str(folder / name)]) == 0

    assert capsys.readouterr().out.startswith("restored 3 accounts")
    assert user_data(engine) == before


def errors_of(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


def test_a_backup_of_nothing_is_refused(settings: Settings, engine, tmp_path, caplog, main_engines):
    with caplog.at_level(logging.INFO):
        assert etl.main(["backup", "--to", str(tmp_path / "out")]) == 1
    assert errors_of(caplog) == [
        "etl: nothing to back up: the database has no account and the credentials document no entry"
    ]
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- files a restore must refuse


def _rewritten(data: bytes, change) -> bytes:
    document = json.loads(gzip.decompress(data))
    change(document)
    return gzip.compress(json.dumps(document).encode())


def _alter_payload(document: dict) -> None:
    document["payload"]["tables"]["users"][0]["tank_litres"] = 99.0


def _bad_amount(document: dict) -> None:
    """A file whose checksum was recomputed after an edit: well formed, but an amount that is no number."""
    document["payload"]["tables"]["alert_rules"][0]["threshold"] = "cheap"
    document["sha256"] = archive.checksum(document["payload"])


def _newer_format(document: dict) -> None:
    document["version"] = 2
    document["sha256"] = archive.checksum(document["payload"])


BAD_FILES = {
    "corrupt-crc": (
        lambda data: data[:-8] + bytes(b ^ 0xFF for b in data[-8:-4]) + data[-4:],
        "the file is corrupt or not a gzip file (CRC check failed",
    ),
    "corrupt-middle": (lambda data: data[:40] + bytes(b ^ 0x5A for b in data[40:80]) + data[80:], ""),
    "truncated": (lambda data: data[: len(data) // 2], "the file is truncated (its compressed data ends early)"),
    "wrong-checksum": (
        lambda data: _rewritten(data, _alter_payload),
        "its checksum does not match its content (the file was altered or damaged)",
    ),
    "newer-format": (
        lambda data: _rewritten(data, _newer_format),
        "it was written by a newer Carburoam (backup format 2; this one reads up to 1)",
    ),
    "not-a-backup": (lambda data: gzip.compress(b'{"hello": "world"}'), "it is not a Carburoam backup"),
    "bad-amount": (
        lambda data: _rewritten(data, _bad_amount),
        "the backup's alert_rules table holds a bad time or amount",
    ),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_file_that_cannot_be_trusted_changes_nothing(
    settings: Settings, engine, tmp_path, caplog, cheap_bcrypt, main_engines, kind: str
):
    people(engine, settings)
    service.backup(engine, settings, str(tmp_path / "good"), now=T0)
    Accounts(settings, credential_store(settings), engine).delete_account("carol", PASSWORD)
    with session_factory(writer(engine)).begin() as session:  # changes a good restore would undo
        session.execute(update(User).values(tank_litres=None))
        session.execute(delete(CustomStation))
    before, credentials = user_data(engine), credentials_bytes(settings)
    spoil, message = BAD_FILES[kind]
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(spoil((tmp_path / "good" / backup_name(T0)).read_bytes()))

    with caplog.at_level(logging.INFO):
        assert etl.main(["restore", str(bad), "--with-deleted"]) == 1

    (error,) = errors_of(caplog)
    assert "\n" not in error
    assert error.startswith(f"etl: {bad} was refused, nothing was changed: ")
    assert message in error
    assert user_data(engine) == before
    assert credentials_bytes(settings) == credentials


def test_a_missing_file_changes_nothing(settings: Settings, engine, tmp_path, caplog, main_engines):
    with caplog.at_level(logging.INFO):
        assert etl.main(["restore", str(tmp_path / "nowhere.json.gz")]) == 1
    assert errors_of(caplog) == [
        f"etl: cannot read the backup {tmp_path / 'nowhere.json.gz'}: No such file or directory"
    ]


def test_the_operator_sees_one_line_from_the_real_command(sqlite_settings: Settings, tmp_path):
    bad = tmp_path / "carburoam-backup-20261130T030000000000Z.json.gz"
    bad.write_bytes(b"<html>503 Service Unavailable</html>")

    result = subprocess.run(
        [sys.executable, "etl.py", "restore", str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"etl: {bad} was refused, nothing was changed: the file is corrupt or not a gzip file "
        "(Not a gzipped file (b'<h'))"
    ]


# --------------------------------------------------------------------------- a restore that fails half-way


def test_a_conflict_in_the_database_changes_neither_the_database_nor_the_credentials(
    settings: Settings, engine, tmp_path, cheap_bcrypt
):
    people(engine, settings)
    service.backup(engine, settings, str(tmp_path / "b"))
    accounts = Accounts(settings, credential_store(settings), engine)
    accounts.delete_account("bob", PASSWORD)
    accounts.register("robert", "bob@example.org", "Robert", "Test", PASSWORD, PASSWORD)
    before, credentials = user_data(engine), credentials_bytes(settings)

    with pytest.raises(BackupError) as refused:
        service.restore(engine, settings, str(tmp_path / "b"), with_deleted=True)

    assert (
        str(refused.value)
        == "the account bob cannot be restored: its e-mail address is now robert's; nothing was changed"
    )
    assert user_data(engine) == before
    assert credentials_bytes(settings) == credentials


def test_credentials_that_cannot_be_written_leave_the_database_as_it_was(
    settings: Settings, engine, tmp_path, monkeypatch, cheap_bcrypt
):
    people(engine, settings)
    service.backup(engine, settings, str(tmp_path / "b"))
    lose_the_disk(engine, settings)
    document(settings)  # the app made a new, empty document since
    credentials = credentials_bytes(settings)

    def full_disk(self, document):
        raise StoreUnavailable(f"The credentials file {self.path} cannot be written: No space left on device")

    monkeypatch.setattr(LocalCredentialStore, "_write", full_disk)
    with pytest.raises(BackupError, match=r"^the credentials document cannot be written, nothing was changed: "):
        service.restore(engine, settings, str(tmp_path / "b"))

    assert user_data(engine) == {model.__tablename__: [] for model in ACCOUNT_TABLES}
    assert credentials_bytes(settings) == credentials


def test_a_failed_commit_takes_the_restored_credentials_out_again(
    settings: Settings, engine, tmp_path, monkeypatch, cheap_bcrypt
):
    people(engine, settings)
    service.backup(engine, settings, str(tmp_path / "b"))
    lose_the_disk(engine, settings)
    empty = document(settings)

    def commit_fails(_conn):
        raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    event.listen(engine, "commit", commit_fails)
    with pytest.raises(BackupError, match=r"^database error, nothing was changed: disk I/O error$"):
        service.restore(engine, settings, str(tmp_path / "b"))
    event.remove(engine, "commit", commit_fails)

    assert document(settings) == empty, "the entries and the cookie key written before the commit are taken out"
    assert user_data(engine) == {model.__tablename__: [] for model in ACCOUNT_TABLES}


# --------------------------------------------------------------------------- retention


def test_retention_keeps_the_newest_backups(place: Settings, engine, cheap_bcrypt):
    people(engine, place)
    place = dataclasses.replace(place, backup_keep=3)
    target = target_of(place.backup_target)
    target.write("notes.txt", b"not a backup: never deleted")
    moments = [T0 + dt.timedelta(days=day) for day in range(5)]

    for moment in moments:
        summary = service.backup(engine, place, now=moment)

    assert summary.endswith("; 1 older backups deleted, keeping 3")
    assert backups_in(place) == [backup_name(moment) for moment in moments[-3:]]
    assert target.read("notes.txt") == b"not a backup: never deleted"
    assert all(BACKUP_NAME.fullmatch(name) for name in backups_in(place))


# --------------------------------------------------------------------------- deleted accounts, idempotence


def test_an_account_deleted_after_the_backup_is_not_restored_unless_asked(place: Settings, engine, cheap_bcrypt):
    people(engine, place)
    before, credentials = user_data(engine), document(place)
    service.backup(engine, place)
    Accounts(place, credential_store(place), engine).delete_account("bob", PASSWORD)

    summary = service.restore(engine, place, place.backup_target)

    assert "left out 1 account deleted since the backup (bob; --with-deleted restores it)" in summary
    assert "bob" not in document(place)["credentials"]["usernames"]
    with session_factory(engine)() as session:
        assert set(session.scalars(select(User.username))) == {"alice", "carol"}

    summary = service.restore(engine, place, place.backup_target, with_deleted=True)

    assert "left out" not in summary
    assert user_data(engine) == before
    assert document(place) == credentials


def test_restoring_twice_is_the_same_as_once(place: Settings, engine, cheap_bcrypt):
    people(engine, place)
    before, credentials = user_data(engine), document(place)
    service.backup(engine, place)
    with session_factory(writer(engine)).begin() as session:  # what a restore should undo
        alice = session.scalar(select(User.id).where(User.username == "alice"))
        preferences.unfollow_station(session, alice, before["custom_stations"][0][1])
        preferences.set_fuels(session, alice, [1, 2])
        preferences.set_consumption(session, alice, litres_per_year=900)

    service.restore(engine, place, place.backup_target)
    once = user_data(engine), document(place)
    service.restore(engine, place, place.backup_target)

    assert (user_data(engine), document(place)) == once
    assert once == (before, credentials)


def test_an_account_that_still_exists_keeps_its_current_password(settings: Settings, engine, tmp_path, cheap_bcrypt):
    people(engine, settings)
    service.backup(engine, settings, str(tmp_path / "b"))
    accounts = Accounts(settings, credential_store(settings), engine)
    accounts.change_password("alice", PASSWORD, "a newer passphrase", "a newer passphrase")
    current = document(settings)

    service.restore(engine, settings, str(tmp_path / "b"))

    assert document(settings) == current, "a backup never brings an old password back"
    assert accounts.sign_in("alice", "a newer passphrase").account.username == "alice"
