"""French first, English available: how values are written, the catalogs' completeness, every page in both
languages, the language picker and the profile's language, and e-mails in their recipient's language.

The other stories run in English (CARBUROAM_LANGUAGE=en in the test environment): these run in French.
Babel 2.18's French, pinned here, separates groups of digits with a narrow no-break space (U+202F),
as between a number and its unit ("5 km"), and puts a no-break space (U+00A0) before "€".
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal

import pytest
from babel.dates import TIMEDELTA_UNITS, format_timedelta
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

import i18n
from app_helpers import (
    PASSWORD,
    add_price,
    add_station,
    button,
    captions,
    errors,
    markdowns,
    new_app,
    open_app,
    open_page,
    run_frame,
    sign_in,
    sign_in_form,
    text_input,
    titles,
)
from conftest import ROOT
from ingest import aggregates
from models import PriceHistory, User
from prices import preferences
from test_app import follow, two_fresh_stations
from ui import language, widgets
from utils import utcnow

NNBSP, NBSP = "\u202f", "\u00a0"
NOW = dt.datetime(2026, 6, 5, 10, 21, tzinfo=dt.UTC)  # 12:21 in Paris (summer time)


# --------------------------------------------------------------------------- how values are written


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (
            "fr",
            {
                "price": f"1,859{NBSP}€/L",
                "money": f"100,10{NBSP}€",
                "litres": f"1{NNBSP}200{NNBSP}L",
                "distance": f"5{NNBSP}km",
                "short distance": f"800{NNBSP}m",
                "tenths of km": f"12,3{NNBSP}km",
                "moment": "le 05/06 à 12:09",
                "last year": "le 31/12/2025 à 23:30",
                "age": f"il y a 12{NBSP}min",
                "hours ago": f"il y a 3{NBSP}h",
                "days ago": "il y a 4 jours",
                "weeks ago": "il y a 3 semaines",
                "months ago": "il y a 2 mois",
                "years ago": "il y a 3 ans",
                "just now": "à l'instant",
                "cents": "−3,2 ct",
                "ordinal": "3e",
                "day": "Lundi",
            },
        ),
        (
            "en",
            {
                "price": "€1.859/L",
                "money": "€100.10",
                "litres": f"1,200{NNBSP}L",
                "distance": "5 km",
                "short distance": "800 m",
                "tenths of km": "12.3 km",
                "moment": "on 05/06 at 12:09",
                "last year": "on 31/12/2025 at 23:30",
                "age": "12 min ago",
                "hours ago": "3 hr ago",
                "days ago": "4 days ago",
                "weeks ago": "3 weeks ago",
                "months ago": "2 months ago",
                "years ago": "3 years ago",
                "just now": "just now",
                "cents": "−3.2 ct",
                "ordinal": "3rd",
                "day": "Monday",
            },
        ),
    ],
)
def test_each_kind_of_value_is_written_the_way_its_language_writes_it(language, expected):
    with i18n.using(language):
        written = {
            "price": i18n.price(Decimal("1.859")),
            "money": i18n.money(Decimal("100.1")),
            "litres": i18n.litres(1200),
            "distance": i18n.distance(5),
            "short distance": i18n.distance(0.8),
            "tenths of km": i18n.distance(12.34),
            "moment": i18n.moment(dt.datetime(2026, 6, 5, 10, 9, tzinfo=dt.UTC), NOW),  # Paris keeps summer time
            "last year": i18n.moment(dt.datetime(2025, 12, 31, 22, 30, tzinfo=dt.UTC), NOW),
            "age": i18n.age(NOW - dt.timedelta(minutes=12), NOW),
            "hours ago": i18n.age(NOW - dt.timedelta(hours=3), NOW),
            "days ago": i18n.age(NOW - dt.timedelta(days=4), NOW),
            "weeks ago": i18n.age(NOW - dt.timedelta(days=20), NOW),
            "months ago": i18n.age(NOW - dt.timedelta(days=70), NOW),
            "years ago": i18n.age(NOW - dt.timedelta(days=1100), NOW),
            "just now": i18n.age(NOW - dt.timedelta(seconds=20), NOW),
            "cents": i18n.cents(Decimal("-3.2")),
            "ordinal": i18n.ordinal(3),
            "day": i18n.day_name(0),
        }
    assert written == expected


def _ages_around_each_change_of_wording() -> list[dt.timedelta]:
    """Ages a second either side of where Babel changes unit (85 % of one) or count (half a unit), and between."""
    edges = {unit * 0.85 for _, unit in TIMEDELTA_UNITS} | {
        unit * (count + 0.5) for _, unit in TIMEDELTA_UNITS[1:] for count in range(60)
    }
    seconds = sorted({round(edge) + shift for edge in edges for shift in (-1, 0, 1)} | set(range(60, 4000, 7)))
    return [dt.timedelta(seconds=s, microseconds=micro) for s in seconds if s >= 60 for micro in (0, 999_999)]


@pytest.mark.parametrize("language", ["fr", "en"])
def test_every_age_reads_as_babel_writes_it_though_ages_are_remembered(language):
    """Ages are remembered by unit and count: a remembered one must read exactly as Babel writes that age."""
    with i18n.using(language):
        for ago in _ages_around_each_change_of_wording() * 2:  # written, then remembered
            form = "short" if ago < i18n.SHORT_AGES else "long"
            expected = format_timedelta(-ago, add_direction=True, format=form, locale=i18n.REGIONS[language])
            assert i18n.age(NOW - ago, NOW) == expected, ago


def test_a_language_holds_for_its_block_only_and_an_unknown_one_is_the_product_default():
    assert i18n.language() == "en", "outside any run, the code's own language"
    with i18n.using("fr"):
        assert i18n._("Sign in") == "Se connecter"
        with i18n.using("de"):
            assert i18n.language() == "fr", "German is not offered: French, the product's first language"
    assert i18n._("Sign in") == "Sign in"
    assert i18n.ngettext("{} reset code removed.", "{} reset codes removed.", 2) == "{} reset codes removed."


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7", "fr"),
        ("en-GB,en;q=0.9,fr;q=0.8", "en"),
        ("de-DE,de;q=0.9,en;q=0.5,fr;q=0.8", "fr"),  # the best supported one, by weight
        ("de-DE,es;q=0.9", "fr"),  # none supported: the default
        ("", "fr"),
        (None, "fr"),
        ("en;q=0, fr", "fr"),  # q=0 means "not this one"
        ("en;q=abc, *;q=0.1", "fr"),  # malformed entries are skipped
    ],
)
def test_the_browser_language_decides_a_first_visit(header, expected):
    assert i18n.negotiate(header, "fr") == expected


def test_the_configured_default_answers_a_browser_that_names_no_language_we_speak():
    assert i18n.negotiate("de-DE", "en") == "en"


# --------------------------------------------------------------------------- the catalogs


def code_messages() -> set[str | tuple[str, str]]:
    """The messages of the code, extracted as `python -m i18n` does (babel.cfg, the same keywords)."""
    method_map, options_map = [], {}
    for line in (ROOT / "babel.cfg").read_text().splitlines():
        found = re.fullmatch(r"\[python: (.+)\]", line.strip())
        if found:
            method_map.append((found.group(1), "python"))
    keywords = {}
    for keyword in i18n.KEYWORDS:  # "_", "N_", "ngettext:1,2"
        name, _colon, arguments = keyword.partition(":")
        keywords[name] = tuple(int(n) for n in arguments.split(",")) if arguments else None
    messages = set()
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=keywords
    ):
        messages.add(message if isinstance(message, str) else tuple(message))
    return messages


def catalog(language: str) -> dict:
    with (ROOT / "locales" / language / "LC_MESSAGES" / "messages.po").open("rb") as po:
        return {entry.id: entry for entry in read_po(po, locale=language) if entry.id}


def strings(entry) -> tuple[str, ...]:
    return entry.string if isinstance(entry.string, tuple) else (entry.string,)


def catalog_problems(messages: set, entries: dict, translated: bool = True) -> list[str]:
    """What keeps a catalog from serving `messages`: absent, untranslated or fuzzy entries, and obsolete ones."""
    problems = [f"not in the catalog: {message!r}" for message in messages if message not in entries]
    problems += [f"obsolete: {key!r}" for key in entries if key not in messages]
    if translated:
        problems += [f"fuzzy: {key!r}" for key, entry in entries.items() if entry.fuzzy]
        problems += [f"untranslated: {key!r}" for key, entry in entries.items() if not all(strings(entry))]
    return sorted(problems)


def test_every_message_of_the_code_has_a_french_translation_and_the_catalogs_are_current():
    messages = code_messages()
    assert len(messages) > 300, "the extraction finds the app's messages"
    assert catalog_problems(messages, catalog("fr")) == [], "run `python -m i18n`, then translate"
    assert catalog_problems(messages, catalog("en"), translated=False) == [], "English is the code's: identity"


def test_a_new_untranslated_message_fails_the_catalog_check():
    messages = code_messages() | {"A sentence nobody translated"}
    assert catalog_problems(messages, catalog("fr")) == ["not in the catalog: 'A sentence nobody translated'"]


FIELDS = re.compile(r"\{[^{}]*\}")


def test_each_french_translation_keeps_the_fields_its_message_fills():
    for key, entry in catalog("fr").items():
        sources = key if isinstance(key, tuple) else (key,)
        expected = sorted(FIELDS.findall(sources[-1]))
        *singular, plural = strings(entry)
        assert sorted(FIELDS.findall(plural)) == expected, key
        for target in singular:  # "la dernière ligne": a singular may say its number in words
            assert set(FIELDS.findall(target)) <= set(expected), key


# --------------------------------------------------------------------------- the app in both languages


def seed(app) -> None:
    """Alice follows two stations with fresh prices (test_app's stations); root is an administrator."""
    alice = app.register("alice")
    app.accounts.create_admin("root", "root@example.org", PASSWORD)
    two_fresh_stations(app)
    follow(app, alice.user_id, {101: "Gare", 102: "Jaures"})


SIGNED_OUT_PAGES = ["welcome", "find", "demo", "register", "forgot", "about", "unsubscribe"]
SIGNED_IN_PAGES = ["dashboard", "find", "stations", "trends", "profile", "admin", "about"]
FRENCH_TITLES = {
    "welcome": "Carburoam",
    "find": "Trouver une station",
    "demo": "Démo",
    "register": "Créer un compte",
    "forgot": "Mot de passe ou nom d'utilisateur oublié ?",
    "about": "À propos de Carburoam",
    "dashboard": "Mes prix aujourd'hui",
    "stations": "Mes stations",
    "profile": "Profil",
    "admin": "Administration",
    "trends": "Évolution des prix",
    "unsubscribe": "E-mails d'alerte",
}


@pytest.mark.parametrize("language", ["fr", "en"])
def test_every_page_renders_in_both_languages(monkeypatch, data_dir, language):
    app = open_app(monkeypatch, data_dir, CARBUROAM_LANGUAGE=language)
    seed(app)
    at = new_app().run()
    for page in SIGNED_OUT_PAGES:
        open_page(at, f"pages/{page}.py")
        assert not at.exception, (page, at.exception)
        if language == "fr":
            assert titles(at) == [FRENCH_TITLES[page]]
    (sign_in_in_french if language == "fr" else sign_in)(at, "root", PASSWORD)
    for page in SIGNED_IN_PAGES:
        open_page(at, f"pages/{page}.py")
        assert not at.exception, (page, at.exception)
        if language == "fr":
            assert titles(at) == [FRENCH_TITLES[page]]


def test_the_dashboard_speaks_french_with_french_numbers(monkeypatch, data_dir):
    app = open_app(monkeypatch, data_dir, CARBUROAM_LANGUAGE="fr")
    seed(app)
    at = new_app().run()
    sign_in_in_french(at, "alice")

    [gazole, *_others] = [table.value for table in at.dataframe]
    assert list(gazole.columns[:3]) == ["Station", "Adresse", "Prix"]
    assert list(gazole["Prix"]) == [f"1,799{NBSP}€/L", f"1,899{NBSP}€/L"]
    assert all(re.fullmatch(r"le \d\d/\d\d à \d\d:\d\d \(il y a 1\xa0h\)", text) for text in gazole["Mis à jour"])
    assert any(
        text.startswith(f"Les économies utilisent votre consommation annuelle de 650{NNBSP}L") for text in captions(at)
    )
    assert [widget.label for widget in at.sidebar.button] == ["Se déconnecter"]


def test_the_trends_page_speaks_french_and_its_charts_write_french_numbers_and_months(monkeypatch, data_dir):
    app = open_app(monkeypatch, data_dir, CARBUROAM_LANGUAGE="fr")
    alice, now = app.register("alice"), utcnow()
    with app.session() as session, session.begin():
        add_station(session, 201, "1 rue du Test", "Lyon", "69001")
        for days_ago in (20, 5):
            when = now - dt.timedelta(days=days_ago)
            session.add(PriceHistory(station_id=201, gastype_id=1, updated_at=when, price=Decimal("1.800")))
        add_price(session, 201, 1, "1.800", now - dt.timedelta(days=5))
        preferences.follow_station(session, alice.user_id, 201, "Maison")
        preferences.set_fuels(session, alice.user_id, [1])
    with app.engine.begin() as conn:
        aggregates.refresh_after_run(conn, now)
    at = new_app().run()
    sign_in_in_french(at, "alice")
    open_page(at, "pages/trends.py")

    assert not at.exception
    assert titles(at) == ["Évolution des prix"]
    assert [subheader.value for subheader in at.subheader] == ["Mes stations", "La France et mes départements"]
    assert any(text.startswith("Sur les 90 derniers jours, aucun jour de la semaine") for text in captions(at))
    assert any(text.startswith("Le chiffre de chaque jour compte le prix") for text in captions(at))
    [period] = [widget for widget in at.get("button_group") if widget.key == "trends-period"]
    assert period.label == "Période" and "30 jours" in period.options
    mine, _market = (json.loads(chart.proto.spec) for chart in at.get("vega_lite_chart"))
    conventions = mine["config"]["locale"]
    assert conventions["number"]["decimal"] == "," and conventions["number"]["thousands"] == NNBSP
    assert conventions["time"]["months"][5] == "juin" and conventions["time"]["days"][1] == "lundi"
    assert mine["encoding"]["x"]["title"] == "Jour"
    assert [tooltip["title"] for tooltip in mine["encoding"]["tooltip"]] == ["Courbe", "Jour", "Prix"]


def test_the_picker_switches_the_language_and_the_profile_keeps_it_for_the_next_sign_in(monkeypatch, data_dir):
    app = open_app(monkeypatch, data_dir, CARBUROAM_LANGUAGE="fr")
    seed(app)
    at = new_app().run()
    assert [widget.label for widget in sign_in_form(at).button] == ["Se connecter"]

    sign_in_in_french(at, "alice")
    assert language_of(app, "alice") == "fr", "a profile without a language takes the session's"
    picker(at).set_value("en")
    run_frame(at)
    assert titles(at) == ["My prices today"]
    assert language_of(app, "alice") == "en"

    elsewhere = new_app().run()  # another browser: French until alice signs in
    assert [widget.label for widget in sign_in_form(elsewhere).button] == ["Se connecter"]
    sign_in_in_french(elsewhere, "alice")
    assert titles(elsewhere) == ["My prices today"], "the profile's language comes back at sign-in"


def test_a_person_signed_out_picks_a_language_without_an_account(monkeypatch, data_dir):
    open_app(monkeypatch, data_dir, CARBUROAM_LANGUAGE="fr")
    at = new_app().run()
    assert picker(at).value == "fr"
    picker(at).set_value("en")
    run_frame(at)
    assert [widget.label for widget in sign_in_form(at).button] == ["Sign in"]
    assert text_input(sign_in_form(at), "Username")


def test_a_refusal_comes_in_the_language_of_the_page(monkeypatch, data_dir):
    app = open_app(monkeypatch, data_dir, CARBUROAM_LANGUAGE="fr")
    app.register("alice")
    at = new_app().run()
    sign_in_in_french(at, "alice", "not the password")
    assert errors(sign_in_form(at)) == ["Nom d'utilisateur ou mot de passe incorrect."]


def test_the_profile_names_a_device_it_cannot_tell_in_french(monkeypatch, data_dir):
    app = open_app(monkeypatch, data_dir, CARBUROAM_LANGUAGE="fr")
    app.register("alice")
    at = new_app().run()
    sign_in_in_french(at, "alice")  # AppTest sends no User-Agent: the session's device is unknown

    open_page(at, "pages/profile.py")

    [line] = [text for text in markdowns(at) if "(cet appareil)" in text]
    assert line.startswith("**Appareil inconnu** (cet appareil)"), line


def test_the_profile_names_the_other_devices_in_french(monkeypatch, data_dir):
    app = open_app(monkeypatch, data_dir, CARBUROAM_LANGUAGE="fr")
    app.register("alice")
    phone = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile"
    app.accounts.sign_in("alice", PASSWORD, user_agent=phone)
    at = new_app().run()
    sign_in_in_french(at, "alice")

    open_page(at, "pages/profile.py")

    assert any(text.startswith("**Chrome sur Android** — connecté") for text in markdowns(at)), markdowns(at)


def sign_in_in_french(at, username: str, password: str = PASSWORD):
    """app_helpers.sign_in, reading the French labels."""
    run_frame(at)
    text_input(sign_in_form(at), "Nom d'utilisateur").input(username)
    text_input(sign_in_form(at), "Mot de passe").input(password)
    button(sign_in_form(at), "Se connecter").click()
    return run_frame(at)


def picker(at):
    [found] = [widget for widget in at.sidebar.get("button_group") if widget.key == language.LANGUAGE_PICKER_KEY]
    return found


def language_of(app, username: str) -> str | None:
    with app.session() as session:
        return session.query(User.language).filter(User.username == username).scalar()


# --------------------------------------------------------------------------- e-mails


def mail_text(settings) -> tuple[str, str]:
    import email
    import email.policy

    [path] = sorted(settings.mail_dir.glob("*.eml"))
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    return str(message["Subject"]), message.get_content()


@pytest.mark.parametrize(
    ("chosen", "subject", "greeting"),
    [
        ("fr", "Votre code de réinitialisation Carburoam", "Bonjour,"),
        ("en", "Your Carburoam password reset code", "Hello,"),
        (None, "Your Carburoam password reset code", "Hello,"),  # no choice yet: the configured default (en here)
    ],
)
def test_a_reset_code_is_written_in_its_recipients_language(monkeypatch, data_dir, chosen, subject, greeting):
    app = open_app(monkeypatch, data_dir)
    account = app.register("alice")
    if chosen is not None:
        with app.session() as session, session.begin():
            preferences.set_language(session, account.user_id, chosen)

    with i18n.using("fr" if chosen == "en" else "en"):  # whoever asks, in whatever language
        assert app.accounts.recovery.request_password_reset("alice")

    written_subject, body = mail_text(app.settings)
    assert written_subject == subject
    assert body.startswith(greeting)
    assert re.search(r"\b\d{8}\b", body)


def test_an_unknown_language_is_refused_and_nothing_changes(monkeypatch, data_dir):
    app = open_app(monkeypatch, data_dir)
    account = app.register("alice")
    with pytest.raises(preferences.PreferenceError, match="Unknown language: de"), app.session() as session:
        preferences.set_language(session, account.user_id, "de")
    assert language_of(app, "alice") is None


def test_text_shown_through_the_escaping_choke_point_keeps_its_no_break_spaces():
    """A line never breaks inside "1 200 L" or between a price and its "€": widgets.md keeps those spaces."""
    with i18n.using("fr"):
        written = f"{i18n.litres(1200)} à {i18n.price(Decimal('1.859'))}"
    assert widgets.md("{}", written) == f"1{NNBSP}200{NNBSP}L à 1\\,859{NBSP}€\\/L"
    assert widgets.md("{}", "a\nb\tc") == "a b c", "line breaks and tabs still become spaces"
