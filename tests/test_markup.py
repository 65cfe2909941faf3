"""Text from the feed, from people and from errors is shown as text on every page, never as markup.

Stations whose addresses and towns, people whose names, followed stations whose custom names, and
a failed price update whose error message are Markdown, HTML, bare URLs and Streamlit's own
syntax are shown on every page (AppTest). Every element Streamlit renders as Markdown is then
parsed as CommonMark with GFM's autolinks (markdown-it-py, as close to Streamlit's renderer as a
Python parser gets): none may hold a link, an image or HTML, and each payload must read exactly as
it was written. Streamlit's own syntax (colours, icons, LaTeX) must reach it escaped.
tests/test_browser.py checks the same in Chromium, where Streamlit's real renderer runs.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import pytest
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from app_helpers import (
    PASSWORD,
    App,
    add_price,
    add_run,
    add_station,
    new_app,
    open_app,
    open_page,
    run_frame,
    sign_in,
    titles,
)
from models import EtlRun
from prices.preferences import follow_station
from ui import widgets
from utils import utcnow

# Each fits a custom name (40 characters) and a first name (50).
pytestmark = pytest.mark.usefixtures("cheap_bcrypt")

PAYLOADS = {
    "link": "[win a prize](http://evil.example/p)",
    "image": "![](http://evil.example/pixel.png)",
    "html": "<img src=x onerror=alert(1)>",
    "bare url": "see http://evil.example/bare now",
    "www": "visit www.evil.example today",
    "email": "write to mallory@evil.example",
    "emphasis": "**bold** _it_ `code` ~~gone~~",
    "streamlit": ":red[red] :material/warning: $x^2$",
    "shortcode": "fill up :smile: :fuelpump:",
    "entity": "&lt;b&gt; &#60;i&#62;",
}
BLOCKS = "# Heading\n\n> quote\n\n- item\n\n    indented code"
ERROR = " | ".join([*PAYLOADS.values(), BLOCKS])
# Links the code itself writes: the About page's sources, and the sidebar's credit, which markdown-it's
# linkify takes for a link (it links bare domains; Streamlit's GFM autolinks need www. or http://).
OWN_LINKS = {
    "https://www.prix-carburants.gouv.fr/",
    "https://www.etalab.gouv.fr/licence-ouverte-open-licence/",
    "http://prix-carburants.gouv.fr",
    "https://www.openstreetmap.org/",
    "https://opendatacommons.org/licenses/odbl/",
}
MARKDOWN_ELEMENTS = ("title", "header", "subheader", "markdown", "caption", "error", "warning", "info", "success")
LABELLED_ELEMENTS = ("button", "expander", "tab", "text_input", "selectbox", "radio", "checkbox", "metric")
STREAMLIT_SYNTAX = re.compile(r"(?<!\\)(:[a-z]+\[|:material/|\$)")
# What Streamlit's renderer turns into links and emoji in the text it has parsed, escapes or not
# (GFM autolink literals, emoji shortcodes).
TEXT_LEVEL_MARKUP = re.compile(r"(?i)https?://|\bwww\.|[\w.+-]@[a-z0-9-]+\.[a-z]|:[a-z0-9_+-]+:")
WORD_JOINER = "\u2060"
PARSER = MarkdownIt("commonmark", {"linkify": True}).enable(["linkify", "strikethrough", "table"])


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, data_dir) -> Iterator[App]:
    opened = open_app(monkeypatch, data_dir)
    seed(opened)
    yield opened
    opened.engine.dispose()


def seed(app: App) -> None:
    """Three neighbouring stations made of payloads, all followed by alice under payload names; a failed update."""
    now = utcnow()
    alice = app.accounts.register(
        "alice", "alice@example.org", PAYLOADS["link"], PAYLOADS["emphasis"], PASSWORD, PASSWORD
    )
    app.accounts.create_admin("root", "root@example.org", PASSWORD)
    names = list(PAYLOADS.values())
    with app.session() as session, session.begin():
        for station_id in (1, 2, 3):
            address, town = names[2 * station_id - 2], names[2 * station_id - 1]
            add_station(session, station_id, address, town, "69000", 45.75 + station_id / 1000, 4.85)
            add_price(session, station_id, 1, f"1.8{station_id}9", now - dt.timedelta(hours=1))
            add_price(session, station_id, 2, f"1.9{station_id}9", now - dt.timedelta(hours=1))
            follow_station(session, alice.user_id, station_id, names[5 + station_id])
        add_run(session, "success", now - dt.timedelta(minutes=30))
        session.add(
            EtlRun(
                kind="run",
                started_at=now - dt.timedelta(minutes=5),
                finished_at=now - dt.timedelta(minutes=5),
                status="failed",
                source="http://evil.example/feed",
                error=ERROR,
            )
        )


# --------------------------------------------------------------------------- reading what Streamlit renders


def rendered_bodies(at: AppTest) -> list[str]:
    """Every string of the page (main area and sidebar) that Streamlit renders as Markdown."""
    bodies = []
    for kind in MARKDOWN_ELEMENTS:
        bodies += [str(element.value) for element in at.get(kind)]
    for kind in LABELLED_ELEMENTS:
        bodies += [str(element.label) for element in at.get(kind) if getattr(element, "label", None)]
    return bodies


def plain_text(tokens) -> str:
    """What a person reads of parsed Markdown: its text, without the formatting marks."""
    parts = []
    for token in tokens:
        if token.children:
            parts.append(plain_text(token.children))
        elif token.type in ("text", "text_special", "code_inline"):
            parts.append(token.content)
        elif token.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return "".join(parts)


def markup_in(body: str) -> list[str]:
    """The links, images, HTML and emoji that `body` would render (links the code writes itself excepted)."""
    found = []
    tokens = PARSER.parse(body)
    for token in tokens:
        for inline in [token, *(token.children or [])]:
            if inline.type in ("html_inline", "html_block", "image"):
                found.append(f"{inline.type}: {inline.content or inline.attrGet('src')}")
            elif inline.type == "link_open" and inline.attrGet("href") not in OWN_LINKS:
                found.append(f"link to {inline.attrGet('href')}")
    own = "|".join(re.escape(link.split("//")[1].rstrip("/")) for link in OWN_LINKS)
    text = re.sub(own, "", plain_text(tokens))
    found += [f"autolink or emoji: {match}" for match in TEXT_LEVEL_MARKUP.findall(text)]
    return found


def read(at: AppTest) -> str:
    """The page's rendered text, with any markup it holds raising an AssertionError."""
    assert not at.exception, at.exception
    texts = []
    for body in rendered_bodies(at):
        assert not markup_in(body), (markup_in(body), body)
        assert not STREAMLIT_SYNTAX.search(body), ("Streamlit syntax reaches the renderer", body)
        texts.append(plain_text(PARSER.parse(body)).replace(WORD_JOINER, ""))
    return "\n".join(texts)


def literally(payload: str) -> str:
    """A payload as it must read once shown: on one line, each run of spaces as one."""
    return " ".join(payload.split())


# --------------------------------------------------------------------------- the pages


def test_the_demo_shows_feed_text_as_text_and_no_error_of_the_pipeline(app):
    at = new_app().run()
    shown = read(open_page(at, "pages/demo.py"))

    assert titles(at) == ["Demo"]
    assert "The latest update could not be made" in shown and "evil.example" not in shown.split("Filling up")[0]
    assert "Filling up at" in shown, "the savings line names demo stations from their payload addresses"


def test_signed_out_pages_hold_no_markup(app):
    at = new_app().run()
    for page in ("pages/welcome.py", "pages/register.py", "pages/forgot.py", "pages/about.py"):
        read(open_page(at, page))


def test_the_dashboard_shows_names_as_text_and_no_error_of_the_pipeline(app):
    at = new_app().run()
    sign_in(at, "alice", PASSWORD)
    shown = read(at)

    assert titles(at) == ["My prices today"]
    assert "The latest update could not be made" in shown and literally(ERROR) not in shown
    assert literally(PAYLOADS["emphasis"]) in shown, "the savings line"


def test_the_stations_page_shows_addresses_towns_and_custom_names_as_text(app):
    at = new_app().run()
    sign_in(at, "alice", PASSWORD)
    open_page(at, "pages/stations.py")
    at.session_state["list"] = {"selection": {"rows": [0], "columns": [], "cells": []}}  # station 1, the cheapest
    shown = read(at.run())

    assert titles(at) == ["My stations"]
    assert literally(PAYLOADS["link"]) in shown and literally(PAYLOADS["image"]) in shown, "the selected station"
    for name in list(PAYLOADS.values())[6:9]:
        assert literally(name) in shown, f"the custom name {name!r}"


def test_the_profile_and_the_sidebar_show_names_as_text(app):
    at = new_app().run()
    sign_in(at, "alice", PASSWORD)
    shown = read(open_page(at, "pages/profile.py"))
    assert "Signed in as alice (alice@example.org)." in shown

    read(run_frame(at))


def test_the_admin_page_shows_the_error_as_text(app):
    at = new_app().run()
    sign_in(at, "root", PASSWORD)
    shown = read(open_page(at, "pages/admin.py"))

    assert titles(at) == ["Administration"]
    assert literally(ERROR) in shown


def test_a_search_made_of_payloads_is_answered_in_plain_text(app):
    for text in (*PAYLOADS.values(), "one two three four five six seven eight nine"):
        at = new_app().run()
        at.query_params["q"] = text  # a link to the finder, as anyone may craft one
        shown = read(at.switch_page("pages/find.py").run())
    assert "A search has at most 100 characters and 8 words" in shown


def test_escaping_keeps_every_character_and_drops_control_characters():
    for payload in [*PAYLOADS.values(), BLOCKS, "Saint-Étienne (42) — 1,859 €/L", "a\x00b\u202ec\td"]:
        body = widgets.md("**{}**", payload)
        assert not markup_in(body)
        assert not STREAMLIT_SYNTAX.search(body)
    assert plain_text(PARSER.parse(widgets.md("{}", "Saint-Étienne (42) — 1,859 €/L"))) == (
        "Saint-Étienne (42) — 1,859 €/L"
    )
    assert plain_text(PARSER.parse(widgets.md("{}", "a\x00b\u202ec\td"))) == "abc d"
