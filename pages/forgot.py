import streamlit as st

import shell
from auth import AccountError
from credentials import StoreError
from mailer import MailError, mail_configured

app = shell.resources()
minutes = int(app.accounts.code_ttl.total_seconds() // 60)

st.title("Forgot your password or username?")
if not mail_configured(app.settings):
    st.warning(
        "E-mail is not set up on this server yet: messages are written to the server's outputs/mail "
        "folder instead of being sent. Ask the person who runs it for your code."
    )

password_tab, username_tab = st.tabs(["I forgot my password", "I forgot my username"])

with password_tab:
    st.markdown(f"**1. Ask for a code.** We e-mail an 8-digit code, valid {minutes} minutes, to the account's address.")
    with st.form("reset-request"):
        identifier = st.text_input("Your username or e-mail address")
        asked = st.form_submit_button("E-mail me a code")
    if asked and identifier.strip():
        try:
            app.accounts.request_password_reset(identifier.strip())
        except (MailError, StoreError) as exc:
            st.error(str(exc))
        else:
            st.success(f"If an account matches, a code is on its way. It is valid {minutes} minutes.")
    elif asked:
        st.error("Please enter your username or e-mail address.")

    st.markdown("**2. Choose a new password** with the code you received.")
    with st.form("reset-password"):
        identifier = st.text_input("Your username or e-mail address", key="reset-identifier")
        code = st.text_input("Code", max_chars=8, help="The 8 digits from the e-mail.")
        new = st.text_input("New password", type="password", autocomplete="new-password")
        repeat = st.text_input("Repeat the new password", type="password", autocomplete="new-password")
        submitted = st.form_submit_button("Set my new password")
    if submitted:
        try:
            app.accounts.reset_password(identifier.strip(), code.strip(), new, repeat)
        except (AccountError, StoreError) as exc:
            st.error(str(exc))
        else:
            st.success("Your password is changed. Sign in with it in the sidebar.")

with username_tab:
    with st.form("remind-username"):
        email = st.text_input("The e-mail address of your account")
        sent = st.form_submit_button("E-mail me my username")
    if sent and email.strip():
        try:
            app.accounts.remind_username(email.strip())
        except (MailError, StoreError) as exc:
            st.error(str(exc))
        else:
            st.success("If an account uses this address, its username is on its way.")
    elif sent:
        st.error("Please enter an e-mail address.")
