import streamlit as st

from alerts import texts
from alerts.unsubscribe import TokenRefused, secret, unsubscribe
from i18n import _
from ui import alerts_ui, shell, widgets

app = shell.resources()

token = st.query_params.get("token")
if token:
    alerts_ui.speak_to_recipient(app, token)
st.title(_("Alert e-mails"))
if not token:
    st.info(_(texts.LINK_MISSING))
    st.stop()
try:
    with app.Writer.begin() as session:
        done = unsubscribe(session, secret(app.store), token)
except TokenRefused as exc:
    widgets.error("{}", exc)
else:
    alerts_ui.unsubscribed(done)
