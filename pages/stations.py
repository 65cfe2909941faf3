import streamlit as st

import preferences
import queries
import shell
import ui
from utils import utcnow

SELECTED = "stations-selected"

app = shell.resources()
account = shell.require_account()
now = utcnow()

st.title("Stations")
st.caption("Find a station by town, postcode or address, click it on the map or in the list, and follow it.")
with app.Session() as session:
    fuel_ids = queries.user_fuel_ids(session, account.user_id)
    fuel_names = {fuel.id: fuel.name for fuel in queries.fuel_types(session)}
    favourites = dict(queries.user_favourites(session, account.user_id))
fuel_id = fuel_ids[0] if fuel_ids else preferences.DEFAULT_FUELS[0]

text, radius = ui.search_form("stations")
with app.Session() as session:
    try:
        stations = queries.find_stations(session, text, radius, fuel_id) if text else []
    except queries.SearchTooLong as exc:
        ui.error("{}", exc)
        text, stations = "", []
    if not text:
        stations = queries.map_stations(session, favourites, fuel_id)
    prices = queries.station_prices(session, [s.id for s in stations])

if text and not stations:
    st.warning("No station matches that search. Try a town name or a postcode.")
elif not stations:
    st.info("Search a town or a postcode to see its stations. The stations you follow appear here too.")

picked_on_map = picked_in_list = None
if stations:
    map_column, list_column = st.columns([3, 2])
    with map_column:
        picked_on_map = ui.station_map(
            stations, prices, set(favourites), st.session_state.get(SELECTED), app.settings.map_provider, "map"
        )
        ui.caption("Colours show the price of {}: green cheaper, red dearer, grey no price.", fuel_names[fuel_id])
    with list_column:
        picked_in_list = ui.station_table(stations, fuel_names[fuel_id], favourites, "list")
ui.remember_latest_pick(SELECTED, picked_on_map, picked_in_list)

selected = next((s for s in stations if s.id == st.session_state.get(SELECTED)), None)
if selected is not None:
    st.subheader("Selected station")
    ui.station_summary(selected, prices.get(selected.id, []), now)
    if selected.id in favourites:
        ui.info("You already follow this station as “{}”.", favourites[selected.id], icon=":material/star:")
    else:
        with st.form("follow"):
            name = st.text_input(
                "Name it (1 to 40 characters)", value=f"{selected.town} {selected.address}"[:40].strip(), max_chars=40
            )
            if st.form_submit_button("Follow this station", icon=":material/add:"):
                try:
                    with app.Writer.begin() as session:
                        preferences.follow_station(session, account.user_id, selected.id, name)
                except preferences.PreferenceError as exc:
                    ui.error("{}", exc)
                else:
                    st.rerun()

st.header("The stations I follow")
if not favourites:
    st.caption("None yet.")
for station_id, name in favourites.items():
    with st.expander(ui.escape_markdown(name)):
        with st.form(f"rename-{station_id}"):
            new_name = st.text_input("Name", value=name, max_chars=40)
            rename, remove = st.columns(2)
            renamed = rename.form_submit_button("Rename")
            removed = remove.form_submit_button("Stop following", type="secondary")
        try:
            with app.Writer.begin() as session:
                if renamed:
                    preferences.rename_favourite(session, account.user_id, station_id, new_name)
                if removed:
                    preferences.unfollow_station(session, account.user_id, station_id)
        except preferences.PreferenceError as exc:
            ui.error("{}", exc)
        else:
            if renamed or removed:
                st.rerun()
