"""The registration's captcha: picture first and whole, a new one on demand, checked on the server first."""

from __future__ import annotations

import pytest

from app_helpers import PASSWORD, button, errors, fill, new_app, open_app, open_page, titles
from models import User
from ui import captcha

REGISTER = "pages/register.py"
DETAILS = {
    "First name": "Alice",
    "Last name": "Martin",
    "E-mail": "alice@example.org",
    "Username": "alice",
    "Password": PASSWORD,
    "Repeat the password": PASSWORD,
}


@pytest.fixture
def app(monkeypatch, data_dir):
    opened = open_app(monkeypatch, data_dir, REGISTRATION_CAPTCHA="on")
    yield opened
    opened.engine.dispose()


def answer(at) -> str:
    """What the picture shows (the test reads the server's copy; a person reads the picture)."""
    return at.session_state[captcha.STATE_KEY][0]


def register(at, typed: str, details: dict[str, str] | None = None):
    fill(at, {**DETAILS, **(details or {}), captcha.LABEL: typed})
    return button(at, "Create my account").click().run()


def in_order(node) -> list:
    """The page's elements, depth first, in the order a person reads them."""
    found = []
    for child in getattr(node, "children", {}).values():
        found.append(child)
        found.extend(in_order(child))
    return found


def test_the_picture_comes_first_whole_and_above_the_form(app):
    at = open_page(new_app().run(), REGISTER)

    shown = [(element.type, getattr(element, "label", "")) for element in in_order(at.main)]
    picture, new_picture, box, form = (
        shown.index(("image", "")),
        shown.index(("button", "New picture")),
        shown.index(("text_input", captcha.LABEL)),
        shown.index(("form", "")),
    )
    assert picture < new_picture < box < form, "the picture, another one on demand, the box, then the form"
    assert len(answer(at)) == captcha.LENGTH and set(answer(at)) <= set(captcha.ALPHABET)


def test_a_new_picture_on_demand(app):
    at = open_page(new_app().run(), REGISTER)
    first = answer(at)

    button(at, "New picture").click().run()

    assert answer(at) != first or len(set(captcha.ALPHABET)) ** captcha.LENGTH < 2
    assert at.text_input(key=f"captcha-typed-{at.session_state[captcha.STATE_KEY][1]}").value == ""


def test_the_right_characters_create_the_account(app):
    at = open_page(new_app().run(), REGISTER)

    register(at, answer(at).lower())  # case does not matter

    assert errors(at) == []
    assert titles(at) == ["Find a station"], "signed in at once"
    assert set(app.entries()) == {"alice"}


def test_a_wrong_answer_is_the_only_refusal_and_uses_the_picture_up(app):
    app.register("alice")  # the e-mail and the username are taken: unsolved, nobody may learn it
    at = open_page(new_app().run(), REGISTER)
    shown = answer(at)

    register(at, "WRONG")

    assert errors(at) == [captcha.WRONG]
    assert answer(at) != shown, "a new picture after each try"
    assert app.count(User) == 1

    register(at, answer(at), {"Username": "alice2", "E-mail": "alice2@example.org"})
    assert errors(at) == [] and app.count(User) == 2


def test_a_solved_picture_lets_the_usual_refusals_through(app):
    app.register("alice")
    at = open_page(new_app().run(), REGISTER)

    register(at, answer(at))

    (message,) = errors(at)
    assert "already" in message
