"""Is the detour worth it: what filling up at a farther, cheaper station saves once the drive is paid for."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple

ROAD_FACTOR = Decimal("1.3")  # roads are longer than the straight line between two points
CENT = Decimal("0.01")
DEFAULT_TANK_LITRES = 40.0
DEFAULT_LITRES_PER_100KM = 6.5


class Trip(NamedTuple):
    """What one fill takes and what the car burns to get there."""

    tank_litres: float = DEFAULT_TANK_LITRES
    litres_per_100km: float = DEFAULT_LITRES_PER_100KM


def net_saving(
    price: Decimal, distance_km: float, nearest_price: Decimal, nearest_distance_km: float, trip: Trip
) -> Decimal:
    """Euros saved on one fill at this station rather than at the nearest one selling the fuel.

    (nearest price − price) × litres − 2 × (extra distance × ROAD_FACTOR) × consumption / 100 × price:
    the extra distance is driven there and back, and the fuel burnt on it is bought at this price.
    Negative when the detour costs more than it saves.
    """
    extra_km = max(Decimal(0), _decimal(distance_km) - _decimal(nearest_distance_km))
    on_the_fill = (nearest_price - price) * _decimal(trip.tank_litres)
    burnt_litres = 2 * extra_km * ROAD_FACTOR * _decimal(trip.litres_per_100km) / 100
    return (on_the_fill - burnt_litres * price).quantize(CENT, rounding=ROUND_HALF_UP)


def _decimal(number: float) -> Decimal:
    # Through its shortest repr: 0.7 is 0.7, not 0.6999999999999999555910790149937.
    return Decimal(repr(number))
