import json

import streamlit as st

from accounts.errors import AccountError
from accounts.rules import PASSWORD_HELP, say
from accounts.store import StoreError
from i18n import _, litres
from models import User
from prices import preferences, queries
from ui import alerts_ui, authenticator, finder_ui, profile_ui, shell, widgets
from utils import utcnow

app = shell.resources()
account = shell.require_account()
now = utcnow()

st.title(_("Profile"))
widgets.markdown(_("Signed in as **{}** ({})."), account.username, account.email)

st.header(_("Your details"))
try:
    entry = authenticator.details_form(app.store.load().document, account)
    if entry is not None:
        shell.remember(
            app.accounts.update_details(account.username, entry["first_name"], entry["last_name"], entry["email"])
        )
        st.success(_("Saved."))
except (AccountError, StoreError) as exc:
    widgets.error("{}", exc)

st.header(_("Your fuels"))
with app.Session() as session:
    fuels = queries.fuel_types(session)
    followed = queries.user_fuel_ids(session, account.user_id)
    user = session.get(User, account.user_id)
names = {fuel.id: fuel.name for fuel in fuels}
with st.form("fuels"):
    chosen = st.multiselect(_("The fuels you buy"), list(names), default=followed, format_func=names.get)
    if st.form_submit_button(_("Save my fuels")) and widgets.save_choice(
        app.Writer, lambda session: preferences.set_fuels(session, account.user_id, chosen)
    ):
        st.success(_("Saved."))

st.header(_("Your yearly consumption"))
st.caption(
    _("Used to estimate what choosing well saves you. Without it, {} a year.").format(
        litres(preferences.DEFAULT_YEARLY_LITRES)
    )
)
consumption = profile_ui.consumption_form(user)
if consumption is not None and widgets.save_choice(
    app.Writer, lambda session: preferences.set_consumption(session, account.user_id, **consumption)
):
    st.success(_("Saved."))

st.header(_("A fill and your car"))
st.caption(_("The finder uses them to tell whether driving to a cheaper station pays."))
typed_trip = finder_ui.trip_form(preferences.trip(user))
if typed_trip is not None and widgets.save_choice(
    app.Writer,
    lambda session: preferences.set_trip(
        session, account.user_id, tank_litres=typed_trip[0], litres_per_100km=typed_trip[1]
    ),
):
    st.success(_("Saved."))

st.header(_("Price alerts"))
alerts_ui.manage(app, account)

st.header(_("Password"))
typed = widgets.password_change_form(say(PASSWORD_HELP))
if typed is not None:
    try:
        signed_in = app.accounts.change_password(
            account.username, *typed, user_agent=st.context.headers.get("User-Agent", "")
        )
    except (AccountError, StoreError) as exc:
        widgets.error("{}", exc)
    else:
        shell.start_session(app.accounts.cookie(), signed_in)
        shell.flash(_("Your password is changed. Your other devices will have to sign in again."))
        st.rerun()

st.header(_("Where you are signed in"))
this_device = shell.current_session_id()
ended = widgets.session_list(app.accounts.live_sessions(account.user_id, now), this_device, now)
if ended == this_device:
    shell.sign_out(app)
elif ended is not None:
    app.accounts.end_session(account.user_id, ended)
    st.rerun()
if st.button(_("Sign out everywhere"), help=_("Every browser signed in to your account, this one included.")):
    app.accounts.sign_out_everywhere(account.username)
    shell.sign_out(app, _("You are signed out everywhere."))

st.header(_("Your data"))
with app.Session() as session:
    export = queries.user_data(session, account.user_id)
st.download_button(
    _("Download my data (JSON)"),
    json.dumps(export, ensure_ascii=False, indent=2, default=str),
    file_name=f"carburoam-{account.username}.json",
    mime="application/json",
)

st.header(_("Delete my account"))
with st.form("delete-account"):
    st.warning(_("This removes your account, your stations, your fuels and your settings, for good."))
    password = st.text_input(_("Your password, to confirm"), type="password", autocomplete="current-password")
    sure = st.checkbox(_("I understand this cannot be undone"))
    delete = st.form_submit_button(_("Delete my account"), type="primary")
if delete:
    if not sure:
        st.error(_("Tick the box to confirm."))
    else:
        try:
            app.accounts.delete_account(account.username, password)
        except (AccountError, StoreError) as exc:
            widgets.error("{}", exc)
        else:
            shell.end_session(app.accounts.cookie())
            shell.flash(_("Your account is deleted, with all its data, and you are signed out. Goodbye!"))
            st.rerun()
