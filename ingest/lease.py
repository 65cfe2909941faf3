"""The scheduler's leader lease: of the app replicas sharing one PostgreSQL database, one runs passes.

The pid file guards one machine; replicas on several machines each start a scheduler. On
PostgreSQL each of them asks for a session advisory lock, held on a connection of its own for as
long as it leads. The server frees the lock when that connection ends: a leader killed (even with
SIGKILL) loses it at once, and one cut off by the network within about 30 s, through the
keepalives set on the connection. The others stand by and ask again every
ETL_LEASE_RETRY_SECONDS. On SQLite, one machine's database, the pid file is enough: the lease is
always held.
"""

from __future__ import annotations

import contextlib
import logging
import zlib

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from utils import first_line

log = logging.getLogger("etl")

LEASE_KEY = zlib.crc32(b"carburoam etl scheduler")  # the advisory lock's id, the same in every replica
# The server's keepalives on the lease connection: a leader gone silent loses the lease in ~30 s.
KEEPALIVES = {"tcp_keepalives_idle": 10, "tcp_keepalives_interval": 5, "tcp_keepalives_count": 4}


class Lease:
    """Whether this scheduler leads; `held()` takes the lease when it is free and checks it otherwise."""

    def __init__(self, engine: Engine):
        self._shared = engine.dialect.name == "postgresql"
        # A connection of its own, never pooled: closing it must end the session, and the lock with it.
        self._engine = create_engine(engine.url, poolclass=NullPool) if self._shared else None
        self._connection: Connection | None = None

    def held(self) -> bool:
        if not self._shared:
            return True
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT 1"))
                return True
            except SQLAlchemyError as exc:
                log.warning("lost the connection that holds the scheduler lease: %s", first_line(exc))
                self._drop()
        return self._take()

    def release(self) -> None:
        """Give the lease up (closing its connection ends the session that holds the lock)."""
        self._drop()
        if self._engine is not None:
            self._engine.dispose()

    def _take(self) -> bool:
        try:
            connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except SQLAlchemyError as exc:
            log.warning("cannot reach the database for the scheduler lease: %s", first_line(exc))
            return False
        try:
            for name, value in KEEPALIVES.items():
                connection.execute(text(f"SET {name} = {value:d}"))
            taken = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": LEASE_KEY}).scalar()
        except SQLAlchemyError as exc:
            log.warning("cannot ask for the scheduler lease: %s", first_line(exc))
            taken = False
        if not taken:
            connection.close()
            return False
        self._connection = connection
        return True

    def _drop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._connection.close()
            self._connection = None
