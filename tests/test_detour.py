"""Is the detour worth it: the net saving of one fill, worked out by hand, and the fill and consumption it uses.

net saving = (nearest price − price) × litres − 2 × extra km × 1.3 × L/100 km / 100 × price, in euros,
quantized to the cent. Exact half cents round half to even (the decimal module's default context):
2.485 would read 2.48, 2.475 would read 2.48.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

import pytest
from sqlalchemy import select

from models import User
from prices import preferences
from prices.detour import DEFAULT_LITRES_PER_100KM, DEFAULT_TANK_LITRES, ROAD_FACTOR, Trip, net_saving
from session import session_factory
from utils import UTC

NOW = dt.datetime(2024, 5, 8, 10, 30, tzinfo=UTC)


DEFAULT_TRIP = Trip()


def saving(price: str, km: float, nearest_price: str, nearest_km: float, trip: Trip = DEFAULT_TRIP) -> Decimal:
    return net_saving(Decimal(price), km, Decimal(nearest_price), nearest_km, trip)


# --------------------------------------------------------------------------- the formula


def test_the_defaults_are_a_40_litre_fill_and_6_5_litres_per_100_km_on_roads_1_3_times_the_straight_line():
    assert Trip() == (DEFAULT_TANK_LITRES, DEFAULT_LITRES_PER_100KM) == (40.0, 6.5)
    assert Decimal("1.3") == ROAD_FACTOR


def test_a_cheaper_station_5_km_farther_saves_2_48_on_a_40_litre_fill():
    # (1.900 − 1.800) × 40 = 4.000 on the fill; 2 × 5 km × 1.3 × 6.5 / 100 = 0.845 L burnt, × 1.800 = 1.521.
    # 4.000 − 1.521 = 2.479, to the cent 2.48.
    result = saving("1.800", 6.0, "1.900", 1.0)

    assert result == Decimal("2.48")
    assert str(result) == "2.48", "two decimal places, as shown"


def test_the_nearest_station_itself_saves_nothing():
    assert str(saving("1.900", 1.0, "1.900", 1.0)) == "0.00"


def test_a_dearer_station_as_near_as_the_nearest_loses_the_price_gap_on_the_fill():
    # No extra kilometre: (1.900 − 1.950) × 40 = −2.00.
    assert saving("1.950", 1.0, "1.900", 1.0) == Decimal("-2.00")


def test_a_station_nearer_than_the_reference_costs_no_negative_kilometres():
    # The extra distance clamps at 0: the saving is the price gap alone, (1.900 − 1.850) × 40 = 2.00,
    # not 2.00 plus a refund of 2 × 2 km of fuel.
    assert saving("1.850", 1.0, "1.900", 3.0) == Decimal("2.00")


def test_a_small_gap_far_away_is_not_worth_it():
    # (1.900 − 1.880) × 40 = 0.800; 2 × 10 km × 1.3 × 6.5 / 100 = 1.69 L × 1.880 = 3.1772; 0.800 − 3.1772 = −2.3772.
    assert saving("1.880", 11.0, "1.900", 1.0) == Decimal("-2.38")


def test_a_bigger_fill_makes_the_same_detour_worth_it():
    # 2 × 3 km × 1.3 × 6.5 / 100 = 0.507 L × 1.880 = 0.95316 either way.
    small = saving("1.880", 4.0, "1.900", 1.0, Trip(tank_litres=40, litres_per_100km=6.5))
    big = saving("1.880", 4.0, "1.900", 1.0, Trip(tank_litres=70, litres_per_100km=6.5))

    assert small == Decimal("-0.15")  # 0.020 × 40 = 0.800 − 0.95316 = −0.15316
    assert big == Decimal("0.45")  # 0.020 × 70 = 1.400 − 0.95316 = 0.44684


def test_a_thirstier_car_makes_the_same_detour_cost_more():
    # 2 × 5 km × 1.3 × 13 / 100 = 1.69 L × 1.800 = 3.042; 4.000 − 3.042 = 0.958.
    assert saving("1.800", 6.0, "1.900", 1.0, Trip(40, 13.0)) == Decimal("0.96")


@pytest.mark.parametrize(
    ("litres", "expected"),
    [
        (5, "0.01"),  # 0.001 × 5 = 0.005: half a cent rounds up, as the yearly savings do
        (15, "0.02"),  # 0.015
        (25, "0.03"),  # 0.025
    ],
)
def test_exact_half_cents_round_half_up(litres, expected):
    assert str(saving("1.899", 2.0, "1.900", 2.0, Trip(litres, 6.5))) == expected


def test_an_exact_half_cent_from_the_drive_rounds_like_one_from_the_fill():
    # 2 × 0.7 km × 1.3 × 12.5 / 100 = 0.2275 L × 2.000 = 0.455 exactly (in floats, 0.4549999…): −0.46.
    assert saving("2.000", 0.7, "2.000", 0.0, Trip(40, 12.5)) == Decimal("-0.46")


# --------------------------------------------------------------------------- the fill and consumption of a user


@pytest.fixture
def session(engine):
    with session_factory(engine)() as session, session.begin():
        yield session


@pytest.fixture
def alice(session) -> int:
    user = User(username="alice", email="alice@example.org", name="Alice", created_at=NOW)
    session.add(user)
    session.flush()
    return user.id


def trip_of(session, user_id: int) -> Trip:
    """The trip as stored: pending changes are written, then read back from the database."""
    session.flush()
    session.expire_all()
    return preferences.trip(session.get(User, user_id))


def test_signed_out_and_new_accounts_get_the_default_trip(session, alice):
    assert preferences.trip(None) == Trip(40.0, 6.5)
    assert trip_of(session, alice) == Trip(40.0, 6.5)


def test_set_trip_is_what_the_detour_uses_from_then_on(session, alice):
    preferences.set_trip(session, alice, tank_litres=55, litres_per_100km=7.2)

    assert trip_of(session, alice) == Trip(55.0, 7.2)
    row = session.execute(select(User.tank_litres, User.litres_per_100km).where(User.id == alice)).one()
    assert tuple(row) == (55.0, 7.2)


def test_set_trip_accepts_the_ends_of_its_ranges(session, alice):
    preferences.set_trip(session, alice, tank_litres=5, litres_per_100km=1)
    assert trip_of(session, alice) == Trip(5.0, 1.0)
    preferences.set_trip(session, alice, tank_litres=200, litres_per_100km=30)
    assert trip_of(session, alice) == Trip(200.0, 30.0)


@pytest.mark.parametrize(
    ("tank", "per_100", "message"),
    [
        (4.9, 6.5, "Litres per fill must be between 5 and 200."),
        (201, 6.5, "Litres per fill must be between 5 and 200."),
        (0, 6.5, "Litres per fill must be between 5 and 200."),
        (-40, 6.5, "Litres per fill must be between 5 and 200."),
        (math.nan, 6.5, "Litres per fill must be between 5 and 200."),
        (math.inf, 6.5, "Litres per fill must be between 5 and 200."),
        (40, 0.9, "Consumption in L/100 km must be between 1 and 30."),
        (40, 31, "Consumption in L/100 km must be between 1 and 30."),
        (40, math.nan, "Consumption in L/100 km must be between 1 and 30."),
    ],
)
def test_set_trip_refuses_values_out_of_range_and_changes_nothing(session, alice, tank, per_100, message):
    preferences.set_trip(session, alice, tank_litres=50, litres_per_100km=6.0)

    with pytest.raises(preferences.InvalidConsumption) as refused:
        preferences.set_trip(session, alice, tank_litres=tank, litres_per_100km=per_100)

    assert str(refused.value) == message
    assert isinstance(refused.value, preferences.PreferenceError), "the page shows PreferenceError messages"
    assert trip_of(session, alice) == Trip(50.0, 6.0), "neither value changed"


def test_set_trip_for_an_account_deleted_meanwhile_says_so(session, alice):
    with pytest.raises(preferences.UnknownUser, match=r"^This account does not exist any more\.$"):
        preferences.set_trip(session, alice + 1000, tank_litres=40, litres_per_100km=6.5)
    assert trip_of(session, alice) == Trip(40.0, 6.5)


def test_switching_the_yearly_consumption_to_litres_keeps_the_cars_l_per_100_km(session, alice):
    preferences.set_trip(session, alice, tank_litres=45, litres_per_100km=7.5)
    preferences.set_consumption(session, alice, km_per_year=12_000, litres_per_100km=8.0)
    assert trip_of(session, alice) == Trip(45.0, 8.0), "the distance mode sets the car's consumption"

    preferences.set_consumption(session, alice, litres_per_year=900)

    session.flush()
    session.expire_all()
    user = session.get(User, alice)
    assert (user.litres_per_year, user.km_per_year) == (900.0, None), "the other mode is cleared"
    assert user.litres_per_100km == 8.0
    assert trip_of(session, alice) == Trip(45.0, 8.0), "the detour still knows what the car burns"
