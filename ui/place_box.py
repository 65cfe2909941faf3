"""The finder's place box and 'Locate me': where to look, kept in the URL (?q=, or ?lat=&lon=) so that a link or
a reload searches it again.

The box is streamlit-searchbox's component: the server suggests communes as you type (place_search.suggest,
through ui/reads.py), and ui/place_box.js names its input and has an early Enter wait for the suggestions of
the text typed.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import streamlit as st
from streamlit_js_eval import get_geolocation
from streamlit_searchbox import st_searchbox

from i18n import N_, _
from prices.place_search import SEARCH_MAX_CHARS
from ui import language, reads, widgets

PLACE, LATITUDE, LONGITUDE = "q", "lat", "lon"
LOCATING = "finder-locating"
# The place box's own state; the place it holds (as in the URL); the text it opened with.
PLACE_BOX, PLACE_HELD, PLACE_OPENED_WITH = "finder-place", "finder-place-held", "finder-place-opened-with"
PLACE_DEBOUNCE_MS = 150  # the pause in typing after which the box asks for suggestions
PLACE_LABEL = N_("Town, postcode or address")
PLACE_BOX_SCRIPT = Path(__file__).with_name("place_box.js")  # names the box's input; Enter waits for its suggestions
PLACE_ENTER_WAIT_MS = 5_000  # an Enter pressed before the suggestions of the text typed waits this long for them
POSITION_NOT_FOUND = N_("Your position could not be found.")
GEOLOCATION_ERRORS = {
    1: N_("Your browser did not share its position."),
    2: POSITION_NOT_FOUND,
    3: N_("Your browser took too long to find your position."),
}


def place_choices(text: str, app) -> list[str]:
    """What the place box offers for the text typed so far: the text itself first (Enter searches it as it is, a
    street and its town too), then the communes and localities starting as it does (see `place_search.suggest`)."""
    typed = " ".join(text.split())[:SEARCH_MAX_CHARS]
    if not typed:
        return []
    return [typed, *(label for label in reads.suggestions(app, typed) if label.casefold() != typed.casefold())]


def located() -> tuple[float, float] | None:
    """The position 'Locate me' found, from the URL (so that it can be shared), if any."""
    try:
        latitude, longitude = float(st.query_params[LATITUDE]), float(st.query_params[LONGITUDE])
    except (KeyError, ValueError):
        return None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    return latitude, longitude


def where(app) -> str | None:
    """The place box (communes suggested by the server as you type) and 'Locate me'; returns the place searched,
    kept in the URL (?q=) so that a link or a reload searches it again."""
    _place_box(app)  # its suggestions push the page down: 'Locate me' goes under it, not beside it
    _mend_place_box()
    if st.button(_("Locate me"), icon=":material/my_location:"):
        st.session_state[LOCATING] = st.session_state.get(LOCATING, 0) + 1
    if st.session_state.get(LOCATING):
        _ask_the_browser(st.session_state[LOCATING])
    place = (st.query_params.get(PLACE) or "").strip()
    return place[:SEARCH_MAX_CHARS] or None


@st.fragment  # a keystroke reruns the box alone; a place chosen reruns the page
def _place_box(app) -> None:
    language.speak()  # a fragment's rerun skips the frame, which sets each run's language
    searched = st.query_params.get(PLACE) or ""
    if st.session_state.get(PLACE_HELD) != searched:  # a first draw, or the URL changed: Locate me, another page
        st.session_state.pop(PLACE_BOX, None)  # the box starts again, showing the place searched
        st.session_state[PLACE_HELD] = st.session_state[PLACE_OPENED_WITH] = searched
    chosen = st_searchbox(
        place_choices,
        label=_(PLACE_LABEL),
        placeholder=_("e.g. Lyon, 69003 or cours Gambetta Lyon"),
        default_searchterm=st.session_state[PLACE_OPENED_WITH],
        reset_function=_forget_place,
        rerun_scope="fragment",
        debounce=PLACE_DEBOUNCE_MS,
        key=PLACE_BOX,
        app=app,
    )
    if chosen and chosen != searched:
        st.session_state[PLACE_HELD] = st.query_params[PLACE] = chosen
        st.rerun()


def _mend_place_box() -> None:
    """Name the place box's input, and have Enter search the text typed: see ui/place_box.js."""
    script = _place_box_script() % {
        "label": json.dumps(_(PLACE_LABEL)),
        "max_chars": SEARCH_MAX_CHARS,
        "wait_ms": PLACE_ENTER_WAIT_MS,
    }
    st.html(f"<script>{script}</script>", unsafe_allow_javascript=True)  # code of ours; the label is JSON


@functools.cache
def _place_box_script() -> str:
    return PLACE_BOX_SCRIPT.read_text()


def _forget_place() -> None:
    """The box's cross: no place searched any more."""
    st.query_params.pop(PLACE, None)
    st.session_state[PLACE_HELD] = st.session_state[PLACE_OPENED_WITH] = ""
    st.rerun()


def _ask_the_browser(attempt: int) -> None:
    answer = get_geolocation(component_key=f"geolocation-{attempt}")
    if answer is None:
        st.caption(_("Waiting for your browser to share its position…"))
        return
    st.session_state[LOCATING] = 0
    coords = answer.get("coords") if isinstance(answer, dict) else None
    if coords and coords.get("latitude") is not None and coords.get("longitude") is not None:
        st.query_params.pop(PLACE, None)  # the position replaces the place typed
        st.query_params[LATITUDE] = f"{float(coords['latitude']):.5f}"
        st.query_params[LONGITUDE] = f"{float(coords['longitude']):.5f}"
        st.rerun()
    code = answer.get("error", {}).get("code") if isinstance(answer, dict) else None
    widgets.warning(
        _("{} Type a town, a postcode or an address instead."),
        _(GEOLOCATION_ERRORS.get(code, POSITION_NOT_FOUND)),
    )


def forget_position() -> None:
    for name in (LATITUDE, LONGITUDE):
        st.query_params.pop(name, None)
