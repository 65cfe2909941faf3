"""A backfill's progress: one backfill_progress row per file, moved forward in the transaction of each batch it
commits, so that the admin page shows how far it went and running the same file again resumes after the
stations already committed. The terminal's bar is the caller's: it gets each step through `on_step`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.orm import Session

from ingest.source import FeedIdentity
from models import BackfillProgress
from session import writer
from utils import utcnow

LOADING, AGGREGATES, DONE = "loading", "aggregates", "done"
Step = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass
class Tracker:
    """The progress row of the backfill under way; `resume_after` stations were committed by an earlier attempt."""

    row_id: int
    resume_after: int
    stations_done: int
    on_step: Step | None = None

    def step(self, conn: Connection, phase: str, done: int, total: int, stations: int = 0) -> None:
        """Record progress in the caller's transaction (it commits with the work it describes)."""
        self.stations_done += stations
        conn.execute(
            update(BackfillProgress)
            .where(BackfillProgress.id == self.row_id)
            .values(phase=phase, done=done, total=total, stations_done=self.stations_done, updated_at=utcnow())
        )
        if self.on_step is not None:
            self.on_step(phase, done, total)


def start(engine: Engine, source: str, identity: FeedIdentity, started: dt.datetime, on_step: Step | None) -> Tracker:
    """The progress of backfilling this file: an unfinished attempt's on the same file, else a new row."""
    with writer(engine).begin() as conn:
        earlier = conn.execute(
            select(BackfillProgress.id, BackfillProgress.stations_done)
            .where(
                BackfillProgress.feed_size == identity.size,
                BackfillProgress.feed_crc32 == identity.crc32,
                BackfillProgress.phase != DONE,
            )
            .order_by(BackfillProgress.id.desc())
            .limit(1)
        ).first()
        if earlier is not None:
            conn.execute(update(BackfillProgress).where(BackfillProgress.id == earlier.id).values(source=source))
            return Tracker(earlier.id, earlier.stations_done, earlier.stations_done, on_step)
        row = {
            "source": source,
            "feed_size": identity.size,
            "feed_crc32": identity.crc32,
            "started_at": started,
            "updated_at": started,
            "phase": LOADING,
            "done": 0,
            "total": identity.size,
            "stations_done": 0,
        }
        row_id = conn.execute(BackfillProgress.__table__.insert().returning(BackfillProgress.id), row).scalar_one()
    return Tracker(row_id, 0, 0, on_step)


def latest(session: Session) -> BackfillProgress | None:
    """The newest backfill's progress, for the admin page."""
    return session.scalars(select(BackfillProgress).order_by(BackfillProgress.id.desc()).limit(1)).first()
