import functools

import streamlit as st

from accounts.errors import AccountError
from accounts.rules import PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS, USERNAME_RULE, say
from accounts.store import StoreError
from i18n import _
from ui import authenticator, captcha, shell, widgets

app = shell.resources()

st.title(_("Create an account"))
st.markdown(
    _(
        "It's free. {rule} Your password needs {low} to {high} characters. "
        "You will follow Gazole, SP95 and E10 until you change it in your profile."
    ).format(rule=say(USERNAME_RULE), low=PASSWORD_MIN_CHARS, high=PASSWORD_MAX_CHARS)
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
        shell.flash(_(shell.WELCOME_NEW_ACCOUNT))
        st.switch_page(shell.FIND_PAGE)
if checking:
    with picture:
        captcha.challenge()
