import streamlit as st

from accounts.errors import AccountError
from accounts.store import StoreError
from i18n import _
from mailer import mail_configured
from ui import shell, widgets

app = shell.resources()
recovery = app.accounts.recovery
minutes = int(recovery.code_ttl.total_seconds() // 60)

st.title(_("Forgot your password or username?"))
if not mail_configured(app.settings):
    st.warning(
        _(
            "E-mail is not set up on this server yet: messages are written to the server's outputs/mail "
            "folder instead of being sent. Ask the person who runs it for your code."
        )
    )

password_tab, username_tab = st.tabs([_("I forgot my password"), _("I forgot my username")])

with password_tab:
    st.markdown(
        _("**1. Ask for a code.** We e-mail an 8-digit code, valid {} minutes, to the account's address.").format(
            minutes
        )
    )
    with st.form("reset-request"):
        identifier = st.text_input(_("Your username or e-mail address"), max_chars=254)
        asked = st.form_submit_button(_("E-mail me a code"))
    if asked and identifier.strip():
        recovery.request_password_reset_later(identifier.strip())
        st.success(
            _(
                "If an account matches, a code is on its way: it is valid {} minutes. "
                "Nothing after a few minutes? Check your spam folder, or ask again."
            ).format(minutes)
        )
    elif asked:
        st.error(_("Please enter your username or e-mail address."))

    st.markdown(_("**2. Choose a new password** with the code you received."))
    with st.form("reset-password"):
        identifier = st.text_input(_("Your username or e-mail address"), key="reset-identifier", max_chars=254)
        code = st.text_input(_("Code"), max_chars=8, help=_("The 8 digits from the e-mail."))
        new = st.text_input(_("New password"), type="password", autocomplete="new-password")
        repeat = st.text_input(_("Repeat the new password"), type="password", autocomplete="new-password")
        submitted = st.form_submit_button(_("Set my new password"))
    if submitted:
        try:
            recovery.reset_password(identifier.strip(), code.strip(), new, repeat)
        except (AccountError, StoreError) as exc:
            widgets.error("{}", exc)
        else:
            st.success(_("Your password is changed, and you are signed out everywhere. Sign in with it now."))
            # Not a form here: this page would not draw it again at the run its button starts.
            st.page_link("pages/welcome.py", label=_("Sign in"), icon=":material/login:")

with username_tab:
    with st.form("remind-username"):
        email = st.text_input(_("The e-mail address of your account"), max_chars=254)
        sent = st.form_submit_button(_("E-mail me my username"))
    if sent and email.strip():
        recovery.remind_username_later(email.strip())
        st.success(_("If an account uses this address, its username is on its way."))
    elif sent:
        st.error(_("Please enter an e-mail address."))
