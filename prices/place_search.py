"""Understanding the place a person typed: a town, a town's first letters, a locality, a postcode, a street in a
town, a street; and the places to suggest for what was typed.

Read side only: every function takes a `Session`, returns plain named tuples and never writes.
Towns are the stations' towns, grouped as towns.py groups them, and La Poste's communes (see communes.py): a
village without a station is found too, after the towns with stations of the same name.
"""

from __future__ import annotations

import difflib
import re
import statistics
from typing import NamedTuple

from sqlalchemy import ColumnElement, or_
from sqlalchemy.orm import Session

from i18n import _
from ingest.places import ABBREVIATIONS as _ABBREVIATED
from ingest.places import ARRONDISSEMENT as _ARRONDISSEMENT
from ingest.places import DISTRICT_CITIES as _CITIES
from ingest.places import name_key as _name_key
from models import Station
from prices import communes
from prices.communes import Commune, same_department
from prices.towns import (
    LINKS,
    Town,
    candidates,
    centre,
    fetch_rows,
    group_towns,
    ids,
    label_department,
    pretty,
    station_rows,
    title,
    town_label,
)
from utils import fold

ALTERNATIVES = 5  # at most this many other readings come with a match
STREET_LIMIT = 200  # stations a street search keeps, in SEARCH_ORDER
SEARCH_MAX_CHARS = 100
SEARCH_MAX_WORDS = 8
SEARCH_ORDER = (Station.town, Station.zip_code, Station.address, Station.id)
SUGGESTIONS = 12  # places suggest() offers
SUGGESTION_ROWS = 4 * SUGGESTIONS  # places rows it reads for them, of names and of localities
ARTICLE_FREE_CHARS = 3  # from this many, suggest() also offers the names that start so after an article
SPELLINGS = 3  # places spelt_like() offers
SPELLING_CUTOFF = 0.8  # 'lyyon' and 'lyon' 0.89, 'marseile' and 'marseille' 0.94; 'lyon' and 'lyons' 0.89 too

# 'Saint-Denis (93)', 'Lyon (69002–69009)', 'Ajaccio (2A)'
_LABEL = re.compile(r"(?P<name>.*\S)\s*\((?P<code>2[AB]|\d[\d\s–-]*)\)", re.IGNORECASE)
_POSTCODE = re.compile(r"\d{5}")
_POSTCODE_WORD = re.compile(r"(?<![\w-])\d{5}(?![\w-])")
# '12 ', '12 bis, ', '7B ' before a street: stations' addresses seldom carry the same number, so it is left out
_HOUSE_NUMBER = re.compile(r"^\d{1,4}(?:\s?(?:bis|ter|[a-d]))?\b[\s,]+(?=\D)", re.IGNORECASE)
_ELISION = re.compile(r"\b([dlDL]) (?=[aeiouyhAEIOUYH])")  # La Poste's 'CHAZAY D AZERGUES' is Chazay d'Azergues
_LEADING_ARTICLE = re.compile(r"(?:Les?|La) (?=.)")
_DIGITS = re.compile(r"\d{2,5}")
_ARTICLES = ("le", "la", "les", "l")  # as name_key writes them: "L'Isle-Adam" is 'l isle adam'


class PlaceMatch(NamedTuple):
    kind: str  # 'town', 'town_prefix', 'postcode', 'street_town', 'street' or 'town_of_street'
    label: str  # what was understood: 'Lyon (69002–69009)', '69003 Lyon', 'Rue Garibaldi, Lyon (69003)'
    latitude: float | None  # median of the stations' positions: one misplaced station does not move it
    longitude: float | None
    station_ids: tuple[int, ...]  # the place's stations; for the street kinds, those on the street
    alternatives: tuple[PlaceMatch, ...]  # other readings, biggest first: the name in other departments, other towns
    query: str  # a text resolve_place reads as exactly this place, e.g. 'Lyon (69)': how the UI offers an alternative
    town: str | None  # the town's display name (for a postcode, its biggest town); None for a street alone
    department: str | None
    postcodes: tuple[str, ...]  # of the stations matched, sorted; () for a street alone


class SearchTooLong(ValueError):
    """A search text over the limits; the message says them to the person who typed it, in the active language."""

    def __init__(self) -> None:
        super().__init__(
            _(
                "A search has at most {} characters and {} words: try a town, a postcode, or a street and its town."
            ).format(SEARCH_MAX_CHARS, SEARCH_MAX_WORDS)
        )


def words_match(text: str) -> list[ColumnElement[bool]]:
    """One condition per word of `text` (none for a blank text): it starts a word of the station's search text.

    SearchTooLong when `text` is over the limits (each word costs a scan of the search texts).
    """
    if len(text) > SEARCH_MAX_CHARS:
        raise SearchTooLong()
    words = fold(text).split()
    if len(words) > SEARCH_MAX_WORDS:
        raise SearchTooLong()
    # autoescape: a % or _ reaching LIKE is matched literally, never as a wildcard.
    return [
        or_(
            Station.search_text.startswith(word, autoescape=True),
            Station.search_text.contains(f" {word}", autoescape=True),
        )
        for word in words
    ]


def resolve_place(session: Session, text: str) -> PlaceMatch | None:
    """The place `text` names, read in this order: a town's exact name, a town's first letters, a 5-digit postcode,
    street words then a town (or a town then street words), street words alone. None when nothing matches.

    A department in parentheses ('Saint-Denis (93)', as suggest labels towns), or a postcode beside the town's
    name ('Saint-Denis 97400'), restricts the towns; a house number before a street ('12 cours Gambetta') is
    left out.
    A town with stations comes before a commune without any of the same name; a locality (La Poste's line 5,
    'Belle Pierre') is read after the towns. Raises SearchTooLong when `text` is over the search limits.
    """
    words_match(text)  # raises SearchTooLong
    name, department, postcode = _HOUSE_NUMBER.sub("", text.strip()), None, None
    if label := _LABEL.fullmatch(name):
        name, department = label["name"], label_department(label["code"])
    elif (postcode := _POSTCODE_WORD.search(name)) and _POSTCODE_WORD.sub(" ", name).strip(" ,"):
        # 'Chazay-d'Azergues 69380', '69007 Lyon': the postcode says the department of the town named beside it
        name, department = " ".join(_POSTCODE_WORD.sub(" ", name).strip(" ,").split()), label_department(postcode[0])
    key = _name_key(name)
    if not key:  # blank, or only punctuation
        return None
    if (district := _district(name, postcode[0] if postcode else None)) and (found := _postcode(session, district)):
        return found
    words = fold(name).split()
    towns = _spelt_as_communes(session, group_towns(fetch_rows(session, station_rows(candidates(words))), department))
    return (
        _town(session, towns, key, department, name)
        or _locality(session, key, department)
        or _postcode(session, name.strip())
        or _street_in_town(session, towns, _splits(words))
        or _street(session, name)
        or _town_of_street(session, towns, _splits(words, town_first=False), department)
    )


def suggest(session: Session, text: str) -> list[str]:
    """Labels of the communes and localities whose name starts with `text`, with or without a leading article
    ('sables' offers Les Sables-d'Olonne), or whose postcode starts with its digits: the places of exactly that
    name first (every Saint-Denis before Saint-Denis-en-Val), the towns with stations first, most stations first
    and spelt as their stations spell them, then the shortest of the first names in alphabetical order.
    resolve_place reads each back as its place. [] for under two characters."""
    key = _name_key(text[:SEARCH_MAX_CHARS])
    if len(key) < 2:
        return []
    if _DIGITS.fullmatch(key):
        found = communes.with_postcode_prefix(session, key, SUGGESTION_ROWS)
    else:
        found = []
        for start in (key, *(_with_articles(key) if len(key) >= ARTICLE_FREE_CHARS else ())):
            found += communes.named(session, start, prefix=True, rows=SUGGESTION_ROWS)
            found += communes.with_locality(session, start, prefix=True, rows=SUGGESTION_ROWS)
    return _labels(session, found, key, text)[:SUGGESTIONS]


def spelt_like(session: Session, text: str) -> list[str]:
    """For a text that names no place ('Marseile', 'Lyyon'), the places whose name is spelt nearly so, as
    suggest labels them, the towns with stations first: ['Marseille (13)']. Names are compared with those of
    the same first letter (difflib's ratio at least SPELLING_CUTOFF); [] for a text under three letters."""
    key = _name_key(text[:SEARCH_MAX_CHARS])
    if len(key) < 3 or _DIGITS.search(key):
        return []
    close = difflib.get_close_matches(key, communes.keys_starting(session, key[0]), SPELLINGS, SPELLING_CUTOFF)
    found = sorted(communes.named_any(session, close), key=lambda commune: close.index(commune.key))
    return _labels(session, found, key, text)[:SPELLINGS]


def _labels(session: Session, found: list[Commune], key: str, text: str) -> list[str]:
    """The communes' labels, once each: those named `key` exactly first, then the towns with stations, most
    stations first and spelt as their stations spell them, then the others in the order found."""
    postcodes = {postcode for commune in found for postcode in commune.postcodes}
    towns = group_towns(fetch_rows(session, station_rows(Station.zip_code.in_(postcodes)))) if postcodes else []
    towns = _spelt_as_communes(session, towns)
    ranked = []
    for commune in found:
        town = None if commune.locality else next((t for t in towns if _has_stations(commune, [t])), None)
        label = town_label(town) if town else _commune_reading("town", commune, text).query
        exact = (_name_key(commune.locality) if commune.locality else commune.key) == key
        ranked.append((not exact, -town.stations if town else 0, label))
    ranked.sort(key=lambda entry: entry[:2])  # stable: the others keep their order
    return list(dict.fromkeys(label for *_, label in ranked))


# --------------------------------------------------------------------------- the readings, in order


def _district(name: str, postcode: str | None) -> str | None:
    """The postcode of the arrondissement of Paris, Lyon or Marseille that `name` names ('Paris 15', 'Lyon 3e',
    'MARSEILLE 8EME ARRONDISSEMENT') or that is given beside the city ('69007 Lyon'): '75015', '69003'."""
    words = fold(name).split()
    if not words or words[0] not in _CITIES:
        return None
    start = _CITIES[words[0]][1]
    if postcode is not None:
        return postcode if len(words) == 1 and postcode.startswith(start) else None
    number = _ARRONDISSEMENT.fullmatch(" ".join(words[1:]))
    return start + str(int(number[1])).zfill(5 - len(start)) if number else None


def _town(session: Session, towns: list[Town], key: str, department: str | None, typed: str) -> PlaceMatch | None:
    """The towns with stations of that name, then the communes without any; else the same by first letters.
    A name typed without its leading article is read with it last: 'sables d olonne', Les Sables-d'Olonne."""
    for kind, prefix in (("town", False), ("town_prefix", True)):
        found = [town for town in towns if town.key.startswith(key)] if prefix else [t for t in towns if t.key == key]
        others = [c for c in communes.named(session, key, department, prefix) if not _has_stations(c, found)]
        if found or others:
            return _readings(kind, found, others, typed)
    for kind, prefix in (("town", False), ("town_prefix", True)):
        others = [c for start in _with_articles(key) for c in communes.named(session, start, department, prefix)]
        if others:
            return _readings(kind, [], others, typed)
    return None


def _with_articles(key: str) -> list[str]:
    """The name with each leading article France's communes take, unless it has one: 'sables' -> 'les sables'..."""
    if key.split(" ", 1)[0] in _ARTICLES:
        return []
    return [f"{article} {key}" for article in _ARTICLES]


def _locality(session: Session, key: str, department: str | None) -> PlaceMatch | None:
    found = communes.with_locality(session, key, department)
    return _readings("town", [], found) if found else None


def _postcode(session: Session, text: str) -> PlaceMatch | None:
    """The stations of a postcode, centred on them; without any, its communes. Shared, its communes are offered."""
    if not _POSTCODE.fullmatch(text):
        return None
    rows = fetch_rows(session, station_rows(Station.zip_code == text))
    sharing = communes.with_postcode(session, text)
    if not rows and not sharing:
        return None
    towns = _spelt_as_communes(session, group_towns(rows))
    names = [town.name for town in towns] or [_commune_name(commune) for commune in sharing]
    label = f"{text} {', '.join(names[:3])}"
    if rows:
        position = centre(rows)
    else:
        position = statistics.median([c.latitude for c in sharing]), statistics.median([c.longitude for c in sharing])
    department = towns[0].department if towns else sharing[0].department
    offered = ()
    if len(sharing) > 1:  # each commune of the postcode, spelt as its stations do, but the one the label names
        spelt = {(town.key, town.department): town.name for town in towns}
        offered = tuple(
            _commune_reading("town", commune, spelt.get((commune.key, commune.department)))
            for commune in sharing
            if not (towns and _has_stations(commune, towns[:1]))
        )
    return PlaceMatch("postcode", label, *position, ids(rows), offered, text, names[0], department, (text,))


def _splits(words: list[str], town_first: bool = True) -> list[tuple[str, str]]:
    """(street words, town key) for each way of reading the text as a street then a town, or (unless not
    `town_first`) a town then a street.

    The longest town first, the town last first; never a town right after 'de', 'la'...: 'Route de Lyon' is a street.
    """
    splits = [(words[:i], words[i:]) for i in range(1, len(words)) if words[i - 1] not in LINKS]
    if town_first:
        splits += [(words[i:], words[:i]) for i in range(len(words) - 1, 0, -1)]
    return [(" ".join(street), _name_key(" ".join(town))) for street, town in splits]


def _street_in_town(session: Session, towns: list[Town], splits: list[tuple[str, str]]) -> PlaceMatch | None:
    for street, key in splits:
        station_ids = [row.id for town in towns if town.key == key for row in town.rows]
        if station_ids:
            rows = fetch_rows(session, station_rows(Station.id.in_(station_ids), *words_match(street)))
            found = _spelt_as_communes(session, group_towns(rows))
            if found:
                return _match("street_town", found, title(street))
    return None


def _town_of_street(
    session: Session, towns: list[Town], splits: list[tuple[str, str]], department: str | None
) -> PlaceMatch | None:
    """A street no station is on, then a town that exists: the town ('avenue des Frères Lumière Lyon' is in Lyon).
    Only the readings with the town last are tried: in 'rue inconnue Chazay', Rue (80) is no town meant."""
    for _street_words, key in splits:
        found = [town for town in towns if town.key == key]
        others = [c for c in communes.named(session, key, department) if not _has_stations(c, found)]
        if found or others:
            return _readings("town_of_street", found, others)
    return None


def _street(session: Session, text: str) -> PlaceMatch | None:
    rows = fetch_rows(session, station_rows(*words_match(text)).order_by(*SEARCH_ORDER).limit(STREET_LIMIT))
    if not rows:
        return None
    label = " ".join(text.split())
    return PlaceMatch("street", label, *centre(rows), ids(rows), (), label, None, None, ())


# --------------------------------------------------------------------------- matches


def _match(kind: str, towns: list[Town], street: str | None = None) -> PlaceMatch:
    """The first town, with the next ones as its alternatives."""
    return _readings(kind, towns, [], street=street)


def _readings(
    kind: str, towns: list[Town], others: list[Commune], typed: str | None = None, street: str | None = None
) -> PlaceMatch:
    """The first of the towns then the communes, with the next ones as its alternatives."""
    readings = [_town_reading(kind, town, street) for town in towns[: 1 + ALTERNATIVES]]
    readings += [_commune_reading(kind, commune, typed) for commune in others[: 1 + ALTERNATIVES - len(readings)]]
    return readings[0]._replace(alternatives=tuple(readings[1:]))


def _has_stations(commune: Commune, towns: list[Town]) -> bool:
    return any(town.key == commune.key and same_department(town.department, commune.department) for town in towns)


def _commune_reading(kind: str, commune: Commune, typed: str | None = None) -> PlaceMatch:
    """A commune (or a locality of it) as a place: centred on La Poste's coordinates, its stations found around."""
    name = _commune_name(commune, typed)
    codes = commune.postcodes
    label = f"{name} ({codes[0]}–{codes[-1]})" if len(codes) > 1 else f"{name} ({codes[0]})"
    query = f"{name} ({commune.department})"
    if commune.locality:
        place = _commune_name(commune._replace(key=_name_key(commune.locality), name=commune.locality), typed)
        label, query = f"{place}, {label}", f"{place} ({commune.department})"
    return PlaceMatch(kind, label, commune.latitude, commune.longitude, (), (), query, name, commune.department, codes)


def _commune_name(commune: Commune, typed: str | None = None) -> str:
    """La Poste's capitals in title case, or the person's own spelling of the name when it has accents or hyphens."""
    if commune.key in _CITIES:
        return _CITIES[commune.key][0]
    if typed and _name_key(typed) == commune.key and (not typed.isascii() or "-" in typed) and _written_out(typed):
        return pretty(typed.strip())
    return _hyphenated(_ELISION.sub(r"\1'", title(commune.name)))


def _written_out(typed: str) -> bool:
    """Whether a spelling writes its words out: 'St-Denis' names Saint-Denis but is no way to show it."""
    return not _ABBREVIATED.keys() & set(fold(typed).split())


def _hyphenated(name: str) -> str:
    """France's rule for the names of communes, which La Poste writes with spaces: the words are joined by
    hyphens, but for a leading article. 'Saint Denis' -> 'Saint-Denis', 'Les Sables d'Olonne' ->
    "Les Sables-d'Olonne", 'Le Mont Saint Michel' -> 'Le Mont-Saint-Michel'."""
    article = _LEADING_ARTICLE.match(name)
    start = article.end() if article else 0
    return name[:start] + name[start:].replace(" ", "-")


def _spelt_as_communes(session: Session, towns: list[Town]) -> list[Town]:
    """The towns whose stations write a commune's name with spaces ('CORBEIL ESSONNES', 'CAGNES SUR MER') spelt as
    the commune's name is written: 'Corbeil-Essonnes', 'Cagnes-sur-Mer'. A town that is no commune ('Lyon St
    Exupery Aeroport', 'Bordeaux Cauderan') keeps its stations' spelling."""
    spaced = {town.key for town in towns if _spaced(town.name)}
    if not spaced:
        return towns
    departments = communes.departments_named(session, spaced)
    return [
        town._replace(name=_hyphenated(_ELISION.sub(r"\1'", town.name)))
        if _spaced(town.name)
        and any(same_department(town.department, found) for found in departments.get(town.key, ()))
        else town
        for town in towns
    ]


def _spaced(name: str) -> bool:
    return " " in name and "-" not in name


def _town_reading(kind: str, first: Town, street: str | None) -> PlaceMatch:
    postcodes = tuple(sorted({row.zip_code for row in first.rows}))
    label = town_label(first, f"{postcodes[0]}–{postcodes[-1]}" if len(postcodes) > 1 else postcodes[0])
    query = town_label(first)
    if street:
        label, query = f"{street}, {label}", f"{street} {query}"
    return PlaceMatch(
        kind,
        label,
        *centre(first.rows),
        ids(first.rows),
        (),
        query,
        first.name,
        first.department,
        postcodes,
    )
