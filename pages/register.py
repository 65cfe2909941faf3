import streamlit as st

from accounts.errors import AccountError
from accounts.rules import PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS, USERNAME_RULE
from accounts.store import StoreError
from ui import authenticator, shell, widgets

app = shell.resources()

st.title("Create an account")
st.markdown(
    f"It's free. {USERNAME_RULE} Your password needs {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters. "
    "You will follow Gazole, SP95 and E10 until you change it in your profile."
)
try:
    made = authenticator.registration_form(app.store.load().document, app.settings.registration_captcha)
    account = app.accounts.adopt_registration(*made) if made else None
except (AccountError, StoreError) as exc:
    widgets.error("{}", exc)
else:
    if account is not None:
        widgets.success("Welcome, {}! Your account is ready: sign in with the form in the sidebar.", account.name)
