"""The ETL scheduler: the pid-file guard, `etl.py serve` as a real process, and `ensure_scheduler()`.

Every scheduler here is a real subprocess working on the test's own data dir and SQLite file. Nothing
sleeps for a fixed time: each wait polls an observable condition (a row in `etl_runs`, the pid file, a
log line, a process exit) up to a deadline, and fails fast when the process it waits on has died.
The `schedulers` fixture kills every scheduler a test started, and any `etl.py serve` left running on
the test's data dir, so nothing leaks into the next test.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import logging
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TypeVar

import psutil
import pytest
from sqlalchemy import create_engine, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.pool import NullPool

from conftest import FIXTURES, ROOT
from db_snapshot import DATA_TABLES, etl_runs, table_rows
from ingest import passes, pidfile, scheduler
from ingest.lease import LEASE_KEY, Lease
from models import EtlRun, PassRequest
from session import init_db, make_engine, writer
from settings import Settings, load_settings
from test_fetch import FEED_A_BYTES, FeedHandler, FeedServer, send
from test_hostile_feed import HOSTILE_REJECTIONS, write_hostile_feed

POLL_SECONDS = 0.05
DEADLINE_SECONDS = 20.0
INTERVAL = 3600
RETRY = 300
ONE_DAY = 24 * 3600
LOG_NAME = re.compile(r"etl-\d{8}-\d{6}-\d{6}\.log")

T = TypeVar("T")


# --------------------------------------------------------------------------- helpers


def alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie is not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for(
    condition: Callable[[], T],
    what: str,
    *,
    pid: int | None = None,
    log: Path | None = None,
    timeout: float = DEADLINE_SECONDS,
) -> T:
    """Poll `condition` until it is truthy; fail after `timeout`, or as soon as process `pid` has died."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        died = pid is not None and not alive(pid)
        if died:
            value = condition()  # it may have become true just before the process exited
            if value:
                return value
        if died or time.monotonic() > deadline:
            reason = f"process {pid} died" if died else f"no result after {timeout:.0f} s"
            tail = f"\n--- {log} ---\n{log.read_text(errors='replace')[-3000:]}" if log and log.exists() else ""
            pytest.fail(f"waiting for {what}: {reason}{tail}")
        time.sleep(POLL_SECONDS)


def run_statuses(database_url: str) -> list[str]:
    """The status of every recorded ETL run, oldest first ([] while the database or table does not exist)."""
    if not Path(make_url(database_url).database).exists():
        return []  # do not let a probe create the file before the scheduler does
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return list(conn.scalars(text("SELECT status FROM etl_runs ORDER BY id")))
    except OperationalError:  # no table yet, or the migration holds the lock
        return []
    finally:
        engine.dispose()


def serve_processes(data_dir: Path) -> list[int]:
    """Pids of the live `etl.py serve` processes whose CARBUROAM_DATA_DIR is `data_dir`."""
    found = []
    for process in psutil.process_iter():
        try:
            if not pidfile.is_scheduler(process.pid):
                continue
            configured = process.environ().get("CARBUROAM_DATA_DIR")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if configured and Path(configured).resolve() == data_dir.resolve():
            found.append(process.pid)
    return sorted(found)


def output_logs(settings: Settings) -> set[Path]:
    return set(settings.outputs_dir.glob("etl-*.log"))


def set_mtime(path: Path, seconds_ago: float) -> None:
    when = time.time() - seconds_ago
    os.utime(path, (when, when))


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=DEADLINE_SECONDS)
    assert not psutil.pid_exists(proc.pid)
    return proc.pid


def blocker(tmp_path: Path, script: str = "blocker.py", *args: str) -> subprocess.Popen:
    """A live process that does nothing until its stdin is closed (no sleep involved)."""
    path = tmp_path / script
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("import sys\nsys.stdin.read()\n")
    return subprocess.Popen([sys.executable, str(path), *args], stdin=subprocess.PIPE)


def stop_blocker(proc: subprocess.Popen) -> None:
    if proc.stdin and not proc.stdin.closed:
        proc.stdin.close()
    try:
        proc.wait(timeout=DEADLINE_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def kill_and_reap(pid: int) -> None:
    try:
        process = psutil.Process(pid)
        process.kill()
        process.wait(timeout=DEADLINE_SECONDS)  # reaps it when it is our child
    except (psutil.NoSuchProcess, psutil.TimeoutExpired):
        pass


class Schedulers:
    """Starts `etl.py serve` processes for one test and kills them all at teardown."""

    def __init__(self, tmp_path: Path, settings: Settings):
        self.tmp_path = tmp_path
        self.settings = settings
        self.procs: list[subprocess.Popen] = []
        self.logs: dict[int, Path] = {}
        self.pids: set[int] = set()
        self._files: list[IO[bytes]] = []

    @property
    def pid_file(self) -> Path:
        return self.settings.pid_file

    def env(self, **overrides: str) -> dict[str, str]:
        return {**os.environ, **overrides}

    def start(self, **env_overrides: str) -> subprocess.Popen:
        log = self.tmp_path / f"serve-{len(self.procs)}.log"
        out = log.open("ab")
        self._files.append(out)
        proc = subprocess.Popen(
            [sys.executable, "etl.py", "serve"],
            cwd=ROOT,
            env=self.env(**env_overrides),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        self.logs[proc.pid] = log
        return proc

    def adopt(self, pid: int) -> int:
        """Kill `pid` at teardown too (a scheduler started by ensure_scheduler)."""
        self.pids.add(pid)
        return pid

    def log(self, proc: subprocess.Popen) -> str:
        return self.logs[proc.pid].read_text(errors="replace")

    def wait_until_loaded(self, pid: int, log: Path | None = None) -> list[str]:
        return wait_for(
            lambda: "success" in run_statuses(self.settings.database_url) and run_statuses(self.settings.database_url),
            "a successful run in etl_runs",
            pid=pid,
            log=log or self.logs.get(pid),
        )

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=DEADLINE_SECONDS)
        for pid in self.pids:
            kill_and_reap(pid)
        for pid in serve_processes(self.settings.data_dir):  # anything else started on this data dir
            kill_and_reap(pid)
        for out in self._files:
            out.close()


@pytest.fixture
def schedulers(tmp_path: Path, sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Schedulers]:
    monkeypatch.setenv("ETL_INTERVAL_SECONDS", str(INTERVAL))
    monkeypatch.setenv("ETL_RETRY_SECONDS", str(RETRY))
    registry = Schedulers(tmp_path, load_settings())
    try:
        yield registry
    finally:
        registry.cleanup()


def stop(proc: subprocess.Popen, signum: int = signal.SIGTERM) -> int:
    """Send `signum` and wait (bounded) for the process to exit; return its exit code."""
    proc.send_signal(signum)
    try:
        return proc.wait(timeout=DEADLINE_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"scheduler {proc.pid} did not exit within {DEADLINE_SECONDS:.0f} s of {signum!r}")


# --------------------------------------------------------------------------- etl.py serve


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_loads_a_fresh_database_then_stops_cleanly_on_signal(schedulers: Schedulers, signum: int):
    proc = schedulers.start()

    assert schedulers.wait_until_loaded(proc.pid) == ["success"]
    assert pidfile.read_pid(schedulers.pid_file) == proc.pid
    assert proc.poll() is None, "the scheduler must keep running after its pass"

    assert stop(proc, signum) == 0
    assert not schedulers.pid_file.exists(), "the scheduler must remove its pid file on exit"
    log = schedulers.log(proc)
    assert f"received {signal.Signals(signum).name}, stopping" in log
    assert "scheduler stopped" in log
    assert "Traceback" not in log
    assert run_statuses(schedulers.settings.database_url) == ["success"], "no second pass within the interval"


def test_two_serves_started_at_once_leave_exactly_one_running(schedulers: Schedulers):
    first, second = schedulers.start(), schedulers.start()

    loser = wait_for(
        lambda: next((p for p in (first, second) if p.poll() is not None), None), "one of the two to give up"
    )
    survivor = second if loser is first else first
    assert loser.wait(timeout=DEADLINE_SECONDS) == 0
    assert "already running" in schedulers.log(loser)
    assert survivor.poll() is None
    assert pidfile.read_pid(schedulers.pid_file) == survivor.pid

    assert schedulers.wait_until_loaded(survivor.pid) == ["success"], "only the survivor runs a pass"
    assert serve_processes(schedulers.settings.data_dir) == [survivor.pid]
    assert stop(survivor) == 0
    assert not schedulers.pid_file.exists()


@pytest.mark.parametrize(
    "content",
    [
        "not a pid\n",
        "",
        "12abc",
        "-1\n",
    ],
    ids=["words", "empty", "junk-digits", "negative"],
)
def test_serve_replaces_a_pid_file_with_garbage(schedulers: Schedulers, content: str):
    schedulers.pid_file.write_text(content)
    proc = schedulers.start()

    schedulers.wait_until_loaded(proc.pid)
    assert pidfile.read_pid(schedulers.pid_file) == proc.pid
    assert stop(proc) == 0
    assert not schedulers.pid_file.exists()


def test_serve_replaces_a_pid_file_naming_a_dead_process(schedulers: Schedulers):
    gone = dead_pid()
    schedulers.pid_file.write_text(f"{gone}\n")
    proc = schedulers.start()

    schedulers.wait_until_loaded(proc.pid)
    assert pidfile.read_pid(schedulers.pid_file) == proc.pid
    assert stop(proc) == 0
    assert not schedulers.pid_file.exists()


@pytest.mark.parametrize("who", ["pytest", "child"])
def test_serve_replaces_a_pid_file_naming_a_live_unrelated_process(schedulers: Schedulers, tmp_path: Path, who: str):
    unrelated = blocker(tmp_path) if who == "child" else None
    try:
        other = unrelated.pid if unrelated else os.getpid()
        schedulers.pid_file.write_text(f"{other}\n")
        proc = schedulers.start()

        schedulers.wait_until_loaded(proc.pid)
        assert pidfile.read_pid(schedulers.pid_file) == proc.pid
        assert alive(other), "the unrelated process must be left alone"
        if unrelated:
            assert unrelated.poll() is None
        assert stop(proc) == 0
        assert not schedulers.pid_file.exists()
        assert alive(other)
    finally:
        if unrelated:
            stop_blocker(unrelated)


def test_serve_leaves_a_pid_file_it_no_longer_owns(schedulers: Schedulers):
    proc = schedulers.start()
    schedulers.wait_until_loaded(proc.pid)
    other = os.getpid()
    with pidfile.locked(schedulers.pid_file):
        schedulers.pid_file.write_text(f"{other}\n")

    assert stop(proc) == 0
    assert pidfile.read_pid(schedulers.pid_file) == other, "only the owner may remove the pid file"


def test_serve_logs_a_failed_pass_and_keeps_running(schedulers: Schedulers, tmp_path: Path):
    missing = tmp_path / "no-such-feed.zip"
    proc = schedulers.start(CARBUROAM_FEED_URL=str(missing))

    statuses = wait_for(
        lambda: run_statuses(schedulers.settings.database_url),
        "the failed run to be recorded",
        pid=proc.pid,
        log=schedulers.logs[proc.pid],
    )
    assert statuses == ["failed"]
    wait_for(lambda: "run failed" in schedulers.log(proc), "the failure in the log", pid=proc.pid)
    assert str(missing) in schedulers.log(proc)
    assert proc.poll() is None, "a failed pass must not stop the scheduler"
    assert pidfile.read_pid(schedulers.pid_file) == proc.pid

    assert stop(proc) == 0
    assert not schedulers.pid_file.exists()
    assert "Traceback" not in schedulers.log(proc)


def test_serve_loads_a_hostile_feed_and_keeps_running(schedulers: Schedulers, tmp_path: Path):
    proc = schedulers.start(CARBUROAM_FEED_URL=str(write_hostile_feed(tmp_path)))

    assert schedulers.wait_until_loaded(proc.pid) == ["success"]
    log = wait_for(lambda: "rejected: " in schedulers.log(proc) and schedulers.log(proc), "the summary", pid=proc.pid)
    assert "station without a valid id (3)" in log and "text field too long (1)" in log
    engine = create_engine(schedulers.settings.database_url, poolclass=NullPool)
    try:
        assert etl_runs(engine)[-1].rejected == sum(HOSTILE_REJECTIONS.values())
    finally:
        engine.dispose()
    assert proc.poll() is None, "the scheduler must keep running after a pass over a hostile feed"

    assert stop(proc) == 0
    assert "Traceback" not in schedulers.log(proc)


# --------------------------------------------------------------------------- ensure_scheduler


def test_ensure_scheduler_starts_one_detached_scheduler_and_prunes_old_logs(schedulers: Schedulers):
    settings = schedulers.settings
    settings.outputs_dir.mkdir(parents=True)
    old = settings.outputs_dir / "etl-20000101-000000-000000.log"
    recent = settings.outputs_dir / "etl-20000102-000000-000000.log"
    unrelated = settings.outputs_dir / "notes.txt"
    for path in (old, recent, unrelated):
        path.write_text("earlier\n")
    set_mtime(old, 2 * ONE_DAY)
    set_mtime(recent, ONE_DAY - 3600)
    set_mtime(unrelated, 2 * ONE_DAY)

    pid = schedulers.adopt(scheduler.ensure_scheduler(settings))

    assert pid != os.getpid()
    assert pidfile.read_pid(settings.pid_file) == pid
    assert pidfile.is_scheduler(pid)
    assert os.getsid(pid) == pid, "the scheduler runs in its own session, detached from the caller"
    assert not old.exists(), "logs older than a day are deleted"
    assert recent.exists() and unrelated.exists()
    (log,) = output_logs(settings) - {recent}
    assert LOG_NAME.fullmatch(log.name)

    assert schedulers.wait_until_loaded(pid, log) == ["success"]
    wait_for(lambda: "loaded 60 stations" in log.read_text(), "the pass in the scheduler's log", pid=pid)
    assert "scheduler started" in log.read_text()

    assert scheduler.ensure_scheduler(settings) == pid, "a second call finds the running scheduler"
    assert output_logs(settings) == {recent, log}, "the second call started nothing"
    assert serve_processes(settings.data_dir) == [pid]


def test_nothing_the_scheduler_writes_in_the_data_dir_is_readable_by_other_users(schedulers: Schedulers, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the scheduler downloads from the test's own server
    data_dir = schedulers.settings.data_dir
    download_modes: list[int] = []

    def feed_a_noting_the_download_mode(handler: FeedHandler, _number: int) -> None:
        # The scheduler creates its temporary file before it sends the request, and removes it after the pass.
        download_modes.extend(stat.S_IMODE(path.stat().st_mode) for path in data_dir.glob("feed-*.download"))
        send(handler, FEED_A_BYTES)

    server = FeedServer(feed_a_noting_the_download_mode)
    umask = os.umask(0o022)  # the usual default: files readable by everyone unless created otherwise
    try:
        settings = dataclasses.replace(schedulers.settings, feed_url=server.url)
        pid = schedulers.adopt(scheduler.ensure_scheduler(settings))
        schedulers.wait_until_loaded(pid)
        # An open connection keeps SQLite's -wal and -shm files in place while the modes are read.
        with create_engine(settings.database_url, poolclass=NullPool).connect() as conn:
            conn.execute(text("SELECT count(*) FROM stations"))
            modes = {str(path.relative_to(data_dir)): stat.S_IMODE(path.stat().st_mode) for path in data_dir.rglob("*")}
    finally:
        os.umask(umask)
        server.stop()

    assert download_modes == [0o600]
    (log,) = output_logs(settings)
    assert modes == {
        "outputs": 0o700,
        f"outputs/{log.name}": 0o600,
        "db.sqlite3": 0o600,
        "db.sqlite3-wal": 0o600,
        "db.sqlite3-shm": 0o600,
        "etl.pid": 0o600,
        "etl.pid.lock": 0o600,
    }


def test_ensure_scheduler_replaces_a_stale_pid_file(schedulers: Schedulers):
    gone = dead_pid()
    schedulers.pid_file.write_text(f"{gone}\n")

    pid = schedulers.adopt(scheduler.ensure_scheduler(schedulers.settings))

    assert pid != gone
    assert pidfile.read_pid(schedulers.pid_file) == pid
    schedulers.wait_until_loaded(pid)
    assert serve_processes(schedulers.settings.data_dir) == [pid]


def test_ten_concurrent_threads_start_exactly_one_scheduler(schedulers: Schedulers):
    settings = schedulers.settings
    barrier = threading.Barrier(10)
    results: list[int] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            barrier.wait(timeout=DEADLINE_SECONDS)
            results.append(scheduler.ensure_scheduler(settings))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=DEADLINE_SECONDS)
    for pid in set(results):
        schedulers.adopt(pid)

    assert not any(thread.is_alive() for thread in threads), "ensure_scheduler hung"
    assert errors == []
    assert len(results) == 10 and len(set(results)) == 1, results
    (pid,) = set(results)
    assert len(output_logs(settings)) == 1, "one log file per started scheduler"
    assert pidfile.read_pid(settings.pid_file) == pid
    assert schedulers.wait_until_loaded(pid) == ["success"]
    assert serve_processes(settings.data_dir) == [pid]


def test_ten_concurrent_processes_start_exactly_one_scheduler(schedulers: Schedulers):
    settings = schedulers.settings
    code = "from ingest import scheduler; print(scheduler.ensure_scheduler())"
    callers = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=schedulers.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(10)
    ]
    outputs = []
    try:
        for caller in callers:
            outputs.append(caller.communicate(timeout=60))
    finally:
        for caller in callers:
            if caller.poll() is None:
                caller.kill()
                caller.wait()
    pids = {int(out.strip()) for out, _ in outputs if out.strip().isdigit()}
    for pid in pids:
        schedulers.adopt(pid)

    assert [caller.returncode for caller in callers] == [0] * 10, [err for _, err in outputs]
    assert len(pids) == 1, outputs
    (pid,) = pids
    assert len(output_logs(settings)) == 1, "one log file per started scheduler"
    assert pidfile.read_pid(settings.pid_file) == pid
    assert schedulers.wait_until_loaded(pid) == ["success"]
    assert serve_processes(settings.data_dir) == [pid]


def test_ensure_scheduler_serves_the_data_dir_of_the_settings_it_is_given(schedulers: Schedulers, tmp_path: Path):
    env_settings = schedulers.settings  # what the environment says
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    given = load_settings({**os.environ, "CARBUROAM_DATA_DIR": str(other_dir)})

    pid = schedulers.adopt(scheduler.ensure_scheduler(given))

    assert pidfile.read_pid(given.pid_file) == pid
    loaded = wait_for(
        lambda: [s.data_dir for s in (given, env_settings) if "success" in run_statuses(s.database_url)],
        "a pass in either data dir",
        pid=pid,
    )
    assert loaded == [given.data_dir], "the scheduler loaded the environment's database, not the given one"


# --------------------------------------------------------------------------- pidfile


def test_write_pid_refuses_while_a_live_scheduler_owns_the_file(schedulers: Schedulers):
    proc = schedulers.start()
    wait_for(lambda: pidfile.read_pid(schedulers.pid_file) == proc.pid, "the pid file", pid=proc.pid)
    pid_file = schedulers.pid_file

    with pidfile.locked(pid_file), pytest.raises(pidfile.AlreadyRunning) as refused:
        pidfile.write_pid(pid_file, os.getpid())
    assert refused.value.pid == proc.pid
    assert str(proc.pid) in str(refused.value)
    with pytest.raises(pidfile.AlreadyRunning):
        pidfile.acquire(pid_file)
    assert pidfile.read_pid(pid_file) == proc.pid
    assert pidfile.running_scheduler(pid_file) == proc.pid


def test_release_removes_only_a_file_naming_this_process(tmp_path: Path):
    pid_file = tmp_path / "etl.pid"
    pidfile.release(pid_file)  # no file: nothing to do

    pid_file.write_text(f"{os.getppid()}\n")
    pidfile.release(pid_file)
    assert pidfile.read_pid(pid_file) == os.getppid()

    pid_file.unlink()
    pidfile.acquire(pid_file)
    assert pidfile.read_pid(pid_file) == os.getpid()
    pidfile.release(pid_file)
    assert not pid_file.exists()


def test_is_scheduler_recognises_only_a_live_etl_serve(tmp_path: Path):
    assert pidfile.is_scheduler(None) is False
    assert pidfile.is_scheduler(os.getpid()) is False, "pytest is not a scheduler"
    assert pidfile.is_scheduler(dead_pid()) is False

    unrelated = blocker(tmp_path)
    lookalike = blocker(tmp_path, "fake/etl.py", "serve")  # same command line as a scheduler
    try:
        assert pidfile.is_scheduler(unrelated.pid) is False
        assert pidfile.is_scheduler(lookalike.pid) is True

        lookalike.stdin.close()  # it exits; not reaped, so it stays a zombie
        wait_for(lambda: psutil.Process(lookalike.pid).status() == psutil.STATUS_ZOMBIE, "the zombie", timeout=20)
        assert pidfile.is_scheduler(lookalike.pid) is False
        lookalike.wait(timeout=DEADLINE_SECONDS)
        assert pidfile.is_scheduler(lookalike.pid) is False
    finally:
        stop_blocker(lookalike)
        stop_blocker(unrelated)


def test_a_pid_file_naming_a_negative_pid_is_stale(tmp_path: Path):
    pid_file = tmp_path / "etl.pid"
    pid_file.write_text("-1\n")
    assert pidfile.running_scheduler(pid_file) is None
    pidfile.acquire(pid_file)
    assert pidfile.read_pid(pid_file) == os.getpid()


# --------------------------------------------------------------------------- scheduler status


@pytest.fixture
def status_engine(sqlite_settings: Settings):
    """An initialised engine on the test's database (the one the `schedulers` of the same test use)."""
    engine = make_engine(sqlite_settings.database_url)
    init_db(engine)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("pid_file", ["missing", "garbage", "dead pid", "unrelated live pid"])
def test_scheduler_status_without_a_running_scheduler(schedulers: Schedulers, status_engine, pid_file: str):
    content = {"garbage": "not a pid\n", "dead pid": f"{dead_pid()}\n", "unrelated live pid": f"{os.getpid()}\n"}
    if pid_file in content:
        schedulers.pid_file.write_text(content[pid_file])

    status = scheduler.scheduler_status(schedulers.settings, status_engine)

    assert status == scheduler.SchedulerStatus(
        alive=False,
        pid=None,
        host=socket.gethostname(),
        started_at=None,
        next_pass_at=None,
        last_run=None,
        last_failure=None,
    )


def test_scheduler_status_of_a_live_scheduler(schedulers: Schedulers, status_engine):
    before = scheduler.utcnow().replace(microsecond=0)  # process start times are rounded to the clock tick
    proc = schedulers.start()
    schedulers.wait_until_loaded(proc.pid)

    status = scheduler.scheduler_status(schedulers.settings, status_engine)

    assert (status.alive, status.pid) == (True, proc.pid)
    assert before - dt.timedelta(seconds=1) <= status.started_at <= scheduler.utcnow()
    assert (status.last_run.status, status.last_run.kind) == ("success", "run")
    assert status.next_pass_at == status.last_run.finished_at + dt.timedelta(seconds=INTERVAL)

    two_hours_ago = scheduler.utcnow() - dt.timedelta(hours=2)
    with writer(status_engine).begin() as conn:
        conn.execute(update(EtlRun).values(started_at=two_hours_ago, finished_at=two_hours_ago))
    asked = scheduler.utcnow()
    overdue = scheduler.scheduler_status(schedulers.settings, status_engine)
    assert asked <= overdue.next_pass_at <= scheduler.utcnow(), "a pass that is due is due now"

    assert stop(proc) == 0
    assert scheduler.scheduler_status(schedulers.settings, status_engine).alive is False


# --------------------------------------------------------------------------- one scheduled pass


@pytest.fixture
def due(sqlite_settings: Settings):
    """Settings with a one-hour interval and a two-minute retry, and an initialised engine."""
    settings = dataclasses.replace(sqlite_settings, interval_seconds=INTERVAL, retry_seconds=120)
    engine = make_engine(settings.database_url)
    init_db(engine)
    yield settings, engine
    engine.dispose()


def test_scheduled_pass_runs_only_when_due(due):
    settings, engine = due
    assert scheduler.next_pass_in(engine, settings) == 0.0, "a fresh database is due at once"

    assert scheduler._scheduled_pass(engine, settings) == INTERVAL
    assert run_statuses(settings.database_url) == ["success"]

    wait = scheduler.next_pass_in(engine, settings)
    assert INTERVAL - 60 < wait <= INTERVAL
    assert INTERVAL - 60 < scheduler._scheduled_pass(engine, settings) <= INTERVAL
    assert run_statuses(settings.database_url) == ["success"], "nothing runs before the interval is over"

    half_an_hour_ago = scheduler.utcnow() - dt.timedelta(minutes=30)
    with writer(engine).begin() as conn:
        conn.execute(update(EtlRun).values(started_at=half_an_hour_ago, finished_at=half_an_hour_ago))
    assert INTERVAL / 2 - 60 < scheduler.next_pass_in(engine, settings) <= INTERVAL / 2

    two_hours_ago = scheduler.utcnow() - dt.timedelta(hours=2)
    with writer(engine).begin() as conn:
        conn.execute(update(EtlRun).values(started_at=two_hours_ago, finished_at=two_hours_ago))
    assert scheduler.next_pass_in(engine, settings) == 0.0
    assert scheduler._scheduled_pass(engine, settings) == INTERVAL
    assert run_statuses(settings.database_url) == ["success", "success"]


def _broken_feed(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / f"broken-{kind}"
    if kind == "truncated-zip":
        data = (FIXTURES / "feed_a.zip").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "html":
        path.write_text("<!DOCTYPE html><html><body>maintenance</body></html>")
    elif kind == "empty":
        path.write_bytes(b"")
    return path  # "missing": never created


@pytest.mark.parametrize("kind", ["missing", "truncated-zip", "html", "empty"])
def test_scheduled_pass_failure_is_recorded_logged_and_retried(due, tmp_path, caplog, kind):
    settings, engine = due
    settings = dataclasses.replace(settings, feed_url=str(_broken_feed(kind, tmp_path)))

    with caplog.at_level(logging.ERROR, logger="etl"):
        assert scheduler._scheduled_pass(engine, settings) == 120, "retry after retry_seconds"
    assert run_statuses(settings.database_url) == ["failed"]
    assert any(r.name == "etl" and "run failed" in r.getMessage() for r in caplog.records)

    short = dataclasses.replace(settings, interval_seconds=60)
    assert scheduler._scheduled_pass(engine, short) == 60, "the retry never waits longer than the interval"


@pytest.mark.parametrize(
    ("module", "where"),
    [(passes, "load_snapshot"), (scheduler, "run_pass")],
    ids=["inside-the-pass", "around-the-pass"],
)
def test_scheduled_pass_survives_an_unexpected_error_and_records_it(due, monkeypatch, caplog, module, where: str):
    settings, engine = due
    working = getattr(module, where)

    def bug(*_args, **_kwargs):
        raise RuntimeError("a bug nobody foresaw")

    monkeypatch.setattr(module, where, bug)
    with caplog.at_level(logging.ERROR, logger="etl"):
        assert scheduler._scheduled_pass(engine, settings) == 120, "retry after retry_seconds instead of dying"
    (run,) = etl_runs(engine)
    assert (run.status, run.error) == (
        "failed",
        "unexpected error (see the ETL log): RuntimeError: a bug nobody foresaw",
    )
    assert any(record.exc_info and record.exc_info[0] is RuntimeError for record in caplog.records), "no traceback"
    assert table_rows(engine) == {model.__tablename__: [] for model in DATA_TABLES}

    monkeypatch.setattr(module, where, working)
    assert scheduler._scheduled_pass(engine, settings) == INTERVAL, "the next pass works once the cause is gone"
    assert run_statuses(settings.database_url) == ["failed", "success"]


def test_a_job_s_unforeseen_error_is_recorded_and_the_price_pass_keeps_its_schedule(due, caplog):
    settings, engine = due

    def bug(_engine):
        raise RuntimeError("a bug nobody foresaw")

    job = scheduler.Job(kind="backup", source="somewhere", interval_seconds=ONE_DAY, run=bug)
    with caplog.at_level(logging.ERROR, logger="etl"):
        wait = scheduler._scheduled_work(engine, settings)
        assert INTERVAL - 60 < scheduler._scheduled_jobs(engine, [job], wait) <= wait

    runs = [(run.kind, run.status, run.source, run.error) for run in etl_runs(engine)]
    assert runs == [
        ("run", "success", settings.feed_url, None),
        ("backup", "failed", "somewhere", "unexpected error (see the ETL log): RuntimeError: a bug nobody foresaw"),
    ]
    assert any(record.exc_info and record.exc_info[0] is RuntimeError for record in caplog.records), "no traceback"
    assert scheduler.job_due(engine, job), "a failed job is due again at the next wake-up"


# --------------------------------------------------------------------------- replicas on one PostgreSQL database


def finished_runs(database_url: str) -> list[tuple[dt.datetime, dt.datetime]]:
    """(started_at, finished_at) of every successful run, in the order they started."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            query = "SELECT started_at, finished_at FROM etl_runs WHERE status = 'success' ORDER BY started_at"
            return [tuple(row) for row in conn.execute(text(query))]
    except (OperationalError, ProgrammingError):  # the first scheduler has not created the table yet
        return []
    finally:
        engine.dispose()


@pytest.mark.postgresql
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_replicas_sharing_a_postgresql_database_run_passes_one_at_a_time_and_a_stand_by_takes_over(tmp_path, settings):
    replicas = Schedulers(tmp_path, settings)
    fast = {"ETL_INTERVAL_SECONDS": "1", "ETL_LEASE_RETRY_SECONDS": "1"}
    try:
        leader = replicas.start(**fast)
        wait_for(lambda: finished_runs(settings.database_url), "the leader's first pass", pid=leader.pid)
        other_data_dir = tmp_path / "replica-b"
        stand_by = replicas.start(**fast, CARBUROAM_DATA_DIR=str(other_data_dir))
        wait_for(lambda: "standing by" in replicas.log(stand_by), "the second replica to stand by", pid=stand_by.pid)
        passes_so_far = len(finished_runs(settings.database_url))
        wait_for(lambda: len(finished_runs(settings.database_url)) >= passes_so_far + 3, "three more passes")
        assert "loaded " not in replicas.log(stand_by), "only the leader runs passes"
        assert (other_data_dir / "etl.pid").exists(), "each machine has its own scheduler"

        leader.kill()
        leader.wait(timeout=DEADLINE_SECONDS)
        killed_at = dt.datetime.now(dt.UTC)
        wait_for(
            lambda: any(started > killed_at for started, _ in finished_runs(settings.database_url)),
            "a pass by the stand-by after the leader died",
            pid=stand_by.pid,
            log=replicas.logs[stand_by.pid],
        )
        assert "took over the passes of this database" in replicas.log(stand_by)
    finally:
        replicas.cleanup()

    runs = finished_runs(settings.database_url)
    overlapping = [(a, b) for a, b in itertools.pairwise(runs) if b[0] < a[1]]
    assert overlapping == [], "two passes ran at the same time"


@pytest.mark.postgresql
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_leader_whose_connection_is_cut_loses_the_lease_to_a_stand_by(engine):
    leader, stand_by = Lease(engine), Lease(engine)
    try:
        assert leader.held()
        assert not stand_by.held(), "one leader per database"
        assert leader.held(), "a leader keeps its lease"

        with engine.connect() as admin:  # the server ends the leader's session, as a network cut would
            admin.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objid = :key"),
                {"key": LEASE_KEY},
            )

        assert stand_by.held(), "the lease is free once the leader's session ended"
        assert not leader.held(), "the old leader stands by"
    finally:
        leader.release()
        stand_by.release()


def test_on_sqlite_the_pid_file_alone_decides(sqlite_settings):
    engine = make_engine(sqlite_settings.database_url)
    first, second = Lease(engine), Lease(engine)
    assert first.held() and second.held()
    first.release()
    second.release()
    engine.dispose()


def test_a_sleeping_scheduler_answers_a_price_update_asked_for_within_seconds(schedulers, monkeypatch):
    monkeypatch.setenv("ETL_REQUEST_POLL_SECONDS", "1")
    proc = schedulers.start()
    schedulers.wait_until_loaded(proc.pid)
    url = schedulers.settings.database_url
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:  # what the admin page writes
            conn.execute(PassRequest.__table__.insert(), {"requested_at": dt.datetime.now(dt.UTC), "requested_by": 1})

        wait_for(lambda: run_statuses(url) == ["success", "success"], "the pass asked for", pid=proc.pid)

        def outcome() -> str | None:
            with engine.connect() as conn:
                return conn.scalar(select(PassRequest.outcome))

        answered = wait_for(outcome, "the answer", pid=proc.pid)
    finally:
        engine.dispose()
    assert answered.startswith("loaded 60 stations and "), (
        "the interval is an hour: only the request explains this pass"
    )


class SignalsItselfWhenCollected:
    """An object whose finaliser sends this process SIGTERM, which Python then handles inside the finaliser,
    as when a signal lands while a weakref callback runs."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # bytecodes at which Python runs the handler, still inside the finaliser
            pass


def test_a_signal_handled_inside_a_finaliser_still_stops_the_work_under_way(due, capsys, caplog):
    settings, _engine = due
    finished = []

    def alerts(_engine):
        SignalsItselfWhenCollected()
        time.sleep(DEADLINE_SECONDS)  # the rest of the job, which the signal must cut short
        finished.append(True)
        return "alerts sent"

    job = scheduler.Job(kind="alerts", source="test", interval_seconds=0, run=alerts)
    with caplog.at_level(logging.INFO, logger="etl"):
        assert scheduler.serve(settings, after_pass=[job]) == 0

    assert finished == [], "the signal must stop the work under way, not only the loop after it"
    assert "pass interrupted" in caplog.text
    assert "Traceback" not in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "serve gives the signals back when it returns"
    assert run_statuses(settings.database_url) == ["success"], "the price pass before the job stays"
