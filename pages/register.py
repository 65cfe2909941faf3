import streamlit as st
from streamlit_authenticator import RegisterError

import shell
import ui
from auth import PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS, USERNAME_RULE, AccountError
from credentials import StoreError

app = shell.resources()

st.title("Create an account")
st.markdown(
    f"It's free. {USERNAME_RULE} Your password needs {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters. "
    "You will follow Gazole, SP95 and E10 until you change it in your profile."
)
authenticator = shell.authenticator()
try:
    email, username, name = authenticator.register_user(
        location="main",
        captcha=app.settings.registration_captcha,
        roles=["user"],
        password_hint=False,
        key="register",
        fields={
            "Form name": "Your details",
            "First name": "First name",
            "Last name": "Last name",
            "Email": "E-mail",
            "Username": "Username",
            "Password": "Password",
            "Repeat password": "Repeat the password",
            "Captcha": "Type the characters in the picture",
            "Register": "Create my account",
        },
    )
except RegisterError as exc:
    st.error(ui.explain_account_error(str(exc)))
    username = None

if username:
    entry = authenticator.authentication_controller.authentication_model.credentials["usernames"][username]
    try:
        app.accounts.adopt_registration(username, entry)
    except (AccountError, StoreError) as exc:
        st.error(str(exc))
    else:
        st.success(f"Welcome, {ui.escape_markdown(name)}! Your account is ready: sign in with the form in the sidebar.")
