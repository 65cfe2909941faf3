"""The alert mails: one mail per person and pass, in plain text and simple HTML with every value escaped.

A line is a template of texts.py, translated, and its values; the plain text fills it as it is, the HTML fills
it with each value escaped, so nothing a feed or a person wrote can become markup. Everything here speaks the
active language: the caller makes it the recipient's (i18n.using) around a mail's lines and composition.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

import i18n
from alerts import texts
from alerts.evaluate import Fired
from alerts.rules import AREA_BELOW, DIGEST, DROP, cents
from i18n import _, distance, price
from models import CustomStation, GasType, Station
from prices.queries import favourites_board
from prices.trends import board_trends

Line = tuple[str, dict[str, str]]  # a template of texts.py in the active language, and its values


class Mail(NamedTuple):
    subject: str
    text: str
    html: str


class Labels(NamedTuple):
    """How a person's mail names fuels and stations: their own name for a station they follow, else its address."""

    fuels: Mapping[int, str]
    stations: Mapping[int, str]
    own: Mapping[tuple[int, int], str]  # (user, station) -> the name the person gave it

    def station(self, user_id: int, station_id: int | None) -> str:
        return self.own.get((user_id, station_id)) or self.stations.get(station_id, "")


def labels(session: Session, fired: Sequence[Fired]) -> Labels:
    """The names the mails of `fired` need. Each table is read by one list of ids: a second list on the same
    table (people and stations at once) made SQLite cross the two, 17 s for 7,000 people."""
    conn = session.connection()
    stations = sorted({f.finding.station_id for f in fired if f.finding.station_id is not None})
    users = sorted({f.finding.user_id for f in fired})
    rows = conn.execute(select(Station.id, Station.address, Station.town).where(Station.id.in_(stations)))
    own = conn.execute(
        select(CustomStation.user_id, CustomStation.station_id, CustomStation.custom_name).where(
            CustomStation.user_id.in_(users)
        )
    )
    return Labels(
        dict(session.execute(select(GasType.id, GasType.name)).all()),
        {station: f"{address}, {town}" for station, address, town in rows},
        {(user, station): name for user, station, name in own},
    )


def fired_line(fired: Fired, names: Labels) -> Line:
    found = fired.finding
    values = {
        "fuel": names.fuels.get(found.fuel_id, ""),
        "station": names.station(found.user_id, found.station_id),
        "price": price(found.price) if found.price is not None else "",
        "threshold": price(found.threshold) if found.threshold is not None else "",
    }
    if found.kind == DROP:
        values |= {"cents": cents(found.reference - found.price), "reference": price(found.reference)}
    if found.kind == AREA_BELOW:
        values |= {
            "radius": distance(found.radius_km),
            "place": found.place or "",
            "distance": distance(found.distance_km),
        }
    template = texts.FIRED["rupture_back" if fired.back else found.kind]
    return _(template), values


def digest_lines(session: Session, user_id: int, now: dt.datetime, stale_after: dt.timedelta) -> list[Line]:
    """The person's stations and fuels: each price now and how it moved over 7 days."""
    board = favourites_board(session, user_id)
    trends = board_trends(session, board, now, stale_after)
    lines: list[Line] = []
    for row in sorted(board, key=lambda row: (row.name, row.fuel)):
        if row.out_of_stock:
            lines.append((_(texts.DIGEST_LINE_OUT), {"station": row.name, "fuel": row.fuel}))
        elif row.price is not None:
            change = trends[(row.station_id, row.fuel_id)].change
            lines.append(
                (
                    _(texts.DIGEST_LINE),
                    {"station": row.name, "fuel": row.fuel, "price": price(row.price), "change": change_words(change)},
                )
            )
    return lines or [(_(texts.DIGEST_NOTHING), {})]


def change_words(change: Decimal | None) -> str:
    if not change:
        return _(texts.CHANGE_SAME)
    return i18n.cents(change * 100)


def compose(
    name: str, alerts: Sequence[Line], digest: Sequence[Line], unsubscribe_url: str, cap: int | None = None
) -> Mail:
    """One mail: the alerts that fired, the weekly summary if due, the daily cap's notice when `cap` is reached."""
    if alerts:
        subject = (
            _(texts.SUBJECT_ONE).format(line=_text(alerts[0])) if len(alerts) == 1 else texts.subject_many(len(alerts))
        )
    else:
        subject = _(texts.SUBJECT_DIGEST)
    blocks: list[list[Line]] = [[(_(texts.GREETING), {"name": name})], list(alerts)]
    if digest:
        blocks.append([(_(texts.DIGEST_TITLE), {}), *digest])
    if cap is not None:
        blocks.append([("{notice}", {"notice": texts.cap_reached(cap)})])
    text = "\n\n".join("\n".join(_text(line) for line in block) for block in blocks if block)
    text += "\n\n-- \n" + _(texts.FOOTER).format(url=unsubscribe_url) + "\n"
    link = f'<a href="{html.escape(unsubscribe_url)}">{html.escape(_(texts.UNSUBSCRIBE_LINK))}</a>'
    body = "".join(_html_block(block) for block in blocks if block)
    page = (
        f'<!DOCTYPE html>\n<html lang="{i18n.language()}"><head><meta charset="utf-8">'
        f"<title>{html.escape(subject)}</title></head>"
        f"<body>{body}<hr><p><small>{html.escape(_(texts.FOOTER_HTML)).format(link=link)}</small></p></body></html>\n"
    )
    return Mail(subject[:200], text, page)


def is_digest(fired: Fired) -> bool:
    return fired.finding.kind == DIGEST


def _text(line: Line) -> str:
    template, values = line
    return template.format(**values)


def _html(line: Line) -> str:
    template, values = line
    return html.escape(template).format(**{key: html.escape(value) for key, value in values.items()})


def _html_block(block: Sequence[Line]) -> str:
    if len(block) == 1:
        return f"<p>{_html(block[0])}</p>"
    return "<ul>" + "".join(f"<li>{_html(line)}</li>" for line in block) + "</ul>"
