"""The reference imports: station brands from OpenStreetMap (brands.py) and La Poste's places (places.py).

Both have one shape, written once here with what differs in a `Reference`: fetch the file, read it, replace
the table in one transaction and record the run in etl_runs. A file refused for any reason leaves the table
as it was and is recorded as a failed run; the scheduler then waits IMPORT_RETRY_SECONDS before it fetches
that source again.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from sqlalchemy import Connection, Engine, exists, select
from sqlalchemy.exc import SQLAlchemyError

from ingest import brands, places
from ingest.runs import EtlError, all_or_nothing, newest_run, record_failure, run_row, unexpected_failure
from ingest.source import feed_file
from models import EtlRun, Place, StationBrand
from session import session_factory, writer
from settings import Settings
from utils import first_line, utcnow

log = logging.getLogger("etl")


class Table(Protocol):
    """A reference file once read: what it holds, and how many of its rows were set aside."""

    @property
    def skipped(self) -> int: ...

    def describe(self, source: str) -> str: ...


TableT = TypeVar("TableT", bound=Table)


@dataclass(frozen=True)
class Reference(Generic[TableT]):
    """What one reference import is: its etl_runs kind, its table, its settings and how it reads a file."""

    kind: str
    label: str  # how the log names it: "brand import failed"
    what: str  # how errors name the file: "no brands file at ..."
    model: type  # the table it replaces: while it is empty, an import is due at once
    url: Callable[[Settings], str]
    interval_seconds: Callable[[Settings], int]  # 0: never on schedule
    read: Callable[[Path], TableT]  # raises a FeedError saying why it refuses a file
    replace: Callable[[Connection, TableT], int]  # in the caller's transaction; returns the rows written, or refuses


BRANDS: Reference[brands.BrandTable] = Reference(
    "brands",
    "brand",
    "brands file",
    StationBrand,
    attrgetter("brands_url"),
    attrgetter("brands_interval_seconds"),
    lambda path: brands.read_brands(path, brands.load_aliases()),
    brands.replace_brands,
)
PLACES: Reference[places.PlaceTable] = Reference(
    "places",
    "places",
    "postcode base",
    Place,
    attrgetter("places_url"),
    attrgetter("places_interval_seconds"),
    places.read_places,
    places.replace_places,
)
REFERENCES = {reference.kind: reference for reference in (BRANDS, PLACES)}  # in the order the scheduler runs them


def import_reference(
    engine: Engine, settings: Settings, reference: Reference[TableT], source: str | None = None
) -> TableT:
    """Replace `reference`'s table with the file at `source` (its URL setting when not given), all or nothing,
    record the run, and return what the file held."""
    source = source or reference.url(settings)
    started = utcnow()
    clock = time.perf_counter()
    with all_or_nothing(engine, reference.kind, source, started):
        with feed_file(source, settings.data_dir, settings, reference.what) as path:
            table = reference.read(path)
        with writer(engine).begin() as conn:
            rows = reference.replace(conn, table)
            seconds = time.perf_counter() - clock
            # The rows imported go in the stations column.
            row = run_row(reference.kind, source, started, seconds, stations=rows, rejected=table.skipped)
            conn.execute(EtlRun.__table__.insert(), row)
    return table


def import_due(engine: Engine, settings: Settings, reference: Reference) -> bool:
    """Whether the scheduler should import `reference` now.

    Never when its interval is 0 (BRANDS_INTERVAL_SECONDS, PLACES_INTERVAL_SECONDS); otherwise at once while
    its table is empty, and when the last successful import is older than the interval; but after a failed
    import, not before IMPORT_RETRY_SECONDS have passed (a source that answers with an unusable file is not
    fetched again at every wake-up).
    """
    interval_seconds = reference.interval_seconds(settings)
    if interval_seconds == 0:
        return False
    now = utcnow()
    latest = newest_run(engine, EtlRun.kind == reference.kind)
    if latest is not None and latest.status == "failed":
        retry = dt.timedelta(seconds=min(settings.import_retry_seconds, interval_seconds))
        return latest.finished_at + retry <= now
    with session_factory(engine)() as session:
        if not session.scalar(select(exists().select_from(reference.model))):
            return True
    interval = dt.timedelta(seconds=interval_seconds)
    return latest is None or latest.finished_at + interval <= now


def scheduled_import(engine: Engine, settings: Settings, reference: Reference) -> None:
    """Import `reference` if due; a failure is logged (the import records it) and waits for the next wake-up."""
    source = reference.url(settings)
    started = utcnow()
    try:
        if import_due(engine, settings, reference):
            log.info(import_reference(engine, settings, reference).describe(source))
    except EtlError as exc:
        log.error("%s import failed: %s", reference.label, exc)
    except SQLAlchemyError as exc:
        log.error("database unavailable for the %s import, will retry: %s", reference.label, first_line(exc))
    except Exception as exc:
        # As for the price pass: an unforeseen error costs this import, never the scheduler or the prices.
        record_failure(engine, reference.kind, source, started, unexpected_failure(exc))
