"""Small helpers for tests that run real servers and real threads on this machine."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


def free_port() -> int:
    """A port nothing listens on (bound then released at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_together(count: int, work: Callable[[int], object]) -> None:
    """Run `work(0..count-1)` in threads released at the same instant; re-raise the first error."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
