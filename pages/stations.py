import streamlit as st

from i18n import _
from models import User
from prices import finder, preferences, queries
from ui import finder_ui, shell, widgets
from utils import utcnow

app = shell.resources()
account = shell.require_account()
now = utcnow()

st.title(_("My stations"))
st.page_link("pages/find.py", label=_("Add a station: find it, open it and press Follow"), icon=":material/search:")
with app.Session() as session:
    fuel_ids = queries.user_fuel_ids(session, account.user_id)
    fuel_names = {fuel.id: fuel.name for fuel in queries.fuel_types(session)}
    favourites = dict(queries.user_favourites(session, account.user_id))
    trip = preferences.trip(session.get(User, account.user_id))
    fuel_id = fuel_ids[0] if fuel_ids else preferences.DEFAULT_FUELS[0]
    results = finder.results(finder.stations_by_id(session, favourites, fuel_id), now, trip)

if not favourites:
    st.info(_("You don't follow any station yet."), icon=":material/star:")
else:
    widgets.caption(
        _("Prices of {}, cheapest first. Select a station to see its hours and every fuel."), fuel_names[fuel_id]
    )
    picked = finder_ui.results_list(results, now, "list", names=favourites)
    if picked is not None:
        with app.Session() as session:
            detail = finder.station_detail(session, picked, now)
        if detail is not None:
            finder_ui.station_detail(detail, now)

st.header(_("Rename or stop following"))
if not favourites:
    st.caption(_("None yet."))
for station_id, name in favourites.items():
    with st.expander(widgets.escape_markdown(name)):
        with st.form(f"rename-{station_id}"):
            new_name = st.text_input(_("Name"), value=name, max_chars=preferences.NAME_MAX_CHARS)
            rename, remove = st.columns(2)
            renamed = rename.form_submit_button(_("Rename"))
            removed = remove.form_submit_button(_("Stop following"), type="secondary")
        if not (renamed or removed):
            continue  # no write transaction, which takes SQLite's write lock, for a form not sent
        try:
            with app.Writer.begin() as session:
                if renamed:
                    preferences.rename_favourite(session, account.user_id, station_id, new_name)
                if removed:
                    preferences.unfollow_station(session, account.user_id, station_id)
        except preferences.PreferenceError as exc:
            widgets.error("{}", exc)
        else:
            st.rerun()
