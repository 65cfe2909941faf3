"""A newcomer's first minutes: an unreachable feed, an empty database, and what the pages say then."""

from __future__ import annotations

import pytest

from app_helpers import (
    PASSWORD,
    errors,
    infos,
    markdowns,
    new_app,
    open_app,
    open_page,
    sign_in,
    text_input,
    warnings,
)
from ingest import passes
from net import free_port
from ui.widgets import FEED_UNREACHABLE

FIND, DEMO, ADMIN = "pages/find.py", "pages/demo.py", "pages/admin.py"


@pytest.fixture
def unreachable(monkeypatch, data_dir):
    """The app whose feed URL is a closed local port, after one failed pass, with an administrator."""
    url = f"http://127.0.0.1:{free_port()}/PrixCarburants_instantane.zip"
    app = open_app(monkeypatch, data_dir, CARBUROAM_FEED_URL=url, ETL_HTTP_RETRIES="0")
    with pytest.raises(passes.EtlError):
        passes.run_pass(app.engine, app.settings)
    app.accounts.create_admin("root", "root@example.org", PASSWORD)
    yield app
    app.engine.dispose()


def everything_shown(at) -> str:
    return "\n".join([*warnings(at), *infos(at), *errors(at), *markdowns(at)])


@pytest.mark.parametrize("page", [FIND, DEMO, "pages/welcome.py"])
def test_visitors_get_one_plain_sentence_when_the_feed_cannot_be_reached(unreachable, page):
    at = open_page(new_app().run(), page)

    assert not at.exception
    shown = everything_shown(at)
    if page != "pages/welcome.py":
        assert FEED_UNREACHABLE in warnings(at)
    for technical in ("127.0.0.1", "Errno", "Connection", "HTTP", "could not download"):
        assert technical not in shown, technical


def test_the_admin_page_keeps_the_technical_reason(unreachable):
    at = new_app().run()
    sign_in(at, "root", PASSWORD)
    open_page(at, ADMIN)

    (reason,) = [text for text in warnings(at) if "could not be downloaded yet" in text]
    assert "could not download the feed file from 127.0.0.1" in reason


def test_a_search_before_the_first_download_says_prices_are_loading_not_that_the_place_is_unknown(app):
    at = new_app().run()
    at.query_params["q"] = "Lyon"
    at = open_page(at, FIND)

    assert not at.exception
    assert any("Prices are still loading" in text for text in infos(at))
    assert any("No station can be searched until the prices are loaded" in text for text in infos(at))
    assert not any("No place called" in text for text in warnings(at)), "nothing suggests a typing mistake"
    assert not any("stations" in text and "in and around" in text for text in markdowns(at))


def test_the_demo_before_the_first_download_says_the_same(app):
    at = open_page(new_app().run(), DEMO)
    text_input(at, "Town, postcode or address").input("Lyon").run()

    assert any("No station can be searched until the prices are loaded" in text for text in infos(at))
    assert not any("No place called" in text for text in warnings(at))
