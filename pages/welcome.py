import streamlit as st

from ui import shell

shell.through_the_frame()

st.title("Carburoam")
st.markdown(
    "Stop overpaying at the pump: follow your stations and your fuels, see at a glance where "
    "to fill up today, and how much that saves you in a year."
)
st.page_link("pages/find.py", label="Find the cheapest station near you, no account needed", icon=":material/search:")
shell.sign_in_here()
st.markdown("No account yet?")
left, middle, right = st.columns(3)
left.page_link("pages/register.py", label="Create an account", icon=":material/person_add:")
middle.page_link("pages/demo.py", label="Try the demo, no account needed", icon=":material/play_circle:")
right.page_link("pages/forgot.py", label="Forgot your password or username?", icon=":material/key:")
st.page_link("pages/about.py", label="Where the prices come from", icon=":material/info:")
