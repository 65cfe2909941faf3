"""The alerts one person sets: the kinds, checking what they typed, and creating, pausing, resuming, deleting.

Every function takes a `Session` inside a transaction the caller opened. Bad input raises `AlertRefused`,
whose message a person can read as it is; nothing is changed then.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

import i18n
from alerts import texts
from i18n import _, distance, price
from models import AlertRule, AlertState, CustomStation, GasType, Station
from prices.place_search import SearchTooLong, resolve_place

PRICE_BELOW, DROP, AREA_BELOW, RUPTURE, DIGEST = "price_below", "drop", "area_below", "rupture", "digest"
KINDS = (PRICE_BELOW, DROP, AREA_BELOW, RUPTURE, DIGEST)
STATION_KINDS = (PRICE_BELOW, DROP, RUPTURE)
PRICE_RANGE = (Decimal("0.1"), Decimal(5))
DROP_CENTS_RANGE = (1, 100)
RADIUS_KM_RANGE = (1, 50)
MAX_RULES_PER_USER = 50


class AlertRefused(ValueError):
    """An alert not saved; the message says why in words a person understands, in the active language."""


class RuleView(NamedTuple):
    """One alert as the profile lists it."""

    id: int
    kind: str
    description: str  # plain text: the UI escapes it
    paused: bool


def create(
    session: Session,
    user_id: int,
    kind: str,
    now: dt.datetime,
    *,
    station_id: int | None = None,
    fuel_id: int | None = None,
    threshold: Decimal | None = None,
    place: str | None = None,
    radius_km: float | None = None,
) -> int:
    """Save a new alert of `kind` for `user_id` and return its id; AlertRefused when a value is missing or wrong.

    `threshold` is a price in euros per litre; for a drop, the euros it must fall by (0.05 for 5 cents).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown alert kind {kind!r}")
    count = session.scalar(select(func.count()).where(AlertRule.user_id == user_id))
    if count >= MAX_RULES_PER_USER:
        raise AlertRefused(_(texts.TOO_MANY).format(count=count))
    rule = AlertRule(user_id=user_id, kind=kind, created_at=now, paused=False)
    if kind == DIGEST:
        if session.scalar(select(AlertRule.id).where(AlertRule.user_id == user_id, AlertRule.kind == DIGEST)):
            raise AlertRefused(_(texts.ONE_DIGEST))
    else:
        rule.gastype_id = _fuel(session, fuel_id)
    if kind in STATION_KINDS:
        rule.station_id = _my_station(session, user_id, station_id)
    if kind in (PRICE_BELOW, AREA_BELOW):
        rule.threshold = _price(threshold)
    if kind == DROP:
        rule.threshold = _drop(threshold)
    if kind == AREA_BELOW:
        rule.place, rule.latitude, rule.longitude = _place(session, place)
        rule.radius_km = _radius(radius_km)
    session.add(rule)
    session.flush()
    return rule.id


def set_paused(session: Session, user_id: int, rule_id: int, paused: bool) -> None:
    """Pause or resume one of the person's alerts. Resumed, it says what is true then, even if it said so before."""
    done = session.execute(
        update(AlertRule).where(AlertRule.id == rule_id, AlertRule.user_id == user_id).values(paused=paused)
    )
    if done.rowcount == 0:
        raise AlertRefused(_(texts.NOT_FOUND))
    if not paused:
        session.execute(delete(AlertState).where(AlertState.rule_id == rule_id))


def remove(session: Session, user_id: int, rule_id: int) -> None:
    session.execute(delete(AlertState).where(AlertState.rule_id == rule_id, AlertState.user_id == user_id))
    done = session.execute(delete(AlertRule).where(AlertRule.id == rule_id, AlertRule.user_id == user_id))
    if done.rowcount == 0:
        raise AlertRefused(_(texts.NOT_FOUND))


def pause_all(session: Session, user_id: int) -> int:
    """Pause every alert of the person (the weekly summary too); how many were running."""
    return session.execute(
        update(AlertRule).where(AlertRule.user_id == user_id, AlertRule.paused.is_(False)).values(paused=True)
    ).rowcount


def rules_of(session: Session, user_id: int) -> list[RuleView]:
    """The person's alerts, oldest first, each described in a sentence."""
    rows = session.execute(
        select(AlertRule, GasType.name, Station.address, Station.town)
        .outerjoin(GasType, GasType.id == AlertRule.gastype_id)
        .outerjoin(Station, Station.id == AlertRule.station_id)
        .where(AlertRule.user_id == user_id)
        .order_by(AlertRule.id)
    ).all()
    names = dict(
        session.execute(
            select(CustomStation.station_id, CustomStation.custom_name).where(CustomStation.user_id == user_id)
        ).all()
    )
    views = []
    for rule, fuel, address, town in rows:
        station = names.get(rule.station_id) or (f"{address}, {town}" if address else "")
        description = _(texts.RULE[rule.kind]).format(
            fuel=fuel or "",
            station=station,
            threshold=price(rule.threshold) if rule.threshold is not None else "",
            cents=cents(rule.threshold) if rule.threshold is not None else "",
            radius=distance(rule.radius_km) if rule.radius_km is not None else "",
            place=rule.place or "",
        )
        views.append(RuleView(rule.id, rule.kind, description, rule.paused))
    return views


def cents(amount: Decimal) -> str:
    """An amount in euros said in cents: '5 ct', '5,5 ct'."""
    return i18n.cents(amount * 100, signed=False)


def _fuel(session: Session, fuel_id: int | None) -> int:
    if fuel_id is None or session.get(GasType, fuel_id) is None:
        raise AlertRefused(_(texts.NEED_FUEL))
    return fuel_id


def _my_station(session: Session, user_id: int, station_id: int | None) -> int:
    followed = session.scalar(
        select(CustomStation.station_id).where(CustomStation.user_id == user_id, CustomStation.station_id == station_id)
    )
    if station_id is None or followed is None:
        raise AlertRefused(_(texts.NOT_MY_STATION))
    return station_id


def _price(threshold: Decimal | None) -> Decimal:
    if threshold is None or not PRICE_RANGE[0] <= Decimal(threshold) <= PRICE_RANGE[1]:
        raise AlertRefused(_(texts.NEED_THRESHOLD).format(low=price(PRICE_RANGE[0]), high=price(PRICE_RANGE[1])))
    return Decimal(threshold).quantize(Decimal("0.001"))


def _drop(threshold: Decimal | None) -> Decimal:
    low, high = (Decimal(n) / 100 for n in DROP_CENTS_RANGE)
    if threshold is None or not low <= Decimal(threshold) <= high:
        raise AlertRefused(_(texts.NEED_DROP).format(low=cents(low), high=cents(high)))
    return Decimal(threshold).quantize(Decimal("0.001"))


def _radius(radius_km: float | None) -> float:
    if radius_km is None or not RADIUS_KM_RANGE[0] <= radius_km <= RADIUS_KM_RANGE[1]:
        raise AlertRefused(
            _(texts.NEED_RADIUS).format(low=distance(RADIUS_KM_RANGE[0]), high=distance(RADIUS_KM_RANGE[1]))
        )
    return float(radius_km)


def _place(session: Session, place: str | None) -> tuple[str, float, float]:
    """The place's label and centre, read as the finder reads its place box."""
    if not place or not place.strip():
        raise AlertRefused(_(texts.NEED_PLACE))
    try:
        match = resolve_place(session, place)
    except SearchTooLong as exc:
        raise AlertRefused(str(exc)) from exc
    if match is None or match.latitude is None or match.longitude is None:
        raise AlertRefused(_(texts.PLACE_NOT_FOUND).format(place=place.strip()))
    return match.label[:120], match.latitude, match.longitude
