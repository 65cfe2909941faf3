"""Understanding the place a person typed: on the real 2026-06-05 feed, and on tiny databases for the ranking."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from app_helpers import add_station
from conftest import REAL_FEEDS
from ingest import imports, passes
from ingest import places as ingest_places
from models import Place, Station
from prices import finder
from prices.place_search import (
    SEARCH_MAX_CHARS,
    SEARCH_MAX_WORDS,
    SearchTooLong,
    resolve_place,
    spelt_like,
    suggest,
)
from prices.towns import Town, centre, fetch_rows, group_towns, station_rows, town_label
from session import init_db, make_engine, session_factory
from settings import load_settings
from utils import fold

PLACES_CUT = Path(__file__).resolve().parent / "data" / "places-laposte_cut.csv"
REAL_FEED = REAL_FEEDS / "instantane_ruptures_jstoudji1-carburant-app_2026-06-05.zip"
LYON_BOX = (45.70, 45.81), (4.77, 4.90)  # (south, north), (west, east)
PARIS_BOX = (48.81, 48.91), (2.22, 2.47)


# --------------------------------------------------------------------------- the real feed


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """A session on the real 2026-06-05 feed (9,780 stations), loaded once by the ETL; skipped without ../shared."""
    if not REAL_FEED.is_file():
        pytest.skip(f"the real feed is absent ({REAL_FEED})")
    data_dir = tmp_path_factory.mktemp("real")
    settings = load_settings(
        {"CARBUROAM_DATA_DIR": str(data_dir), "CARBUROAM_DATABASE_URL": f"sqlite:///{data_dir / 'db.sqlite3'}"}
    )
    engine = make_engine(settings.database_url)
    init_db(engine)
    passes.run_pass(engine, settings, str(REAL_FEED))
    with session_factory(engine)() as session:
        yield session
    engine.dispose()


def ids_where(session, keep) -> set[int]:
    """Ids of the stations `keep(station)` accepts, by reading every station: an oracle independent of the module."""
    return {station.id for station in session.scalars(select(Station)) if keep(station)}


def in_city(name: str, postcodes: str):
    # The feed spells Lyon 'LYON', 'Lyon', 'LYON 5EME', 'LYON 7', and Marseille 'MARSEILLE VALENTINE' (13011) too;
    # 'LYON ST EXUPERY AEROPORT' (69125) is the airport, in another town.
    return lambda station: fold(station.town).split()[0] == name and station.zip_code.startswith(postcodes)


in_lyon = in_city("lyon", "6900")


def test_the_feed_spells_the_big_towns_in_many_ways(real):
    towns = {station.town for station in real.scalars(select(Station)) if in_lyon(station)}
    assert towns == {"LYON", "Lyon", "LYON 5EME", "LYON 7"}
    paris = {station.town for station in real.scalars(select(Station).where(Station.zip_code.startswith("75")))}
    assert paris == {"PARIS", "Paris", "PARIS 13"}
    saint_etienne = ids_where(real, lambda s: s.zip_code in ("42000", "42100") and "etienne" in fold(s.town))
    assert {real.get(Station, i).town for i in saint_etienne} == {
        "SAINT ETIENNE",
        "Saint-Étienne",
        "ST ETIENNE MONTHIEU",
    }


@pytest.mark.parametrize(
    ("text", "label", "stations", "box"),
    [
        *[(text, "Lyon (69002–69009)", 17, LYON_BOX) for text in ("Lyon", "LYON", "Lyon (69)")],
        ("paris", "Paris (75001–75116)", 46, PARIS_BOX),
        ("Marseille", "Marseille (13000–13016)", 62, ((43.20, 43.40), (5.30, 5.50))),
    ],
)
def test_a_big_town_is_every_arrondissement_of_it_and_nothing_else(real, text, label, stations, box):
    match = resolve_place(real, text)

    city = match.town
    assert (match.kind, match.label, match.query) == ("town", label, f"{city} ({match.department})")
    postcodes = {"Lyon": "6900", "Paris": "75", "Marseille": "130"}[city]
    assert set(match.station_ids) == ids_where(real, in_city(fold(city), postcodes))
    assert len(match.station_ids) == stations
    (south, north), (west, east) = box
    assert south <= match.latitude <= north
    assert west <= match.longitude <= east
    assert match.alternatives == ()


@pytest.mark.parametrize(
    ("text", "postcode"),
    [("LYON 03", "69003"), ("lyon 3e", "69003"), ("Paris 15e Arrondissement", "75015"), ("MARSEILLE 8E", "13008")],
)
def test_an_arrondissement_is_its_own_stations(real, text, postcode):
    match = resolve_place(real, text)

    assert (match.kind, match.postcodes) == ("postcode", (postcode,))
    assert set(match.station_ids) == ids_where(real, lambda s: s.zip_code == postcode) != set()


@pytest.mark.parametrize("text", ["saint etienne", "ST ETIENNE", "Saint-Étienne", "St-Etienne", "saint-étienne (42)"])
def test_saint_etienne_however_it_is_written(real, text):
    match = resolve_place(real, text)

    assert (match.kind, match.town, match.department) == ("town", "Saint-Étienne", "42")
    expected = ids_where(real, lambda s: s.zip_code.startswith("42") and fold(s.town) == "saint etienne")
    assert set(match.station_ids) == expected
    assert len(expected) == 10  # 1 'SAINT ETIENNE' + 9 'Saint-Étienne'; 'ST ETIENNE MONTHIEU' is another name
    assert match.postcodes == ("42000", "42100")
    assert 45.38 <= match.latitude <= 45.48 and 4.33 <= match.longitude <= 4.46


def test_the_first_letters_of_a_town_give_the_biggest_town_so_named(real):
    match = resolve_place(real, "saint eti")

    assert (match.kind, match.town, match.query) == ("town_prefix", "Saint-Étienne", "Saint-Étienne (42)")
    others = [alternative.town for alternative in match.alternatives]
    assert len(others) == 5
    assert all(fold(town).startswith("saint etienne ") for town in others)
    assert resolve_place(real, match.alternatives[0].query).town == others[0]


def test_a_postcode_gives_its_stations(real):
    match = resolve_place(real, "69003")

    assert (match.kind, match.label, match.town, match.postcodes) == ("postcode", "69003 Lyon", "Lyon", ("69003",))
    assert set(match.station_ids) == ids_where(real, lambda s: s.zip_code == "69003") == {69003012, 69003013}


def test_a_street_and_its_town_in_either_order(real):
    thomas = resolve_place(real, "cours albert thomas lyon")
    garibaldi = resolve_place(real, "Lyon rue Garibaldi")

    assert (thomas.kind, thomas.station_ids, thomas.label) == (
        "street_town",
        (69003012,),
        "Cours Albert Thomas, Lyon (69003)",
    )
    assert (garibaldi.kind, garibaldi.station_ids, garibaldi.town) == ("street_town", (69003013,), "Lyon")
    assert resolve_place(real, garibaldi.query).station_ids == (69003013,)


def test_no_station_on_a_street_of_a_town_gives_the_town_not_that_street_elsewhere(real):
    # No Lyon station of this feed is on a Cours Gambetta (Aix-en-Provence has one).
    assert not ids_where(real, lambda s: in_lyon(s) and "gambetta" in fold(s.address))
    assert ids_where(real, lambda s: "cours gambetta" in fold(s.address))
    match = resolve_place(real, "cours gambetta lyon")
    assert (match.kind, match.town) == ("town_of_street", "Lyon")
    assert set(match.station_ids) == ids_where(real, in_lyon)


def test_a_street_named_after_a_town_is_a_street(real):
    match = resolve_place(real, "route de lyon")

    assert (match.kind, match.town, match.label) == ("street", None, "route de lyon")
    assert len(match.station_ids) == 33
    assert not set(match.station_ids) & ids_where(real, in_lyon)
    assert ids_where(real, lambda s: "route de lyon" in fold(s.address)) <= set(match.station_ids)


def test_a_town_name_in_two_departments_offers_the_other(real):
    match = resolve_place(real, "Montreuil")

    assert (match.label, len(match.station_ids)) == ("Montreuil (93100)", 4)
    (other,) = match.alternatives
    assert (other.kind, other.label, other.query, other.station_ids) == (
        "town",
        "Montreuil (62170)",
        "Montreuil (62)",
        (62170005,),
    )
    assert resolve_place(real, other.query) == other


@pytest.mark.parametrize("text", ["Zzyzx", "%", "_", "%%", "Ly_n", "Ly%n", "  ", "-"])
def test_nothing_found_and_wildcards_are_never_wildcards(real, text):
    assert resolve_place(real, text) is None


def test_too_long_a_text_is_refused(real):
    with pytest.raises(SearchTooLong):
        resolve_place(real, "a" * (SEARCH_MAX_CHARS + 1))
    with pytest.raises(SearchTooLong):
        resolve_place(real, " ".join(["lyon"] * (SEARCH_MAX_WORDS + 1)))


def towns_with_stations(session) -> list[Town]:
    """Every town with stations, most stations first."""
    return group_towns(fetch_rows(session, station_rows()))


def test_every_town_with_stations_is_labelled_once_and_read_back_by_its_label(real):
    towns = towns_with_stations(real)

    labels = [town_label(town) for town in towns]
    assert labels[:2] == ["Marseille (13)", "Paris (75)"]
    assert {"Lyon (69)", "Saint-Étienne (42)", "Montreuil (93)", "Montreuil (62)"} <= set(labels)
    assert len(labels) == len(set(labels))
    assert sum(town.stations for town in towns) == 9780
    counts = [town.stations for town in towns]
    assert counts == sorted(counts, reverse=True)
    lyon = towns[labels.index("Lyon (69)")]
    assert (lyon.name, lyon.department, lyon.stations) == ("Lyon", "69", 17)
    (south, north), (west, east) = LYON_BOX
    latitude, longitude = centre(lyon.rows)
    assert south <= latitude <= north and west <= longitude <= east
    for town, label in zip(towns[:40], labels, strict=False):
        match = resolve_place(real, label)
        assert (match.kind, match.query, len(match.station_ids)) == ("town", label, town.stations)


# --------------------------------------------------------------------------- tiny databases


@pytest.fixture
def session(engine):
    with session_factory(engine)() as session, session.begin():
        yield session


@pytest.fixture
def towns(session) -> None:
    add_station(session, 1, "Route de Rue", "Rue", "80120", 50.27, 1.66)
    add_station(session, 2, "Avenue Paul Doumer", "RUEIL-MALMAISON", "92500", 48.87, 2.18)
    add_station(session, 3, "Rue de Paris", "Rueil-Malmaison", "92500", 48.88, 2.19)
    add_station(session, 4, "12 COURS GAMBETTA", "LYON 03", "69003", 45.756, 4.845)
    add_station(session, 5, "Avenue Jean Jaurès", "Lyon 7e Arrondissement", "69007", 45.745, 4.840)
    add_station(session, 6, "Cours Gambetta", "Sainte-Foy-lès-Lyon", "69110", 45.73, 4.80)
    add_station(session, 7, "Route de Lyon", "Villeurbanne", "69100", 45.77, 4.88)
    add_station(session, 8, "Rue de Paris", "SAINT DENIS", "97400", -20.88, 55.45)
    add_station(session, 9, "Boulevard Anatole France", "Saint-Denis", "93200", 48.93, 2.36)
    add_station(session, 10, "Avenue du Président Wilson", "St-Denis", "93200", 48.92, 2.35)


def test_an_exact_town_beats_a_bigger_town_starting_so(session, towns):
    rue = resolve_place(session, "rue")
    assert (rue.kind, rue.station_ids) == ("town", (1,))
    prefix = resolve_place(session, "RUEIL")
    assert (prefix.kind, prefix.town, prefix.station_ids) == ("town_prefix", "Rueil-Malmaison", (2, 3))
    assert prefix.label == "Rueil-Malmaison (92500)"
    assert [(a.town, a.query) for a in resolve_place(session, "ru").alternatives] == [("Rue", "Rue (80)")]


def test_a_postcode_comes_after_towns_and_before_streets(session, towns):
    assert resolve_place(session, "92500")[:2] == ("postcode", "92500 Rueil-Malmaison")
    assert resolve_place(session, "92501") is None
    assert resolve_place(session, "925").kind == "street"  # the first digits of postcodes, as search_stations


def test_a_street_in_a_town_beats_the_same_words_elsewhere(session, towns):
    match = resolve_place(session, "cours gambetta lyon")

    assert (match.kind, match.station_ids, match.label) == ("street_town", (4,), "Cours Gambetta, Lyon (69003)")
    assert resolve_place(session, "gambetta")[:2] == ("street", "gambetta")
    assert set(resolve_place(session, "cours gambetta").station_ids) == {4, 6}


def test_a_street_named_after_a_town_is_not_read_as_the_town(session, towns):
    assert resolve_place(session, "route de lyon")[:2] == ("street", "route de lyon")
    add_station(session, 13, "Route de Vienne", "Lyon", "69008", 45.73, 4.86)

    match = resolve_place(session, "route de lyon")

    # Not 'Route de ... in Lyon'; the street words match postcodes and towns too, as search_stations does.
    assert (match.kind, match.station_ids) == ("street", (7, 13))
    assert resolve_place(session, "route lyon")[:3] == ("street_town", "Route, Lyon (69008)", 45.73)


def test_saint_is_also_written_st(session, towns):
    add_station(session, 11, "Rue Bergson", "ST ETIENNE", "42000", 45.45, 4.39)
    add_station(session, 12, "Chemin de Montray", "Ste-Foy-lès-Lyon", "69110")

    assert resolve_place(session, "saint etienne")[:3] == ("town", "St Etienne (42000)", 45.45)
    assert resolve_place(session, "Sainte Foy les Lyon").station_ids == (6, 12)
    match = resolve_place(session, "sain")
    assert [place.town for place in (match, *match.alternatives)] == [
        "Saint-Denis",
        "Sainte-Foy-lès-Lyon",
        "Saint Denis",
        "St Etienne",
    ]


def test_homonyms_are_one_place_per_department(session, towns):
    match = resolve_place(session, "saint-denis")

    assert (match.kind, match.label, match.station_ids) == ("town", "Saint-Denis (93200)", (9, 10))
    (reunion,) = match.alternatives
    assert (reunion.label, reunion.department, reunion.query) == ("Saint Denis (97400)", "974", "Saint Denis (974)")
    assert resolve_place(session, "Saint Denis (974)").station_ids == (8,)
    assert resolve_place(session, "rue de paris saint denis (974)").station_ids == (8,)
    assert resolve_place(session, "Saint-Denis (13)").kind == "street"  # no such town: the words alone


def test_the_centre_ignores_a_misplaced_station(session):
    add_station(session, 1, "Quai Saint-Vincent", "Lyon", "69001", 45.767, 4.826)
    add_station(session, 2, "Place Bellecour", "Lyon", "69002", 45.758, 4.832)
    add_station(session, 3, "Cours Lafayette", "Lyon", "69003", 45.763, 4.850)
    add_station(session, 4, "Rue Misplaced", "LYON", "69005", 48.85, 2.35)  # in Paris by mistake
    add_station(session, 5, "No coordinates", "Lyon", "69008")

    match = resolve_place(session, "Lyon")

    assert (match.latitude, match.longitude) == pytest.approx((45.765, 4.829))
    assert match.station_ids == (1, 2, 3, 4, 5)


def test_each_town_is_named_by_its_best_spelling(session, towns):
    add_station(session, 11, "Chemin de Montray", "SAINTE FOY LES LYON", "69110")
    add_station(session, 12, "Rue Bergson", "ST ETIENNE", "42000", 45.45, 4.39)

    named = towns_with_stations(session)

    assert [(town_label(town), town.stations) for town in named] == [
        ("Lyon (69)", 2),
        ("Rueil-Malmaison (92)", 2),
        ("Saint-Denis (93)", 2),
        ("Sainte-Foy-lès-Lyon (69)", 2),
        ("Rue (80)", 1),
        ("Saint Denis (974)", 1),
        ("St Etienne (42)", 1),
        ("Villeurbanne (69)", 1),
    ]
    assert centre(named[3].rows) == (45.73, 4.80)  # the station without coordinates does not count
    for town in named:
        match = resolve_place(session, town_label(town))
        assert (match.kind, match.query, len(match.station_ids)) == ("town", town_label(town), town.stations)


# --------------------------------------------------------------------------- words of an address (the street kinds)


@pytest.fixture
def addresses(session) -> None:
    add_station(session, 1, "12 Rue de la République", "Saint-Étienne", "42000", 45.44, 4.39)
    add_station(session, 2, "5 Avenue Jean Jaurès", "Paris", "75004", 48.85, 2.36)
    add_station(session, 3, "Route de Bordeaux", "Jonzac", "17500", 45.45, -0.43)
    add_station(session, 4, "8 Boulevard Haussmann", "Paris", "75009")


def matching_ids(session, text: str) -> list[int]:
    """The stations every word of `text` matches, by the conditions place_search builds for a street."""
    from prices.place_search import words_match

    conditions = words_match(text)
    assert conditions, "a text without words has no condition: a caller must not run it as a query"
    return list(session.scalars(select(Station.id).where(*conditions).order_by(Station.id)))


@pytest.mark.parametrize("text", ["république", "RÉPUBLIQUE", "Republique", "  république  ", "etienne 42"])
def test_street_words_ignore_case_and_accents(session, addresses, text):
    match = resolve_place(session, text)

    assert (match.kind, match.station_ids) == ("street", (1,))
    assert matching_ids(session, text) == [1]


def test_the_first_digits_of_a_postcode_start_a_word_but_not_its_last_ones(session, addresses):
    paris = resolve_place(session, "750")

    assert (paris.kind, paris.station_ids, paris.postcodes) == ("street", (2, 4), ())
    assert matching_ids(session, "750") == [2, 4]
    assert matching_ids(session, "500") == []  # 17500 holds '500', but no word starts with it
    assert resolve_place(session, "500") is None
    assert matching_ids(session, "jaures paris") == [2]


def test_a_street_without_coordinates_is_found_but_has_no_centre(session, addresses):
    match = resolve_place(session, "haussmann")

    assert (match.kind, match.station_ids, match.latitude, match.longitude) == ("street", (4,), None, None)


def test_like_wildcards_in_the_words_are_literal(session, addresses):
    assert matching_ids(session, "jonz%") == [3]  # '%' folds to a word break: 'jonz' starts 'jonzac'
    assert matching_ids(session, "j_nzac") == []  # '_' is not 'any letter'
    assert resolve_place(session, "j_nzac") is None
    assert resolve_place(session, "Jonz%").station_ids == (3,)  # the first letters of Jonzac


@pytest.mark.parametrize("text", ["", "   ", "'", "%_%", "-", "%", "_"])
def test_a_text_without_words_matches_nothing(session, addresses, text):
    from prices.place_search import words_match

    assert words_match(text) == []
    assert resolve_place(session, text) is None


# --------------------------------------------------------------------------- La Poste's communes


@pytest.fixture
def places(engine, settings, monkeypatch) -> None:
    """The 146-row cut of La Poste's base loaded (before any station is added in the test's session)."""
    monkeypatch.setattr(ingest_places, "MIN_PLACES", 100)
    imports.import_reference(engine, settings, imports.PLACES, str(PLACES_CUT))


def test_a_village_without_a_station_is_found_and_its_nearby_stations_listed(places, session, towns):
    match = resolve_place(session, "Caluire-et-Cuire")

    assert (match.kind, match.label, match.query) == ("town", "Caluire-et-Cuire (69300)", "Caluire-et-Cuire (69)")
    assert (match.latitude, match.longitude, match.station_ids) == (45.7974053648, 4.85124857101, ())
    nearby = finder.stations_for(session, match, 5, 1)
    assert [station.id for station in nearby] == [7, 4]  # Villeurbanne 3.4 km away, then Lyon 3e
    assert resolve_place(session, "caluire").label == "Caluire-et-Cuire (69300)"  # La Poste's capitals, title case


def test_homonyms_with_stations_come_first_then_the_villages_of_that_name(places, session, towns):
    match = resolve_place(session, "Saint-Denis")

    assert (match.query, len(match.station_ids)) == ("Saint-Denis (93)", 2)
    assert [other.query for other in match.alternatives] == [
        "Saint-Denis (974)",  # the feed's 'SAINT DENIS': a town with a station, spelt as the commune is
        "Saint-Denis (11)",  # La Poste's 'SAINT DENIS', its words joined as in a commune's name
        "Saint-Denis (30)",
    ]
    village = resolve_place(session, "Saint-Denis (30)")
    assert (village.kind, village.department, village.station_ids) == ("town", "30", ())
    assert (village.latitude, village.longitude) == (44.2378320115, 4.24892271537)


def test_a_town_its_stations_write_with_spaces_is_spelt_as_its_commune_and_a_town_that_is_no_commune_is_not(
    places, session
):
    add_station(session, 1, "Route de Lyon", "SAINT DENIS", "97400", -20.88, 55.45)
    add_station(session, 2, "Aérogare", "SAINT DENIS AEROPORT", "97438", -20.89, 55.51)
    add_station(session, 3, "Avenue de Lyon", "CHAZAY D AZERGUES", "69380", 45.87, 4.71)

    assert resolve_place(session, "saint denis (974)").label == "Saint-Denis (97400)"
    assert resolve_place(session, "Chazay").label == "Chazay-d'Azergues (69380)"
    assert resolve_place(session, "69380").label.startswith("69380 Chazay-d'Azergues")
    assert resolve_place(session, "route de lyon saint denis").label == "Route de Lyon, Saint-Denis (97400)"
    assert resolve_place(session, "saint denis aeroport").label == "Saint Denis Aeroport (97438)"  # no commune
    assert suggest(session, "saint denis")[0] == "Saint-Denis (974)"


def test_without_places_a_town_keeps_its_stations_spelling(session, towns):
    assert resolve_place(session, "saint denis (974)").label == "Saint Denis (97400)"


def test_a_business_postcode_names_its_town_without_the_cedex_mark(session):
    add_station(session, 1, "Zone industrielle", "AMIENS CEDEX 2", "80046", 49.89, 2.30)

    assert resolve_place(session, "80046").label == "80046 Amiens"
    assert resolve_place(session, "amiens").label == "Amiens (80046)"


def test_an_abbreviation_typed_is_read_but_never_shown(places, session, towns):
    village = resolve_place(session, "ST-DENIS (30)")
    assert (village.label, village.query) == ("Saint-Denis (30500)", "Saint-Denis (30)")
    assert all(label.startswith("Saint-") for label in suggest(session, "St-Denis"))


def test_every_place_of_exactly_that_name_is_suggested_before_longer_names(places, session, towns):
    add_station(session, 11, "Route de Cahors", "SAINT DENIS CATUS", "46150", 44.57, 1.37)
    add_station(session, 12, "Le Bourg", "Saint-Denis-Catus", "46150", 44.58, 1.38)

    offered = suggest(session, "saint denis")

    assert offered[:4] == ["Saint-Denis (93)", "Saint-Denis (974)", "Saint-Denis (11)", "Saint-Denis (30)"]
    assert offered[4] == "Saint-Denis-Catus (46)"  # the longer name with stations, before the villages


def test_a_name_typed_without_its_leading_article_is_found(places, session):
    assert suggest(session, "cheres") == ["Les Cheres (69)"]  # La Poste writes no accent
    match = resolve_place(session, "cheres")
    assert (match.kind, match.query, match.department) == ("town", "Les Cheres (69)", "69")
    assert resolve_place(session, "chere").query == "Les Cheres (69)"  # first letters too


def test_a_house_number_before_the_street_is_left_out(session, towns):
    assert resolve_place(session, "12 cours Gambetta Lyon").station_ids == (4,)
    assert resolve_place(session, "7 bis, Route de Rue").station_ids == (1,)


def test_an_arrondissement_named_is_searched_not_the_whole_city(session, towns):
    assert (resolve_place(session, "Lyon 3e").label, resolve_place(session, "Lyon 3e").station_ids) == (
        "69003 Lyon",
        (4,),
    )
    assert resolve_place(session, "LYON 7EME ARRONDISSEMENT").station_ids == (5,)
    assert resolve_place(session, "69007 Lyon").station_ids == (5,)
    assert resolve_place(session, "Lyon").station_ids == (4, 5)
    assert resolve_place(session, "Lyon 8").station_ids == (4, 5)  # no station nor place in 69008: the city


def test_a_street_no_station_is_on_gives_its_town(places, session, towns):
    lyon = resolve_place(session, "avenue des Frères Lumière Lyon")
    assert (lyon.kind, lyon.label, lyon.station_ids) == ("town_of_street", "Lyon (69003–69007)", (4, 5))
    village = resolve_place(session, "chemin des Vignes, Chazay-d'Azergues")
    assert (village.kind, village.label, village.station_ids) == ("town_of_street", "Chazay-d'Azergues (69380)", ())
    assert resolve_place(session, "rue inconnue Zzyzx") is None
    assert resolve_place(session, "Rue du Moulin Inconnu") is None  # Rue (80) is no town meant there


def test_a_postcode_beside_a_town_says_its_department(places, session, towns):
    reunion = resolve_place(session, "Saint-Denis 97400")
    assert (reunion.label, reunion.station_ids) == ("Saint-Denis (97400)", (8,))
    assert resolve_place(session, "30500 saint denis").label == "Saint-Denis (30500)"
    assert resolve_place(session, "Chazay-d'Azergues, 69380").label == "Chazay-d'Azergues (69380)"


def test_a_shared_postcode_with_stations_offers_its_other_communes_as_their_stations_spell_them(places, session):
    add_station(session, 1, "Route de Lyon", "LES CHERES", "69380", 45.889, 4.740)
    add_station(session, 2, "Grande Rue", "Les Chères", "69380", 45.890, 4.741)
    add_station(session, 3, "Place de l'Église", "Châtillon", "69380", 45.875, 4.650)

    match = resolve_place(session, "69380")

    assert match.label.startswith("69380 Les Chères")
    offered = [other.query for other in match.alternatives]
    assert "Châtillon (69)" in offered and "Chatillon (69)" not in offered
    assert "Les Chères (69)" not in offered  # the place the label names is not offered again


def test_a_misspelt_place_is_offered_as_it_is_spelt(places, session, towns):
    assert resolve_place(session, "Villeurbane") is None
    assert spelt_like(session, "Villeurbane") == ["Villeurbanne (69)"]
    assert spelt_like(session, "Sant-Denis")[:2] == ["Saint-Denis (93)", "Saint-Denis (974)"]  # stations first
    assert resolve_place(session, spelt_like(session, "Chazay d'Azergue")[0]).label == "Chazay-d'Azergues (69380)"
    assert spelt_like(session, "Zzyzx") == []
    assert spelt_like(session, "Ly") == []


def test_a_postcode_shared_by_several_communes_offers_them(places, session):
    match = resolve_place(session, "69380")

    assert match.kind == "postcode" and match.station_ids == ()
    assert len(match.alternatives) == 14
    assert "Chazay-d'Azergues (69)" in [other.query for other in match.alternatives]
    chazay = resolve_place(session, "Chazay-d'Azergues (69)")
    assert (chazay.label, chazay.latitude) == ("Chazay-d'Azergues (69380)", 45.8763096867)


def test_a_locality_of_a_commune_is_found(places, session):
    match = resolve_place(session, "belle pierre")
    assert (match.label, match.query, match.department) == (
        "Belle-Pierre, Saint-Denis (97400)",
        "Belle-Pierre (974)",
        "974",
    )
    assert resolve_place(session, match.query).label == match.label


def test_a_station_with_a_cedex_postcode_is_placed_by_its_town_in_its_department(places, session, towns):
    add_station(session, 20, "Chemin de Crépieux", "CALUIRE ET CUIRE CEDEX", "69642", 45.80, 4.85)  # a business code
    add_station(session, 21, "Montée des Soldats", "Caluire-et-Cuire", "69300", 45.79, 4.85)

    assert "69642" not in {row[0] for row in session.execute(select(Place.postcode))}
    match = resolve_place(session, "caluire et cuire")
    assert (match.label, match.station_ids, match.alternatives) == ("Caluire-et-Cuire (69300–69642)", (20, 21), ())
    assert resolve_place(session, "69642").station_ids == (20,)


def test_corsica_is_one_place_whether_named_by_its_postcode_or_its_insee_department(places, session):
    add_station(session, 30, "Route de Bastia", "PORTO VECCHIO", "20137", 41.59, 9.28)

    for typed in ("Porto-Vecchio", "Porto-Vecchio (2A)", "Porto-Vecchio (20)"):
        match = resolve_place(session, typed)
        assert (match.station_ids, match.alternatives) == ((30,), ()), typed


def test_suggestions_offer_communes_and_localities_by_their_first_letters_or_postcode(places, session):
    offered = suggest(session, "saint den")
    assert offered[:5] == [
        "Saint-Denis (11)",
        "Saint-Denis (30)",
        "Saint-Denis (93)",
        "Saint-Denis (974)",
        "Saint-Denis-Catus (46)",  # then the shortest of the first names in alphabetical order
    ]
    assert "Chazay-d'Azergues (69)" in suggest(session, "6938")
    assert suggest(session, "belle p") == ["Belle-Pierre (974)"]
    assert suggest(session, "s") == []
    for label in offered:
        assert resolve_place(session, label).query == label


def test_suggestions_offer_the_towns_with_stations_first_as_their_stations_spell_them(places, session, towns):
    offered = suggest(session, "saint den")
    assert offered[:4] == ["Saint-Denis (93)", "Saint-Denis (974)", "Saint-Denis (11)", "Saint-Denis (30)"]
    assert offered[0] in [town_label(town) for town in towns_with_stations(session)], "one label per place"
