"""Account work done after the page has answered, on one worker thread.

Asking for a reset code or a username reminder must answer in the same time whether the account
exists or not, so the page only queues the request; looking the account up and mailing it happen
here. One worker per process keeps the mails of a burst of requests in order and bounded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger(__name__)


class Background:
    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="accounts-background")

    def submit(self, what: str, work: Callable[[], None]) -> Future:
        """Run `work` on the worker; a failure is logged (nobody is waiting for it), and kept in the future."""

        def logged() -> None:
            try:
                work()
            except Exception:  # the page has answered already: the log is the only place left to say it
                log.exception("could not %s", what)
                raise

        return self._executor.submit(logged)
