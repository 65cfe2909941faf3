import streamlit as st

from i18n import _
from ui import shell

shell.through_the_frame()

st.title(_("Carburoam"))
st.markdown(
    _(
        "Stop overpaying at the pump: follow your stations and your fuels, see at a glance where "
        "to fill up today, and how much that saves you in a year."
    )
)
st.page_link(
    "pages/find.py", label=_("Find the cheapest station near you, no account needed"), icon=":material/search:"
)
shell.sign_in_here()
st.markdown(_("No account yet?"))
left, middle, right = st.columns(3)
left.page_link("pages/register.py", label=_("Create an account"), icon=":material/person_add:")
middle.page_link("pages/demo.py", label=_("Try the demo, no account needed"), icon=":material/play_circle:")
right.page_link("pages/forgot.py", label=_("Forgot your password or username?"), icon=":material/key:")
st.page_link("pages/about.py", label=_("Where the prices come from"), icon=":material/info:")
