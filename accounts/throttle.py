"""Sign-in throttling: after 5 wrong passwords in a row for a name, each further try waits longer.

The state lives in the `sign_in_throttle` table, keyed by a digest of the name, whether or not an
account has that name: unknown names get exactly the answers known ones get, and the count
survives restarts and is shared by every process on the database.

An attempt is *reserved* before its password is checked: one short transaction, serialised per
name (a row lock on PostgreSQL, the write lock on SQLite), reads the wait and counts the attempt
as a failure. Only then does bcrypt run, outside any lock; a right password clears the count. So
however many attempts arrive at once, at most `FREE_FAILURES` passwords are checked before the
wait starts, and no lock is held for the quarter of a second a bcrypt check takes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from accounts.errors import SignInThrottled
from models import SignInThrottle
from session import dialect_insert

FREE_FAILURES = 5  # consecutive wrong passwords before waits start
FIRST_WAIT_SECONDS = 30  # the wait after the 5th failure, doubled at each further one
MAX_WAIT_SECONDS = 3600
FORGOTTEN_AFTER = dt.timedelta(days=1)  # rows of names not tried for this long are pruned


def wait_after(failures: int) -> int:
    """Seconds to wait after `failures` consecutive wrong passwords."""
    if failures < FREE_FAILURES:
        return 0
    return min(FIRST_WAIT_SECONDS * 2 ** (failures - FREE_FAILURES), MAX_WAIT_SECONDS)


def throttle_key(name: str) -> str:
    return hashlib.blake2b(name.encode(), digest_size=16).hexdigest()


class Throttle:
    def __init__(self, writer: sessionmaker) -> None:
        self._writer = writer

    def reserve(self, name: str, now: dt.datetime) -> None:
        """Count an attempt for `name` as failed until `clear`; SignInThrottled while a wait is pending."""
        key = throttle_key(name)
        with self._writer.begin() as session:
            new_row = dialect_insert(session.get_bind().dialect.name, SignInThrottle).values(
                key=key, failures=0, updated_at=now
            )
            created = session.execute(new_row.on_conflict_do_nothing(index_elements=[SignInThrottle.key])).rowcount
            if created:
                session.execute(delete(SignInThrottle).where(SignInThrottle.updated_at < now - FORGOTTEN_AFTER))
            row = session.scalars(select(SignInThrottle).where(SignInThrottle.key == key).with_for_update()).one()
            if row.not_before is not None and row.not_before > now:
                raise SignInThrottled(math.ceil((row.not_before - now).total_seconds()))
            row.failures += 1
            wait = wait_after(row.failures)
            row.not_before = now + dt.timedelta(seconds=wait) if wait else None
            row.updated_at = now

    def clear(self, name: str) -> None:
        """Forget the failures of `name`: its password was right, or was reset."""
        with self._writer.begin() as session:
            forget(session, name)


def forget(session: Session, name: str) -> None:
    session.execute(delete(SignInThrottle).where(SignInThrottle.key == throttle_key(name)))
