import streamlit as st

from i18n import _
from models import User
from prices import finder, place_search, preferences, queries
from ui import finder_ui, map_ui, place_box, reads, shell, widgets
from utils import utcnow

SELECTED = "finder-selected"

app = shell.resources()
account = shell.current_account()
now = utcnow()

st.title(_("Find a station"))
st.caption(_("The cheapest station near you, open now, and whether the detour pays. No account needed."))
fresh = reads.freshness(app)
with app.Session() as session:
    fuel_names = {fuel.id: fuel.name for fuel in queries.fuel_types(session)}
    mine = queries.user_fuel_ids(session, account.user_id) if account else []
    trip = preferences.trip(session.get(User, account.user_id) if account else None)
    favourites = dict(queries.user_favourites(session, account.user_id)) if account else {}
    brands = finder.brand_names(session)
widgets.show_freshness(fresh, app.settings.interval_seconds, now)

place = place_box.where(app)
criteria = finder_ui.what(list(fuel_names.values()), fuel_names[mine[0] if mine else 1], brands)
fuel_id = next(i for i, name in fuel_names.items() if name == criteria.fuel)
here = None if place else place_box.located()
if place:
    place_box.forget_position()

match = None
try:
    match = reads.place(app, place) if place else None
except place_search.SearchTooLong as exc:
    widgets.error("{}", exc)
    place = None
searched = place is not None or here is not None
with app.Session() as session:
    stations = finder.stations_searched(session, match, here, criteria.radius_km, fuel_id)
    results = finder.results(stations, now, trip, **criteria.filters())
    farther = (
        finder.stations_farther(session, match, here, criteria.radius_km, fuel_id)
        if searched and not stations
        else None
    )

if searched and not widgets.nothing_to_search_yet(fresh):
    spellings = reads.spelt_like(app, place) if place and match is None else []
    finder_ui.understood(match, place, here is not None, criteria, len(results), len(stations), farther, spellings)
elif fresh.stations:  # before the first download, the freshness line says prices are loading
    st.info(
        _("Type a place or press Locate me to see the stations around it, cheapest first."), icon=":material/search:"
    )

openings = {r.station.id: r.opening for r in results}
list_column, map_column = st.columns([3, 2]) if searched else (None, st.container())
picked_in_list = None
if list_column is not None and results:
    with list_column:
        picked_in_list = finder_ui.results_list(results, now, "finder-list")
        finder_ui.detour_formula(trip)
with map_column:
    shown = [r.station for r in results]
    points = map_ui.map_points(shown, openings, now) if searched else map_ui.france(app, fuel_id)
    area = finder_ui.searched_area(match, here, criteria.radius_km)
    picked_on_map = map_ui.price_map(
        points, st.session_state.get(SELECTED), here, app.settings.map_provider, "finder-map", area
    )
drawn_with = st.session_state.get(SELECTED)
widgets.remember_latest_pick(SELECTED, picked_on_map, picked_in_list)
if st.session_state.get(SELECTED) != drawn_with:
    st.rerun()  # the map marks the station picked in the list: draw it again with the mark

if st.session_state.get(SELECTED) is not None:
    with app.Session() as session:
        detail = finder.station_detail(session, st.session_state[SELECTED], now)
    if detail is not None:
        finder_ui.station_detail(detail, now)
        if account is None:
            st.caption(_("Create an account to follow this station and see it on your dashboard."))
        elif detail.station.id in favourites:
            widgets.info(_("You follow this station as “{}”."), favourites[detail.station.id], icon=":material/star:")
        else:
            name = finder_ui.follow_form(detail.station)
            if name is not None and widgets.save_choice(
                app.Writer,
                lambda session: preferences.follow_station(session, account.user_id, detail.station.id, name),
            ):
                shell.flash(_("Followed: it is on your dashboard now."))
                st.rerun()
widgets.caption(_("Brands and names: © les contributeurs d'OpenStreetMap (ODbL). Prices: prix-carburants.gouv.fr."))
