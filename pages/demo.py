import datetime as dt

import streamlit as st

import queries
import shell
import ui
from preferences import DEFAULT_YEARLY_LITRES
from savings import savings_per_fuel
from utils import utcnow

DEMO_FUELS = (1, 2)  # Gazole and SP95
DEMO_STATIONS = "demo-stations"
SELECTED = "demo-selected"

app = shell.resources()
now = utcnow()
stale_after = dt.timedelta(days=app.settings.stale_after_days)

st.title("Demo")
st.info(
    "This demo needs no account. The stations you add or remove here are kept only until you close "
    "this tab: create an account to keep yours and choose your fuels.",
    icon=":material/play_circle:",
)
if DEMO_STATIONS not in st.session_state:
    with app.Session() as session:
        st.session_state[DEMO_STATIONS] = dict(queries.demo_stations(session, DEMO_FUELS, count=3))
demo: dict[int, str] = st.session_state[DEMO_STATIONS]

with app.Session() as session:
    fresh = queries.freshness(session)
    rows = queries.board_for(session, demo, DEMO_FUELS)
    shown = queries.map_stations(session, demo, DEMO_FUELS[0])
    prices = queries.station_prices(session, demo)

ui.show_freshness(fresh, app.settings.interval_seconds, now)
if demo:
    ui.show_board(rows, savings_per_fuel(rows, DEFAULT_YEARLY_LITRES, stale_after, now), now, stale_after)
    st.caption(f"Savings assume {DEFAULT_YEARLY_LITRES:,.0f} L a year; with an account you set your own.")
    ui.station_map(shown, prices, set(demo), None, app.settings.map_provider, "demo-map")
    removed = st.selectbox("Remove a station from the demo", ["—", *demo.values()], key="demo-remove")
    if removed != "—" and st.button("Remove", key="demo-remove-button"):
        st.session_state[DEMO_STATIONS] = {i: n for i, n in demo.items() if n != removed}
        st.rerun()
else:
    st.caption("No station in the demo yet: add one below.")

st.subheader("Add a station")
text, radius = ui.search_form("demo")
if text:
    with app.Session() as session:
        try:
            found = queries.find_stations(session, text, radius, DEMO_FUELS[0])
        except queries.SearchTooLong as exc:
            ui.error("{}", exc)
            st.stop()
    if not found:
        st.warning("No station matches that search. Try a town name or a postcode.")
    else:
        picked = ui.station_table(found, "Gazole", demo, "demo-list")
        if picked is not None and picked not in demo:
            station = next(s for s in found if s.id == picked)
            if st.button(ui.md("Add {}, {} to the demo", station.address, station.town), key="demo-add"):
                st.session_state[DEMO_STATIONS] = {**demo, station.id: f"{station.town} {station.address}"[:40]}
                st.rerun()
