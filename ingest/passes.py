"""The price loads: one ETL pass of the current feed, and a backfill of past prices, each recorded in etl_runs.

A run loads the whole feed in one transaction, a batch of stations at a time: on any failure
nothing is changed, a failed run is recorded and the caller gets an EtlError with one line saying
why (see runs.py). A backfill commits batch by batch and resumes where a failed one stopped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, Row, exists, func, or_, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from ingest import aggregates, progress
from ingest.bulk import Encoder
from ingest.errors import FeedError
from ingest.load import (
    Basis,
    LoadCounts,
    Snapshot,
    forget_fingerprints,
    holds_no_station,
    load_history_batch,
    load_snapshot,
    mark_seen_again,
    stations_seen_at,
)
from ingest.parse import ARCHIVE_CACHED_TIMES, parse_feed
from ingest.records import ParseReport
from ingest.runs import (
    PRICE_LOADS,
    EtlError,
    all_or_nothing,
    last_success,
    record_failure,
    run_row,
    unexpected_failure,
)
from ingest.source import FeedIdentity, feed_file, identify_feed, open_feed
from ingest.update import FeedUpdate, parse_update
from models import EtlRun, Price, Rupture, Station
from session import bulk_writer, writer
from settings import Settings
from utils import collector_held, first_line, utcnow

log = logging.getLogger("etl")

MIN_STATION_RATIO = 0.5
BACKFILL_BATCH_PRICES = 50_000
BATCH_STATIONS = 2_000  # what a run holds at once, whatever the size of the feed


@dataclass
class RunSummary:
    kind: str
    source: str
    stations: int
    prices: int
    changes: int
    rejected: int
    seconds: float
    reasons: dict[str, int] = field(default_factory=dict)  # why records were rejected, with how many each

    def __str__(self) -> str:
        if self.kind == "backfill":
            return (
                f"added {self.changes:,} observations to the price history from {self.stations:,} stations "
                f"({self._rejections()}) from {self.source} in {self.seconds:.1f} s"
            )
        return (
            f"loaded {self.stations:,} stations and {self.prices:,} prices "
            f"({self.changes:,} changed, {self._rejections()}) from {self.source} in {self.seconds:.1f} s"
        )

    def _rejections(self) -> str:
        """'3 rejected: implausible price (2), unknown fuel (1)'; the reasons are the parser's fixed phrases."""
        if not self.reasons:
            return f"{self.rejected:,} rejected"
        reasons = ", ".join(f"{reason} ({count:,})" for reason, count in sorted(self.reasons.items()))
        return f"{self.rejected:,} rejected: {reasons}"

    def row(self, started: dt.datetime, identity: FeedIdentity | None = None) -> dict:
        """The etl_runs row of this successful load, with the identity of the feed it read (a run's)."""
        return run_row(
            self.kind,
            self.source,
            started,
            self.seconds,
            stations=self.stations,
            prices=self.prices,
            changes=self.changes,
            rejected=self.rejected,
            feed_size=identity and identity.size,
            feed_crc32=identity and identity.crc32,
        )


def _check_station_count(found: int, engine: Engine, force: bool) -> None:
    if found == 0:
        raise EtlError("the feed lists no station; nothing was loaded")
    previous = last_success(engine, "run")
    if previous and not force and found < MIN_STATION_RATIO * previous.stations:
        raise EtlError(
            f"the feed lists {found:,} stations, under half of the {previous.stations:,} of the last "
            "successful run; refusing it (use --force to load it anyway)"
        )


def run_pass(engine: Engine, settings: Settings, source: str | None = None, force: bool = False) -> RunSummary:
    """Load the current feed into the database, all or nothing, and record the run.

    The stations whose <pdv> bytes are those the last run read are neither parsed nor compared
    (see update.parse_update), unless `force` asks to read everything again.
    """
    source = source or settings.feed_url
    started = utcnow()
    clock = time.perf_counter()
    report = ParseReport()
    with all_or_nothing(engine, "run", source, started), feed_file(source, settings.data_dir, settings) as path:
        identity = identify_feed(path, settings.max_xml_bytes)
        previous = last_success(engine)
        if not force and _same_feed(engine, previous, identity):
            return _confirm_unchanged(engine, previous, source, started, clock)
        # The fingerprints are read, and the feed read against them, in the writing transaction:
        # no other run can change what they describe before this one commits.
        # A run makes many objects and no cycle worth collecting: the collector would cost a tenth of its CPU.
        with _load_transaction(engine) as conn, collector_held():
            basis = None if force else _fingerprint_basis(conn, started)
            read = parse_update(path, settings.max_xml_bytes, report, started, basis and basis.fingerprints)
            counts = _load_feed(conn, read, basis, started)
            # Checked once every batch is written: a refused feed rolls back with the rest of the transaction.
            _check_station_count(report.stations, engine, force)
            summary = RunSummary(
                "run",
                source,
                counts.stations,
                counts.prices,
                counts.changes,
                report.rejected,
                time.perf_counter() - clock,
                dict(report.reasons),
            )
            conn.execute(EtlRun.__table__.insert(), summary.row(started, identity))
    _refresh_aggregates(engine, aggregates.refresh_after_run, utcnow())
    return summary


def _refresh_aggregates(engine: Engine, refresh: Callable[..., list], *args: Any) -> None:
    """Bring the daily aggregates up to date after a pass that committed; a failure is logged, never the pass's:
    what it left undone is done by the next pass (the aggregates know which observations they counted)."""
    clock = time.perf_counter()
    try:
        with writer(engine).begin() as conn:
            days = refresh(conn, *args)
    except SQLAlchemyError as exc:
        log.warning("the daily aggregates were not updated (the next pass will): %s", first_line(exc))
        return
    if days:
        seconds = time.perf_counter() - clock
        log.info("daily aggregates: %d day(s) from %s updated in %.2f s", len(days), days[0], seconds)


def _load_transaction(engine: Engine) -> contextlib.AbstractContextManager[Connection]:
    """The writing transaction of a run: a bulk one for a first load, into a database without any station."""
    with engine.connect() as conn:
        empty = holds_no_station(conn)
    return bulk_writer(engine) if empty else writer(engine).begin()


def _load_feed(conn: Connection, read: FeedUpdate, basis: Basis | None, started: dt.datetime) -> LoadCounts:
    """Load the stations of `read` batch by batch, then forget the stations gone from the feed.

    A run holds one batch of stations at a time, whatever the size of the feed.
    """
    already_seen = basis.fingerprints if read.incremental else ()
    first_load = holds_no_station(conn)  # then only what this run wrote is stored: nothing else needs reading
    first_load_once = first_load  # and no station listed twice: the batches' prices add up to the table's
    counts = LoadCounts()
    listed: set[int] = set()
    for batch in read.batches(BATCH_STATIONS):
        snapshot = Snapshot.collect(batch, already_seen)
        ids = {station["id"] for station in snapshot.stations}
        if again := sorted(ids & listed):
            _merge_earlier_listing(conn, snapshot, again)
        if first_load:
            snapshot.stored = again
        loaded = load_snapshot(conn, snapshot, started)
        counts.stations += loaded.stations
        counts.prices += loaded.prices
        counts.changes += loaded.changes
        first_load_once = first_load_once and not again
        listed |= ids
    listed.update(read.unchanged)
    counts.stations += len(read.unchanged)
    if read.incremental:
        gone = sorted(set(basis.fingerprints) - listed)
    elif first_load:
        gone = []
    else:
        # Every station listed is seen now; of the others, those holding a price, out-of-stock record or fingerprint.
        held = or_(
            Station.fingerprint.is_not(None),
            exists().where(Price.station_id == Station.id),
            exists().where(Rupture.station_id == Station.id),
        )
        gone = list(conn.scalars(select(Station.id).where(Station.last_seen_at != started, held).order_by(Station.id)))
    for start in range(0, len(gone), BATCH_STATIONS):
        load_snapshot(conn, Snapshot([], [], [], gone=gone[start : start + BATCH_STATIONS]), started)
    if read.incremental:
        mark_seen_again(conn, Encoder(conn.dialect), basis.seen_at, started, gone)
    else:
        forget_fingerprints(conn, gone)
    forget_fingerprints(conn, sorted(read.revoked() & listed))
    if not first_load_once:
        counts.prices = conn.scalar(select(func.count()).select_from(Price))
    return counts


def _merge_earlier_listing(conn: Connection, snapshot: Snapshot, station_ids: list[int]) -> None:
    """Put first in `snapshot` the prices and out-of-stock records that an earlier batch wrote for stations it lists
    again: a station the feed lists twice, in two batches, then ends as if both listings were in one."""
    prices = select(Price.station_id, Price.gastype_id, Price.price, Price.updated_at)
    stored = conn.execute(prices.where(Price.station_id.in_(station_ids)))
    snapshot.prices[:0] = [(station, fuel, int(price * 1000), maj) for station, fuel, price, maj in stored]
    ruptures = select(Rupture.station_id, Rupture.gastype_id, Rupture.started_at, Rupture.ended_at, Rupture.kind)
    snapshot.ruptures[:0] = [tuple(row) for row in conn.execute(ruptures.where(Rupture.station_id.in_(station_ids)))]


def _same_feed(engine: Engine, previous: Row | None, identity: FeedIdentity) -> bool:
    """Whether the database still holds exactly this feed, as loaded by the last successful run."""
    if previous is None or previous.kind != "run":
        return False
    if (previous.feed_size, previous.feed_crc32) != (identity.size, identity.crc32):
        return False
    with engine.connect() as conn:
        return not _backfilled_since(conn, previous.started_at)


def _backfilled_since(conn: Connection, moment: dt.datetime) -> bool:
    # A backfill commits batch by batch: even a failed one may have moved current prices since.
    backfill = select(EtlRun.id).where(EtlRun.kind == "backfill", EtlRun.started_at >= moment).limit(1)
    return conn.scalar(backfill) is not None


def _fingerprint_basis(conn: Connection, started: dt.datetime) -> Basis | None:
    """The stations of the last successful run and their fingerprints, when the database holds what it loaded."""
    if conn.dialect.name == "postgresql":
        # Writers of stations take turns until commit, as BEGIN IMMEDIATE makes them on SQLite; readers never wait.
        conn.execute(text("LOCK TABLE stations IN SHARE ROW EXCLUSIVE MODE"))
    newest = EtlRun.newest(EtlRun.status == "success", EtlRun.kind.in_(PRICE_LOADS))
    previous = conn.execute(newest.with_only_columns(EtlRun.kind, EtlRun.started_at).limit(1)).first()
    if previous is None or previous.kind != "run":
        return None
    # A clock set back could make a price time "in the future" that was accepted: read everything.
    if previous.started_at > started or _backfilled_since(conn, previous.started_at):
        return None
    return stations_seen_at(conn, previous.started_at)


def _confirm_unchanged(engine: Engine, previous: Row, source: str, started: dt.datetime, clock: float) -> RunSummary:
    """The feed is the one loaded last time: only mark its stations as seen again and record the run."""
    identity = FeedIdentity(previous.feed_size, previous.feed_crc32)
    with writer(engine).begin() as conn:
        conn.execute(update(Station).where(Station.last_seen_at == previous.started_at).values(last_seen_at=started))
        summary = RunSummary(
            "run", source, previous.stations, previous.prices, 0, previous.rejected, time.perf_counter() - clock
        )
        conn.execute(EtlRun.__table__.insert(), summary.row(started, identity))
    return summary


def backfill(engine: Engine, settings: Settings, source: str, on_step: progress.Step | None = None) -> RunSummary:
    """Load a file of past prices (daily or yearly archive) into the history, batch by batch, then recompute the
    daily aggregates of the days it covers.

    Each batch commits on its own, with the progress it makes (see progress.py), so the app is never
    blocked for long; a batch that fails rolls back alone, and running the same file again resumes
    after the stations already committed (and would skip, one by one, any observation already stored).
    """
    started = utcnow()
    clock = time.perf_counter()
    report = ParseReport()
    observations = 0
    try:
        with feed_file(source, settings.data_dir, settings) as path:
            identity = identify_feed(path, settings.max_backfill_xml_bytes)
            tracker = progress.start(engine, source, identity, started, on_step)
            with open_feed(path, settings.max_backfill_xml_bytes) as xml:
                span = aggregates.Span()
                batch, batch_prices = [], 0
                for listed, entry in enumerate(parse_feed(xml, report, started, ARCHIVE_CACHED_TIMES), 1):
                    span.add(entry)
                    if listed <= tracker.resume_after:
                        continue
                    batch.append(entry)
                    batch_prices += len(entry.prices)
                    if batch_prices >= BACKFILL_BATCH_PRICES:
                        added = _load_backfill_batch(engine, batch, started, tracker, xml.consumed, identity.size)
                        observations += added
                        batch, batch_prices = [], 0
                observations += _load_backfill_batch(engine, batch, started, tracker, identity.size, identity.size)
        if report.stations == 0:
            raise EtlError("the file lists no station; nothing was loaded")
        aggregates.refresh_backfilled(engine, span, report.stations, tracker)
        summary = RunSummary(
            "backfill",
            source,
            report.stations,
            observations,
            observations,
            report.rejected,
            time.perf_counter() - clock,
            dict(report.reasons),
        )
        with writer(engine).begin() as conn:
            conn.execute(EtlRun.__table__.insert(), summary.row(started))
            tracker.step(conn, progress.DONE, 1, 1)
    except (FeedError, EtlError) as exc:
        reason = f"{exc} (batches loaded before this point are kept; run the same file again to finish)"
        record_failure(engine, "backfill", source, started, reason)
        raise EtlError(reason) from exc
    except SQLAlchemyError as exc:
        reason = f"database error: {first_line(exc)} (run the same file again to finish)"
        record_failure(engine, "backfill", source, started, reason)
        raise EtlError(reason) from exc
    except Exception as exc:
        reason = unexpected_failure(exc)
        record_failure(engine, "backfill", source, started, reason)
        raise EtlError(reason) from exc
    return summary


def _load_backfill_batch(
    engine: Engine, batch: list, started: dt.datetime, tracker: progress.Tracker, read: int, total: int
) -> int:
    with writer(engine).begin() as conn:
        added = load_history_batch(conn, batch, started) if batch else 0
        tracker.step(conn, progress.LOADING, read, total, stations=len(batch))
    return added
