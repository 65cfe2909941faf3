"""The session's language: what a run speaks, the sidebar's picker, and the language kept in a person's profile.

Every run speaks the session's language (i18n's context variable, set at the top of each run by the
frame): the browser's Accept-Language decides a first visit, the sidebar's picker changes it, and a
signed-in person's choice is kept in their profile (users.language) and comes back at their next
sign-in; their e-mails are written in it.
"""

from __future__ import annotations

import logging
from typing import Protocol

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

import i18n
from accounts.users import Account
from i18n import _
from models import User
from prices import preferences
from prices.preferences import PreferenceError
from settings import LANGUAGES, load_settings

log = logging.getLogger(__name__)

LANGUAGE_KEY = "language"  # the session's language
LANGUAGE_PICKER_KEY = "language-picker"
LANGUAGE_OF_KEY = "language-of"  # the account whose profile language this session has taken up


class Databases(Protocol):
    """What these functions need of the frame's resources (ui.shell.Resources)."""

    Session: sessionmaker
    Writer: sessionmaker


def speak() -> None:
    """Write this run in the session's language; a first visit takes the browser's, else the configured one."""
    language = st.session_state.get(LANGUAGE_KEY)
    if language is None:
        try:
            default = load_settings().language
        except ValueError:  # resources() says what is wrong with the configuration
            default = LANGUAGES[0]
        language = i18n.negotiate(st.context.headers.get("Accept-Language"), default)
        st.session_state[LANGUAGE_KEY] = language
    i18n.activate(language)


def take_up_profile_language(app: Databases, account: Account) -> None:
    """Once per sign-in: speak the language saved in the profile; a profile without one keeps the session's."""
    if st.session_state.get(LANGUAGE_OF_KEY) == account.user_id:
        return
    st.session_state[LANGUAGE_OF_KEY] = account.user_id
    with app.Session() as session:
        user = session.get(User, account.user_id)
        saved = user.language if user is not None else None
    if saved in LANGUAGES:
        st.session_state[LANGUAGE_KEY] = saved
        st.session_state.pop(LANGUAGE_PICKER_KEY, None)
        i18n.activate(saved)
    else:
        _save_language(app, account, i18n.language())


def _save_language(app: Databases, account: Account, language: str) -> None:
    try:
        with app.Writer.begin() as session:
            preferences.set_language(session, account.user_id, language)
    except (PreferenceError, SQLAlchemyError):
        log.exception("could not save the language of %s", account.username)


def picker(app: Databases, account: Account | None) -> None:
    """The sidebar's choice of language, for everyone; a signed-in person's choice goes to their profile."""

    def picked() -> None:
        st.session_state[LANGUAGE_KEY] = st.session_state[LANGUAGE_PICKER_KEY]
        if account is not None:
            _save_language(app, account, st.session_state[LANGUAGE_KEY])

    st.session_state.setdefault(LANGUAGE_PICKER_KEY, i18n.language())
    st.sidebar.segmented_control(
        _("Language"),
        LANGUAGES,
        format_func=i18n.language_name,
        key=LANGUAGE_PICKER_KEY,
        on_change=picked,
        required=True,
    )
