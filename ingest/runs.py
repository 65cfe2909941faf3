"""The etl_runs record every pass, import and job writes: its rows, the newest runs read back, and how a
failure becomes the one line an operator reads (EtlError).

A pass that must change nothing unless it succeeds runs inside `all_or_nothing`: whatever goes wrong is
recorded as a failed run and raised as an EtlError.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator

from sqlalchemy import ColumnElement, Engine, Row
from sqlalchemy.exc import SQLAlchemyError

from ingest.errors import FeedError
from models import EtlRun
from session import writer
from utils import first_line, utcnow

log = logging.getLogger("etl")

PRICE_LOADS = ("run", "backfill")  # the kinds of etl_runs that load prices; "brands" imports do not


class EtlError(Exception):
    """A pass failed; the message is the one line shown to the operator."""


def run_row(
    kind: str, source: str, started: dt.datetime, seconds: float, error: str | None = None, **counts: int | None
) -> dict:
    """The etl_runs row of a run of `kind` finished now: failed when `error` says why; `counts` fill the
    columns that count what it did (stations, prices, changes, rejected) and the feed's identity."""
    return {
        "kind": kind,
        "started_at": started,
        "finished_at": utcnow(),
        "status": "failed" if error else "success",
        "source": source,
        "duration_seconds": seconds,
        "error": error,
        **counts,
    }


def last_success(engine: Engine, kind: str | None = None) -> Row | None:
    """The newest successful run of `kind`, or of any price load (run or backfill) when not given."""
    kinds = (kind,) if kind is not None else PRICE_LOADS
    return newest_run(engine, EtlRun.status == "success", EtlRun.kind.in_(kinds))


def newest_run(engine: Engine, *conditions: ColumnElement[bool]) -> Row | None:
    """The etl_runs row of the newest run meeting `conditions`, read as a plain row: a command that needs no
    ORM object (an hourly run) never pays for setting the ORM up."""
    columns = EtlRun.__table__.columns
    with engine.connect() as conn:
        return conn.execute(EtlRun.newest(*conditions).with_only_columns(*columns).limit(1)).first()


def record_failure(engine: Engine, kind: str, source: str, started: dt.datetime, reason: str) -> None:
    try:
        _record(engine, kind, source, started, reason)
    except SQLAlchemyError as exc:
        log.error("could not record the failed run either: %s", first_line(exc))


def record_success(engine: Engine, kind: str, source: str, started: dt.datetime) -> None:
    """Record a run of work that counts nothing in the price columns (a backup, a restore)."""
    _record(engine, kind, source, started, None)


def _record(engine: Engine, kind: str, source: str, started: dt.datetime, error: str | None) -> None:
    with writer(engine).begin() as conn:
        seconds = (utcnow() - started).total_seconds()
        conn.execute(EtlRun.__table__.insert(), run_row(kind, source, started, seconds, error))


@contextlib.contextmanager
def all_or_nothing(engine: Engine, kind: str, source: str, started: dt.datetime) -> Iterator[None]:
    """Around a pass that changes nothing unless it succeeds: any failure is recorded as a failed run
    of `kind` and raised as an EtlError whose message is its one-line reason."""
    try:
        yield
    except Exception as exc:  # every failure, foreseen or not, is recorded and told in one line
        reason = _failure_reason(exc)
        record_failure(engine, kind, source, started, reason)
        raise EtlError(reason) from exc


def _failure_reason(exc: Exception) -> str:
    if isinstance(exc, (FeedError, EtlError)):
        return str(exc)
    if isinstance(exc, SQLAlchemyError):
        return f"database error, nothing was changed: {first_line(exc)}"
    if isinstance(exc, OSError):
        return f"system error, nothing was changed: {exc}"
    return unexpected_failure(exc)


def unexpected_failure(exc: Exception) -> str:
    """Log an error no branch foresaw, with its traceback; return the one line that records it."""
    log.exception("unexpected error during an ETL pass")
    return f"unexpected error (see the ETL log): {type(exc).__name__}: {first_line(exc)}"
