"""An independent reading of feed files, with the standard library only (zipfile, re, xml.etree).

Tests compute their expected values with this reader, never with the project's own parser,
so it must not import anything from the project.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import zipfile
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

UTC = dt.UTC
PARIS = ZoneInfo("Europe/Paris")
MILLI = Decimal("0.001")


@dataclass
class RawStation:
    """A station's details as the file writes them."""

    cp: str
    pop: str
    latitude: str
    longitude: str
    address: str
    town: str
    services: list[str]
    has_hours: bool
    automate: bool


@dataclass
class Feed:
    """What a feed file says, read with the standard library only."""

    stations: set[int] = field(default_factory=set)
    # station -> its details as written in the file
    details: dict[int, RawStation] = field(default_factory=dict)
    # (station, fuel, maj in UTC) -> euros; plausible observations only, first one kept
    observations: dict[tuple[int, int, dt.datetime], Decimal] = field(default_factory=dict)
    # (station, fuel, maj) keys the file lists more than once with different prices
    conflicts: set[tuple[int, int, dt.datetime]] = field(default_factory=set)
    # <prix> elements with attributes left out of `observations` (implausible price, bad date or unknown fuel)
    rejected: int = 0
    # (station, fuel) -> (started UTC or None, ended UTC or None, kind or None), the latest start wins
    ruptures: dict[tuple[int, int], tuple] = field(default_factory=dict)

    @property
    def rupture_pairs(self) -> set[tuple[int, int]]:
        return set(self.ruptures)

    @functools.cached_property
    def current(self) -> dict[tuple[int, int], tuple[Decimal, dt.datetime]]:
        newest: dict[tuple[int, int], tuple[Decimal, dt.datetime]] = {}
        for (station, fuel, maj), price in self.observations.items():
            if (station, fuel) not in newest or maj > newest[(station, fuel)][1]:
                newest[(station, fuel)] = (price, maj)
        return newest


def xml_bytes(path: Path) -> bytes:
    """The XML document of a feed file, from inside its zip archive or as it is."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            (name,) = [n for n in archive.namelist() if n.lower().endswith(".xml")]
            return archive.read(name)
    return path.read_bytes()


def _utc(raw: str | None) -> dt.datetime | None:
    """A Paris wall-clock time as UTC; None when empty, malformed or before 2000."""
    if not raw:
        return None
    try:
        wall = dt.datetime.fromisoformat(raw)
    except ValueError:
        return None
    return wall.replace(tzinfo=PARIS).astimezone(UTC) if wall.year >= 2000 else None


def _euros(raw: str, file_in_thousandths: bool) -> Decimal | None:
    """A decimal point means euros, 100 or more means thousandths; plausible means 0.10 < euros <= 5.00."""
    raw = raw.strip()
    if "." in raw:
        value = Decimal(raw)
    elif int(raw) >= 100 or file_in_thousandths:
        value = Decimal(raw) / 1000
    else:
        value = Decimal(raw)
    return value.quantize(MILLI) if Decimal("0.10") < value <= Decimal("5.00") else None


def read_feed(path: Path) -> Feed:
    data = xml_bytes(path)
    in_thousandths = len(re.findall(rb'valeur="\d{3,}"', data)) > len(re.findall(rb'valeur="[\d.]*\.', data))
    feed = Feed()
    for pdv in ElementTree.fromstring(data).iter("pdv"):
        station = int(pdv.get("id"))
        horaires = pdv.find("horaires")
        feed.stations.add(station)
        feed.details[station] = RawStation(
            cp=pdv.get("cp"),
            pop=pdv.get("pop"),
            latitude=pdv.get("latitude"),
            longitude=pdv.get("longitude"),
            address=pdv.findtext("adresse") or "",
            town=pdv.findtext("ville") or "",
            services=[s.text.strip() for s in pdv.iter("service") if s.text and s.text.strip()],
            has_hours=horaires is not None or pdv.find("ouverture") is not None,
            automate=horaires is not None and horaires.get("automate-24-24") == "1",
        )
        for prix in pdv.iter("prix"):
            if not prix.attrib:
                continue
            fuel = int(prix.get("id", 0))
            if fuel not in range(1, 7):
                feed.rejected += 1
                continue
            price, maj = _euros(prix.get("valeur"), in_thousandths), _utc(prix.get("maj"))
            if price is None or maj is None:
                feed.rejected += 1
                continue
            key = (station, fuel, maj)
            if feed.observations.setdefault(key, price) != price:
                feed.conflicts.add(key)
        for rupture in pdv.iter("rupture"):
            if not rupture.attrib:
                continue
            key = (station, int(rupture.get("id")))
            started = _utc(rupture.get("debut"))
            kind = rupture.get("type") if rupture.get("type") in ("temporaire", "definitive") else None
            never = dt.datetime.min.replace(tzinfo=UTC)
            if key not in feed.ruptures or (started or never) >= (feed.ruptures[key][0] or never):
                feed.ruptures[key] = (started, _utc(rupture.get("fin")), kind)
    return feed
