import datetime as dt

import streamlit as st

import i18n
from i18n import _
from models import User
from prices import queries
from prices.preferences import yearly_litres
from prices.savings import savings_per_fuel
from prices.trends import board_trends
from ui import reads, shell, widgets
from utils import utcnow

app = shell.resources()
account = shell.require_account()
now = utcnow()
stale_after = dt.timedelta(days=app.settings.stale_after_days)

st.title(_("My prices today"))
fresh = reads.freshness(app)
with app.Session() as session:
    favourites = queries.user_favourites(session, account.user_id)
    fuel_ids = queries.user_fuel_ids(session, account.user_id)
    rows = queries.favourites_board(session, account.user_id)
    litres = yearly_litres(session.get(User, account.user_id))
    moves = board_trends(session, rows, now, stale_after)

widgets.show_freshness(fresh, app.settings.interval_seconds, now)
if not favourites:
    st.info(
        _("You don't follow any station yet. Find yours on the map, give them a name, and their prices appear here.")
    )
    st.page_link("pages/find.py", label=_("Find a station"), icon=":material/search:")
elif not fuel_ids:
    st.info(_("Choose the fuels you buy, and their prices at your stations appear here."))
    st.page_link("pages/profile.py", label=_("Choose my fuels"), icon=":material/person:")
else:
    widgets.show_board(rows, savings_per_fuel(rows, litres, stale_after, now), now, stale_after, moves)
    st.caption(
        _(
            "Savings use your yearly consumption of {litres} (change it in your profile). "
            "Prices older than {days} days are shown but not counted, nor ranked. "
            "“7 days”: the change since a week ago; “Within 10 km”: where this price stands among the current "
            "prices of this fuel at the stations around."
        ).format(litres=i18n.litres(litres), days=app.settings.stale_after_days)
    )
