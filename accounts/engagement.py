"""How people use the service, in figures for the admin page: accounts, activity, followed stations, codes."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from models import CustomStation, Station, StationBrand, User, UserSession, VerificationCode
from utils import PARIS

ACTIVE_WINDOWS = (7, 30)  # days
SIGN_UP_WEEKS = 26
MOST_FOLLOWED = 10


@dataclass(frozen=True)
class Engagement:
    accounts: int
    active: dict[int, int]  # accounts seen in the last N days (a sign-in session used), by N
    with_stations: int  # accounts that follow at least one station
    followed: int  # (account, station) pairs
    codes_pending: int  # recovery codes still usable
    codes_spent: int  # expired or used codes, which "flush" removes
    sign_ups: list[tuple[dt.date, int]]  # Monday of each week (Paris time), oldest first, with empty weeks
    most_followed: list[tuple[str, int]]  # "Brand, address, town" of the most followed stations, with counts


def engagement(session: Session, now: dt.datetime) -> Engagement:
    seen = {days: UserSession.last_seen_at >= now - dt.timedelta(days=days) for days in ACTIVE_WINDOWS}
    usable = (VerificationCode.expires_at > now) & VerificationCode.used_at.is_(None)
    return Engagement(
        accounts=_count(session, User),
        active={
            days: _count(session, UserSession, since, what=distinct(UserSession.user_id))
            for days, since in seen.items()
        },
        with_stations=_count(session, CustomStation, what=distinct(CustomStation.user_id)),
        followed=_count(session, CustomStation),
        codes_pending=_count(session, VerificationCode, usable),
        codes_spent=_count(session, VerificationCode, ~usable),
        sign_ups=_sign_ups_by_week(session, now),
        most_followed=_most_followed(session),
    )


def _count(session: Session, model, *conditions, what=None) -> int:
    """COUNT(*) of `model`'s rows meeting `conditions`, or COUNT(what) (e.g. of distinct users)."""
    counted = func.count() if what is None else func.count(what)
    return session.scalar(select(counted).select_from(model).where(*conditions)) or 0


def _sign_ups_by_week(session: Session, now: dt.datetime) -> list[tuple[dt.date, int]]:
    """Accounts created in each of the last SIGN_UP_WEEKS weeks (grouped here: the same on every database)."""
    this_monday = _monday(now)
    first = this_monday - dt.timedelta(weeks=SIGN_UP_WEEKS - 1)
    since = dt.datetime.combine(first, dt.time(), PARIS)
    weeks = Counter(
        _monday(created) for created in session.scalars(select(User.created_at).where(User.created_at >= since))
    )
    return [(first + dt.timedelta(weeks=i), weeks[first + dt.timedelta(weeks=i)]) for i in range(SIGN_UP_WEEKS)]


def _monday(moment: dt.datetime) -> dt.date:
    day = moment.astimezone(PARIS).date()
    return day - dt.timedelta(days=day.weekday())


def _most_followed(session: Session) -> list[tuple[str, int]]:
    followers = func.count().label("followers")
    query = (
        select(Station.address, Station.town, StationBrand.brand, followers)
        .join(CustomStation, CustomStation.station_id == Station.id)
        .outerjoin(StationBrand, StationBrand.station_id == Station.id)
        .group_by(Station.id, Station.address, Station.town, StationBrand.brand)
        .order_by(followers.desc(), Station.id)
        .limit(MOST_FOLLOWED)
    )
    return [
        (", ".join(part for part in (brand, address, town) if part), count)
        for address, town, brand, count in session.execute(query)
    ]
