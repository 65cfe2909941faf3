"""What pages read that only an ETL pass changes, cached once per process and keyed by the data's version.

Stations, prices, brands and places are written by passes alone, and each pass records its run in
the same transaction (`queries.data_version`): a page asks for the version (one indexed read) and
gets the freshness line, the demo's stations, the places suggested and the place a search names computed once
for everyone
until the next pass, which shows at once. Nothing here reads a person's own data.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from prices import place_search, queries
from prices.place_search import PlaceMatch
from prices.queries import Favourite, Freshness

VERSIONS_KEPT = 4  # a pass landing while pages are drawn: the previous version is still asked for a moment
PLACES_KEPT = 2000  # places searched, over the versions kept: a few KB each


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


# What a text typed in a place box is read as; each is cached apart, by its name and the text.
PLACE_READINGS = {
    "place": place_search.resolve_place,
    "spelt_like": place_search.spelt_like,
    "suggest": place_search.suggest,
}


@st.cache_data(max_entries=len(PLACE_READINGS) * PLACES_KEPT, show_spinner=False)
def _place_reading(_sessions, database_url: str, version: int, reading: str, text: str):
    with _sessions() as session:
        return PLACE_READINGS[reading](session, text)


def place(app, text: str) -> PlaceMatch | None:
    """The place `text` names (see `place_search.resolve_place`, which raises SearchTooLong): a search, and every
    rerun of its page (a filter, a pick in the list, a sign-in), reads it again."""
    return _place_reading(app.Session, app.settings.database_url, version(app), "place", text)


def spelt_like(app, text: str) -> list[str]:
    """The places spelt nearly as a text that names none (see `place_search.spelt_like`)."""
    return _place_reading(app.Session, app.settings.database_url, version(app), "spelt_like", text)


def suggestions(app, text: str) -> list[str]:
    """The places offered for `text` (see `place_search.suggest`): each keystroke in the place box asks, and the
    first letters people type are much the same."""
    return _place_reading(app.Session, app.settings.database_url, version(app), "suggest", text)
