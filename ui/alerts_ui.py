"""The profile's price alerts: the list with pause, resume and delete, the form for a new one, a test e-mail;
and the unsubscribe page's answer, in its recipient's language. Sentences come from alerts/texts.py or are marked
here, and are shown in the session's language; every value shown goes through `md()`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import streamlit as st

import i18n
from accounts.users import Account
from alerts import outbox, rules, texts, unsubscribe
from alerts.rules import RuleView
from i18n import N_, _
from mailer import MailError
from prices import queries
from ui import shell, widgets
from utils import utcnow

KIND_KEY = "alert-kind"
ACTIONS = {"pause": N_("Pause"), "resume": N_("Resume")}
INTRO = N_(
    "We e-mail you when a price you watch reaches your figure, once each time it does; several alerts at once come "
    "in one e-mail, at most {cap} e-mails a day. Every e-mail has a link that stops them."
)
NO_ALERTS = N_("You have no alerts yet.")
PAUSED = N_("{} (paused)")
NO_STATIONS = N_("Follow a station on the My stations page to watch its prices.")
CREATED = N_("Alert saved. We will look at it after the next price update.")
TEST_SENT = N_("A test e-mail is on its way to {email}.")


def manage(app, account: Account) -> None:
    """The whole alert section of the profile: what the person has, and what they can do with it."""
    st.caption(widgets.md(_(INTRO), cap=app.settings.alert_max_mails_per_day))
    with app.Session() as session:
        views = rules.rules_of(session, account.user_id)
        stations = {row.station_id: row.custom_name for row in queries.user_favourites(session, account.user_id)}
        fuels = {fuel.id: fuel.name for fuel in queries.fuel_types(session)}
    chosen = alert_list(views)
    if chosen is not None and _change(app, account, *chosen):
        st.rerun()
    values = new_alert_form(stations, fuels)
    if values is not None and _change(app, account, "create", values):
        shell.flash(_(CREATED))
        st.rerun()
    if st.button(_("Send me a test e-mail"), help=_("An example of an alert e-mail, sent now.")):
        try:
            with app.Session() as session:
                outbox.send_test(session, app.settings, unsubscribe.secret(app.store), account.user_id)
        except MailError as exc:
            widgets.error("{}", exc)
        else:
            st.success(widgets.md(_(TEST_SENT), email=account.email))


def alert_list(views: Sequence[RuleView]) -> tuple[str, int] | None:
    """Each alert with its buttons; (action, alert id) when one was pressed."""
    if not views:
        st.caption(_(NO_ALERTS))
    chosen = None
    for view in views:
        text, toggle, drop = st.columns([6, 1, 1], vertical_alignment="center")
        text.markdown(widgets.md(_(PAUSED) if view.paused else "{}", view.description))
        action = "resume" if view.paused else "pause"
        if toggle.button(_(ACTIONS[action]), key=f"alert-{action}-{view.id}"):
            chosen = (action, view.id)
        if drop.button(_("Delete"), key=f"alert-delete-{view.id}"):
            chosen = ("delete", view.id)
    return chosen


def new_alert_form(stations: Mapping[int, str], fuels: Mapping[int, str]) -> dict[str, Any] | None:
    """The form for one new alert, its fields those of the kind chosen above it; its values when sent."""
    st.subheader(_("New alert"))
    kinds = {kind: _(texts.KIND_NAMES[kind]) for kind in rules.KINDS}  # translated now, in this run's language
    kind = st.selectbox(_("Tell me about"), list(kinds), format_func=kinds.get, key=KIND_KEY)
    if kind in rules.STATION_KINDS and not stations:
        st.info(_(NO_STATIONS))
        return None
    with st.form("new-alert"):
        values: dict[str, Any] = {"kind": kind}
        if kind in rules.STATION_KINDS:
            values["station_id"] = st.selectbox(_("At my station"), list(stations), format_func=stations.get)
        if kind != rules.DIGEST:
            values["fuel_id"] = st.selectbox(_("Fuel"), list(fuels), format_func=fuels.get)
        if kind == rules.AREA_BELOW:
            place, radius = st.columns([3, 1])
            values["place"] = place.text_input(_("Around"), placeholder=_("A town, a postcode or an address"))
            values["radius_km"] = radius.number_input(_("Within (km)"), *rules.RADIUS_KM_RANGE, value=10)
        if kind in (rules.PRICE_BELOW, rules.AREA_BELOW):
            price = st.number_input(_("Price (€/L)"), min_value=0.0, max_value=5.0, value=1.7, step=0.01, format="%.3f")
            values["threshold"] = Decimal(f"{price:.3f}")
        if kind == rules.DROP:
            drop = st.number_input(_("Drop of at least (cents)"), *rules.DROP_CENTS_RANGE, value=5)
            values["threshold"] = Decimal(drop) / 100
        if st.form_submit_button(_("Save the alert"), type="primary"):
            return values
    return None


def _change(app, account: Account, action: str, value: Any) -> bool:
    """Carry out one change in its own transaction; False, with the reason shown, when it is refused."""
    try:
        with app.Writer.begin() as session:
            if action == "create":
                values = dict(value)
                rules.create(session, account.user_id, values.pop("kind"), utcnow(), **values)
            elif action == "delete":
                rules.remove(session, account.user_id, value)
            else:
                rules.set_paused(session, account.user_id, value, action == "pause")
    except rules.AlertRefused as exc:
        widgets.error("{}", exc)
        return False
    return True


def speak_to_recipient(app, token: str) -> None:
    """Write the rest of this run in the language of the account a genuine unsubscribe `token` names, when its
    profile has one; else in the session's (the browser's). The next run starts in the session's again."""
    with app.Session() as session:
        language = unsubscribe.recipient_language(session, unsubscribe.secret(app.store), token)
    if language is not None:
        i18n.activate(language)


def unsubscribed(done: unsubscribe.Unsubscribed) -> None:
    template = texts.ALREADY_UNSUBSCRIBED if done.already else texts.UNSUBSCRIBED
    st.success(widgets.md(_(template), email=done.email))
