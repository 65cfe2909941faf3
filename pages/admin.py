import pandas as pd
import streamlit as st

import etl
import queries
import shell
import ui
from credentials import StoreError
from mailer import MailError
from utils import utcnow

app = shell.resources()
shell.require_admin(shell.current_account())
now = utcnow()

st.title("Administration")
with app.Session() as session:
    fresh = queries.freshness(session)
    people = queries.accounts_overview(session)
    runs = queries.recent_runs(session, limit=20)

users, stations, prices, last = st.columns(4)
users.metric("Accounts", len(people))
stations.metric("Stations", f"{fresh.stations:,}")
prices.metric("Current prices", f"{fresh.prices:,}")
last.metric("Last update", ui.age(fresh.last_success_at, now) if fresh.last_success_at else "never")
ui.show_freshness(fresh, app.settings.interval_seconds, now)

st.header("Price updates")
if st.button("Update prices now", icon=":material/refresh:"):
    with st.spinner("Downloading and loading the feed…"):
        try:
            st.success(str(etl.run_pass(app.engine, app.settings)))
        except etl.EtlError as exc:
            st.error(f"The update failed: {exc}")
    with app.Session() as session:
        runs = queries.recent_runs(session, limit=20)
st.dataframe(
    pd.DataFrame(
        {
            "Started": [ui.paris_time(run.started_at) for run in runs],
            "Kind": [run.kind for run in runs],
            "Status": [run.status for run in runs],
            "Stations": [run.stations for run in runs],
            "Prices": [run.prices for run in runs],
            "Changed": [run.changes for run in runs],
            "Rejected": [run.rejected for run in runs],
            "Seconds": [round(run.duration_seconds, 1) for run in runs],
            "Error": [run.error or "" for run in runs],
        }
    ),
    hide_index=True,
    width="stretch",
)

st.header("Accounts")
st.dataframe(
    pd.DataFrame(
        {
            "Username": [person.username for person in people],
            "E-mail": [person.email for person in people],
            "Role": [person.role for person in people],
            "Created": [ui.paris_time(person.created_at) for person in people],
            "Stations": [person.stations for person in people],
        }
    ),
    hide_index=True,
    width="stretch",
)
with st.form("send-reset"):
    st.markdown("**Help someone who is locked out:** e-mail them a password-reset code.")
    username = st.selectbox("Account", [person.username for person in people])
    if st.form_submit_button("E-mail a reset code") and username:
        try:
            app.accounts.request_password_reset(username)
        except (MailError, StoreError) as exc:
            st.error(str(exc))
        else:
            st.success(f"A reset code was sent to the address of {ui.escape_markdown(username)}.")
