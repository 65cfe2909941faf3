"""The language people read: the active language, the message catalogs, and how every value is written.

Source strings are English in the code, marked with `_()` (or `N_()` where a message is defined before
the language is known, then translated with `_()` where it is shown); `locales/<lang>/LC_MESSAGES/
messages.po` holds each language's translations, read and compiled in memory the first time a
language is used (no compiled file to keep in step). `python -m i18n` extracts the messages and
updates the catalogs; tests/test_i18n.py checks them (README, "Adding a language").

The active language is a context variable: Streamlit runs each session's script in a thread of its
own, and the frame (ui/language.py) activates the session's language at the start of every run, so one
person's choice never leaks into another's page. E-mails activate their recipient's language with
`using()`. Outside any run the language is English, the code's own, until someone activates another.

Values are written by Babel for the active language, with Europe/Paris wall-clock times. What Babel's
CLDR data (2.18) gives in French, and the tests pin: groups of digits are separated by a narrow no-break
space (U+202F), "1 200 L", "5 km"; a price or an amount puts a no-break space (U+00A0) before "€":
"1,859 €/L", "100,10 €". English follows British usage (day before month, 24-hour clock): "€1.859/L".
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import functools
import gettext as gettext_module
import io
import re
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

from babel import Locale
from babel.dates import (
    TIMEDELTA_UNITS,
    format_skeleton,
    format_time,
    format_timedelta,
    get_day_names,
    get_month_names,
)
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal, format_percent, get_decimal_symbol, get_group_symbol
from babel.units import format_unit

from settings import LANGUAGES, LOCALES_DIR, PROJECT_DIR
from utils import PARIS

SOURCE_LANGUAGE = "en"  # the language of the strings in the code
REGIONS = {"fr": "fr_FR", "en": "en_GB"}  # whose conventions write numbers and dates in each language
NARROW_NBSP, NBSP = "\u202f", "\u00a0"
JUST_NOW = dt.timedelta(minutes=1)
# Ages in minutes and hours read well abbreviated ('12 min', '3 h'), longer ones do not.
SHORT_AGES = dt.timedelta(days=1)
# Babel takes 0.1-0.3 ms to write one value, and a search's list and map write a thousand prices and distances,
# mostly the same ones again: the numbers, prices, distances and cents written are remembered per region.
FORMATS_KEPT = 4096
# An age reads as one unit and a count ('il y a 3 h'): Babel takes the largest unit that holds at least this share of
# one (its default) and rounds. A search writes a thousand ages, each at a different second, but only a few dozen
# (unit, count) pairs: the ages written are remembered by those.
AGE_THRESHOLD = 0.85
_ACTIVE: contextvars.ContextVar[str] = contextvars.ContextVar("language", default=SOURCE_LANGUAGE)
_LANGUAGE_RANGE = re.compile(r"^\s*([A-Za-z]{1,8})(?:-[A-Za-z0-9]{1,8})*\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*$")


# --------------------------------------------------------------------------- the active language


def _supported(code: str | None) -> str:
    return code if code in LANGUAGES else LANGUAGES[0]


def activate(code: str | None) -> None:
    """Make `code` this thread's language (a supported one; anything else is the product's first language)."""
    _ACTIVE.set(_supported(code))


def language() -> str:
    return _ACTIVE.get()


@contextlib.contextmanager
def using(code: str | None) -> Iterator[None]:
    """Write in `code` for the block's length, then as before (an e-mail in its recipient's language)."""
    token = _ACTIVE.set(_supported(code))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def negotiate(accept_language: str | None, default: str) -> str:
    """The supported language a browser's Accept-Language header prefers most; `default` when it names none."""
    ranked = []
    for position, item in enumerate((accept_language or "").split(",")):
        parsed = _LANGUAGE_RANGE.match(item)
        if parsed is None:
            continue
        try:
            weight = float(parsed.group(2)) if parsed.group(2) else 1.0
        except ValueError:
            continue
        code = parsed.group(1).lower()
        if code in LANGUAGES and weight > 0:
            ranked.append((-weight, position, code))
    return min(ranked)[2] if ranked else default


def language_name(code: str) -> str:
    """A language's name in itself, as a picker shows it: 'Français', 'English'."""
    name = Locale.parse(code).get_display_name(code) or code
    return name[:1].upper() + name[1:]


# --------------------------------------------------------------------------- messages


@functools.cache
def _catalog(code: str) -> gettext_module.NullTranslations:
    """The language's .po file compiled in memory (fuzzy entries left out, as pybabel compile does)."""
    path = LOCALES_DIR / code / "LC_MESSAGES" / "messages.po"
    if not path.is_file():
        return gettext_module.NullTranslations()
    with path.open("rb") as po:
        catalog = read_po(po, locale=code)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return gettext_module.GNUTranslations(compiled)


def _(message: str) -> str:
    """`message` in the active language (itself when the catalog has no translation)."""
    return _catalog(language()).gettext(message)


def ngettext(singular: str, plural: str, count: int) -> str:
    return _catalog(language()).ngettext(singular, plural, count)


def N_(message: str) -> str:
    """Mark `message` for the catalogs where it is defined; `_()` translates it where it is shown."""
    return message


# --------------------------------------------------------------------------- values


def _region() -> str:
    return REGIONS.get(language(), language())


def number(value: float | Decimal, digits: int = 0) -> str:
    """'1 200', '6,5' (at most `digits` decimals)."""
    return _number(_region(), value, digits)


@functools.lru_cache(maxsize=FORMATS_KEPT)
def _number(region: str, value: float | Decimal, digits: int) -> str:
    pattern = "#,##0" + ("." + "#" * digits if digits else "")
    return format_decimal(value, format=pattern, locale=region)


def price(value: Decimal) -> str:
    """A price per litre, to the tenth of a cent: '1,859 €/L', '€1.859/L'."""
    return _price(_region(), value)


@functools.lru_cache(maxsize=FORMATS_KEPT)
def _price(region: str, value: Decimal) -> str:
    pattern = Locale.parse(region).currency_formats["standard"].pattern.replace(".00", ".000")
    return format_currency(value, "EUR", format=pattern, locale=region, currency_digits=False) + "/L"


def percent(share: float) -> str:
    """A share, to the percent: '45 %' in French (a narrow no-break space), '45%' in English."""
    return format_percent(share, locale=_region())


def money(value: Decimal | float) -> str:
    """An amount of euros, to the cent: '100,10 €', '€100.10'."""
    return format_currency(value, "EUR", locale=_region())


def litres(value: float | Decimal) -> str:
    """A volume, to the litre: '1 200 L' (French writes the litre's symbol L, as the pumps do)."""
    return f"{number(round(value))}{NARROW_NBSP}L"


def distance(km: float) -> str:
    """'800 m' below a kilometre, else '5 km' or '12,3 km'."""
    return _distance(_region(), km)


@functools.lru_cache(maxsize=FORMATS_KEPT)
def _distance(region: str, km: float) -> str:
    if km < 1:
        return format_unit(round(km * 1000, -1), "length-meter", "short", locale=region)
    return format_unit(km, "length-kilometer", "short", format="#,##0.#", locale=region)


def cents(change: Decimal, signed: bool = True) -> str:
    """A change of price in cents, signed: '+0,5 ct', '−3,2 ct'; unsigned, an amount: '5 ct', '5,5 ct'."""
    return _("{} ct").format(_cents(_region(), change, signed))


@functools.lru_cache(maxsize=FORMATS_KEPT)
def _cents(region: str, change: Decimal, signed: bool) -> str:
    pattern = "+#,##0.0;−#,##0.0" if signed else "#,##0.#"
    return format_decimal(change, format=pattern, locale=region)


def ordinal(rank: int) -> str:
    """'1st', '3rd' in English; '1er', '3e' in French."""
    if language() == "fr":
        return "1er" if rank == 1 else f"{rank}e"
    suffix = "th" if 10 <= rank % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(rank % 10, "th")
    return f"{rank}{suffix}"


def clock(moment: dt.datetime) -> str:
    """The Paris wall-clock time: '12:09'."""
    return _clock(_region(), moment.astimezone(PARIS).replace(second=0, microsecond=0))


# Babel takes 0.1-0.3 ms for a date or a time, and a price board writes the same ones at every run.
@functools.lru_cache(maxsize=FORMATS_KEPT)
def _clock(region: str, minute: dt.datetime) -> str:
    return format_time(minute, "HH:mm", locale=region)


def moment(value: dt.datetime, now: dt.datetime | None = None) -> str:
    """When, in Paris: 'le 05/06 à 12:09', 'on 05/06 at 12:09'; the year shows when it is not this year's."""
    here = value.astimezone(PARIS).replace(second=0, microsecond=0)
    this_year = (now or dt.datetime.now(PARIS)).astimezone(PARIS).year
    date = _date(_region(), here.date(), here.year != this_year)
    return _("on {date} at {time}").format(date=date, time=_clock(_region(), here))


@functools.lru_cache(maxsize=FORMATS_KEPT)
def _date(region: str, day: dt.date, with_year: bool) -> str:
    return format_skeleton("ddMMyyyy" if with_year else "ddMM", day, locale=region)


_AGES: dict[tuple[str, str, bool, str, int], str] = {}  # (region, form, past, unit, count): the age written


def age(value: dt.datetime, now: dt.datetime) -> str:
    """How long ago: 'à l'instant', 'il y a 12 min', 'il y a 3 h', then in words: 'il y a 4 jours', 'il y a 3 ans';
    '12 min ago', '3 years ago' in English. CLDR's short forms past a day ('3 j', '2 m.', '3 a') read as riddles."""
    if now - value < JUST_NOW:
        return _("just now")
    form = "short" if now - value < SHORT_AGES else "long"
    delta = value - now
    seconds = delta.days * 86400 + delta.seconds  # as Babel counts: whole seconds
    unit, per_unit = next((u for u in TIMEDELTA_UNITS if abs(seconds) / u[1] >= AGE_THRESHOLD), TIMEDELTA_UNITS[-1])
    key = (_region(), form, seconds < 0, unit, round(abs(seconds) / per_unit))
    if key not in _AGES:
        _AGES[key] = format_timedelta(seconds, threshold=AGE_THRESHOLD, add_direction=True, format=form, locale=key[0])
    return _AGES[key]


def day_name(weekday: int) -> str:
    """The day's name, capitalised, from 0 = Monday: 'Lundi', 'Monday'."""
    name = get_day_names("wide", locale=_region())[weekday]
    return name[:1].upper() + name[1:]


def weekday_in_sentence(weekday: int) -> str:
    """The day's name inside a sentence: 'lundi' in French, 'Monday' in English."""
    return get_day_names("wide", locale=_region())[weekday]


def chart_conventions() -> dict:
    """How a chart (Vega, in the browser) writes numbers, months and days in the active language: d3's
    number and time locale definitions, from the same CLDR data as the rest ("1,85", "5 juin")."""
    region = _region()
    days = get_day_names("wide", locale=region)
    short_days = get_day_names("abbreviated", locale=region)
    sunday_first = [6, 0, 1, 2, 3, 4, 5]
    return {
        "number": {
            "decimal": get_decimal_symbol(region),
            "thousands": get_group_symbol(region),
            "grouping": [3],
            "currency": ["", ""],
        },
        "time": {
            "dateTime": "%d/%m/%Y %H:%M",
            "date": "%d/%m/%Y",
            "time": "%H:%M:%S",
            "periods": ["AM", "PM"],
            "days": [days[n] for n in sunday_first],
            "shortDays": [short_days[n] for n in sunday_first],
            "months": [get_month_names("wide", locale=region)[n] for n in range(1, 13)],
            "shortMonths": [get_month_names("abbreviated", locale=region)[n] for n in range(1, 13)],
        },
    }


# --------------------------------------------------------------------------- the catalogs' upkeep

BABEL_CONFIG = PROJECT_DIR / "babel.cfg"
KEYWORDS = ("_", "N_", "ngettext:1,2")  # the markers of the messages in the code


def main(argv: list[str]) -> int:
    """`python -m i18n`: extract the messages from the code and merge them into every language's catalog
    (new messages arrive untranslated, changed ones fuzzy: the catalog test fails until they are translated)."""
    import tempfile

    from babel.messages.frontend import CommandLineInterface

    if argv:
        print("usage: python -m i18n   (extracts the messages and updates every catalog)", file=sys.stderr)
        return 2
    pybabel = CommandLineInterface().run
    with tempfile.TemporaryDirectory() as work:
        template = str(Path(work) / "messages.pot")
        keywords = [arg for keyword in KEYWORDS for arg in ("-k", keyword)]
        pybabel(
            [
                "pybabel",
                "-q",
                "extract",
                "-F",
                str(BABEL_CONFIG),
                "--no-default-keywords",
                *keywords,
                "--sort-output",
                "--no-location",
                "--no-wrap",
                "--project",
                "Carburoam",
                "-o",
                template,
                str(PROJECT_DIR),
            ]
        )
        for code in LANGUAGES:
            command = "update" if (LOCALES_DIR / code / "LC_MESSAGES" / "messages.po").is_file() else "init"
            options = ["--ignore-obsolete", "--no-wrap"] if command == "update" else ["--no-wrap"]
            pybabel(["pybabel", "-q", command, "-i", template, "-d", str(LOCALES_DIR), "-l", code, *options])
    print(f"catalogs updated under {LOCALES_DIR}: translate the empty and fuzzy entries of each messages.po")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
