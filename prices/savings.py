"""What choosing well saves: the gap between a user's dearest and cheapest favourite, over a year."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple

from prices.queries import BoardRow

CENT = Decimal("0.01")


class Savings(NamedTuple):
    fuel: str
    cheapest: BoardRow
    dearest: BoardRow
    litres: float
    amount: Decimal  # euros per year: (dearest price - cheapest price) x litres, to the cent


def savings_per_fuel(
    rows: Iterable[BoardRow], yearly_litres: float, stale_after: dt.timedelta, now: dt.datetime
) -> dict[str, Savings | None]:
    """For each fuel of the board, the yearly savings; None when fewer than two prices can be compared.

    Only prices that can be bought count: out-of-stock pairs and prices older than
    `stale_after` are left out.
    """
    usable: dict[str, list[BoardRow]] = {}
    for row in rows:
        candidates = usable.setdefault(row.fuel, [])
        if row.available and not row.is_stale(now, stale_after):
            candidates.append(row)
    return {fuel: _savings(fuel, candidates, yearly_litres) for fuel, candidates in usable.items()}


def _savings(fuel: str, rows: list[BoardRow], litres: float) -> Savings | None:
    if len(rows) < 2:
        return None
    cheapest = min(rows, key=lambda row: row.price)
    dearest = max(rows, key=lambda row: row.price)
    amount = ((dearest.price - cheapest.price) * Decimal(str(litres))).quantize(CENT, rounding=ROUND_HALF_UP)
    return Savings(fuel, cheapest, dearest, litres, amount)
