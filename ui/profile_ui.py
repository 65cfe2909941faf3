"""The profile's forms that take more than a line or two to draw: the yearly consumption, for now."""

from __future__ import annotations

import streamlit as st

from i18n import _
from models import User


def consumption_form(user: User) -> dict[str, float] | None:
    """Litres a year, or kilometres and L/100 km, as the person knows it; the values when the form was sent."""
    by_distance = user.km_per_year is not None and user.litres_per_100km is not None
    with st.form("consumption"):
        mode = st.radio(
            _("I know"),
            ["litres", "distance"],
            format_func={"litres": _("How many litres I buy a year"), "distance": _("How far I drive")}.get,
            index=int(by_distance),
            horizontal=True,
        )
        litres = st.number_input(_("Litres a year"), min_value=0.0, value=float(user.litres_per_year or 0), step=50.0)
        left, right = st.columns(2)
        km = left.number_input(_("Kilometres a year"), min_value=0.0, value=float(user.km_per_year or 0), step=1000.0)
        per_100 = right.number_input(
            _("Litres per 100 km"), min_value=0.0, value=float(user.litres_per_100km or 0), step=0.1
        )
        if st.form_submit_button(_("Save my consumption")):
            return {"litres_per_year": litres} if mode == "litres" else {"km_per_year": km, "litres_per_100km": per_100}
    return None
