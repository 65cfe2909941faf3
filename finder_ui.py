"""The station finder's widgets: where and what to look for (kept in the URL), the results list,
the price map, and one station in detail. Shared by the public finder and the Stations page.

Every control is bound to a URL query parameter (`bind="query-params"`), so a search can be
bookmarked and shared: /find?q=Lyon&fuel=Gazole&radius=10 opens with its results.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import NamedTuple

import pandas as pd
import pydeck as pdk
import streamlit as st
from pydeck.bindings.json_tools import default_serialize
from streamlit_js_eval import get_geolocation

import finder
import place_search
import ui
from detour import ROAD_FACTOR, Trip
from finder import FinderStation, Result, StationDetail, week_of
from hours import OpeningStatus, opening_status, week
from place_search import SEARCH_MAX_CHARS, PlaceMatch
from utils import PARIS, utcnow

PLACE, FUEL, RADIUS, OPEN_NOW, AUTOMAT, BRAND, SORT = "q", "fuel", "radius", "open", "automat", "brand", "sort"
LATITUDE, LONGITUDE = "lat", "lon"
LOCATING, CLEAR_PLACE, ORDER_KEY = "finder-locating", "finder-clear-place", "finder-order"
DEFAULT_RADIUS_KM = 10
SORT_LABELS = {"price": "Cheapest", "distance": "Nearest", "saving": "Biggest net saving"}
GEOLOCATION_ERRORS = {
    1: "Your browser did not share its position.",
    2: "Your position could not be found.",
    3: "Your browser took too long to find your position.",
}
# A continuous scale from the cheapest to the dearest price shown: green, amber, red.
SCALE = ((46, 160, 67), (240, 170, 0), (214, 39, 40))
NO_PRICE = (150, 150, 150)
HERE = (0, 90, 220)
FRANCE = pdk.ViewState(latitude=46.6, longitude=2.4, zoom=4.6)
MAP_LAYER = "stations"
MIN_ZOOM, MAX_ZOOM = 4.0, 14.0


class Criteria(NamedTuple):
    fuel: str
    radius_km: int
    open_now: bool
    automat: bool
    brand: str | None
    sort: str

    def filters(self) -> dict:
        """The keyword arguments of `finder.results` these criteria set."""
        return {"sort": self.sort, "open_now": self.open_now, "automat": self.automat, "brand": self.brand}


@st.cache_data(ttl=600, show_spinner=False)
def _place_labels(_sessions, database_url: str) -> list[str]:
    with _sessions() as session:
        return [place.label for place in place_search.place_suggestions(session)]


def suggestions(app) -> list[str]:
    """The towns the place box suggests (they change only when stations do: cached ten minutes)."""
    return _place_labels(app.Session, app.settings.database_url)


def located() -> tuple[float, float] | None:
    """The position 'Locate me' found, from the URL (so that it can be shared), if any."""
    try:
        latitude, longitude = float(st.query_params[LATITUDE]), float(st.query_params[LONGITUDE])
    except (KeyError, ValueError):
        return None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    return latitude, longitude


def where(suggestions: Sequence[str]) -> str | None:
    """The place box (with suggestions as you type) and 'Locate me'; returns the place typed, if any."""
    if st.session_state.pop(CLEAR_PLACE, False):  # a position was found: it replaces the place typed
        st.session_state[PLACE] = None
    typed = st.session_state.get(PLACE) or st.query_params.get(PLACE)
    if typed and typed not in suggestions:  # what someone typed stays on show beside the suggestions
        suggestions = [typed, *suggestions]
    place_column, locate_column = st.columns([4, 1], vertical_alignment="bottom")
    with place_column:
        place = st.selectbox(
            "Town, postcode or address",
            suggestions,
            index=None,
            key=PLACE,
            bind="query-params",
            accept_new_options=True,
            placeholder="e.g. Lyon, 69003 or cours Gambetta Lyon",
        )
    if locate_column.button("Locate me", icon=":material/my_location:", width="stretch"):
        st.session_state[LOCATING] = st.session_state.get(LOCATING, 0) + 1
    if st.session_state.get(LOCATING):
        _ask_the_browser(st.session_state[LOCATING])
    place = (place or "").strip()
    return place[:SEARCH_MAX_CHARS] or None


def _ask_the_browser(attempt: int) -> None:
    answer = get_geolocation(component_key=f"geolocation-{attempt}")
    if answer is None:
        st.caption("Waiting for your browser to share its position…")
        return
    st.session_state[LOCATING] = 0
    coords = answer.get("coords") if isinstance(answer, dict) else None
    if coords and coords.get("latitude") is not None and coords.get("longitude") is not None:
        st.session_state[CLEAR_PLACE] = True
        st.query_params[LATITUDE] = f"{float(coords['latitude']):.5f}"
        st.query_params[LONGITUDE] = f"{float(coords['longitude']):.5f}"
        st.rerun()
    code = answer.get("error", {}).get("code") if isinstance(answer, dict) else None
    ui.warning(
        "{} Type a town, a postcode or an address instead.",
        GEOLOCATION_ERRORS.get(code, "Your position could not be found."),
    )


def forget_position() -> None:
    for name in (LATITUDE, LONGITUDE):
        st.query_params.pop(name, None)


def what(fuels: Sequence[str], default_fuel: str, brands: Sequence[str]) -> Criteria:
    """Fuel, radius, filters and order, each kept in the URL."""
    fuel_column, radius_column = st.columns(2)
    fuel = fuel_column.selectbox("Fuel", fuels, index=list(fuels).index(default_fuel), key=FUEL, bind="query-params")
    radius = radius_column.slider("Within (km)", 2, 50, DEFAULT_RADIUS_KM, key=RADIUS, bind="query-params")
    chosen = sum(bool(st.session_state.get(name)) for name in (OPEN_NOW, AUTOMAT, BRAND))
    with st.expander(
        f"Filters and order ({chosen} filter{'s' if chosen != 1 else ''} on)" if chosen else "Filters and order"
    ):
        open_column, automat_column, brand_column = st.columns([1, 1, 2], vertical_alignment="bottom")
        open_now = open_column.toggle("Open now", key=OPEN_NOW, bind="query-params")
        automat = automat_column.toggle("24/24 automat", key=AUTOMAT, bind="query-params")
        brand = brand_column.selectbox(
            "Brand", brands, index=None, placeholder="All brands", key=BRAND, bind="query-params"
        )
        sort = _order()
    return Criteria(fuel, int(radius), bool(open_now), bool(automat), brand, sort or "price")


def _order() -> str:
    """The order of the results, kept in the URL by its code (sort=distance): a link outlives the labels."""
    asked = st.query_params.get(SORT)
    if ORDER_KEY not in st.session_state:
        st.session_state[ORDER_KEY] = asked if asked in SORT_LABELS else "price"
    sort = st.segmented_control("Order", list(SORT_LABELS), format_func=SORT_LABELS.get, key=ORDER_KEY) or "price"
    if sort == "price":
        st.query_params.pop(SORT, None)
    else:
        st.query_params[SORT] = sort
    return sort


def _count(count: int) -> str:
    return f"**{count}** station" if count == 1 else f"**{count}** stations"


def understood(match: PlaceMatch | None, place: str | None, near_me: bool, criteria: Criteria, count: int) -> None:
    """One sentence saying what the search understood and found."""
    if near_me:
        ui.markdown(_count(count) + " within {} km of you.", criteria.radius_km)
    elif match is None:
        ui.warning("No place called “{}” was found. Try a town, a postcode, or a street and its town.", place)
    elif match.kind == "street":
        ui.markdown("No town called “{}”: " + _count(count) + " whose address matches.", place)
    else:
        ui.markdown(_count(count) + " in and around {}, {} km around.", match.label, criteria.radius_km)
        if match.alternatives:
            ui.caption("Did you mean {}?", ", ".join(a.label for a in match.alternatives))


def _price(result: Result) -> str:
    station = result.station
    if station.out_of_stock:
        return "out of stock"
    return f"{station.price:.3f} €/L" if station.price is not None else "—"


def _opening(opening: OpeningStatus) -> str:
    return {"open": "open", "closed": "closed"}.get(opening.state, "hours unknown")


def _saving(result: Result) -> str:
    if result.nearest:
        return "nearest selling it"
    if result.saving is None:
        return ""
    return f"saves {result.saving:.2f} € net" if result.saving > 0 else "not worth the detour"


def results_list(
    results: Sequence[Result], now: dt.datetime, key: str, names: dict[int, str] | None = None
) -> int | None:
    """The results, price first, then brand and name (or the name a person gave): both fit a phone's
    width. Returns the station picked."""
    names = names or {}
    table = pd.DataFrame(
        {
            "Price": [_price(r) for r in results],
            "Station": [names.get(r.station.id, r.station.title) for r in results],
            "km": [round(r.station.distance_km, 1) if r.station.distance_km is not None else None for r in results],
            "Town": [r.station.town for r in results],
            "Updated": [ui.age(r.station.updated_at, now) if r.station.updated_at else "" for r in results],
            "Open": [_opening(r.opening) for r in results],
            "Detour": [_saving(r) for r in results],
            "Motorway": ["motorway" if r.station.motorway else "" for r in results],
        }
    )
    config = {
        "Price": st.column_config.TextColumn(width=90),
        "Station": st.column_config.TextColumn(width=190),
        "km": st.column_config.NumberColumn(format="%.1f", width=50),
    }
    event = st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config=config,
        on_select="rerun",
        selection_mode="single-row",
        key=key,
    )
    picked = event.selection.rows if event else []
    return results[picked[0]].station.id if picked else None


def _colour(price: Decimal | None, low: Decimal, high: Decimal) -> list[int]:
    if price is None:
        return list(NO_PRICE)
    share = min(max(float((price - low) / (high - low)), 0.0), 1.0) if high > low else 0.0
    start, end = (SCALE[0], SCALE[1]) if share < 0.5 else (SCALE[1], SCALE[2])
    part = share * 2 if share < 0.5 else share * 2 - 1
    return [round(a + (b - a) * part) for a, b in zip(start, end, strict=True)]


def _scale(stations: Sequence[FinderStation]) -> tuple[Decimal, Decimal]:
    """The 5th and 95th percentiles of the prices: one odd price does not flatten every colour."""
    prices = sorted(s.price for s in stations if s.available)
    if not prices:
        return Decimal(0), Decimal(0)
    return prices[len(prices) * 5 // 100], prices[(len(prices) - 1) * 95 // 100]


class MapPoints(NamedTuple):
    """What the map draws: one compact record per station, and the prices its colour scale spans."""

    data: list[dict]
    ids: list[int]  # the station of each record: the map reports a click by the record's index
    low: Decimal
    high: Decimal


def map_points(stations: Sequence[FinderStation], openings: dict[int, OpeningStatus], now: dt.datetime) -> MapPoints:
    """One small record per station with coordinates: 10,000 of them stay under 1 MB of JSON."""
    located = [s for s in stations if s.latitude is not None and s.longitude is not None]
    low, high = _scale(located)
    data = [
        {
            "p": [round(s.longitude, 4), round(s.latitude, 4)],
            "c": _colour(s.price if s.available else None, low, high),
            "t": _tooltip(s, openings.get(s.id), now),
        }
        for s in located
    ]
    return MapPoints(data, [s.id for s in located], low, high)


@st.cache_data(ttl=60, show_spinner=False)
def _france(_sessions, database_url: str, fuel_id: int) -> MapPoints:
    now = utcnow()
    with _sessions() as session:
        stations = finder.france(session, fuel_id)
    return map_points(stations, finder.openings(stations, now), now)


def france(app, fuel_id: int) -> MapPoints:
    """Every station of France on the map (cached a minute: the prices change hourly at most)."""
    return _france(app.Session, app.settings.database_url, fuel_id)


class _CompactDeck(pdk.Deck):
    """pydeck indents its JSON, tripling what a 10,000-point map sends to the browser."""

    def to_json(self) -> str:
        return json.dumps(self, sort_keys=True, default=default_serialize, separators=(",", ":"), ensure_ascii=False)


def price_map(
    points: MapPoints,
    selected: int | None,
    here: tuple[float, float] | None,
    map_provider: str,
    key: str,
) -> int | None:
    """The stations coloured by price on one scale, with its legend; returns the station clicked."""
    data = points.data
    layers = [
        pdk.Layer(
            "ScatterplotLayer",
            id=MAP_LAYER,
            data=data,
            get_position="p",
            get_fill_color="c",
            opacity=0.85,
            get_radius=3 if len(data) > 1000 else 7,
            radius_units="'pixels'",
            pickable=True,
        )
    ]
    marks = [{"p": data[i]["p"], "t": data[i]["t"]} for i, id_ in enumerate(points.ids) if id_ == selected]
    if marks:
        layers.append(_ring(marks, "selected", (20, 20, 20), 12))
    if here is not None:
        layers.append(_ring([{"p": [here[1], here[0]], "t": "You are here"}], "here", HERE, 9, filled=True))
    deck = _CompactDeck(
        layers=layers,
        initial_view_state=_view([point["p"] for point in data], here),
        tooltip={"text": "{t}"},
        map_provider=None if map_provider == "none" else map_provider,
        **({} if map_provider == "none" else {"map_style": None}),
    )
    event = st.pydeck_chart(deck, on_select="rerun", selection_mode="single-object", key=key, height=460)
    if points.low < points.high:
        ui.caption(
            "Colours: green {} and cheaper, amber {}, red {} and dearer, grey no price.",
            f"{points.low:.3f} €/L",
            f"{(points.low + points.high) / 2:.3f} €/L",
            f"{points.high:.3f} €/L",
        )
    chosen = event.selection.get("indices", {}).get(MAP_LAYER) if event else None
    return points.ids[chosen[0]] if chosen else None


def _ring(data: list[dict], layer_id: str, colour: tuple[int, int, int], radius: int, filled: bool = False):
    return pdk.Layer(
        "ScatterplotLayer",
        id=layer_id,
        data=data,
        get_position="p",
        get_fill_color=[*colour, 255] if filled else [0, 0, 0, 0],
        get_line_color=[*colour, 255] if not filled else [255, 255, 255, 255],
        get_radius=radius,
        get_line_width=3,
        radius_units="'pixels'",
        line_width_units="'pixels'",
        stroked=True,
        pickable=True,
    )


def _tooltip(station: FinderStation, opening: OpeningStatus | None, now: dt.datetime) -> str:
    """Brand (or town), price and its age, open or not: short, as 10,000 of them travel with the map."""
    if station.out_of_stock:
        price = "out of stock"
    elif station.price is not None:
        price = f"{station.price:.3f} €/L, {ui.age(station.updated_at, now)}"
    else:
        price = "no price"
    status = f"\n{_opening(opening)}" if opening is not None else ""
    return f"{station.brand or station.town}\n{price}{status}"


def _view(positions: Sequence[list[float]], here: tuple[float, float] | None) -> pdk.ViewState:
    """France when the points cover it, else a view fitting the points and the person's position."""
    if len(positions) > 1000 or not positions:
        return FRANCE
    longitudes = [p[0] for p in positions] + ([here[1]] if here else [])
    latitudes = [p[1] for p in positions] + ([here[0]] if here else [])
    south, north, west, east = min(latitudes), max(latitudes), min(longitudes), max(longitudes)
    # Web Mercator: a degree of latitude is 1/cos(latitude) times taller than one of longitude.
    stretch = 1 / math.cos(math.radians((south + north) / 2))
    span = max(east - west, (north - south) * stretch, 0.005)
    # deck.gl draws the world 512 * 2**z pixels wide at zoom z; keep the span within about 300 pixels.
    zoom = math.log2(300 * 360 / (512 * span))
    return pdk.ViewState(
        latitude=(south + north) / 2, longitude=(west + east) / 2, zoom=min(max(zoom, MIN_ZOOM), MAX_ZOOM)
    )


def detour_formula(trip: Trip) -> None:
    ui.caption(
        "Net saving = (price at the nearest station − price here) × {} L − 2 × extra distance × {} (roads are "
        "longer than a straight line) × {} L/100 km × price here. Set your fill and consumption in your profile.",
        f"{trip.tank_litres:g}",
        f"{ROAD_FACTOR:g}",
        f"{trip.litres_per_100km:g}",
    )


def station_detail(detail: StationDetail, now: dt.datetime) -> None:
    """Brand, address, every fuel with its price and age, the week's hours with today marked, services."""
    station = detail.station
    opening = opening_status(week_of(station), station.automat, now)
    st.subheader(ui.md("{}", station.title))
    ui.markdown("{}, {} {}", station.address, station.zip_code, station.town)
    facts = [opening.phrase()]
    if station.automat and opening.state == "open":  # otherwise the phrase names the automat already
        facts.append("24/24 automat")
    if station.motorway:
        facts.append("motorway")
    ui.markdown("**{}**", " · ".join(facts))
    fuels = pd.DataFrame(
        {
            "Fuel": [f.fuel for f in detail.fuels],
            "Price": [
                ("out of stock" if f.rupture else f"{f.price:.3f} €/L" if f.price is not None else "—")
                for f in detail.fuels
            ],
            "Updated": [
                f"{ui.paris_time(f.updated_at)} ({ui.age(f.updated_at, now)})" if f.updated_at else ""
                for f in detail.fuels
            ],
        }
    )
    if detail.fuels:
        st.dataframe(fuels, hide_index=True, width="stretch")
    else:
        st.caption("This station declares no price at the moment.")
    days = week(week_of(station), now.astimezone(PARIS).date())
    ui.markdown(
        "  \n".join(("**{}: {}** (today)" if day.today else "{}: {}") for day in days),
        *[part for day in days for part in (day.name, day.text)],
    )
    if detail.services:
        ui.caption("Services: {}", ", ".join(detail.services))


def follow_form(station: FinderStation) -> str | None:
    """'Follow this station' under a name the person chooses; the name when the form was sent."""
    with st.form("follow"):
        name = st.text_input(
            "Name it (1 to 40 characters)",
            value=f"{station.brand or station.town} {station.address}"[:40].strip(),
            max_chars=40,
        )
        if st.form_submit_button("Follow this station", icon=":material/add:"):
            return name
    return None


def trip_form(trip: Trip) -> tuple[float, float] | None:
    """The litres of one fill and the car's L/100 km; both when the form was sent."""
    with st.form("trip"):
        left, right = st.columns(2)
        tank = left.number_input(
            "Litres per fill", min_value=0.0, value=float(trip.tank_litres), step=5.0, key="trip-litres"
        )
        per_100 = right.number_input(
            "Consumption (L/100 km)", min_value=0.0, value=float(trip.litres_per_100km), step=0.1, key="trip-l100"
        )
        if st.form_submit_button("Save my fill and consumption"):
            return tank, per_100
    return None
