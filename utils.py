"""Small helpers: time zones, the clock, one-line error messages, text folding for search, distances and
boxes around a point, a postcode's department, the advisory lock file that guards a file shared between
processes, and holding the garbage collector off during a burst of allocations."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import gc
import math
import os
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

VERSION = "0.1.0"
UTC = dt.UTC
PARIS = ZoneInfo("Europe/Paris")
EARTH_RADIUS_KM = 6371.0088  # mean radius


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


def first_line(exc: BaseException, limit: int = 500) -> str:
    """The first line of an error's message (of the driver's error, for a database error), for one-line reports."""
    text = str(getattr(exc, "orig", None) or exc) or type(exc).__name__
    return text.splitlines()[0][:limit]


_NOT_WORD = re.compile(r"[^a-z0-9]+")


class _UnaccentedChars(dict):
    """str.translate's table: each character decomposed (NFKD) without its combining marks, made on first use.

    Decomposing character by character then dropping every combining mark gives what decomposing the
    whole text does (canonical reordering only moves combining marks), at a dictionary lookup a character.
    """

    def __missing__(self, code: int) -> str:
        decomposed = unicodedata.normalize("NFKD", chr(code))
        plain = self[code] = "".join(c for c in decomposed if not unicodedata.combining(c))
        return plain


_UNACCENTED = _UnaccentedChars({ord("œ"): "oe", ord("Œ"): "OE"})


def fold(text: str) -> str:
    """Lower case, no accents, words separated by single spaces: 'Saint-Étienne' -> 'saint etienne'."""
    plain = text if text.isascii() else text.translate(_UNACCENTED)
    return _NOT_WORD.sub(" ", plain.lower()).strip()


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two points given in degrees."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    half_dphi, half_dlambda = math.radians(lat2 - lat1) / 2, math.radians(lon2 - lon1) / 2
    a = math.sin(half_dphi) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(half_dlambda) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(a, 1.0)))


def bounding_box(latitude: float, longitude: float, radius_km: float) -> tuple[float, float, float, float]:
    """(south, west, north, east) of the smallest box holding the circle (Matuschek's method)."""
    angle = radius_km / EARTH_RADIUS_KM
    spread = math.sin(angle) / max(math.cos(math.radians(latitude)), 1e-12)
    half_width = 180.0 if spread >= 1 else math.degrees(math.asin(spread))
    half_height = math.degrees(angle)
    return latitude - half_height, longitude - half_width, latitude + half_height, longitude + half_width


def department_of_postcode(postcode: str | None) -> str | None:
    """'69001' -> '69'; Corsica '20090' -> '2A', '20200' -> '2B'; overseas '97411' -> '974'; None when unreadable.

    Corsica's postcodes run 20000-20199 in Corse-du-Sud and 20200-20699 in Haute-Corse; overseas
    departments (971-976) take three digits.
    """
    code = (postcode or "").strip()
    if len(code) != 5 or not code.isdigit() or code.startswith("00"):
        return None
    if code.startswith("20"):
        return "2A" if int(code) < 20200 else "2B"
    if code.startswith("97"):
        return code[:3]
    return code[:2]


@contextlib.contextmanager
def collector_held() -> Iterator[None]:
    """Hold the cyclic garbage collector off for the block's length (as it was before, after it).

    For work that makes many objects that live on, or none that make cycles: the collector would
    go through them again and again, freeing nothing.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


@contextlib.contextmanager
def lock_beside(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path`'s sibling `.lock` file (owner-only), for the block's length.

    Opening the lock file raises OSError before the block runs; closing it releases the lock, even
    when the process dies.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
