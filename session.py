"""Engines, sessions and the explicit `init_db()`; nothing happens at import.

On SQLite every connection runs in WAL mode with foreign keys on and a busy
timeout, and transactions are opened explicitly: readers get a consistent
snapshot (`BEGIN`), writers take the write lock up front (`BEGIN IMMEDIATE`,
through `writer()`), so a writer never fails half-way with `database is locked`
when another process committed in between. A bulk load (`bulk_writer()`) checks
foreign keys once, before commit, rather than row by row.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, Table, column, create_engine, event, inspect, select, table, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import sessionmaker

from models import GasType

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 15_000
SCHEMA_REVISION = "0009"  # the newest file in migrations/versions; a test keeps the two in step
FUEL_TYPES = {1: "Gazole", 2: "SP95", 3: "E85", 4: "GPLc", 5: "E10", 6: "SP98"}
# Arbitrary constant key for pg_advisory_xact_lock: serialises concurrent init_db() calls.
PG_MIGRATION_LOCK = 7_251_946


def make_engine(url: str) -> Engine:
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _configure_sqlite_connection)
        event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _configure_sqlite_connection(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _begin_sqlite_transaction(conn: Connection) -> None:
    immediate = conn.get_execution_options().get("sqlite_immediate", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def writer(engine: Engine) -> Engine:
    """The same engine, whose transactions take the SQLite write lock at BEGIN."""
    return engine.execution_options(sqlite_immediate=True)


@contextlib.contextmanager
def bulk_writer(engine: Engine) -> Iterator[Connection]:
    """A writing transaction, as `writer(engine).begin()`, for loading many rows into empty tables.

    SQLite checks a row's foreign keys as it inserts it, a third of a first load's writing time;
    here it checks them once, over every table, before commit, and a violation rolls the whole
    transaction back. It can only be told so outside a transaction: before BEGIN, and back after
    the end, on this connection alone.
    """
    with writer(engine).connect() as conn:
        if conn.dialect.name != "sqlite":
            with conn.begin():
                yield conn
            return
        driver = conn.connection.driver_connection
        driver.execute("PRAGMA foreign_keys = OFF")
        try:
            with conn.begin():
                yield conn
                violation = conn.exec_driver_sql("PRAGMA foreign_key_check").first()
                if violation is not None:
                    table, _, parent, _ = violation
                    orig = sqlite3.IntegrityError(f"FOREIGN KEY constraint failed: a row of {table} names no {parent}")
                    raise IntegrityError("PRAGMA foreign_key_check", None, orig)
        finally:
            if not conn.invalidated:  # a connection made again is set up with foreign keys on
                driver.execute("PRAGMA foreign_keys = ON")


def dialect_insert(dialect_name: str, target: Table | type) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into `target` for this database, offering its ON CONFLICT clauses (PostgreSQL or SQLite)."""
    # Imported here: SQLAlchemy's PostgreSQL package loads every driver's dialect, which a SQLite run never needs.
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(target)


def session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(bind=engine, expire_on_commit=False)


def init_db(engine: Engine) -> None:
    """Create or upgrade the schema to the newest migration and seed reference data.

    Safe to call from several processes at once and on a database that already
    holds data: migrations only ever add to what is there. A database already at the newest
    revision with its fuels seeded, as most starts find it, costs one query.
    """
    if _is_current(engine):
        return
    if engine.dialect.name == "sqlite":
        _create_sqlite_file(engine)
    else:
        _create_server_database(engine)
    with writer(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})
        if schema_revision(conn) != SCHEMA_REVISION:
            _migrate(conn)
        seed_gas_types(conn)


def _is_current(engine: Engine) -> bool:
    """Whether the database exists, is at SCHEMA_REVISION and holds every fuel: then init_db has nothing to do.

    One plain query, without the write lock, the schema inspector or the creation of a missing
    database; any error (no such database, table or file) means that init_db must do its work.
    """
    query = "SELECT version_num, (SELECT count(*) FROM gas_types) FROM alembic_version"
    if engine.dialect.name == "sqlite" and not _sqlite_file_exists(engine):
        return False  # connecting would create the file without its owner-only mode
    try:
        with engine.connect() as conn:
            row = conn.exec_driver_sql(query).first()
    except DBAPIError:
        return False
    return row is not None and tuple(row) == (SCHEMA_REVISION, len(FUEL_TYPES))


def _sqlite_file_exists(engine: Engine) -> bool:
    database = engine.url.database
    return not database or database == ":memory:" or Path(database).is_file()


def schema_revision(conn: Connection) -> str | None:
    """The Alembic revision the database is at, None for an empty (or pre-migration) database."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.scalar(select(column("version_num")).select_from(table("alembic_version")))


def _migrate(conn: Connection) -> None:
    # Imported here: Alembic costs ~11 MB and a fifth of a second, and most starts find the schema current.
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    if schema_revision(conn) is None and inspect(conn).has_table("stations"):
        # Made by the first schema before migrations existed: it is revision 0001.
        command.stamp(config, "0001")
    command.upgrade(config, "head")


def _create_server_database(engine: Engine) -> None:
    # Imported here: sqlalchemy_utils costs ~10 MB of RSS, which the SQLite-only ETL process never needs.
    from sqlalchemy_utils import create_database, database_exists

    if not database_exists(engine.url):
        create_database(engine.url)


def _create_sqlite_file(engine: Engine) -> None:
    """Create the database file owner-only (mode 0600) unless it exists or the database lives in memory.

    SQLite gives the -wal and -shm files it later creates beside it the same mode.
    """
    database = engine.url.database
    if not database or database == ":memory:":
        return
    path = Path(database).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def seed_gas_types(conn: Connection) -> None:
    known = set(conn.scalars(select(GasType.id)))
    missing = [{"id": i, "name": n} for i, n in FUEL_TYPES.items() if i not in known]
    if missing:
        conn.execute(GasType.__table__.insert(), missing)
