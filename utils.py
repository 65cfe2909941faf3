"""Small pure helpers: time zones and the clock."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

UTC = dt.UTC
PARIS = ZoneInfo("Europe/Paris")


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)
