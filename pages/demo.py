import datetime as dt

import streamlit as st

from i18n import _, litres
from prices import finder, place_search, queries
from prices.detour import Trip
from prices.place_search import SEARCH_MAX_CHARS
from prices.preferences import DEFAULT_YEARLY_LITRES, default_name
from prices.savings import savings_per_fuel
from ui import finder_ui, map_ui, reads, shell, widgets
from utils import utcnow

DEMO_FUELS = (1, 2)  # Gazole and SP95
DEMO_STATIONS = "demo-stations"
DEMO_RADIUS_KM = 5
DEMO_FOUND = 30

app = shell.resources()
now = utcnow()
stale_after = dt.timedelta(days=app.settings.stale_after_days)

st.title(_("Demo"))
st.info(
    _(
        "This demo needs no account. The stations you add or remove here are kept only until you close "
        "this tab: create an account to keep yours and choose your fuels."
    ),
    icon=":material/play_circle:",
)
if DEMO_STATIONS not in st.session_state:
    st.session_state[DEMO_STATIONS] = dict(reads.demo_stations(app, DEMO_FUELS))
demo: dict[int, str] = st.session_state[DEMO_STATIONS]

fresh = reads.freshness(app)
with app.Session() as session:
    rows = queries.board_for(session, demo, DEMO_FUELS)
    shown = finder.stations_by_id(session, demo, DEMO_FUELS[0])

widgets.show_freshness(fresh, app.settings.interval_seconds, now)
if demo:
    widgets.show_board(rows, savings_per_fuel(rows, DEFAULT_YEARLY_LITRES, stale_after, now), now, stale_after)
    st.caption(_("Savings assume {} a year; with an account you set your own.").format(litres(DEFAULT_YEARLY_LITRES)))
    map_ui.price_map(map_ui.map_points(shown, {}, now), None, None, app.settings.map_provider, "demo-map")
    removed = st.selectbox(_("Remove a station from the demo"), ["—", *demo.values()], key="demo-remove")
    if removed != "—" and st.button(_("Remove"), key="demo-remove-button"):
        st.session_state[DEMO_STATIONS] = {i: n for i, n in demo.items() if n != removed}
        st.rerun()
else:
    st.caption(_("No station in the demo yet: add one below."))

st.subheader(_("Add a station"))
text = st.text_input(
    _("Town, postcode or address"), placeholder=_("e.g. Lyon, 69003 or cours Gambetta Lyon"), max_chars=SEARCH_MAX_CHARS
).strip()
if text:
    try:
        match = reads.place(app, text)
    except place_search.SearchTooLong as exc:
        widgets.error("{}", exc)
        st.stop()
    with app.Session() as session:
        around = finder.stations_for(session, match, DEMO_RADIUS_KM, DEMO_FUELS[0]) if match else []
    found = finder.results(around, now, Trip())[:DEMO_FOUND]
    if not found and not widgets.nothing_to_search_yet(fresh):
        widgets.warning(_("No place called “{}” was found. Try a town, a postcode, or a street and its town."), text)
    elif found:
        picked = finder_ui.results_list(found, now, "demo-list", names=demo)
        if picked is not None and picked not in demo:
            station = next(r.station for r in found if r.station.id == picked)
            if st.button(widgets.md(_("Add {}, {} to the demo"), station.address, station.town), key="demo-add"):
                st.session_state[DEMO_STATIONS] = {**demo, station.id: default_name(station.town, station.address)}
                st.rerun()
