"""A pid file that names the one running ETL scheduler.

Created atomically (O_CREAT|O_EXCL). A file left behind by a dead process, or
naming a live process that is not an ETL scheduler (the pid was reused), is
stale and gets replaced. Checking and replacing happen under an advisory lock
on a sibling `.lock` file, so two processes can never both take over a stale
file. Only the owner ever removes the file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from pathlib import Path

import psutil

from utils import lock_beside

SCHEDULER_MARKERS = ("etl.py", "serve")
EXEC_GRACE_SECONDS, EXEC_RETRY_SECONDS = 1.0, 0.01


class AlreadyRunning(Exception):
    def __init__(self, pid: int):
        super().__init__(f"an ETL scheduler is already running (pid {pid})")
        self.pid = pid


def locked(pid_file: Path) -> contextlib.AbstractContextManager[None]:
    """Hold the advisory lock that guards reading and writing `pid_file`."""
    return lock_beside(pid_file)


def read_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid > 0 else None


def is_scheduler(pid: int | None) -> bool:
    """Whether `pid` is a live `etl.py serve` process."""
    if pid is None:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = process.cmdline()
        # A process caught in the middle of exec() shows an empty command line for an instant;
        # only a process that has just started can be in that state (kernel threads always are).
        while not cmdline and time.time() - process.create_time() < EXEC_GRACE_SECONDS:
            time.sleep(EXEC_RETRY_SECONDS)
            cmdline = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return any(arg.endswith(SCHEDULER_MARKERS[0]) for arg in cmdline) and SCHEDULER_MARKERS[1] in cmdline


def running_scheduler(pid_file: Path) -> int | None:
    pid = read_pid(pid_file)
    return pid if is_scheduler(pid) else None


def started_at(pid: int) -> dt.datetime | None:
    """When process `pid` started (aware UTC), or None when it no longer exists."""
    try:
        return dt.datetime.fromtimestamp(psutil.Process(pid).create_time(), dt.UTC)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def write_pid(pid_file: Path, pid: int) -> None:
    """Create `pid_file` holding `pid`, replacing it only when it is stale. Call under `locked()`."""
    owner = read_pid(pid_file)
    if owner is not None and owner != pid and is_scheduler(owner):
        raise AlreadyRunning(owner)
    if pid_file.exists() and owner != pid:
        pid_file.unlink()
    if owner == pid:
        return
    fd = os.open(pid_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{pid}\n")


def acquire(pid_file: Path) -> None:
    """Make `pid_file` name this process, or raise AlreadyRunning."""
    with locked(pid_file):
        write_pid(pid_file, os.getpid())


def release(pid_file: Path) -> None:
    """Remove `pid_file` if, and only if, it names this process."""
    with locked(pid_file):
        if read_pid(pid_file) == os.getpid():
            pid_file.unlink(missing_ok=True)
