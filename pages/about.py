import streamlit as st

from i18n import _
from ui import shell
from utils import VERSION

shell.through_the_frame()

st.title(_("About Carburoam"))
st.markdown(
    _("""
Carburoam shows you the price of fuel at **your** stations, for **your** fuels, cheapest first,
and how much choosing well saves you in a year.

**Where the prices come from.** Every station in France that sells more than 500 m³ of fuel a
year must declare each price change. The government publishes those prices as open data on
[prix-carburants.gouv.fr](https://www.prix-carburants.gouv.fr/), refreshed every ten minutes,
under the [Licence Ouverte / Open Licence 2.0](https://www.etalab.gouv.fr/licence-ouverte-open-licence/)
(Etalab). Carburoam downloads that feed about once an hour; each price shows when the station
last declared it.

**Brands and names.** The official data names no brand. Brands and station names come from
[OpenStreetMap](https://www.openstreetmap.org/), whose contributors link each station to its
official id; © les contributeurs d'OpenStreetMap, under the
[Open Database License](https://opendatacommons.org/licenses/odbl/). Carburoam refreshes them
every week. A station OpenStreetMap does not know shows its town and address, and you can name the
stations you follow yourself.

**Open now.** Opening hours come from what each station declares. Many declare none, or
placeholders: Carburoam then says "hours unknown" rather than guess, and never "open". A station
with a 24/24 automat takes cards at the pump round the clock even when its shop is closed.

**Is the detour worth it?** The finder compares each station with the nearest one that sells your
fuel: what you save on one fill, minus the fuel burnt driving there and back (the straight-line
distance × 1.3 for roads, at your car's consumption). Set your fill and consumption in your
profile; without them, 40 L and 6.5 L/100 km.

**Your data.** Your account holds your name, e-mail, the fuels and stations you follow and your
yearly consumption. You can download all of it, or delete your account, from your profile.
""")
)
st.subheader(_("The fuels"))
st.markdown(
    _("""
Carburoam names the fuels as the official feed does, in every language.

- **Gazole**: diesel (B7), for diesel engines.
- **SP95**: unleaded petrol, 95 octane (E5: up to 5 % ethanol).
- **E10**: unleaded petrol, 95 octane, with up to 10 % ethanol; most petrol cars made since 2000 take it.
- **SP98**: unleaded petrol, 98 octane, for engines that ask for it.
- **E85**: superethanol, up to 85 % ethanol, for flex-fuel cars or cars fitted with a conversion kit.
- **GPLc**: liquefied petroleum gas (LPG), for cars fitted to run on it.
""")
)
st.caption(_("Version {}").format(VERSION))
