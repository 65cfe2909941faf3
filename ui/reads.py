"""What pages read that only an ETL pass changes, cached once per process and keyed by the data's version.

Stations, prices, brands and places are written by passes alone, and each pass records its run in
the same transaction (`queries.data_version`): a page asks for the version (one indexed read) and
gets the freshness line and the demo's stations computed once for everyone
until the next pass, which shows at once. Nothing here reads a person's own data.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from prices import queries
from prices.queries import Favourite, Freshness

VERSIONS_KEPT = 4  # a pass landing while pages are drawn: the previous version is still asked for a moment


def version(app) -> int:
    with app.Session() as session:
        return queries.data_version(session)


@st.cache_data(max_entries=VERSIONS_KEPT, show_spinner=False)
def _freshness(_sessions, database_url: str, version: int) -> Freshness:
    with _sessions() as session:
        return queries.freshness(session)


def freshness(app) -> Freshness:
    """How current the prices are (see `queries.freshness`)."""
    return _freshness(app.Session, app.settings.database_url, version(app))


@st.cache_data(max_entries=VERSIONS_KEPT, show_spinner=False)
def _demo_stations(_sessions, database_url: str, version: int, fuel_ids: tuple[int, ...]) -> list[Favourite]:
    with _sessions() as session:
        return queries.demo_stations(session, fuel_ids, count=3)


def demo_stations(app, fuel_ids: Sequence[int]) -> list[Favourite]:
    """The demo's three stations (see `queries.demo_stations`)."""
    return _demo_stations(app.Session, app.settings.database_url, version(app), tuple(fuel_ids))
