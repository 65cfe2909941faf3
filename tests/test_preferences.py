"""A user's own choices (stations, fuels, consumption) and the savings estimate built on them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select

from models import CustomStation, Station, User
from prices import preferences, queries
from prices.preferences import (
    AlreadyFollowed,
    InvalidConsumption,
    InvalidFuels,
    InvalidName,
    NotFollowed,
    PreferenceError,
    UnknownStation,
    UnknownUser,
)
from prices.queries import BoardRow
from prices.savings import savings_per_fuel
from session import session_factory
from utils import UTC

NOW = dt.datetime(2024, 5, 8, 10, 30, tzinfo=UTC)
WEEK = dt.timedelta(days=7)


@pytest.fixture
def session(engine):
    with session_factory(engine)() as session, session.begin():
        for station_id in (1, 2):
            session.add(
                Station(
                    id=station_id,
                    latitude=48.85,
                    longitude=2.35,
                    address=f"{station_id} Rue de Rivoli",
                    zip_code="75001",
                    town="Paris",
                    last_seen_at=NOW,
                )
            )
        session.flush()
        yield session


def new_user(session, username: str = "alice") -> int:
    user = User(username=username, email=f"{username}@example.org", name=username, created_at=NOW)
    session.add(user)
    session.flush()
    return user.id


def names(session, user_id: int) -> list[tuple[int, str]]:
    session.flush()
    return queries.user_favourites(session, user_id)


# --------------------------------------------------------------------------- followed stations


def test_follow_a_station_under_a_trimmed_name(session):
    alice, bob = new_user(session, "alice"), new_user(session, "bob")

    preferences.follow_station(session, alice, 1, "  Près du travail \n")
    preferences.follow_station(session, alice, 2, "x" * 40)
    preferences.follow_station(session, bob, 1, "Chez maman")

    assert names(session, alice) == [(1, "Près du travail"), (2, "x" * 40)]
    assert names(session, bob) == [(1, "Chez maman")]


@pytest.mark.parametrize(("name", "message"), [("", "Give"), ("   \t", "Give"), ("x" * 41, "40 characters at most")])
def test_a_name_needs_1_to_40_characters(session, name, message):
    alice = new_user(session)

    with pytest.raises(InvalidName, match=message):
        preferences.follow_station(session, alice, 1, name)

    assert names(session, alice) == []


def test_an_unknown_station_cannot_be_followed(session):
    alice = new_user(session)

    with pytest.raises(UnknownStation, match="not in the price list"):
        preferences.follow_station(session, alice, 999, "Nowhere")

    assert names(session, alice) == []


def test_following_a_station_twice_is_refused_and_keeps_the_first_name(session):
    alice = new_user(session)
    preferences.follow_station(session, alice, 1, "Work")
    session.flush()

    with pytest.raises(AlreadyFollowed) as refused:
        preferences.follow_station(session, alice, 1, "Office")

    assert str(refused.value) == "You already follow this station as “Work”."
    assert names(session, alice) == [(1, "Work")]


def test_rename_a_favourite(session):
    alice, bob = new_user(session, "alice"), new_user(session, "bob")
    preferences.follow_station(session, alice, 1, "Work")
    preferences.follow_station(session, bob, 1, "Gym")
    session.flush()

    preferences.rename_favourite(session, alice, 1, " Office ")

    assert names(session, alice) == [(1, "Office")]
    assert names(session, bob) == [(1, "Gym")]
    with pytest.raises(InvalidName):
        preferences.rename_favourite(session, alice, 1, " ")
    with pytest.raises(NotFollowed, match="do not follow"):
        preferences.rename_favourite(session, alice, 2, "Elsewhere")
    assert names(session, alice) == [(1, "Office")]


def test_unfollow_a_station(session):
    alice, bob = new_user(session, "alice"), new_user(session, "bob")
    preferences.follow_station(session, alice, 1, "Work")
    preferences.follow_station(session, alice, 2, "Home")
    preferences.follow_station(session, bob, 1, "Gym")
    session.flush()

    preferences.unfollow_station(session, alice, 1)

    assert names(session, alice) == [(2, "Home")]
    assert names(session, bob) == [(1, "Gym")]
    with pytest.raises(NotFollowed):
        preferences.unfollow_station(session, alice, 1)


def test_a_station_can_be_followed_again_after_unfollowing_it(session):
    alice = new_user(session)
    preferences.follow_station(session, alice, 1, "Work")
    session.flush()
    preferences.unfollow_station(session, alice, 1)
    session.flush()

    preferences.follow_station(session, alice, 1, "Work again")

    assert names(session, alice) == [(1, "Work again")]
    assert session.scalar(select(CustomStation.custom_name)) == "Work again"


# --------------------------------------------------------------------------- followed fuels


def test_new_accounts_follow_the_default_fuels(session):
    alice = new_user(session)

    preferences.follow_default_fuels(session, alice)

    assert queries.user_fuel_ids(session, alice) == [1, 2, 5]


def test_set_fuels_replaces_the_followed_set(session):
    alice, bob = new_user(session, "alice"), new_user(session, "bob")
    preferences.follow_default_fuels(session, alice)
    preferences.follow_default_fuels(session, bob)

    preferences.set_fuels(session, alice, [6, 2, 6])
    assert queries.user_fuel_ids(session, alice) == [2, 6]
    preferences.set_fuels(session, alice, (3,))
    assert queries.user_fuel_ids(session, alice) == [3]
    preferences.set_fuels(session, alice, {3})
    assert queries.user_fuel_ids(session, alice) == [3]
    assert queries.user_fuel_ids(session, bob) == [1, 2, 5]


@pytest.mark.parametrize(("fuel_ids", "message"), [([], "at least one fuel"), ([1, 7, 99], "Unknown fuel: 7, 99.")])
def test_set_fuels_refuses_an_empty_or_unknown_choice(session, fuel_ids, message):
    alice = new_user(session)
    preferences.follow_default_fuels(session, alice)

    with pytest.raises(InvalidFuels, match=message):
        preferences.set_fuels(session, alice, fuel_ids)

    assert queries.user_fuel_ids(session, alice) == [1, 2, 5]


# --------------------------------------------------------------------------- consumption


def consumption(session, user_id: int) -> tuple:
    session.flush()
    user = session.get(User, user_id)
    return user.litres_per_year, user.km_per_year, user.litres_per_100km, preferences.yearly_litres(user)


def test_consumption_defaults_to_650_litres(session):
    assert consumption(session, new_user(session)) == (None, None, None, 650)


def test_consumption_in_litres_or_from_distance(session):
    alice = new_user(session)

    preferences.set_consumption(session, alice, litres_per_year=1200)
    assert consumption(session, alice) == (1200, None, None, 1200)

    preferences.set_consumption(session, alice, km_per_year=15_000, litres_per_100km=6.5)
    assert consumption(session, alice) == (None, 15_000, 6.5, 975)

    preferences.set_consumption(session, alice, litres_per_year=1)
    assert consumption(session, alice) == (1, None, 6.5, 1)  # the car's consumption is kept for detours
    preferences.set_consumption(session, alice, km_per_year=200_000, litres_per_100km=30)
    assert consumption(session, alice)[3] == 60_000


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "Give either"),
        ({"km_per_year": 10_000}, "Give either"),
        ({"litres_per_100km": 6}, "Give either"),
        ({"litres_per_year": 800, "km_per_year": 10_000}, "Give either"),
        ({"litres_per_year": 800, "km_per_year": 10_000, "litres_per_100km": 6}, "Give either"),
        ({"litres_per_year": 0}, "Litres per year must be between 1 and 20,000."),
        ({"litres_per_year": 20_001}, "Litres per year"),
        ({"litres_per_year": float("nan")}, "Litres per year"),
        ({"km_per_year": 0.5, "litres_per_100km": 6}, "Kilometres per year must be between 1 and 200,000."),
        ({"km_per_year": 200_001, "litres_per_100km": 6}, "Kilometres per year"),
        ({"km_per_year": 10_000, "litres_per_100km": 0}, "Consumption in L/100 km must be between 1 and 30."),
        ({"km_per_year": 10_000, "litres_per_100km": 31}, "Consumption in L/100 km"),
    ],
)
def test_consumption_needs_one_mode_within_plausible_ranges(session, given, message):
    alice = new_user(session)
    preferences.set_consumption(session, alice, litres_per_year=900)

    with pytest.raises(InvalidConsumption, match=message):
        preferences.set_consumption(session, alice, **given)

    assert consumption(session, alice) == (900, None, None, 900)


def test_consumption_of_a_deleted_account_is_refused(session):
    with pytest.raises(UnknownUser, match="does not exist"):
        preferences.set_consumption(session, 999, litres_per_year=900)


def test_a_page_can_catch_every_refusal_as_one_preference_error():
    refusals = (
        InvalidName,
        UnknownStation,
        AlreadyFollowed,
        NotFollowed,
        InvalidFuels,
        InvalidConsumption,
        UnknownUser,
    )
    for refusal in refusals:
        assert issubclass(refusal, PreferenceError)


# --------------------------------------------------------------------------- savings (pure)


def row(station_id: int, price: str | None, *, fuel: str = "Gazole", age=dt.timedelta(hours=1), rupture=None):
    return BoardRow(
        station_id=station_id,
        name=f"Station {station_id}",
        address="",
        town="",
        zip_code="",
        fuel_id=1 if fuel == "Gazole" else 2,
        fuel=fuel,
        price=None if price is None else Decimal(price),
        updated_at=None if price is None else NOW - age,
        rupture=rupture,
    )


def test_savings_for_a_known_case():
    rows = [row(1, "1.800"), row(2, "1.850"), row(3, "1.900"), row(4, None)]

    saved = savings_per_fuel(rows, 650, WEEK, NOW)["Gazole"]

    assert saved.amount == Decimal("65.00")
    assert (saved.cheapest.station_id, saved.dearest.station_id, saved.litres) == (1, 3, 650)


def test_savings_are_rounded_to_the_cent():
    saved = savings_per_fuel([row(1, "1.799"), row(2, "1.853")], 333.3, WEEK, NOW)["Gazole"]

    assert saved.amount == Decimal("18.00")  # 0.054 x 333.3 = 17.9982


def test_stale_and_out_of_stock_prices_are_left_out_of_savings():
    rows = [
        row(1, "1.500", rupture="temporaire"),  # cheapest, but cannot be bought
        row(2, "1.600", rupture="unknown"),
        row(3, "1.800"),
        row(4, "1.850", age=WEEK),  # exactly a week old: still fresh
        row(5, "1.990", age=WEEK + dt.timedelta(seconds=1)),  # stale
    ]

    saved = savings_per_fuel(rows, 1000, WEEK, NOW)["Gazole"]

    assert (saved.cheapest.station_id, saved.dearest.station_id, saved.amount) == (3, 4, Decimal("50.00"))


def test_fuels_with_fewer_than_two_usable_prices_have_no_savings():
    rows = [
        row(1, "1.800"),
        row(2, "1.700", rupture="definitive"),
        row(3, "1.750", age=dt.timedelta(days=30)),
        row(1, "1.900", fuel="SP95"),
        row(2, "1.950", fuel="SP95"),
        row(3, None, fuel="SP95"),
    ]

    saved = savings_per_fuel(rows, 650, WEEK, NOW)

    assert list(saved) == ["Gazole", "SP95"]
    assert saved["Gazole"] is None
    assert saved["SP95"].amount == Decimal("32.50")
    assert savings_per_fuel([row(1, None)], 650, WEEK, NOW) == {"Gazole": None}
    assert savings_per_fuel([], 650, WEEK, NOW) == {}
