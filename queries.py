"""The read side used by pages: price boards, map views, station search, data freshness.

Every function takes a `Session` and returns plain rows (named tuples); none of
them writes. Each runs a fixed number of SQL statements (one, but for
`freshness`), so a page's cost does not grow with the number of rows it shows.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import ColumnElement, FromClause, Select, and_, case, false, func, join, null, or_, select, true
from sqlalchemy.orm import Session

from models import CustomStation, EtlRun, GasType, Price, Rupture, Station, User, UserGasType, UserSession
from preferences import NAME_MAX_CHARS
from utils import EARTH_RADIUS_KM, fold, haversine_km

SEARCH_MAX_CHARS = 100
SEARCH_MAX_WORDS = 8
DEMO_CANDIDATES = 200
DEMO_MAX_AGE = dt.timedelta(days=1)
SEARCH_ORDER = (Station.town, Station.zip_code, Station.address, Station.id)


class BoardRow(NamedTuple):
    """One (station, fuel) pair of a price board."""

    station_id: int
    name: str
    address: str
    town: str
    zip_code: str
    fuel_id: int
    fuel: str
    price: Decimal | None
    updated_at: dt.datetime | None
    rupture: str | None  # None, 'temporaire', 'definitive', or 'unknown' when the feed gives no type

    @property
    def out_of_stock(self) -> bool:
        return self.rupture is not None

    @property
    def available(self) -> bool:
        # The feed may keep the last price of a fuel that is out of stock: a price alone is not enough.
        return self.price is not None and self.rupture is None

    def is_stale(self, now: dt.datetime, max_age: dt.timedelta) -> bool:
        return self.updated_at is not None and now - self.updated_at > max_age


class MapStation(NamedTuple):
    id: int
    latitude: float | None  # never None from stations_in_box / stations_near
    longitude: float | None
    address: str
    town: str
    zip_code: str
    price: Decimal | None  # of the fuel asked for
    out_of_stock: bool  # for the fuel asked for


class NearStation(NamedTuple):
    station: MapStation
    distance_km: float


class StationHit(NamedTuple):
    id: int
    address: str
    town: str
    zip_code: str
    latitude: float | None
    longitude: float | None


class StationPrice(NamedTuple):
    fuel: str
    price: Decimal
    updated_at: dt.datetime


class Freshness(NamedTuple):
    last_success_at: dt.datetime | None  # when the last successful ETL run finished
    last_run_status: str | None  # 'success' or 'failed'; None before any run
    last_run_at: dt.datetime | None
    last_run_error: str | None
    stations: int
    prices: int

    @property
    def last_run_failed(self) -> bool:
        return self.last_run_status == "failed"


class Favourite(NamedTuple):
    station_id: int
    custom_name: str


class FuelType(NamedTuple):
    id: int
    name: str


# --------------------------------------------------------------------------- price boards


def favourites_board(session: Session, user_id: int) -> list[BoardRow]:
    """The user's followed stations x followed fuels, under their custom names."""
    pairs = (
        join(CustomStation, Station, Station.id == CustomStation.station_id)
        .join(UserGasType, UserGasType.user_id == CustomStation.user_id)
        .join(GasType, GasType.id == UserGasType.gastype_id)
    )
    statement = _board_select(CustomStation.custom_name, pairs).where(CustomStation.user_id == user_id)
    return [BoardRow(*row) for row in session.execute(statement)]


def board_for(session: Session, stations: Mapping[int, str], fuel_ids: Sequence[int]) -> list[BoardRow]:
    """The same board for explicit station ids shown under the given names (blank: the address)."""
    if not stations or not fuel_ids:
        return []
    named = {station_id: name.strip() for station_id, name in stations.items() if name.strip()}
    name = case(named, value=Station.id, else_=Station.address) if named else Station.address
    statement = _board_select(name, join(Station, GasType, true())).where(
        Station.id.in_(list(stations)), GasType.id.in_(list(fuel_ids))
    )
    return [BoardRow(*row) for row in session.execute(statement)]


def _board_select(name: ColumnElement[str], pairs: FromClause) -> Select:
    """Every (station, fuel) pair of `pairs` with its price and out-of-stock state, best buys first.

    Within each fuel: available prices cheapest first, then out-of-stock pairs,
    then pairs with no price at all.
    """
    available = and_(Price.price.is_not(None), Rupture.station_id.is_(None))
    return (
        select(
            Station.id,
            name,
            Station.address,
            Station.town,
            Station.zip_code,
            GasType.id,
            GasType.name,
            Price.price,
            Price.updated_at,
            case((Rupture.station_id.is_(None), None), else_=func.coalesce(Rupture.kind, "unknown")),
        )
        .select_from(pairs)
        .outerjoin(Price, and_(Price.station_id == Station.id, Price.gastype_id == GasType.id))
        .outerjoin(Rupture, and_(Rupture.station_id == Station.id, Rupture.gastype_id == GasType.id))
        .order_by(GasType.id, case((available, 0), else_=1), Price.price.asc().nulls_last(), name, Station.id)
    )


# --------------------------------------------------------------------------- map views


def stations_in_box(
    session: Session, south: float, west: float, north: float, east: float, fuel_id: int | None, limit: int = 3000
) -> list[MapStation]:
    """Stations inside a latitude/longitude box, with the price of `fuel_id` (None: no price).

    At most `limit` stations; which ones, past the limit, is unspecified.
    """
    statement = _in_box(_map_select(fuel_id), south, west, north, east).limit(limit)
    return [MapStation(*row) for row in session.execute(statement)]


def stations_near(
    session: Session,
    latitude: float,
    longitude: float,
    radius_km: float,
    limit: int = 200,
    *,
    fuel_id: int | None = None,
) -> list[NearStation]:
    """Stations within `radius_km` of a point, nearest first, with their distance in km."""
    south, west, north, east = _bounding_box(latitude, longitude, radius_km)
    near = []
    for row in session.execute(_in_box(_map_select(fuel_id), south, west, north, east)):
        station = MapStation(*row)
        distance = haversine_km(latitude, longitude, station.latitude, station.longitude)
        if distance <= radius_km:
            near.append(NearStation(station, distance))
    near.sort(key=lambda hit: (hit.distance_km, hit.station.id))
    return near[:limit]


def _map_select(fuel_id: int | None) -> Select:
    station_columns = (Station.id, Station.latitude, Station.longitude, Station.address, Station.town, Station.zip_code)
    if fuel_id is None:
        return select(*station_columns, null(), false())
    return (
        select(*station_columns, Price.price, Rupture.station_id.is_not(None))
        .outerjoin(Price, and_(Price.station_id == Station.id, Price.gastype_id == fuel_id))
        .outerjoin(Rupture, and_(Rupture.station_id == Station.id, Rupture.gastype_id == fuel_id))
    )


def _in_box(statement: Select, south: float, west: float, north: float, east: float) -> Select:
    # Range conditions on (latitude, longitude) use ix_stations_lat_lon; NULL coordinates never match.
    return statement.where(Station.latitude.between(south, north), Station.longitude.between(west, east))


def _bounding_box(latitude: float, longitude: float, radius_km: float) -> tuple[float, float, float, float]:
    """(south, west, north, east) of the smallest box holding the circle (Matuschek's method)."""
    angle = radius_km / EARTH_RADIUS_KM
    spread = math.sin(angle) / max(math.cos(math.radians(latitude)), 1e-12)
    half_width = 180.0 if spread >= 1 else math.degrees(math.asin(spread))
    half_height = math.degrees(angle)
    return latitude - half_height, longitude - half_width, latitude + half_height, longitude + half_width


# --------------------------------------------------------------------------- search and details


def search_stations(session: Session, text: str, limit: int = 50) -> list[StationHit]:
    """Stations whose address, postcode or town has a word starting with each word of `text`.

    Case and accents are ignored; '750' finds Paris postcodes but not 17500.
    """
    criteria = _matching(text)
    if not criteria:
        return []
    statement = (
        select(Station.id, Station.address, Station.town, Station.zip_code, Station.latitude, Station.longitude)
        .where(*criteria)
        .order_by(*SEARCH_ORDER)
        .limit(limit)
    )
    return [StationHit(*row) for row in session.execute(statement)]


def find_stations(
    session: Session, text: str, radius_km: float = 0, fuel_id: int | None = None, limit: int = 200
) -> list[MapStation]:
    """The stations `text` finds (as in search_stations), or with a radius every station around the place found.

    The place is the median position of the stations found: a town's or a
    postcode's stations surround its centre. Around a place, nearest first.
    """
    criteria = _matching(text)
    if not criteria:
        return []
    statement = _map_select(fuel_id).where(*criteria).order_by(*SEARCH_ORDER).limit(limit)
    found = [MapStation(*row) for row in session.execute(statement)]
    if not radius_km:
        return found
    located = [station for station in found if station.latitude is not None and station.longitude is not None]
    if not located:
        return []
    centre = statistics.median(s.latitude for s in located), statistics.median(s.longitude for s in located)
    return [hit.station for hit in stations_near(session, *centre, radius_km, limit, fuel_id=fuel_id)]


class SearchTooLong(ValueError):
    """A search text over the limits; the message says them to the person who typed it."""

    def __init__(self) -> None:
        super().__init__(
            f"A search has at most {SEARCH_MAX_CHARS} characters and {SEARCH_MAX_WORDS} words: "
            "try a town, a postcode, or a street and its town."
        )


def _matching(text: str) -> list[ColumnElement[bool]]:
    """One condition per word of `text` (none for a blank text): it starts a word of the station's search text.

    SearchTooLong when `text` is over the limits (each word costs a scan of the search texts).
    """
    if len(text) > SEARCH_MAX_CHARS:
        raise SearchTooLong()
    words = fold(text).split()
    if len(words) > SEARCH_MAX_WORDS:
        raise SearchTooLong()
    # autoescape: a % or _ reaching LIKE is matched literally, never as a wildcard.
    return [
        or_(
            Station.search_text.startswith(word, autoescape=True),
            Station.search_text.contains(f" {word}", autoescape=True),
        )
        for word in words
    ]


def map_stations(session: Session, station_ids: Iterable[int], fuel_id: int | None) -> list[MapStation]:
    """These stations (unknown ids skipped), with the price of `fuel_id`, by id."""
    statement = _map_select(fuel_id).where(Station.id.in_(list(station_ids))).order_by(Station.id)
    return [MapStation(*row) for row in session.execute(statement)]


def demo_stations(session: Session, fuel_ids: Sequence[int], count: int = 3) -> list[Favourite]:
    """Stations for the demo, with names: neighbours selling every one of `fuel_ids`, none out of stock.

    Around the station whose prices are the most recent, its nearest neighbours
    among the DEMO_CANDIDATES most recent whose prices are at most DEMO_MAX_AGE older.
    """
    fuels = list(fuel_ids)
    oldest_price = func.min(Price.updated_at).label("oldest_price")
    out_of_stock = select(Rupture.station_id).where(Rupture.station_id == Station.id, Rupture.gastype_id.in_(fuels))
    statement = (
        select(Station.id, Station.town, Station.address, Station.latitude, Station.longitude, oldest_price)
        .join(Price, Price.station_id == Station.id)
        .where(Price.gastype_id.in_(fuels), Station.latitude.is_not(None), Station.longitude.is_not(None))
        .where(~out_of_stock.exists())
        .group_by(Station.id)
        .having(func.count() == len(fuels))
        .order_by(oldest_price.desc(), Station.id)
        .limit(DEMO_CANDIDATES)
    )
    candidates = session.execute(statement).all()
    if not candidates:
        return []
    anchor = candidates[0]
    fresh = [c for c in candidates if anchor.oldest_price - c.oldest_price <= DEMO_MAX_AGE]
    fresh.sort(key=lambda c: haversine_km(anchor.latitude, anchor.longitude, c.latitude, c.longitude))
    return [Favourite(c.id, f"{c.town} {c.address}"[:NAME_MAX_CHARS].strip()) for c in fresh[:count]]


def station_prices(session: Session, station_ids: Iterable[int]) -> dict[int, list[StationPrice]]:
    """Current prices of each station (every id asked for is a key; [] when it has none), by fuel id."""
    ids = set(station_ids)
    prices: dict[int, list[StationPrice]] = {station_id: [] for station_id in ids}
    if not ids:
        return prices
    statement = (
        select(Price.station_id, GasType.name, Price.price, Price.updated_at)
        .join(GasType, GasType.id == Price.gastype_id)
        .where(Price.station_id.in_(ids))
        .order_by(Price.station_id, GasType.id)
    )
    for station_id, *price in session.execute(statement):
        prices[station_id].append(StationPrice(*price))
    return prices


def freshness(session: Session) -> Freshness:
    """How current the prices are: the last successful and the last price-feed run, and what is loaded."""
    runs = select(EtlRun).where(EtlRun.kind == "run").limit(1)
    # Runs pile up for years: the newest by primary key reads one row where sorting by time would read them all.
    last_run = session.scalars(runs.order_by(EtlRun.id.desc())).first()
    last_success = session.scalars(
        runs.where(EtlRun.status == "success").order_by(EtlRun.started_at.desc(), EtlRun.id.desc())
    ).first()
    counts = select(
        select(func.count()).select_from(Station).scalar_subquery(),
        select(func.count()).select_from(Price).scalar_subquery(),
    )
    stations, prices = session.execute(counts).one()
    return Freshness(
        last_success_at=last_success.finished_at if last_success else None,
        last_run_status=last_run.status if last_run else None,
        last_run_at=last_run.finished_at if last_run else None,
        last_run_error=last_run.error if last_run else None,
        stations=stations,
        prices=prices,
    )


# --------------------------------------------------------------------------- a user's choices


def user_fuel_ids(session: Session, user_id: int) -> list[int]:
    statement = select(UserGasType.gastype_id).where(UserGasType.user_id == user_id).order_by(UserGasType.gastype_id)
    return list(session.scalars(statement))


def user_favourites(session: Session, user_id: int) -> list[Favourite]:
    statement = (
        select(CustomStation.station_id, CustomStation.custom_name)
        .where(CustomStation.user_id == user_id)
        .order_by(CustomStation.custom_name, CustomStation.station_id)
    )
    return [Favourite(*row) for row in session.execute(statement)]


def fuel_types(session: Session) -> list[FuelType]:
    return [FuelType(*row) for row in session.execute(select(GasType.id, GasType.name).order_by(GasType.id))]


# --------------------------------------------------------------------------- administration


class RunRow(NamedTuple):
    started_at: dt.datetime
    kind: str
    status: str
    stations: int
    prices: int
    changes: int
    rejected: int
    duration_seconds: float
    error: str | None


def recent_runs(session: Session, limit: int = 20) -> list[RunRow]:
    statement = select(
        EtlRun.started_at,
        EtlRun.kind,
        EtlRun.status,
        EtlRun.stations,
        EtlRun.prices,
        EtlRun.changes,
        EtlRun.rejected,
        EtlRun.duration_seconds,
        EtlRun.error,
    ).order_by(EtlRun.started_at.desc(), EtlRun.id.desc())
    return [RunRow(*row) for row in session.execute(statement.limit(limit))]


class AccountRow(NamedTuple):
    username: str
    email: str
    role: str
    created_at: dt.datetime
    stations: int


def accounts_overview(session: Session) -> list[AccountRow]:
    """Every account with how many stations it follows, oldest first."""
    followed = select(func.count()).where(CustomStation.user_id == User.id).correlate(User).scalar_subquery()
    statement = select(User.username, User.email, User.role, User.created_at, followed).order_by(User.created_at)
    return [AccountRow(*row) for row in session.execute(statement)]


def user_data(session: Session, user_id: int) -> dict:
    """Everything stored about one user, for 'download my data' (credentials excepted: they are not here)."""
    user = session.get(User, user_id)
    fuel_names = {fuel.id: fuel.name for fuel in fuel_types(session)}
    return {
        "account": {
            "username": user.username,
            "email": user.email,
            "name": user.name,
            "role": user.role,
            "created_at": user.created_at.isoformat(),
        },
        "fuels": [fuel_names[fuel_id] for fuel_id in user_fuel_ids(session, user_id)],
        "stations": [
            {"station_id": favourite.station_id, "name": favourite.custom_name}
            for favourite in user_favourites(session, user_id)
        ],
        "settings": {
            "litres_per_year": user.litres_per_year,
            "km_per_year": user.km_per_year,
            "litres_per_100km": user.litres_per_100km,
        },
        "sign_in_sessions": [
            {
                "device": device,
                "signed_in_at": created_at.isoformat(),
                "last_used_at": last_seen_at.isoformat(),
                "ends_at": expires_at.isoformat(),
                "signed_out_at": revoked_at.isoformat() if revoked_at else None,
            }
            for device, created_at, last_seen_at, expires_at, revoked_at in session.execute(
                select(
                    UserSession.device,
                    UserSession.created_at,
                    UserSession.last_seen_at,
                    UserSession.expires_at,
                    UserSession.revoked_at,
                )
                .where(UserSession.user_id == user_id)
                .order_by(UserSession.created_at)
            )
        ],
    }
