"""The registration's captcha: a picture of characters a person types back, checked on the server.

The answer stays in the browser session's state on the server, never in the page. The picture comes
first, large enough for every character to show whole, with a "New picture" button; each try, right
or wrong, uses the picture up, so one picture is never guessed at twice. A wrong answer is the only
refusal a sent form gets: nobody learns whether an e-mail address has an account without solving it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TypeVar

import streamlit as st
from captcha.image import ImageCaptcha

from accounts.errors import RegistrationRefused
from i18n import N_, _

T = TypeVar("T")
STATE_KEY = "captcha"  # (answer, round): the round names the widgets of the picture shown
ALPHABET = "ACDEFHJKMNPRTUVWXY34679"  # no look-alikes: 0/O, 1/I/L, 2/Z, 5/S, 8/B
LENGTH = 5
WIDTH, HEIGHT = 300, 100  # the library's 120 x 75 cut characters off
LABEL = N_("Type the characters in the picture")
WRONG = N_("The characters typed don't match the picture; here is a new one.")


def challenge() -> None:
    """The picture, a button for another one, and the box to type it in."""
    answer, round_ = _state()
    st.image(ImageCaptcha(width=WIDTH, height=HEIGHT).generate(answer).getvalue(), width=WIDTH)
    if st.button(_("New picture"), icon=":material/refresh:", key=f"captcha-new-{round_}"):
        _renew()
        st.rerun()
    st.text_input(_(LABEL), key=f"captcha-typed-{round_}", max_chars=LENGTH, autocomplete="off")


def checked(form: Callable[[], T | None]) -> T | None:
    """Run the registration `form`; once it was sent, refuse it unless the picture was typed right,
    before and instead of any other refusal."""
    try:
        made = form()
    except RegistrationRefused:
        if not solved():
            raise RegistrationRefused(WRONG) from None
        raise
    if made is not None and not solved():
        raise RegistrationRefused(WRONG)
    return made


def solved() -> bool:
    """Whether the characters typed match the picture; the picture is used up either way."""
    answer, round_ = _state()
    typed = str(st.session_state.get(f"captcha-typed-{round_}") or "").strip().upper()
    _renew()
    return secrets.compare_digest(typed.encode(), answer.encode())


def _state() -> tuple[str, int]:
    if STATE_KEY not in st.session_state:
        st.session_state[STATE_KEY] = (_new_answer(), 0)
    return st.session_state[STATE_KEY]


def _renew() -> None:
    st.session_state[STATE_KEY] = (_new_answer(), _state()[1] + 1)


def _new_answer() -> str:
    return "".join(secrets.choice(ALPHABET) for _position in range(LENGTH))
