"""The station finder's widgets: what to look for (kept in the URL), what the search understood, the results
list, and one station in detail (where to look is place_box's; the map is map_ui's). Shared by the finder,
My stations and the demo.

Every control is kept in a URL query parameter (`bind="query-params"`), so a search can be bookmarked and
shared: /find?q=Lyon&fuel=Gazole&radius=10 opens with its results.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import NamedTuple

import pandas as pd
import streamlit as st

from i18n import N_, _, age, distance, litres, moment, money, ngettext, number, price
from prices.detour import ROAD_FACTOR, Trip
from prices.finder import MAX_RADIUS_KM, FinderStation, Result, StationDetail, week_of
from prices.hours import any_day_known, opening_status, week
from prices.place_search import PlaceMatch
from prices.preferences import NAME_MAX_CHARS, default_name
from ui import map_ui, place_box, trends_ui, widgets
from utils import PARIS

FUEL, RADIUS, OPEN_NOW, AUTOMAT, BRAND, SORT = "fuel", "radius", "open", "automat", "brand", "sort"
ORDER_KEY = "finder-order"
DEFAULT_RADIUS_KM = 10
MIN_RADIUS_KM = 2
OTHER_PLACE = ":blue[{}]"  # "Did you mean" offers each other place as a button that reads as a link
SORT_LABELS = {"price": N_("Cheapest"), "distance": N_("Nearest"), "saving": N_("Biggest net saving")}


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


def what(fuels: Sequence[str], default_fuel: str, brands: Sequence[str]) -> Criteria:
    """Fuel, radius, filters and order, each kept in the URL."""
    fuel_column, radius_column = st.columns(2)
    fuel = fuel_column.selectbox(_("Fuel"), fuels, index=list(fuels).index(default_fuel), key=FUEL, bind="query-params")
    # No default once "Search within 50 km" has set the radius: Streamlit warns of a widget given both.
    default = None if RADIUS in st.session_state else DEFAULT_RADIUS_KM
    radius = radius_column.slider(
        _("Within (km)"), MIN_RADIUS_KM, MAX_RADIUS_KM, default, key=RADIUS, bind="query-params"
    )
    chosen = sum(bool(st.session_state.get(name)) for name in (OPEN_NOW, AUTOMAT, BRAND))
    with st.expander(
        ngettext("Filters and order ({} filter on)", "Filters and order ({} filters on)", chosen).format(chosen)
        if chosen
        else _("Filters and order")
    ):
        open_column, automat_column, brand_column = st.columns([1, 1, 2], vertical_alignment="bottom")
        open_now = open_column.toggle(_("Open now"), key=OPEN_NOW, bind="query-params")
        automat = automat_column.toggle(_("24/24 automat"), key=AUTOMAT, bind="query-params")
        brand = brand_column.selectbox(
            _("Brand"), brands, index=None, placeholder=_("All brands"), key=BRAND, bind="query-params"
        )
        sort = _order()
    return Criteria(fuel, int(radius), bool(open_now), bool(automat), brand, sort or "price")


def _order() -> str:
    """The order of the results, kept in the URL by its code (sort=distance): a link outlives the labels."""
    asked = st.query_params.get(SORT)
    if ORDER_KEY not in st.session_state:
        st.session_state[ORDER_KEY] = asked if asked in SORT_LABELS else "price"
    sort = (
        st.segmented_control(
            _("Order"),
            list(SORT_LABELS),
            format_func={code: _(label) for code, label in SORT_LABELS.items()}.get,
            key=ORDER_KEY,
        )
        or "price"
    )
    if sort == "price":
        st.query_params.pop(SORT, None)
    else:
        st.query_params[SORT] = sort
    return sort


def understood(
    match: PlaceMatch | None,
    place: str | None,
    near_me: bool,
    criteria: Criteria,
    count: int,
    nearby: int,
    farther: int | None,
    spellings: Sequence[str] = (),
) -> None:
    """One sentence saying what the search understood and found: `count` results of the `nearby` stations within
    the radius; when there are none, the `farther` ones within the largest radius, with a button to widen it.
    A place not found offers the places spelt nearly as it (`spellings`, place_search.spelt_like)."""
    if match is None and not near_me:
        widgets.warning(_("No place called “{}” was found. Try a town, a postcode, or a street and its town."), place)
        if spellings:
            _did_you_mean([(spelling, spelling) for spelling in spellings])
    elif match is not None and match.kind == "street":
        widgets.markdown(
            ngettext(
                "No town called “{}”: **{}** station whose address matches.",
                "No town called “{}”: **{}** stations whose address matches.",
                count,
            ),
            place,
            count,
        )
    elif not nearby:
        _none_within(match, criteria.radius_km, farther)
    elif match is not None and match.kind == "town_of_street":
        widgets.markdown(
            ngettext(
                "No station on “{}”: **{}** station in and around {}, {} around.",
                "No station on “{}”: **{}** stations in and around {}, {} around.",
                count,
            ),
            place,
            count,
            match.label,
            distance(criteria.radius_km),
        )
    elif near_me:
        widgets.markdown(
            ngettext("**{}** station within {} of you.", "**{}** stations within {} of you.", count),
            count,
            distance(criteria.radius_km),
        )
    else:
        widgets.markdown(
            ngettext(
                "**{}** station in and around {}, {} around.", "**{}** stations in and around {}, {} around.", count
            ),
            count,
            match.label,
            distance(criteria.radius_km),
        )
    if match is not None and match.alternatives:
        _did_you_mean([(other.label, other.query) for other in match.alternatives])


def _none_within(match: PlaceMatch | None, radius_km: int, farther: int | None) -> None:
    """No station within the radius: how many there are within the largest one, and a button to widen it to
    that; or that there is no station near the place at all."""
    icon = ":material/search_off:"
    if not farther:
        widest = distance(max(radius_km, MAX_RADIUS_KM))
        if match is None:
            widgets.info(_("There is no station within {} of you."), widest, icon=icon)
        else:
            widgets.info(_("There is no station within {} of {}."), widest, match.label, icon=icon)
        return
    if match is None:
        widgets.info(
            ngettext(
                "No station within {} of you. There is {} within {}.",
                "No station within {} of you. There are {} within {}.",
                farther,
            ),
            distance(radius_km),
            farther,
            distance(MAX_RADIUS_KM),
            icon=icon,
        )
    else:
        widgets.info(
            ngettext(
                "No station within {} of {}. There is {} within {}.",
                "No station within {} of {}. There are {} within {}.",
                farther,
            ),
            distance(radius_km),
            match.label,
            farther,
            distance(MAX_RADIUS_KM),
            icon=icon,
        )
    st.button(
        widgets.md(_("Search within {}"), distance(MAX_RADIUS_KM)),
        icon=":material/zoom_out_map:",
        on_click=_widen,
        key="finder-widen",
    )


def _widen() -> None:
    """The button's callback, run before the slider is drawn again: the slider (and the URL) take the largest radius."""
    st.session_state[RADIUS] = MAX_RADIUS_KM


def _did_you_mean(places: Sequence[tuple[str, str]]) -> None:
    """Other places the text may name, as (label, query): each a button that searches it, as choosing it in the
    place box does."""
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.caption(_("Did you mean:"), width="content")
        for number_, (label, query) in enumerate(places):
            st.button(
                widgets.md(OTHER_PLACE, label),
                type="tertiary",
                on_click=_search,
                args=(query,),
                key=f"finder-other-{number_}",
            )


def _search(query: str) -> None:
    """An alternative's callback: search it (the place box shows it on the next run, as after Locate me)."""
    st.query_params[place_box.PLACE] = query


def searched_area(match: PlaceMatch | None, here: tuple[float, float] | None, radius_km: int) -> map_ui.Area | None:
    """What the map marks of a search: the place found (or the person's position) and the radius around it;
    nothing for a street's stations, which are found by their address, not by a distance."""
    if match is not None and match.kind != "street" and match.latitude is not None and match.longitude is not None:
        return map_ui.Area(match.latitude, match.longitude, radius_km, match.label)
    if match is None and here is not None:
        return map_ui.Area(*here, radius_km, None)
    return None


def _price(result: Result) -> str:
    station = result.station
    if station.out_of_stock:
        return _("out of stock")
    return price(station.price) if station.price is not None else "—"


def _saving(result: Result) -> str:
    if result.nearest:
        return _("nearest selling it")
    if result.saving is None:
        return ""
    return _("saves {} net").format(money(result.saving)) if result.saving > 0 else _("not worth the detour")


def results_list(
    results: Sequence[Result], now: dt.datetime, key: str, names: dict[int, str] | None = None
) -> int | None:
    """The results, price first, then brand and name (or the name a person gave): both fit a phone's
    width. Returns the station picked."""
    names = names or {}
    price_, station_ = _("Price"), _("Station")
    table = pd.DataFrame(
        {
            price_: [_price(r) for r in results],
            station_: [names.get(r.station.id, r.station.title) for r in results],
            _("Distance"): [
                distance(r.station.distance_km) if r.station.distance_km is not None else "" for r in results
            ],
            _("Town"): [r.station.town_name for r in results],
            _("Updated"): [age(r.station.updated_at, now) if r.station.updated_at else "" for r in results],
            _("Open"): [map_ui.opening_word(r.opening) for r in results],
            _("Detour"): [_saving(r) for r in results],
            _("Motorway"): [_("motorway") if r.station.motorway else "" for r in results],
        }
    )
    config = {
        price_: st.column_config.TextColumn(width=90),
        station_: st.column_config.TextColumn(width=190),
        _("Distance"): st.column_config.TextColumn(width=70),
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


def detour_formula(trip: Trip) -> None:
    widgets.caption(
        _(
            "Net saving = (price at the nearest station − price here) × {} − 2 × extra distance × {} (roads are "
            "longer than a straight line) × {} L/100 km × price here. Set your fill and consumption in your profile."
        ),
        litres(trip.tank_litres),
        number(ROAD_FACTOR, 2),
        number(trip.litres_per_100km, 1),
    )


def station_detail(detail: StationDetail, now: dt.datetime) -> None:
    """Brand, address, every fuel with its price and age, the week's hours with today marked, services."""
    station = detail.station
    opening = opening_status(week_of(station), station.automat, now)
    st.subheader(widgets.md("{}", station.title))
    widgets.markdown("{}, {} {}", station.address, station.zip_code, station.town_name)
    facts = [opening.phrase()]
    if station.automat and opening.state == "open":  # otherwise the phrase names the automat already
        facts.append(_("24/24 automat"))
    if station.motorway:
        facts.append(_("motorway"))
    widgets.markdown("**{}**", " · ".join(facts))
    fuels = pd.DataFrame(
        {
            _("Fuel"): [f.fuel for f in detail.fuels],
            _("Price"): [
                (_("out of stock") if f.rupture else price(f.price) if f.price is not None else "—")
                for f in detail.fuels
            ],
            _("Updated"): [
                f"{moment(f.updated_at, now)} ({age(f.updated_at, now)})" if f.updated_at else "" for f in detail.fuels
            ],
        }
    )
    if detail.fuels:
        st.dataframe(fuels, hide_index=True, width="stretch")
        widgets.caption(trends_ui.say("last_30_days"))
        for tab, (fuel, days) in zip(st.tabs(list(detail.days)), detail.days.items(), strict=True):
            with tab:
                trends_ui.price_chart({fuel: days}, height=180, empty="no_station_history")
    else:
        st.caption(_("This station declares no price at the moment."))
    if any_day_known(week_of(station)):  # else the opening line has said 'Hours unknown'
        days = week(week_of(station), now.astimezone(PARIS).date())
        widgets.markdown(
            "  \n".join((_("**{}: {}** (today)") if day.today else _("{}: {}")) for day in days),
            *[part for day in days for part in (day.name, day.text)],
        )
    if detail.services:
        widgets.caption(_("Services: {}"), ", ".join(detail.services))


def follow_form(station: FinderStation) -> str | None:
    """'Follow this station' under a name the person chooses; the name when the form was sent."""
    with st.form("follow"):
        name = st.text_input(
            _("Name it (1 to {} characters)").format(NAME_MAX_CHARS),
            value=default_name(station.brand or station.town_name, station.address),
            max_chars=NAME_MAX_CHARS,
        )
        if st.form_submit_button(_("Follow this station"), icon=":material/add:"):
            return name
    return None


def trip_form(trip: Trip) -> tuple[float, float] | None:
    """The litres of one fill and the car's L/100 km; both when the form was sent."""
    with st.form("trip"):
        left, right = st.columns(2)
        tank = left.number_input(
            _("Litres per fill"), min_value=0.0, value=float(trip.tank_litres), step=5.0, key="trip-litres"
        )
        per_100 = right.number_input(
            _("Consumption (L/100 km)"), min_value=0.0, value=float(trip.litres_per_100km), step=0.1, key="trip-l100"
        )
        if st.form_submit_button(_("Save my fill and consumption")):
            return tank, per_100
    return None
