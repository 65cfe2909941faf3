"""The price map: stations coloured on one scale from the cheapest to the dearest shown, with its legend,
the place searched (or the person's position) and the circle of the radius around it, and the selected
station; every station of France when nothing is searched.

A 10,000-point map stays under 1 MB: each point carries its position, colour and tooltip only, in
JSON without indentation, and a click is read back by the point's index.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import NamedTuple

import pydeck as pdk
import streamlit as st
from pydeck.bindings.json_tools import default_serialize

import i18n
from i18n import N_, _, age, price
from prices import finder
from prices.finder import FinderStation
from prices.hours import OpeningStatus
from ui import reads, widgets
from utils import bounding_box, utcnow

# A continuous scale from the cheapest to the dearest price shown: green, amber, red.
SCALE = ((46, 160, 67), (240, 170, 0), (214, 39, 40))
NO_PRICE = (150, 150, 150)
HERE = (0, 90, 220)  # the place searched, or the person's position, and the circle of the radius around it
FRANCE = pdk.ViewState(latitude=46.6, longitude=2.4, zoom=4.6)
MAP_LAYER = "stations"
MIN_ZOOM, MAX_ZOOM = 4.0, 14.0


OPENING_WORDS = {"open": N_("open"), "closed": N_("closed")}
HOURS_UNKNOWN = N_("hours unknown")


def opening_word(opening: OpeningStatus) -> str:
    return _(OPENING_WORDS.get(opening.state, HOURS_UNKNOWN))


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


class Area(NamedTuple):
    """The centre of a search and the radius around it, drawn under the stations."""

    latitude: float
    longitude: float
    radius_km: float
    label: str | None  # the place searched; None for the person's position, marked 'You are here'


class MapPoints(NamedTuple):
    """What the map draws: one compact record per station, and the prices its colour scale spans."""

    data: list[dict]
    ids: list[int]  # the station of each record: the map reports a click by the record's index
    low: Decimal
    high: Decimal
    spec: str | None = None  # the map's JSON with nothing marked on it, when it was made once for many draws


class _Layout(NamedTuple):
    """Where and in which colour each station with coordinates is drawn: all of a map but its tooltips."""

    stations: list[FinderStation]
    positions: list[list[float]]
    colours: list[list[int]]
    low: Decimal
    high: Decimal


def _layout(stations: Sequence[FinderStation]) -> _Layout:
    located = [s for s in stations if s.latitude is not None and s.longitude is not None]
    low, high = _scale(located)
    return _Layout(
        located,
        [[round(s.longitude, 4), round(s.latitude, 4)] for s in located],
        [_colour(s.price if s.available else None, low, high) for s in located],
        low,
        high,
    )


def _points(layout: _Layout, openings: dict[int, OpeningStatus], now: dt.datetime) -> MapPoints:
    data = [
        {"p": position, "c": colour, "t": _tooltip(station, openings.get(station.id), now)}
        for station, position, colour in zip(layout.stations, layout.positions, layout.colours, strict=True)
    ]
    return MapPoints(data, [s.id for s in layout.stations], layout.low, layout.high)


def map_points(stations: Sequence[FinderStation], openings: dict[int, OpeningStatus], now: dt.datetime) -> MapPoints:
    """One small record per station with coordinates: 10,000 of them stay under 1 MB of JSON."""
    return _points(_layout(stations), openings, now)


@st.cache_resource(max_entries=reads.VERSIONS_KEPT * 6, show_spinner=False)  # shared, never copied: read only
def _france_layout(_sessions, database_url: str, version: int, fuel_id: int) -> _Layout:
    with _sessions() as session:
        return _layout(finder.france(session, fuel_id))


@st.cache_resource(ttl=60, max_entries=reads.VERSIONS_KEPT * 6, show_spinner=False)  # shared, never copied: read only
def _france(
    _sessions, database_url: str, version: int, fuel_id: int, map_provider: str, language: str
) -> MapPoints:  # tooltips are in `language`
    now = utcnow()
    layout = _france_layout(_sessions, database_url, version, fuel_id)
    points = _points(layout, finder.openings(layout.stations, now), now)
    return points._replace(spec=_deck(points, None, None, map_provider).to_json())


def france(app, fuel_id: int) -> MapPoints:
    """Every station of France on the map: read and coloured once per pass; its tooltips, which say how old
    each price is and whether the station is open (in the session's language), and its JSON are made again
    each minute."""
    version = reads.version(app)
    return _france(app.Session, app.settings.database_url, version, fuel_id, app.settings.map_provider, i18n.language())


class _CompactDeck(pdk.Deck):
    """pydeck indents its JSON, tripling what a 10,000-point map sends to the browser."""

    spec: str | None = None  # the JSON, when it was made already

    def to_json(self) -> str:
        if self.spec is not None:
            return self.spec
        return json.dumps(self, sort_keys=True, default=default_serialize, separators=(",", ":"), ensure_ascii=False)


def _deck(
    points: MapPoints,
    selected: int | None,
    here: tuple[float, float] | None,
    map_provider: str,
    area: Area | None = None,
) -> _CompactDeck:
    data = points.data
    layers = [] if area is None else [_circle(area)]
    layers += [
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
    if area is not None and area.label is not None:
        layers.append(_ring([{"p": _position(area.latitude, area.longitude), "t": area.label}], "place", HERE, 8, True))
    if here is not None:
        layers.append(_ring([{"p": [here[1], here[0]], "t": _("You are here")}], "here", HERE, 9, filled=True))
    deck = _CompactDeck(
        layers=layers,
        initial_view_state=_view([point["p"] for point in data], here, area),
        tooltip={"text": "{t}"},
        map_provider=None if map_provider == "none" else map_provider,
        **({} if map_provider == "none" else {"map_style": None}),
    )
    if points.spec is not None and not marks and here is None and area is None:
        deck.spec = points.spec
    return deck


def price_map(
    points: MapPoints,
    selected: int | None,
    here: tuple[float, float] | None,
    map_provider: str,
    key: str,
    area: Area | None = None,
) -> int | None:
    """The stations coloured by price on one scale, with its legend, over the `area` searched; returns the
    station clicked."""
    deck = _deck(points, selected, here, map_provider, area)
    event = st.pydeck_chart(deck, on_select="rerun", selection_mode="single-object", key=key, height=460)
    if points.low < points.high:
        widgets.caption(
            _("Colours: green {} and cheaper, amber {}, red {} and dearer, grey no price."),
            price(points.low),
            price((points.low + points.high) / 2),
            price(points.high),
        )
    chosen = event.selection.get("indices", {}).get(MAP_LAYER) if event else None
    return points.ids[chosen[0]] if chosen else None


def _position(latitude: float, longitude: float) -> list[float]:
    return [round(longitude, 4), round(latitude, 4)]


def _circle(area: Area):
    """The radius searched: a thin circle, its inside lightly tinted, that no click or tooltip picks."""
    return pdk.Layer(
        "ScatterplotLayer",
        id="radius",
        data=[{"p": _position(area.latitude, area.longitude)}],
        get_position="p",
        get_radius=area.radius_km * 1000,
        radius_units="'meters'",
        get_fill_color=[*HERE, 18],
        get_line_color=[*HERE, 200],
        get_line_width=2,
        line_width_units="'pixels'",
        stroked=True,
        filled=True,
        pickable=False,
    )


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
        shown = _("out of stock")
    elif station.price is not None:
        shown = f"{price(station.price)}, {age(station.updated_at, now)}"
    else:
        shown = _("no price")
    status = f"\n{opening_word(opening)}" if opening is not None else ""
    return f"{station.brand or station.town_name}\n{shown}{status}"


def _view(
    positions: Sequence[list[float]], here: tuple[float, float] | None, area: Area | None = None
) -> pdk.ViewState:
    """France when the points cover it, else a view fitting the points, the person's position and the circle
    of the radius searched."""
    if len(positions) > 1000 or not (positions or area):
        return FRANCE
    longitudes = [p[0] for p in positions] + ([here[1]] if here else [])
    latitudes = [p[1] for p in positions] + ([here[0]] if here else [])
    if area is not None:  # the circle's bounding box
        south, west, north, east = bounding_box(area.latitude, area.longitude, area.radius_km)
        latitudes += [south, north]
        longitudes += [west, east]
    south, north, west, east = min(latitudes), max(latitudes), min(longitudes), max(longitudes)
    # Web Mercator: a degree of latitude is 1/cos(latitude) times taller than one of longitude.
    stretch = 1 / math.cos(math.radians((south + north) / 2))
    span = max(east - west, (north - south) * stretch, 0.005)
    # deck.gl draws the world 512 * 2**z pixels wide at zoom z; keep the span within about 300 pixels.
    zoom = math.log2(300 * 360 / (512 * span))
    return pdk.ViewState(
        latitude=(south + north) / 2, longitude=(west + east) / 2, zoom=min(max(zoom, MIN_ZOOM), MAX_ZOOM)
    )
