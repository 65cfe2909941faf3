import streamlit as st

from utils import VERSION

st.title("About Carburoam")
st.markdown(
    """
Carburoam shows you the price of fuel at **your** stations, for **your** fuels, cheapest first,
and how much choosing well saves you in a year.

**Where the prices come from.** Every station in France that sells more than 500 m³ of fuel a
year must declare each price change. The government publishes those prices as open data on
[prix-carburants.gouv.fr](https://www.prix-carburants.gouv.fr/), refreshed every ten minutes,
under the [Licence Ouverte / Open Licence 2.0](https://www.etalab.gouv.fr/licence-ouverte-open-licence/)
(Etalab). Carburoam downloads that feed about once an hour; each price shows when the station
last declared it. Station names and brands are not part of the data, which is why you can name
your stations yourself.

**Your data.** Your account holds your name, e-mail, the fuels and stations you follow and your
yearly consumption. You can download all of it, or delete your account, from your profile.
"""
)
st.caption(f"Version {VERSION}")
