import functools

import streamlit as st

from accounts.errors import AccountError
from accounts.rules import PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS, USERNAME_RULE
from accounts.store import StoreError
from ui import authenticator, captcha, shell, widgets

app = shell.resources()

st.title("Create an account")
st.markdown(
    f"It's free. {USERNAME_RULE} Your password needs {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters. "
    "You will follow Gazole, SP95 and E10 until you change it in your profile."
)
checking = app.settings.registration_captcha
picture = st.container()  # drawn after the form is checked, so that a try shows the next picture
try:
    document = app.store.load().document
    form = functools.partial(authenticator.registration_form, document)
    made = captcha.checked(form) if checking else form()
    account = app.accounts.adopt_registration(*made) if made else None
except (AccountError, StoreError) as exc:
    widgets.error("{}", exc)
else:
    if account is not None:  # signed in at once, in a new session, and on to the stations to follow
        user_agent = st.context.headers.get("User-Agent", "")
        shell.start_session(app.accounts.cookie(), app.accounts.open_session(account, user_agent=user_agent))
        shell.flash(shell.WELCOME_NEW_ACCOUNT)
        st.switch_page(shell.FIND_PAGE)
if checking:
    with picture:
        captcha.challenge()
