import pandas as pd
import streamlit as st

from accounts.errors import AccountError
from accounts.store import StoreError
from ingest import passes, scheduler
from mailer import MailError
from prices import queries
from ui import shell, widgets
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
last.metric("Last update", widgets.age(fresh.last_success_at, now) if fresh.last_success_at else "never")
widgets.show_freshness(fresh, app.settings.interval_seconds, now)

st.header("Price updates")
scheduler = scheduler.scheduler_status(app.settings, app.engine)
if scheduler.alive:
    next_pass = widgets.paris_time(scheduler.next_pass_at) if scheduler.next_pass_at else "as soon as it wakes"
    widgets.caption("The scheduler is running (pid {}); next update {}.", scheduler.pid, next_pass)
elif app.settings.etl_autostart:
    st.warning("The scheduler is not running: the next visitor's session starts it again.")
else:
    st.warning("The scheduler is not running, and ETL_AUTOSTART is off: start `python etl.py serve`.")
if st.button("Update prices now", icon=":material/refresh:"):
    with st.spinner("Downloading and loading the feed…"):
        try:
            widgets.success("{}", passes.run_pass(app.engine, app.settings))
        except passes.EtlError as exc:
            widgets.error("The update failed: {}", exc)
    with app.Session() as session:
        runs = queries.recent_runs(session, limit=20)
st.dataframe(
    pd.DataFrame(
        {
            "Started": [widgets.paris_time(run.started_at) for run in runs],
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
            "Created": [widgets.paris_time(person.created_at) for person in people],
            "Stations": [person.stations for person in people],
        }
    ),
    hide_index=True,
    width="stretch",
)
with st.form("account-action"):
    st.markdown("**Help someone:** e-mail them a password-reset code, or sign them out on every device.")
    username = st.selectbox("Account", [person.username for person in people])
    reset, sign_out = st.columns(2)
    send_code = reset.form_submit_button("E-mail a reset code")
    end_sessions = sign_out.form_submit_button("Sign out everywhere")
try:
    if send_code and username:
        if app.accounts.recovery.request_password_reset(username):
            widgets.success("A reset code was sent to the address of {}.", username)
        else:
            widgets.warning("No code was sent: {} already had 3 codes in the last hour.", username)
    if end_sessions and username:
        ended = app.accounts.sign_out_everywhere(username)
        widgets.success("{} is signed out everywhere ({} sessions ended).", username, ended)
except (AccountError, MailError, StoreError) as exc:
    widgets.error("{}", exc)
