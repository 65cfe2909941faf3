"""Widgets shared by the pages: safe text, price boards, freshness, savings, the latest pick of a list or map.

Functions here draw; they never query the database. Streamlit renders Markdown in nearly every
element (messages, captions, titles, labels), so text that did not come from the code (a feed's
addresses, a name someone typed, an error's message) reaches those elements only through `md()`
and the message helpers built on it, which show it as literal text: no link, image, HTML or
formatting can come out of it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd
import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from accounts.sessions import UNKNOWN_DEVICE, SessionRow, device_parts
from i18n import N_, _, age, cents, litres, moment, money, ordinal, price
from prices.preferences import PreferenceError
from prices.queries import BoardRow, Freshness
from prices.savings import Savings
from prices.towns import town_name
from prices.trends import NEARBY_KM, Trend

_ASCII_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # CommonMark lets a backslash escape each of them
_WHITESPACE = re.compile(r"[^\S\u00a0\u2007\u202f]+")  # no-break spaces stay: "1 200 L", "1,859 €/L"
_INVISIBLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
# Streamlit's renderer turns URLs, e-mail addresses and :shortcodes: into links and emoji after the
# escapes are read, so no escape stops it: an invisible word joiner after each ':' and '@', and inside
# 'www.', breaks the patterns it looks for.
_AUTOLINK_TRIGGER = re.compile(r"(?i)([:@]|\bwww(?=\.))")
WORD_JOINER = "\u2060"
FEED_STILL_AFTER = dt.timedelta(days=1)


def escape_markdown(text: object) -> str:
    """`text` shown literally, on one line, inside Markdown: no formatting, link, image or HTML comes out of it.

    Line breaks become spaces, invisible control characters are dropped, every ASCII punctuation
    character is escaped, and URLs, addresses and shortcodes are broken invisibly.
    """
    flat = _INVISIBLE.sub("", _WHITESPACE.sub(" ", str(text))).strip()
    return _ASCII_PUNCTUATION.sub(r"\\\1", _AUTOLINK_TRIGGER.sub(rf"\1{WORD_JOINER}", flat))


def md(template: str, *values: object, **named: object) -> str:
    """`template`, Markdown written in the code with `{}` or `{name}` fields, holding the values as literal text."""
    return template.format(
        *(escape_markdown(value) for value in values), **{key: escape_markdown(value) for key, value in named.items()}
    )


def error(template: str, *values: object, where=st) -> None:
    where.error(md(template, *values))


def warning(template: str, *values: object, where=st) -> None:
    where.warning(md(template, *values))


def info(template: str, *values: object, where=st, icon: str | None = None) -> None:
    where.info(md(template, *values), icon=icon)


def success(template: str, *values: object, where=st) -> None:
    where.success(md(template, *values))


def caption(template: str, *values: object, where=st) -> None:
    where.caption(md(template, *values))


def markdown(template: str, *values: object, where=st) -> None:
    where.markdown(md(template, *values))


def save_choice(writer: sessionmaker[Session], change: Callable[[Session], object]) -> bool:
    """Write one of a person's choices in its own transaction; False, with the reason shown, when it is refused."""
    try:
        with writer.begin() as session:
            change(session)
    except PreferenceError as exc:
        error("{}", exc)
        return False
    return True


FEED_UNREACHABLE = N_("The official price feed could not be reached; prices will appear as soon as it answers.")
PRICES_LOADING = N_("Prices are still loading: the first download takes a minute or two. Come back shortly.")


def nothing_to_search_yet(fresh: Freshness) -> bool:
    """Before the first download there is no station to find: say so (once the freshness line has said why),
    rather than suggest the search was mistyped. Whether that is the case."""
    if fresh.stations:
        return False
    st.info(
        _("No station can be searched until the prices are loaded. Your search will work then."),
        icon=":material/hourglass_top:",
    )
    return True


def show_freshness(fresh: Freshness, interval_seconds: int, now: dt.datetime, *, technical: bool = False) -> None:
    """When prices were last refreshed and how old the newest one is, warning when either is not to be trusted.

    A run can succeed on a feed that stopped moving: the age of the newest price tells that apart.
    Why an update failed is for administrators (`technical`); visitors get one plain sentence.
    """
    if fresh.last_success_at is None:
        if fresh.last_run_failed and technical:
            warning(_("The prices could not be downloaded yet ({}). Carburoam will retry."), fresh.last_run_error)
        elif fresh.last_run_failed:
            st.warning(_(FEED_UNREACHABLE))
        else:
            st.info(_(PRICES_LOADING))
        return
    checked = (moment(fresh.last_success_at, now), age(fresh.last_success_at, now))
    newest = fresh.newest_price_at
    if newest is not None and now - newest > FEED_STILL_AFTER:
        warning(
            _(
                "The official feed's newest price was declared {} ({}): these prices may be out of date. "
                "Last update {} ({})."
            ),
            moment(newest, now),
            age(newest, now),
            *checked,
        )
    elif fresh.last_run_failed and technical:
        warning(
            _("Prices updated {} ({}). The latest update failed ({}); these prices may be out of date."),
            *checked,
            fresh.last_run_error,
        )
    elif fresh.last_run_failed:
        warning(
            _("Prices updated {} ({}). The latest update could not be made; these prices may be out of date."), *checked
        )
    elif (now - fresh.last_success_at).total_seconds() > 2 * interval_seconds:
        warning(_("Prices updated {} ({}). That is longer ago than usual; these prices may be out of date."), *checked)
    elif newest is not None:
        caption(
            _("Prices updated {} ({}); the newest price was declared {} ({})."),
            *checked,
            moment(newest, now),
            age(newest, now),
        )
    else:
        caption(_("Prices updated {} ({})."), *checked)


def _status(row: BoardRow, now: dt.datetime, stale_after: dt.timedelta) -> str:
    if row.rupture == "definitive":
        return _("Out of stock (for good)")
    if row.out_of_stock:
        return _("Out of stock (for now)")
    if row.price is None:
        return _("No price declared")
    if row.is_stale(now, stale_after):
        return _("Old price ({}): not counted").format(age(row.updated_at, now))
    return ""


def _board_order(row: BoardRow, now: dt.datetime, stale_after: dt.timedelta) -> tuple:
    """Buyable fresh prices first, cheapest first; then old prices; out of stock and missing last."""
    if not row.available:
        return (2, Decimal(0), row.name)
    return (1 if row.is_stale(now, stale_after) else 0, row.price, row.name)


def show_board(
    rows: Sequence[BoardRow],
    savings: dict[str, Savings | None],
    now: dt.datetime,
    stale_after: dt.timedelta,
    trends: dict[tuple[int, int], Trend] | None = None,
) -> None:
    """One table per fuel, cheapest first, with what choosing well saves in a year, and with `trends`,
    how each price moved over a week and a month and its rank among the stations around."""
    fuels: dict[str, list[BoardRow]] = {}
    for row in rows:
        fuels.setdefault(row.fuel, []).append(row)
    for fuel, fuel_rows in fuels.items():
        st.subheader(fuel)
        ordered = sorted(fuel_rows, key=lambda row: _board_order(row, now, stale_after))
        columns = {
            _("Station"): [row.name for row in ordered],
            _("Address"): [f"{row.address}, {row.zip_code} {town_name(row.town)}" for row in ordered],
            _("Price"): [price(row.price) if row.price is not None else "—" for row in ordered],
        }
        last_30_days = _("Last 30 days")
        if trends is not None:
            shown = [trends.get((row.station_id, row.fuel_id)) for row in ordered]
            columns[_("7 days")] = [change_in_cents(trend.change) if trend else "" for trend in shown]
            columns[last_30_days] = [trend.days if trend else [] for trend in shown]
            columns[_("Within {} km").format(f"{NEARBY_KM:g}")] = [
                rank_phrase(trend) if trend else "" for trend in shown
            ]
        columns[_("Updated")] = [
            f"{moment(row.updated_at, now)} ({age(row.updated_at, now)})" if row.updated_at else "—" for row in ordered
        ]
        columns[""] = [_status(row, now, stale_after) for row in ordered]
        config = {last_30_days: st.column_config.LineChartColumn(width="small")} if trends is not None else None
        st.dataframe(pd.DataFrame(columns), hide_index=True, width="stretch", column_config=config)
        show_savings(savings.get(fuel))


def change_in_cents(change: Decimal | None) -> str:
    """'−3.2 ct', '+0.5 ct', 'no change', or '' when there was no price to compare with."""
    if change is None:
        return ""
    in_cents = (change * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    if in_cents == 0:
        return _("no change")
    return cents(in_cents)


def rank_phrase(trend: Trend) -> str:
    """'3rd cheapest of 24', 'cheapest of 12', 'the only one', or '' without a current price here."""
    if trend.rank is None:
        return ""
    if trend.among == 1:
        return _("the only one")
    if trend.rank == 1:
        return _("cheapest of {}").format(trend.among)
    return _("{} cheapest of {}").format(ordinal(trend.rank), trend.among)


def show_savings(saving: Savings | None) -> None:
    if saving is None:
        st.caption(_("Follow at least two stations with a recent price for this fuel to see what you can save."))
        return
    markdown(
        _("Filling up at **{}** rather than **{}** saves about **{} a year**."),
        saving.cheapest.name,
        saving.dearest.name,
        money(saving.amount),
    )
    caption(
        _("(dearest {} − cheapest {}) × {} a year = {}"),
        price(saving.dearest.price),
        price(saving.cheapest.price),
        litres(saving.litres),
        money(saving.amount),
    )


def remember_latest_pick(key: str, *picks: int | None) -> None:
    """Keep in `st.session_state[key]` the station picked last, whichever widget picked it.

    Map and table keep their selections across reruns, so the newest pick is
    the one that differs from what each widget held on the previous run.
    """
    previous = st.session_state.get(f"{key}-picks", (None,) * len(picks))
    for before, pick in zip(previous, picks, strict=True):
        if pick is not None and pick != before:
            st.session_state[key] = pick
    st.session_state[f"{key}-picks"] = picks


def password_change_form(help_text: str) -> tuple[str, str, str] | None:
    """The change-password form; (current, new, repeated new) when it was submitted."""
    with st.form("change-password", clear_on_submit=True):
        st.subheader(_("Change my password"))
        current = st.text_input(_("Current password"), type="password", autocomplete="current-password")
        new = st.text_input(_("New password"), type="password", autocomplete="new-password", help=help_text)
        repeat = st.text_input(_("Repeat the new password"), type="password", autocomplete="new-password")
        submitted = st.form_submit_button(_("Change my password"))
    return (current, new, repeat) if submitted else None


def _device_name(device: str) -> str:
    """A stored device in the reader's language: 'Firefox sur Windows'."""
    if device == UNKNOWN_DEVICE:
        return _(UNKNOWN_DEVICE)
    browser, system = device_parts(device)
    return _("{browser} on {system}").format(browser=browser, system=system) if system else browser


def session_list(rows: Sequence[SessionRow], this_device: str | None, now: dt.datetime) -> str | None:
    """The account's live sessions, one line each with a sign-out button; the id of the one to end, if clicked."""
    ended = None
    for row in rows:
        left, right = st.columns([4, 1], vertical_alignment="center")
        markdown(
            _("**{}** (this device) — signed in {}, last used {}")
            if row.id == this_device
            else _("**{}** — signed in {}, last used {}"),
            _device_name(row.device),
            moment(row.created_at, now),
            age(row.last_seen_at, now),
            where=left,
        )
        if right.button(_("Sign out"), key=f"end-{row.id}"):
            ended = row.id
    return ended
