import json

import streamlit as st
from streamlit_authenticator import CredentialsError, ResetError, UpdateError

import preferences
import queries
import shell
import ui
from auth import AccountError
from credentials import StoreError
from models import User

JUST_CHANGED = "password-just-changed"

app = shell.resources()
account = shell.require_account()
authenticator = shell.authenticator()

st.title("Profile")
st.write(f"Signed in as **{ui.escape_markdown(account.username)}** ({ui.escape_markdown(account.email)}).")

st.header("Your details")
try:
    if authenticator.update_user_details(
        account.username,
        key="details",
        fields={"Form name": "Change a detail", "Field": "Detail", "Email": "E-mail", "Update": "Save"},
    ):
        entry = shell.library_entry(account.username)
        shell.remember(
            app.accounts.update_details(account.username, entry["first_name"], entry["last_name"], entry["email"])
        )
        st.success("Saved.")
except UpdateError as exc:
    st.error(ui.explain_account_error(str(exc)))
except (AccountError, StoreError) as exc:
    st.error(str(exc))

st.header("Your fuels")
with app.Session() as session:
    fuels = queries.fuel_types(session)
    followed = queries.user_fuel_ids(session, account.user_id)
    user = session.get(User, account.user_id)
names = {fuel.id: fuel.name for fuel in fuels}
with st.form("fuels"):
    chosen = st.multiselect("The fuels you buy", list(names), default=followed, format_func=names.get)
    if st.form_submit_button("Save my fuels"):
        try:
            with app.Writer.begin() as session:
                preferences.set_fuels(session, account.user_id, chosen)
        except preferences.PreferenceError as exc:
            st.error(str(exc))
        else:
            st.success("Saved.")

st.header("Your yearly consumption")
st.caption(
    f"Used to estimate what choosing well saves you. Without it, {preferences.DEFAULT_YEARLY_LITRES:,.0f} L a year."
)
by_distance = user.km_per_year is not None and user.litres_per_100km is not None
with st.form("consumption"):
    mode = st.radio(
        "I know", ["How many litres I buy a year", "How far I drive"], index=int(by_distance), horizontal=True
    )
    litres = st.number_input("Litres a year", min_value=0.0, value=float(user.litres_per_year or 0), step=50.0)
    left, right = st.columns(2)
    km = left.number_input("Kilometres a year", min_value=0.0, value=float(user.km_per_year or 0), step=1000.0)
    per_100 = right.number_input("Litres per 100 km", min_value=0.0, value=float(user.litres_per_100km or 0), step=0.1)
    if st.form_submit_button("Save my consumption"):
        try:
            with app.Writer.begin() as session:
                if mode.startswith("How many"):
                    preferences.set_consumption(session, account.user_id, litres_per_year=litres)
                else:
                    preferences.set_consumption(session, account.user_id, km_per_year=km, litres_per_100km=per_100)
        except preferences.PreferenceError as exc:
            st.error(str(exc))
        else:
            st.success("Saved.")

st.header("Password")
previous_hash = shell.library_entry(account.username)["password"]
try:
    if authenticator.reset_password(
        account.username,
        key="change-password",
        fields={
            "Form name": "Change my password",
            "Current password": "Current password",
            "New password": "New password",
            "Repeat password": "Repeat the new password",
            "Reset": "Change my password",
        },
    ):
        new_hash = shell.library_entry(account.username)["password"]
        shell.remember(app.accounts.adopt_password_change(account.username, previous_hash, new_hash))
        # Kept in the session: the rerun below, and the new cookie's component, redraw the page.
        st.session_state[JUST_CHANGED] = True
        shell.reissue_cookie()
        st.rerun()
except (ResetError, CredentialsError) as exc:
    st.error(ui.explain_account_error(str(exc)))
except (AccountError, StoreError) as exc:
    st.error(str(exc))
if st.session_state.get(JUST_CHANGED):
    st.success("Your password is changed. Your other devices will have to sign in again.")

st.header("Your data")
with app.Session() as session:
    export = queries.user_data(session, account.user_id)
st.download_button(
    "Download my data (JSON)",
    json.dumps(export, ensure_ascii=False, indent=2, default=str),
    file_name=f"carburoam-{account.username}.json",
    mime="application/json",
)

st.header("Delete my account")
with st.form("delete-account"):
    st.warning("This removes your account, your stations, your fuels and your settings, for good.")
    password = st.text_input("Your password, to confirm", type="password", autocomplete="current-password")
    sure = st.checkbox("I understand this cannot be undone")
    delete = st.form_submit_button("Delete my account", type="primary")
if delete:
    if not sure:
        st.error("Tick the box to confirm.")
    else:
        try:
            app.accounts.delete_account(account.username, password)
        except (AccountError, StoreError) as exc:
            st.error(str(exc))
        else:
            # No st.rerun(): the sign-in cookie is deleted by a component that must reach the browser.
            shell.sign_out()
            st.success("Your account is deleted, with all its data, and you are signed out. Goodbye!")
            st.stop()
