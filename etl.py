"""The ETL: fetch -> parse -> validate -> load -> record the run; its scheduler; its CLI.

    python etl.py run [--source URL_OR_PATH] [--force]
    python etl.py backfill --source FILE
    python etl.py brands [--source URL_OR_PATH]
    python etl.py serve

Every command first brings the database up to date (`init_db`). A run loads
the whole feed in one transaction: on any failure nothing is changed, a failed
run is recorded and the command exits non-zero with one line saying why. A
brand import (see brands.py) replaces the station brand table the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import ColumnElement, Connection, Engine, exists, select, text, update
from sqlalchemy.exc import SQLAlchemyError

import brands
import pidfile
from feed import FeedError, FeedIdentity, ParseReport, feed_file, identify_feed, open_feed, parse_feed, parse_update
from loader import Basis, Snapshot, load_history_batch, load_snapshot, stations_seen_at
from models import EtlRun, Station, StationBrand
from session import init_db, make_engine, session_factory, writer
from settings import PROJECT_DIR, Settings, load_settings
from utils import utcnow

log = logging.getLogger("etl")

MIN_STATION_RATIO = 0.5
PRICE_LOADS = ("run", "backfill")  # the kinds of etl_runs that load prices; "brands" imports do not
BACKFILL_BATCH_PRICES = 50_000
LOG_RETENTION = dt.timedelta(days=1)


class EtlError(Exception):
    """A pass failed; the message is the one line shown to the operator."""


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived during a pass; the transaction rolls back."""


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


def last_success(engine: Engine, kind: str | None = None) -> EtlRun | None:
    """The newest successful run of `kind`, or of any price load (run or backfill) when not given."""
    kinds = (kind,) if kind is not None else PRICE_LOADS
    return _newest_run(engine, EtlRun.status == "success", EtlRun.kind.in_(kinds))


def _newest_run(engine: Engine, *conditions: ColumnElement[bool]) -> EtlRun | None:
    query = select(EtlRun).where(*conditions).order_by(EtlRun.started_at.desc(), EtlRun.id.desc()).limit(1)
    with session_factory(engine)() as session:
        return session.scalars(query).first()


def _record_failure(engine: Engine, kind: str, source: str, started: dt.datetime, reason: str) -> None:
    try:
        with writer(engine).begin() as conn:
            conn.execute(
                EtlRun.__table__.insert(),
                {
                    "kind": kind,
                    "started_at": started,
                    "finished_at": utcnow(),
                    "status": "failed",
                    "source": source,
                    "duration_seconds": (utcnow() - started).total_seconds(),
                    "error": reason,
                },
            )
    except SQLAlchemyError as exc:
        log.error("could not record the failed run either: %s", _one_line(exc))


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc) or type(exc).__name__
    return text.splitlines()[0][:500]


@contextlib.contextmanager
def _all_or_nothing(engine: Engine, kind: str, source: str, started: dt.datetime) -> Iterator[None]:
    """Around a pass that changes nothing unless it succeeds: any failure is recorded as a failed run
    of `kind` and raised as an EtlError whose message is its one-line reason."""
    try:
        yield
    except Exception as exc:  # every failure, foreseen or not, is recorded and told in one line
        reason = _failure_reason(exc)
        _record_failure(engine, kind, source, started, reason)
        raise EtlError(reason) from exc


def _failure_reason(exc: Exception) -> str:
    if isinstance(exc, (FeedError, EtlError)):
        return str(exc)
    if isinstance(exc, SQLAlchemyError):
        return f"database error, nothing was changed: {_one_line(exc)}"
    if isinstance(exc, OSError):
        return f"system error, nothing was changed: {exc}"
    return _unexpected_failure(exc)


def _unexpected_failure(exc: Exception) -> str:
    """Log an error no branch foresaw, with its traceback; return the one line that records it."""
    log.exception("unexpected error during an ETL pass")
    return f"unexpected error (see the ETL log): {type(exc).__name__}: {_one_line(exc)}"


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
    (see feed.parse_update), unless `force` asks to read everything again.
    """
    source = source or settings.feed_url
    started = utcnow()
    clock = time.perf_counter()
    report = ParseReport()
    with _all_or_nothing(engine, "run", source, started), feed_file(source, settings.data_dir, settings) as path:
        identity = identify_feed(path, settings.max_xml_bytes)
        previous = last_success(engine)
        if not force and _same_feed(engine, previous, identity):
            return _confirm_unchanged(engine, previous, source, started, clock)
        # The fingerprints are read, and the feed read against them, in the writing transaction:
        # no other run can change what they describe before this one commits.
        with writer(engine).begin() as conn:
            basis = None if force else _fingerprint_basis(conn, started)
            read = parse_update(path, settings.max_xml_bytes, report, started, basis and basis.fingerprints)
            _check_station_count(report.stations, engine, force)
            counts = load_snapshot(conn, Snapshot.of_update(read, basis), started)
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
            conn.execute(EtlRun.__table__.insert(), _run_row("run", started, summary, identity))
    return summary


def _same_feed(engine: Engine, previous: EtlRun | None, identity: FeedIdentity) -> bool:
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
    runs = EtlRun.__table__
    newest = (
        select(runs.c.kind, runs.c.started_at)
        .where(runs.c.status == "success", runs.c.kind.in_(PRICE_LOADS))
        .order_by(runs.c.started_at.desc(), runs.c.id.desc())
        .limit(1)
    )
    previous = conn.execute(newest).first()
    if previous is None or previous.kind != "run":
        return None
    # A clock set back could make a price time "in the future" that was accepted: read everything.
    if previous.started_at > started or _backfilled_since(conn, previous.started_at):
        return None
    return stations_seen_at(conn, previous.started_at)


def _confirm_unchanged(engine: Engine, previous: EtlRun, source: str, started: dt.datetime, clock: float) -> RunSummary:
    """The feed is the one loaded last time: only mark its stations as seen again and record the run."""
    identity = FeedIdentity(previous.feed_size, previous.feed_crc32)
    with writer(engine).begin() as conn:
        conn.execute(update(Station).where(Station.last_seen_at == previous.started_at).values(last_seen_at=started))
        summary = RunSummary(
            "run", source, previous.stations, previous.prices, 0, previous.rejected, time.perf_counter() - clock
        )
        conn.execute(EtlRun.__table__.insert(), _run_row("run", started, summary, identity))
    return summary


def _run_row(kind: str, started: dt.datetime, summary: RunSummary, identity: FeedIdentity | None = None) -> dict:
    return {
        "kind": kind,
        "started_at": started,
        "finished_at": utcnow(),
        "status": "success",
        "source": summary.source,
        "stations": summary.stations,
        "prices": summary.prices,
        "changes": summary.changes,
        "rejected": summary.rejected,
        "duration_seconds": summary.seconds,
        "feed_size": identity and identity.size,
        "feed_crc32": identity and identity.crc32,
    }


def backfill(engine: Engine, settings: Settings, source: str) -> RunSummary:
    """Load a file of past prices (daily or yearly archive) into the history, batch by batch.

    Each batch commits on its own so the app is never blocked for long; a batch
    that fails rolls back alone, and running the same file again skips what was
    already loaded.
    """
    started = utcnow()
    clock = time.perf_counter()
    report = ParseReport()
    observations = 0
    try:
        with (
            feed_file(source, settings.data_dir, settings) as path,
            open_feed(path, settings.max_backfill_xml_bytes) as xml,
        ):
            batch, batch_prices = [], 0
            for entry in parse_feed(xml, report, started):
                batch.append(entry)
                batch_prices += len(entry.prices)
                if batch_prices >= BACKFILL_BATCH_PRICES:
                    observations += _load_backfill_batch(engine, batch, started)
                    batch, batch_prices = [], 0
            observations += _load_backfill_batch(engine, batch, started)
        if report.stations == 0:
            raise EtlError("the file lists no station; nothing was loaded")
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
            conn.execute(EtlRun.__table__.insert(), _run_row("backfill", started, summary))
    except (FeedError, EtlError) as exc:
        reason = f"{exc} (batches loaded before this point are kept; run the same file again to finish)"
        _record_failure(engine, "backfill", source, started, reason)
        raise EtlError(reason) from exc
    except SQLAlchemyError as exc:
        reason = f"database error: {_one_line(exc)}"
        _record_failure(engine, "backfill", source, started, reason)
        raise EtlError(reason) from exc
    except Exception as exc:
        reason = _unexpected_failure(exc)
        _record_failure(engine, "backfill", source, started, reason)
        raise EtlError(reason) from exc
    return summary


def _load_backfill_batch(engine: Engine, batch: list, started: dt.datetime) -> int:
    if not batch:
        return 0
    with writer(engine).begin() as conn:
        return load_history_batch(conn, batch, started)


def import_brands(engine: Engine, settings: Settings, source: str | None = None) -> brands.BrandTable:
    """Replace the station brand table with the OSM stations CSV at `source`, all or nothing, and record it."""
    source = source or settings.brands_url
    started = utcnow()
    clock = time.perf_counter()
    with _all_or_nothing(engine, "brands", source, started):
        with feed_file(source, settings.data_dir, settings) as path:
            table = brands.read_brands(path, brands.load_aliases())
        with writer(engine).begin() as conn:
            brands.replace_brands(conn, table)
            conn.execute(
                EtlRun.__table__.insert(),
                {
                    "kind": "brands",
                    "started_at": started,
                    "finished_at": utcnow(),
                    "status": "success",
                    "source": source,
                    "stations": len(table.stations),
                    "rejected": table.skipped,
                    "duration_seconds": time.perf_counter() - clock,
                },
            )
    return table


# --------------------------------------------------------------------------- scheduler


def next_pass_in(engine: Engine, settings: Settings) -> float:
    """Seconds until a pass is due: 0 when the last successful run is older than the interval."""
    now = utcnow()
    return (next_pass_at(engine, settings, now) - now).total_seconds()


def next_pass_at(engine: Engine, settings: Settings, now: dt.datetime) -> dt.datetime:
    """When a pass is due: the interval after the last successful run, or `now` if that is past or none ran."""
    previous = last_success(engine)
    if previous is None:
        return now
    return max(now, previous.finished_at + dt.timedelta(seconds=settings.interval_seconds))


@dataclass(frozen=True)
class SchedulerStatus:
    """What the admin page shows about the background scheduler."""

    alive: bool
    pid: int | None
    started_at: dt.datetime | None  # when the scheduler process started (UTC)
    next_pass_at: dt.datetime | None  # None while no scheduler runs: nothing will start a pass
    last_run: EtlRun | None  # the newest run of any kind and outcome


def scheduler_status(settings: Settings, engine: Engine) -> SchedulerStatus:
    """The scheduler named by the pid file if it is alive, and where passes stand; a stale pid file is no error."""
    pid = pidfile.running_scheduler(settings.pid_file)
    started_at = pidfile.started_at(pid) if pid is not None else None
    alive = started_at is not None  # it may have exited since the pid file was read
    return SchedulerStatus(
        alive=alive,
        pid=pid if alive else None,
        started_at=started_at,
        next_pass_at=next_pass_at(engine, settings, utcnow()) if alive else None,
        last_run=_newest_run(engine),
    )


def serve(settings: Settings) -> int:
    """Run passes on schedule until SIGTERM or SIGINT; the pid file guarantees a single scheduler."""
    try:
        pidfile.acquire(settings.pid_file)
    except pidfile.AlreadyRunning as exc:
        log.info("%s; not starting another", exc)
        return 0
    stop = threading.Event()
    busy = threading.Event()

    def on_signal(signum, _frame):
        log.info("received %s, stopping", signal.Signals(signum).name)
        # Not stop.set() here: the handler runs in the main thread, which may hold the
        # Event's lock inside stop.wait(); setting it from another thread cannot deadlock.
        threading.Thread(target=stop.set, daemon=True).start()
        if busy.is_set():
            raise Interrupted()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("scheduler started (pid file %s, interval %d s)", settings.pid_file, settings.interval_seconds)
    engine = make_engine(settings.database_url)
    try:
        while not stop.is_set():
            busy.set()
            try:
                wait = _scheduled_work(engine, settings)
            finally:
                busy.clear()
            stop.wait(wait)
    except Interrupted:
        log.info("pass interrupted; its transaction was rolled back")
    finally:
        pidfile.release(settings.pid_file)
        engine.dispose()
        log.info("scheduler stopped")
    return 0


def _scheduled_pass(engine: Engine, settings: Settings) -> float:
    """Run a pass if one is due; return how many seconds to sleep before looking again."""
    retry = min(settings.retry_seconds, settings.interval_seconds)
    started = utcnow()
    try:
        init_db(engine)
        wait = next_pass_in(engine, settings)
        if wait > 0:
            return wait
        log.info(run_pass(engine, settings))
        return settings.interval_seconds
    except EtlError as exc:
        log.error("run failed: %s", exc)
    except SQLAlchemyError as exc:
        log.error("database unavailable, will retry: %s", _one_line(exc))
    except Exception as exc:
        # The ETL's one catch-all that does not re-raise: the scheduler runs unattended for months, and
        # an error nobody foresaw must cost one pass, not every later one. run_pass records its own
        # failures and raises EtlError, so whatever lands here was not recorded yet.
        _record_failure(engine, "run", settings.feed_url, started, _unexpected_failure(exc))
    return retry


def _scheduled_work(engine: Engine, settings: Settings) -> float:
    """One wake-up of the scheduler: the price pass if due, then the brand import if due; seconds to sleep.

    Brands come second, right after a price pass, so a slow or failed brand
    import never holds a due price pass back; the time it took is taken off
    the sleep, so the next price pass keeps its schedule.
    """
    wait = _scheduled_pass(engine, settings)
    clock = time.monotonic()
    _scheduled_brands(engine, settings)
    return max(0.0, wait - (time.monotonic() - clock))


def brands_due(engine: Engine, settings: Settings) -> bool:
    """Whether the scheduler should import brands now.

    Never with BRANDS_INTERVAL_SECONDS=0; otherwise at once while the brand table
    is empty, and when the last successful import is older than the interval.
    """
    if settings.brands_interval_seconds == 0:
        return False
    with session_factory(engine)() as session:
        if not session.scalar(select(exists().select_from(StationBrand))):
            return True
    previous = last_success(engine, "brands")
    interval = dt.timedelta(seconds=settings.brands_interval_seconds)
    return previous is None or previous.finished_at + interval <= utcnow()


def _scheduled_brands(engine: Engine, settings: Settings) -> None:
    """Import brands if due; a failure is logged (import_brands records it) and waits for the next wake-up."""
    started = utcnow()
    try:
        if brands_due(engine, settings):
            log.info(import_brands(engine, settings).describe(settings.brands_url))
    except EtlError as exc:
        log.error("brand import failed: %s", exc)
    except SQLAlchemyError as exc:
        log.error("database unavailable for the brand import, will retry: %s", _one_line(exc))
    except Exception as exc:
        # As in _scheduled_pass: an unforeseen error costs this import, never the scheduler or the prices.
        _record_failure(engine, "brands", settings.brands_url, started, _unexpected_failure(exc))


def ensure_scheduler(settings: Settings | None = None) -> int:
    """Start `etl.py serve` in the background unless one runs; return the scheduler's pid.

    Safe to call from many threads and processes at once: the check and the
    start happen under the pid file's lock, and the child's pid is written
    before the lock is released, so exactly one scheduler is started.
    """
    settings = settings or load_settings()
    settings.outputs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with pidfile.locked(settings.pid_file):
        pid = pidfile.running_scheduler(settings.pid_file)
        if pid is not None:
            return pid
        _remove_old_logs(settings.outputs_dir)
        stamp = utcnow().strftime("%Y%m%d-%H%M%S-%f")
        log_path = settings.outputs_dir / f"etl-{stamp}.log"
        with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log_file:
            child = subprocess.Popen(
                [sys.executable, str(PROJECT_DIR / "etl.py"), "serve"],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=PROJECT_DIR,
                env={**os.environ, **settings.environ()},
                start_new_session=True,
            )
        pidfile.write_pid(settings.pid_file, child.pid)
        return child.pid


def _remove_old_logs(outputs_dir: Path) -> None:
    cutoff = time.time() - LOG_RETENTION.total_seconds()
    for path in outputs_dir.glob("etl-*.log"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except FileNotFoundError:
            pass


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="etl.py", description="Load the French fuel-price feed.")
    commands = parser.add_subparsers(dest="command", required=True)
    run_cmd = commands.add_parser("run", help="run one pass and exit")
    run_cmd.add_argument("--source", help="feed URL or local file (default: CARBUROAM_FEED_URL)")
    run_cmd.add_argument("--force", action="store_true", help="load even a feed with far fewer stations")
    backfill_cmd = commands.add_parser("backfill", help="load a file of past prices into the history")
    backfill_cmd.add_argument("--source", required=True, help="daily or yearly archive, URL or local file")
    brands_cmd = commands.add_parser("brands", help="import station brands and names from OpenStreetMap")
    brands_cmd.add_argument("--source", help="OSM stations CSV, URL or local file (default: CARBUROAM_BRANDS_URL)")
    commands.add_parser("serve", help="run passes on schedule (pid-file guarded)")
    args = parser.parse_args(argv)

    serving = args.command == "serve"
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s" if serving else "%(message)s",
        stream=sys.stdout if serving else sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        settings = load_settings()
    except ValueError as exc:
        log.error("etl: configuration error: %s", exc)
        return 2
    if serving:
        return serve(settings)
    engine = make_engine(settings.database_url)
    try:
        init_db(engine)
        if args.command == "run":
            summary = run_pass(engine, settings, args.source, args.force)
        elif args.command == "brands":
            source = args.source or settings.brands_url
            summary = import_brands(engine, settings, source).describe(source)
        else:
            summary = backfill(engine, settings, args.source)
    except EtlError as exc:
        log.error("etl: %s", exc)
        return 1
    except SQLAlchemyError as exc:
        log.error("etl: cannot prepare the database: %s", _one_line(exc))
        return 1
    finally:
        engine.dispose()
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
