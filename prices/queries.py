"""The read side used by pages: price boards, the demo's stations, data freshness, a user's choices.

Every function takes a `Session` and returns plain rows (named tuples); none of
them writes. Each runs a fixed number of SQL statements (one, but for
`freshness`), so a page's cost does not grow with the number of rows it shows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import ColumnElement, FromClause, Select, and_, case, func, join, select, true
from sqlalchemy.orm import Session

from models import AlertRule, CustomStation, EtlRun, GasType, Price, Rupture, Station, User, UserGasType, UserSession
from prices.preferences import default_name
from prices.towns import town_name
from utils import haversine_km

DEMO_CANDIDATES = 200
DEMO_MAX_AGE = dt.timedelta(days=1)


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


class Freshness(NamedTuple):
    last_success_at: dt.datetime | None  # when the last successful ETL run finished
    last_run_status: str | None  # 'success' or 'failed'; None before any run
    last_run_at: dt.datetime | None
    last_run_error: str | None
    stations: int
    prices: int
    newest_price_at: dt.datetime | None  # the most recent price declaration among the current prices

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
    return [Favourite(c.id, default_name(town_name(c.town), c.address)) for c in fresh[:count]]


def data_version(session: Session) -> int:
    """A number that changes whenever the loaded data may have: the newest pass recorded (0 before any).

    Every pass that writes stations, prices, brands or places records its `etl_runs` row in the same
    transaction, and a failed pass records one too: caches of what passes write are keyed on this.
    """
    return session.scalar(select(func.max(EtlRun.id))) or 0


def freshness(session: Session) -> Freshness:
    """How current the prices are: the last successful and the last price-feed run, what is loaded,
    and the time of the newest price (a run can succeed on a feed that stopped moving)."""
    runs = select(EtlRun).where(EtlRun.kind == "run").limit(1)
    # Runs pile up for years: the newest by primary key reads one row where sorting by time would read them all.
    last_run = session.scalars(runs.order_by(EtlRun.id.desc())).first()
    last_success = session.scalars(EtlRun.newest(EtlRun.kind == "run", EtlRun.status == "success").limit(1)).first()
    counts = select(
        select(func.count()).select_from(Station).scalar_subquery(),
        select(func.count()).select_from(Price).scalar_subquery(),
        select(func.max(Price.updated_at)).scalar_subquery(),
    )
    stations, prices, newest = session.execute(counts).one()
    return Freshness(
        last_success_at=last_success.finished_at if last_success else None,
        last_run_status=last_run.status if last_run else None,
        last_run_at=last_run.finished_at if last_run else None,
        last_run_error=last_run.error if last_run else None,
        stations=stations,
        prices=prices,
        newest_price_at=newest,
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
            "litres_per_fill": user.tank_litres,
            "language": user.language,
        },
        "alerts": [
            {
                "kind": rule.kind,
                "station_id": rule.station_id,
                "fuel": fuel_names.get(rule.gastype_id),
                "threshold": str(rule.threshold) if rule.threshold is not None else None,
                "place": rule.place,
                "radius_km": rule.radius_km,
                "paused": rule.paused,
                "created_at": rule.created_at.isoformat(),
            }
            for rule in session.scalars(select(AlertRule).where(AlertRule.user_id == user_id).order_by(AlertRule.id))
        ],
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
