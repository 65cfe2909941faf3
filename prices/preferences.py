"""The changes a signed-in user makes to their own data: followed stations and fuels, consumption, tank, language.

Every function takes a `Session` inside a transaction the caller opened (and
commits). Bad input raises a `PreferenceError` subclass whose message can be
shown to the user as it is (in the active language); nothing is changed then.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from i18n import N_, _, number
from models import CustomStation, GasType, Station, User, UserGasType
from prices.detour import DEFAULT_LITRES_PER_100KM, DEFAULT_TANK_LITRES, Trip
from settings import LANGUAGES

NAME_MAX_CHARS = 40
DEFAULT_FUELS = (1, 2, 5)  # Gazole, SP95, E10
DEFAULT_YEARLY_LITRES = 650.0
LITRES_PER_YEAR_RANGE = (1, 20_000)
KM_PER_YEAR_RANGE = (1, 200_000)
LITRES_PER_100KM_RANGE = (1, 30)
TANK_LITRES_RANGE = (5, 200)
ACCOUNT_GONE = N_("This account does not exist any more.")


class PreferenceError(Exception):
    """A change refused; the message says why in words a user understands."""


class InvalidName(PreferenceError):
    pass


class UnknownStation(PreferenceError):
    pass


class AlreadyFollowed(PreferenceError):
    pass


class NotFollowed(PreferenceError):
    pass


class InvalidFuels(PreferenceError):
    pass


class InvalidConsumption(PreferenceError):
    pass


class UnknownUser(PreferenceError):
    pass


# --------------------------------------------------------------------------- followed stations


def default_name(known_as: str, address: str) -> str:
    """The name a station is offered under when followed: its brand or town, then its address, cut to fit."""
    return f"{known_as} {address}"[:NAME_MAX_CHARS].strip()


def follow_station(session: Session, user_id: int, station_id: int, custom_name: str) -> None:
    name = _valid_name(custom_name)
    if session.get(Station, station_id) is None:
        raise UnknownStation(_("This station is not in the price list."))
    followed = session.get(CustomStation, (user_id, station_id))
    if followed is not None:
        raise AlreadyFollowed(_("You already follow this station as “{}”.").format(followed.custom_name))
    session.add(CustomStation(user_id=user_id, station_id=station_id, custom_name=name))


def rename_favourite(session: Session, user_id: int, station_id: int, custom_name: str) -> None:
    name = _valid_name(custom_name)
    _followed(session, user_id, station_id).custom_name = name


def unfollow_station(session: Session, user_id: int, station_id: int) -> None:
    session.delete(_followed(session, user_id, station_id))


def _valid_name(custom_name: str) -> str:
    name = custom_name.strip()
    if not name:
        raise InvalidName(_("Give the station a name."))
    if len(name) > NAME_MAX_CHARS:
        raise InvalidName(
            _("A station name has {} characters at most; this one has {}.").format(NAME_MAX_CHARS, len(name))
        )
    return name


def _followed(session: Session, user_id: int, station_id: int) -> CustomStation:
    followed = session.get(CustomStation, (user_id, station_id))
    if followed is None:
        raise NotFollowed(_("You do not follow this station."))
    return followed


# --------------------------------------------------------------------------- followed fuels


def set_fuels(session: Session, user_id: int, fuel_ids: Iterable[int]) -> None:
    """The user follows exactly these fuels from now on."""
    wanted = set(fuel_ids)
    if not wanted:
        raise InvalidFuels(_("Choose at least one fuel."))
    unknown = wanted - set(session.scalars(select(GasType.id)))
    if unknown:
        raise InvalidFuels(_("Unknown fuel: {}.").format(", ".join(map(str, sorted(unknown)))))
    mine = UserGasType.user_id == user_id
    followed = set(session.scalars(select(UserGasType.gastype_id).where(mine)))
    if followed - wanted:
        session.execute(delete(UserGasType).where(mine, UserGasType.gastype_id.not_in(wanted)))
    if wanted - followed:
        session.execute(
            insert(UserGasType), [{"user_id": user_id, "gastype_id": fuel} for fuel in sorted(wanted - followed)]
        )


def follow_default_fuels(session: Session, user_id: int) -> None:
    """The fuels a new account starts with."""
    set_fuels(session, user_id, DEFAULT_FUELS)


# --------------------------------------------------------------------------- consumption


def set_consumption(
    session: Session,
    user_id: int,
    *,
    litres_per_year: float | None = None,
    km_per_year: float | None = None,
    litres_per_100km: float | None = None,
) -> None:
    """Yearly consumption, either in litres or as distance x consumption (the other mode is cleared).

    The car's L/100 km outlives the switch to litres: the detour estimate still needs it.
    """
    if litres_per_year is not None and km_per_year is None and litres_per_100km is None:
        litres_per_year = _in_range(litres_per_year, LITRES_PER_YEAR_RANGE, N_("Litres per year"))
    elif litres_per_year is None and km_per_year is not None and litres_per_100km is not None:
        km_per_year = _in_range(km_per_year, KM_PER_YEAR_RANGE, N_("Kilometres per year"))
        litres_per_100km = _in_range(litres_per_100km, LITRES_PER_100KM_RANGE, N_("Consumption in L/100 km"))
    else:
        raise InvalidConsumption(
            _(
                "Give either the litres you buy per year, or both the kilometres you drive per year "
                "and your car's consumption in L/100 km."
            )
        )
    user = session.get(User, user_id)
    if user is None:
        raise UnknownUser(_(ACCOUNT_GONE))
    user.litres_per_year, user.km_per_year = litres_per_year, km_per_year
    if litres_per_100km is not None:
        user.litres_per_100km = litres_per_100km


def set_trip(session: Session, user_id: int, *, tank_litres: float, litres_per_100km: float) -> None:
    """What one fill takes and the car's consumption, for the detour estimate."""
    tank_litres = _in_range(tank_litres, TANK_LITRES_RANGE, N_("Litres per fill"))
    litres_per_100km = _in_range(litres_per_100km, LITRES_PER_100KM_RANGE, N_("Consumption in L/100 km"))
    user = session.get(User, user_id)
    if user is None:
        raise UnknownUser(_(ACCOUNT_GONE))
    user.tank_litres, user.litres_per_100km = tank_litres, litres_per_100km


def _in_range(value: float, bounds: tuple[float, float], label: str) -> float:
    low, high = bounds
    typed = float(value)
    if not low <= typed <= high:  # also refuses NaN
        raise InvalidConsumption(_("{} must be between {} and {}.").format(_(label), number(low), number(high)))
    return typed


def set_language(session: Session, user_id: int, language: str) -> None:
    """The language a person reads the app and their e-mails in."""
    if language not in LANGUAGES:
        raise PreferenceError(_("Unknown language: {}.").format(language))
    user = session.get(User, user_id)
    if user is None:
        raise UnknownUser(_(ACCOUNT_GONE))
    user.language = language


def yearly_litres(user: User) -> float:
    """The litres a user buys per year, as their profile says, else DEFAULT_YEARLY_LITRES."""
    if user.km_per_year is not None and user.litres_per_100km is not None:
        return user.km_per_year * user.litres_per_100km / 100
    if user.litres_per_year is not None:
        return user.litres_per_year
    return DEFAULT_YEARLY_LITRES


def trip(user: User | None) -> Trip:
    """The user's fill and consumption, else the defaults (also for people signed out)."""
    if user is None:
        return Trip()
    return Trip(user.tank_litres or DEFAULT_TANK_LITRES, user.litres_per_100km or DEFAULT_LITRES_PER_100KM)
