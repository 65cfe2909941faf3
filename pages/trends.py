import datetime as dt

import streamlit as st

from i18n import _
from prices import market, queries
from prices.trends import daily_prices
from ui import shell, trends_ui, widgets
from utils import PARIS, utcnow

WEEKDAY_DAYS = 90

app = shell.resources()
account = shell.require_account()
now = utcnow()
today = now.astimezone(PARIS).date()

st.title(_("Price trends"))
days = trends_ui.period_picker("trends-period")
with app.Session() as session:
    favourites = dict(queries.user_favourites(session, account.user_id))
    fuel_ids = queries.user_fuel_ids(session, account.user_id)
    fuel_names = {fuel.id: fuel.name for fuel in queries.fuel_types(session)}
    pairs = [(station_id, fuel_id) for station_id in favourites for fuel_id in fuel_ids]
    history = daily_prices(session, pairs, max(days, WEEKDAY_DAYS), now)
    scopes = [market.NATIONAL, *market.departments_of(session, favourites)]
    figures = market.market_days(session, scopes, fuel_ids, today - dt.timedelta(days=days - 1), today)

if not favourites:
    st.info(_("You don't follow any station yet. Follow a few, and how their prices move appears here."))
    st.page_link("pages/find.py", label=_("Find a station"), icon=":material/search:")
    st.stop()
if not fuel_ids:
    st.info(_("Choose the fuels you buy, and how their prices move appears here."))
    st.page_link("pages/profile.py", label=_("Choose my fuels"), icon=":material/person:")
    st.stop()
if not any(price is not None for series in history.values() for _day, price in series) and not figures:
    widgets.info(trends_ui.say("no_history"), icon=":material/hourglass_empty:")
    st.stop()

for fuel_id in fuel_ids:
    st.header(fuel_names[fuel_id])
    mine = {favourites[station]: history[(station, fuel)][-days:] for station, fuel in pairs if fuel == fuel_id}
    st.subheader(trends_ui.say("mine"))
    trends_ui.price_chart(mine)
    st.subheader(trends_ui.say("market"))
    trends_ui.market_chart([row for row in figures if row.fuel_id == fuel_id])
    weekday = market.cheapest_weekday(
        [history[pair][-WEEKDAY_DAYS:] for pair in pairs if pair[1] == fuel_id],
    )
    trends_ui.weekday_sentence(weekday)
trends_ui.methods()
