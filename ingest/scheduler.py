"""The background scheduler: when a pass is due, the `etl.py serve` loop, and starting it once.

Beside prices and the reference imports (imports.py) it runs the jobs its caller hands it (`Job`: `etl.py serve`
hands it the daily backup, the restore of a lost database and the alerts run after each successful pass), so
the pipeline imports none of that work.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
from sqlalchemy import Engine, Row, exists, select, update
from sqlalchemy.exc import SQLAlchemyError

from ingest import pidfile
from ingest.imports import REFERENCES, scheduled_import
from ingest.lease import Lease
from ingest.passes import run_pass
from ingest.runs import EtlError, last_success, newest_run, record_failure, record_success, unexpected_failure
from models import EtlRun, PassRequest
from session import init_db, make_engine, writer
from settings import PROJECT_DIR, Settings, load_settings
from utils import first_line, utcnow

log = logging.getLogger("etl")

LOG_RETENTION = dt.timedelta(days=1)
STOP_TIMEOUT_SECONDS = 30.0
REDELIVERY_SECONDS = 0.01


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived during a pass; the transaction rolls back."""


@dataclass(frozen=True)
class Job:
    """Work the caller hands the scheduler, run after the price pass and the brands when it is due.

    `run(engine)` does it and returns the line to log, or None when there was nothing to do; it
    raises one of `failures`, whose message is the one-line reason, when it fails. Each outcome but
    None is recorded in etl_runs under `kind` with `source`. A job is due when its last success is
    older than `interval_seconds` (0: only when the scheduler starts, if it is one of `startup`).
    """

    kind: str
    source: str
    interval_seconds: int
    run: Callable[[Engine], str | None]
    failures: tuple[type[Exception], ...] = ()


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
    host: str  # the machine whose scheduler this is: the pid file guards one machine
    started_at: dt.datetime | None  # when the scheduler process started (UTC)
    next_pass_at: dt.datetime | None  # None while no scheduler runs: nothing will start a pass
    last_run: Row | None  # the etl_runs row of the newest run of any kind and outcome
    last_failure: Row | None  # that of the newest failed run of any kind


def scheduler_status(settings: Settings, engine: Engine) -> SchedulerStatus:
    """The scheduler named by the pid file if it is alive, and where passes stand; a stale pid file is no error."""
    pid = pidfile.running_scheduler(settings.pid_file)
    started_at = pidfile.started_at(pid) if pid is not None else None
    alive = started_at is not None  # it may have exited since the pid file was read
    return SchedulerStatus(
        alive=alive,
        pid=pid if alive else None,
        host=socket.gethostname(),
        started_at=started_at,
        next_pass_at=next_pass_at(engine, settings, utcnow()) if alive else None,
        last_run=newest_run(engine),
        last_failure=newest_run(engine, EtlRun.status == "failed"),
    )


def serve(
    settings: Settings, jobs: Sequence[Job] = (), startup: Sequence[Job] = (), after_pass: Sequence[Job] = ()
) -> int:
    """Run passes (and `jobs`) on schedule until SIGTERM or SIGINT.

    The pid file allows one scheduler per machine, the lease one per PostgreSQL database (see lease.py).
    The `startup` jobs run once, when this scheduler first leads, before its first pass; the `after_pass`
    jobs after each successful pass (their interval is not read), never failing it. A signal
    rolls back a pass or a brand import under way, but lets a job finish (a backup or a restore
    takes a moment and is all or nothing anyway) before the loop stops.
    """
    try:
        pidfile.acquire(settings.pid_file)
    except pidfile.AlreadyRunning as exc:
        log.info("%s; not starting another", exc)
        return 0
    stop = threading.Event()
    busy = threading.Event()
    received: list[signal.Signals] = []

    def on_signal(signum, _frame):
        if not received:
            received.append(signal.Signals(signum))
            log.info("received %s, stopping", received[0].name)
        # Not stop.set() here: the handler runs in the main thread, which may hold the
        # Event's lock inside stop.wait(); setting it from another thread cannot deadlock.
        threading.Thread(target=stop.set, daemon=True).start()
        if busy.is_set():
            raise Interrupted()

    def on_unraisable(unraisable):
        # A signal handled while a finaliser runs (a weakref callback, a __del__) cannot raise out of it:
        # Python prints the exception and drops it. Deliver the signal again a moment later, once the
        # finaliser has returned, so that the work under way still stops.
        if isinstance(unraisable.exc_value, Interrupted):
            main = threading.main_thread().ident
            redelivery = threading.Timer(REDELIVERY_SECONDS, signal.pthread_kill, args=(main, received[0]))
            redelivery.daemon = True
            redelivery.start()
        else:
            default_unraisable(unraisable)

    default_unraisable = sys.unraisablehook
    default_handlers = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
    sys.unraisablehook = on_unraisable
    log.info("scheduler started (pid file %s, interval %d s)", settings.pid_file, settings.interval_seconds)
    engine = make_engine(settings.database_url)
    lease = Lease(engine)
    leading = None
    try:
        while not stop.is_set():
            if not lease.held():
                if leading is not False:
                    log.info("another scheduler runs the passes of this database; standing by")
                leading = False
                stop.wait(settings.lease_retry_seconds)
                continue
            if leading is False:
                log.info("took over the passes of this database")
            if startup:  # once leading: replicas on one database never restore it twice at once
                _startup(engine, startup)
                startup = ()
            leading = True
            busy.set()
            try:
                wait = _scheduled_work(engine, settings, after_pass)
            finally:
                busy.clear()
            _sleep(stop, engine, settings, _scheduled_jobs(engine, jobs, wait))
    except Interrupted:
        log.info("pass interrupted; its transaction was rolled back")
    finally:
        lease.release()
        pidfile.release(settings.pid_file)
        engine.dispose()
        sys.unraisablehook = default_unraisable
        for signum, handler in default_handlers.items():
            signal.signal(signum, handler)
        log.info("scheduler stopped")
    return 0


def _scheduled_pass(engine: Engine, settings: Settings, after_pass: Sequence[Job] = ()) -> float:
    """Run a pass if one is due or was asked for, then the `after_pass` jobs if it succeeded; return how many
    seconds to sleep before looking again."""
    retry = min(settings.retry_seconds, settings.interval_seconds)
    started = utcnow()
    asked: list[int] = []
    outcome = "failed: the database could not be used (see the ETL log)"
    try:
        init_db(engine)
        asked = _take_requests(engine, started)
        wait = 0 if asked else next_pass_in(engine, settings)
        if wait > 0:
            return wait
        summary = run_pass(engine, settings)
        log.info(summary)
        outcome = str(summary)
        for job in after_pass:
            run_job(engine, job)
        return settings.interval_seconds
    except EtlError as exc:
        log.error("run failed: %s", exc)
        outcome = f"failed: {exc}"
    except SQLAlchemyError as exc:
        log.error("database unavailable, will retry: %s", first_line(exc))
    except Exception as exc:
        # The ETL's one catch-all that does not re-raise: the scheduler runs unattended for months, and
        # an error nobody foresaw must cost one pass, not every later one. run_pass records its own
        # failures and raises EtlError, so whatever lands here was not recorded yet.
        outcome = f"failed: {unexpected_failure(exc)}"
        record_failure(engine, "run", settings.feed_url, started, unexpected_failure(exc))
    finally:
        if asked:
            _answer_requests(engine, asked, outcome)
    return retry


def _take_requests(engine: Engine, now: dt.datetime) -> list[int]:
    """The price updates administrators asked for and no pass answered yet, marked as started."""
    with writer(engine).begin() as conn:
        waiting = list(conn.scalars(select(PassRequest.id).where(PassRequest.started_at.is_(None))))
        if waiting:
            conn.execute(update(PassRequest).where(PassRequest.id.in_(waiting)).values(started_at=now))
    return waiting


def _answer_requests(engine: Engine, asked: list[int], outcome: str) -> None:
    try:
        with writer(engine).begin() as conn:
            answer = {"finished_at": utcnow(), "outcome": outcome}
            conn.execute(update(PassRequest).where(PassRequest.id.in_(asked)).values(answer))
    except SQLAlchemyError as exc:
        log.error("could not record the answer to an update asked for: %s", first_line(exc))


def _requests_waiting(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            return conn.scalar(select(exists().where(PassRequest.started_at.is_(None))))
    except SQLAlchemyError:
        return False  # the pass at the end of the sleep reports a database that cannot be used


def _sleep(stop: threading.Event, engine: Engine, settings: Settings, seconds: float) -> None:
    """Sleep `seconds`, or until stopped, or until an administrator asks for an update (looked for every few s)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if stop.wait(min(left, settings.request_poll_seconds)) or _requests_waiting(engine):
            return


def _scheduled_work(engine: Engine, settings: Settings, after_pass: Sequence[Job] = ()) -> float:
    """One wake-up of the scheduler: the price pass if due, then the brand and places imports if due; seconds
    to sleep.

    The imports come second, right after a price pass, so a slow or failed
    import never holds a due price pass back; the time they took is taken off
    the sleep, so the next price pass keeps its schedule.
    """
    wait = _scheduled_pass(engine, settings, after_pass)
    clock = time.monotonic()
    for reference in REFERENCES.values():
        scheduled_import(engine, settings, reference)
    return max(0.0, wait - (time.monotonic() - clock))


def _scheduled_jobs(engine: Engine, jobs: Sequence[Job], wait: float) -> float:
    """After a wake-up's price work, the jobs that are due; what is left of the `wait` before the next wake-up.

    A failed job is recorded (see `run_job`) and due again at the next wake-up; it never delays a price pass.
    """
    clock = time.monotonic()
    for job in jobs:
        if job_due(engine, job):
            run_job(engine, job)
    return max(0.0, wait - (time.monotonic() - clock))


def _startup(engine: Engine, jobs: Sequence[Job]) -> None:
    if not jobs:
        return
    try:
        init_db(engine)
    except SQLAlchemyError as exc:
        log.error("database unavailable at start, skipping %s: %s", ", ".join(j.kind for j in jobs), first_line(exc))
        return
    for job in jobs:
        run_job(engine, job)


def job_due(engine: Engine, job: Job) -> bool:
    """Whether `job` should run now: never with a 0 interval, else when its last success is older than it."""
    if job.interval_seconds == 0:
        return False
    try:
        previous = last_success(engine, job.kind)
    except SQLAlchemyError as exc:
        log.error("database unavailable, %s waits: %s", job.kind, first_line(exc))
        return False
    return previous is None or previous.finished_at + dt.timedelta(seconds=job.interval_seconds) <= utcnow()


def run_job(engine: Engine, job: Job) -> None:
    """Run `job` and record its outcome; a failure is logged and recorded, never raised."""
    started = utcnow()
    try:
        summary = job.run(engine)
    except job.failures as exc:
        log.error("%s failed: %s", job.kind, exc)
        record_failure(engine, job.kind, job.source, started, str(exc))
        return
    except Exception as exc:
        # As in _scheduled_pass: an unforeseen error costs this job, never the scheduler or the prices.
        record_failure(engine, job.kind, job.source, started, unexpected_failure(exc))
        return
    if summary is not None:
        log.info(summary)
        try:
            record_success(engine, job.kind, job.source, started)
        except SQLAlchemyError as exc:
            log.error("could not record the %s: %s", job.kind, first_line(exc))


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


class SchedulerError(Exception):
    """The scheduler did not do what was asked; the message says why."""


def restart_scheduler(settings: Settings, timeout: float = STOP_TIMEOUT_SECONDS) -> int:
    """Stop this machine's scheduler (a pass under way rolls back) and start a new one; the new one's pid."""
    pid = pidfile.running_scheduler(settings.pid_file)
    if pid is not None:
        try:
            process = psutil.Process(pid)
            process.terminate()
            process.wait(timeout)
        except psutil.NoSuchProcess:
            pass  # it stopped by itself meanwhile
        except psutil.TimeoutExpired:
            raise SchedulerError(f"the scheduler (pid {pid}) did not stop within {timeout:.0f} s") from None
    return ensure_scheduler(settings)


def log_tail(settings: Settings, lines: int = 200) -> tuple[Path | None, list[str]]:
    """The newest scheduler log of this machine and its last `lines` lines."""
    logs = sorted(settings.outputs_dir.glob("etl-*.log"))
    if not logs:
        return None, []
    with logs[-1].open(errors="replace") as text:
        return logs[-1], list(collections.deque(text, maxlen=lines))


def _remove_old_logs(outputs_dir: Path) -> None:
    cutoff = time.time() - LOG_RETENTION.total_seconds()
    for path in outputs_dir.glob("etl-*.log"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except FileNotFoundError:
            pass
