"""The station finder's read side: stations around a place with everything a result shows, filtered and
sorted; one station in detail; every station of France for the overview map.

Functions that read take a `Session` and return named tuples; `results` is pure. Brands come from
OpenStreetMap (the `station_brands` table); a station without one is shown by its town and address.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import Select, Text, and_, case, func, select, type_coerce
from sqlalchemy.orm import Session

from models import GasType, Price, Rupture, Station, StationBrand
from prices import hours
from prices.detour import Trip, net_saving
from prices.place_search import PlaceMatch
from prices.towns import town_name
from prices.trends import CHART_DAYS, daily_prices
from utils import bounding_box, haversine_km

SORTS = ("price", "distance", "saving")
MAX_RADIUS_KM = 50


class FinderStation(NamedTuple):
    id: int
    latitude: float | None
    longitude: float | None
    address: str
    town: str
    zip_code: str
    motorway: bool
    automat: bool  # the pumps take cards round the clock
    opening_hours: str | None  # the stored JSON text, decoded only once per distinct week (see `results`)
    brand: str | None
    osm_name: str | None
    price: Decimal | None  # of the fuel asked for
    updated_at: dt.datetime | None
    out_of_stock: bool
    distance_km: float | None = None  # from the place searched; None when there is no place

    @property
    def available(self) -> bool:
        return self.price is not None and not self.out_of_stock

    @property
    def title(self) -> str:
        """'TotalEnergies · Relais de la Gare', 'Carrefour', or, without a brand, the town and address."""
        if self.brand and self.osm_name and self.osm_name.casefold() != self.brand.casefold():
            return f"{self.brand} · {self.osm_name}"
        return self.brand or self.osm_name or f"{self.town_name}, {self.address}"

    @property
    def town_name(self) -> str:
        return town_name(self.town)


class Result(NamedTuple):
    station: FinderStation
    opening: hours.OpeningStatus
    saving: Decimal | None  # net saving of one fill against the nearest station selling the fuel
    nearest: bool  # this is that nearest station


class FuelState(NamedTuple):
    fuel: str
    price: Decimal | None
    updated_at: dt.datetime | None
    rupture: str | None  # None, 'temporaire', 'definitive' or 'unknown'
    rupture_since: dt.datetime | None


class StationDetail(NamedTuple):
    station: FinderStation
    services: list[str]
    fuels: list[FuelState]
    days: dict[str, list[tuple[dt.date, float | None]]]  # per fuel: the price in force each of the last 30 days


def _select(fuel_id: int) -> Select:
    return (
        select(
            Station.id,
            Station.latitude,
            Station.longitude,
            Station.address,
            Station.town,
            Station.zip_code,
            Station.road_type == "A",
            Station.automate_24_24,
            type_coerce(Station.opening_hours, Text),
            StationBrand.brand,
            StationBrand.name,
            Price.price,
            Price.updated_at,
            Rupture.station_id.is_not(None),
        )
        .outerjoin(StationBrand, StationBrand.station_id == Station.id)
        .outerjoin(Price, and_(Price.station_id == Station.id, Price.gastype_id == fuel_id))
        .outerjoin(Rupture, and_(Rupture.station_id == Station.id, Rupture.gastype_id == fuel_id))
    )


def stations_around(
    session: Session, latitude: float, longitude: float, radius_km: float, fuel_id: int
) -> list[FinderStation]:
    """Every station within `radius_km` (at most MAX_RADIUS_KM) of a point, nearest first."""
    radius_km = min(radius_km, MAX_RADIUS_KM)
    south, west, north, east = bounding_box(latitude, longitude, radius_km)
    statement = _select(fuel_id).where(Station.latitude.between(south, north), Station.longitude.between(west, east))
    found = []
    for row in session.execute(statement):
        distance = haversine_km(latitude, longitude, row.latitude, row.longitude)
        if distance <= radius_km:
            found.append(FinderStation(*row, distance))
    found.sort(key=lambda s: (s.distance_km, s.id))
    return found


def stations_by_id(
    session: Session, station_ids: Iterable[int], fuel_id: int, origin: tuple[float, float] | None = None
) -> list[FinderStation]:
    """These stations, with their distance from `origin` when given, in id order."""
    statement = _select(fuel_id).where(Station.id.in_(list(station_ids))).order_by(Station.id)
    stations = [FinderStation(*row) for row in session.execute(statement)]
    if origin is None:
        return stations
    return [
        s._replace(distance_km=haversine_km(*origin, s.latitude, s.longitude)) if s.latitude is not None else s
        for s in stations
    ]


def france(session: Session, fuel_id: int) -> list[FinderStation]:
    """Every station with coordinates, for the map of the whole country."""
    statement = _select(fuel_id).where(Station.latitude.is_not(None), Station.longitude.is_not(None))
    return [FinderStation(*row) for row in session.execute(statement.order_by(Station.id))]


def results(
    stations: Sequence[FinderStation],
    at: dt.datetime,
    trip: Trip,
    *,
    sort: str = "price",
    open_now: bool = False,
    automat: bool = False,
    brand: str | None = None,
) -> list[Result]:
    """The stations a person asked for, each with its opening status and net saving, in the order asked.

    The saving compares with the nearest station that sells the fuel, whatever the filters: that
    is the station a person would otherwise drive to. By price: buyable prices cheapest first,
    then out of stock, then no price. By saving: biggest first, stations without one last.
    """
    nearest = min(
        (s for s in stations if s.available and s.distance_km is not None),
        key=lambda s: (s.distance_km, s.id),
        default=None,
    )
    status = openings(stations, at)
    chosen = [
        Result(s, status[s.id], _saving(s, nearest, trip), nearest is not None and s.id == nearest.id)
        for s in stations
        if (not automat or s.automat) and (brand is None or s.brand == brand)
    ]
    if open_now:
        chosen = [r for r in chosen if r.opening.state == "open"]
    far = float("inf")
    if sort == "distance":
        key = lambda r: (r.station.distance_km if r.station.distance_km is not None else far, r.station.id)  # noqa: E731
    elif sort == "saving":
        key = lambda r: (r.saving is None, -(r.saving or 0), r.station.price or 0, r.station.id)  # noqa: E731
    else:
        key = lambda r: (not r.station.available, r.station.price is None, r.station.price or 0, r.station.id)  # noqa: E731
    return sorted(chosen, key=key)


def openings(stations: Iterable[FinderStation], at: dt.datetime) -> dict[int, hours.OpeningStatus]:
    """Whether each station is open at `at`, by station id."""
    minute = at.replace(second=0, microsecond=0)
    statuses = _statuses_of(minute)
    found = {}
    for station in stations:
        # A feed holds a couple of thousand distinct weeks for 10,000 stations: each is worked out once a minute.
        key = (station.opening_hours, station.automat)
        status = statuses.get(key)
        if status is None:
            status = statuses[key] = hours.opening_status(week_of(station), station.automat, minute)
        found[station.id] = status
    return found


@functools.lru_cache(maxsize=1)
def _statuses_of(minute: dt.datetime) -> dict[tuple[str | None, bool], hours.OpeningStatus]:
    """The statuses worked out in `minute` by every page and person of the process; the last minute's are dropped.

    A status is the same all minute long, as stored hours are whole minutes.
    """
    return {}


def week_of(station: FinderStation) -> list[dict] | None:
    """The station's stored opening hours, decoded."""
    return json.loads(station.opening_hours) if station.opening_hours else None


def _saving(station: FinderStation, nearest: FinderStation | None, trip: Trip) -> Decimal | None:
    if nearest is None or not station.available or station.distance_km is None:
        return None
    return net_saving(station.price, station.distance_km, nearest.price, nearest.distance_km, trip)


def station_detail(session: Session, station_id: int, now: dt.datetime) -> StationDetail | None:
    """One station with every fuel it sells or has run out of, its prices of the last 30 days, and its services."""
    row = session.execute(_select(1).where(Station.id == station_id)).first()
    if row is None:
        return None
    rupture = case((Rupture.station_id.is_(None), None), else_=func.coalesce(Rupture.kind, "unknown"))
    fuels = session.execute(
        select(GasType.id, GasType.name, Price.price, Price.updated_at, rupture, Rupture.started_at)
        .select_from(GasType)
        .outerjoin(Price, and_(Price.gastype_id == GasType.id, Price.station_id == station_id))
        .outerjoin(Rupture, and_(Rupture.gastype_id == GasType.id, Rupture.station_id == station_id))
        .where((Price.station_id.is_not(None)) | (Rupture.station_id.is_not(None)))
        .order_by(GasType.id)
    ).all()
    days = daily_prices(session, [(station_id, fuel_id) for fuel_id, *_ in fuels], CHART_DAYS, now)
    services = session.scalar(select(Station.services).where(Station.id == station_id)) or []
    station = FinderStation(*row)._replace(price=None, updated_at=None, out_of_stock=False)
    return StationDetail(
        station,
        list(services),
        [FuelState(*fuel) for _, *fuel in fuels],
        {name: days[(station_id, fuel_id)] for fuel_id, name, *_ in fuels},
    )


def brand_names(session: Session) -> list[str]:
    """Every brand known, alphabetically, for the brand filter."""
    statement = select(StationBrand.brand).where(StationBrand.brand.is_not(None)).distinct()
    return sorted(session.scalars(statement), key=str.casefold)


def stations_for(session: Session, match: PlaceMatch, radius_km: float, fuel_id: int) -> list[FinderStation]:
    """The stations a place search shows: around a town, postcode or street; for a street found in
    several towns, the matching stations themselves."""
    if match.kind == "street":
        return stations_by_id(session, match.station_ids, fuel_id)
    return stations_around(session, match.latitude, match.longitude, radius_km, fuel_id)


def stations_searched(
    session: Session, match: PlaceMatch | None, here: tuple[float, float] | None, radius_km: float, fuel_id: int
) -> list[FinderStation]:
    """The stations of a search: around the place found, else around the person's position; none without either."""
    if match is not None:
        return stations_for(session, match, radius_km, fuel_id)
    if here is not None:
        return stations_around(session, *here, radius_km, fuel_id)
    return []


def stations_farther(
    session: Session, match: PlaceMatch | None, here: tuple[float, float] | None, radius_km: float, fuel_id: int
) -> int | None:
    """How many stations a search finding none within `radius_km` finds within MAX_RADIUS_KM; None when it
    cannot look farther (the radius is the largest already, or the search is of a street's stations)."""
    if radius_km >= MAX_RADIUS_KM or (match is not None and match.kind == "street"):
        return None
    return len(stations_searched(session, match, here, MAX_RADIUS_KM, fuel_id))
