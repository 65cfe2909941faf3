"""Hourly updates: a station whose <pdv> bytes did not change is neither read, nor compared, nor rewritten.

Each test loads feed_a (60 stations), then a copy of it edited the way upstream edits the feed
between two runs: a price, an opening hour, a station gone, a station new. Expected values come
from the standard library's reading of the files (feed_reader.py), never from the project's
parser; "as a full reading would leave it" is checked by forcing a full reading afterwards, which
must find nothing to change. Which stations the parser reads is seen through a spy on the
parser's per-station entry point; which stations a pass writes, through the parameters of every
SQL statement it sends.
"""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError

from conftest import FIXTURES, REAL_FEEDS
from db_snapshot import contents, current_prices, history
from db_snapshot import etl_runs as runs
from feed_reader import read_feed, xml_bytes
from ingest import load, parse, passes, update
from models import Station

UTC = dt.UTC
FEED_A = FIXTURES / "feed_a.zip"
QUOTIDIEN = FIXTURES / "quotidien.zip"
BLOCK = re.compile(rb'  <pdv id="(\d+)".*?</pdv>\n', re.S)
NEW_STATION = 35999999
REAL_PAIR = [REAL_FEEDS / f"instantane_yzpt-dataflow_2023-11-25{half}.zip" for half in "ab"]


# --------------------------------------------------------------------------- feeds edited as upstream edits them


def blocks(xml: bytes) -> dict[int, bytes]:
    """Each station's <pdv> block, by id, in document order."""
    return {int(m[1]): m[0] for m in BLOCK.finditer(xml)}


FEED_A_XML = xml_bytes(FEED_A)
STATIONS = list(blocks(FEED_A_XML))


def edit(xml: bytes, station: int, old: bytes, new: bytes) -> bytes:
    """`xml` with `old` replaced by `new` (exactly once) in the block of `station`."""
    block = blocks(xml)[station]
    assert block.count(old) == 1, f"{old!r} is not once in station {station}"
    return xml.replace(block, block.replace(old, new))


def new_price(xml: bytes, station: int, fuel: int, value: str, maj: str) -> bytes:
    """`xml` where `station` declares a new price for `fuel`, as a price change upstream does."""
    found = re.search(rb'<prix [^>]*id="%d" maj="[^"]*" valeur="[^"]*"/>' % fuel, blocks(xml)[station])
    assert found, f"station {station} sells no fuel {fuel}"
    declared = re.sub(rb'maj="[^"]*" valeur="[^"]*"', f'maj="{maj}" valeur="{value}"'.encode(), found[0])
    return edit(xml, station, found[0], declared)


def without(xml: bytes, station: int) -> bytes:
    return xml.replace(blocks(xml)[station], b"")


def with_new_station(xml: bytes, copied: int, station: int) -> bytes:
    """`xml` with a station `station` appended, a copy of `copied` at another address."""
    block = blocks(xml)[copied].replace(b'<pdv id="%d"' % copied, b'<pdv id="%d"' % station)
    block = re.sub(rb"<adresse>[^<]*</adresse>", b"<adresse>1 RUE NEUVE</adresse>", block)
    return xml.replace(b"</pdv_liste>", block + b"</pdv_liste>")


def write(path: Path, xml: bytes) -> str:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("PrixCarburants_instantane.xml", xml)
    return str(path)


def paris_time(wall_clock: str) -> dt.datetime:
    return dt.datetime.fromisoformat(wall_clock).replace(tzinfo=ZoneInfo("Europe/Paris")).astimezone(UTC)


# --------------------------------------------------------------------------- what a pass reads and writes


@pytest.fixture
def parsed(monkeypatch) -> list[str]:
    """The id of each <pdv> the parser turns into a station, in the order read, run after run."""
    read: list[str] = []
    real = parse._PdvParser.entry

    def spy(self, pdv):
        read.append(pdv.get("id"))
        return real(self, pdv)

    monkeypatch.setattr(parse._PdvParser, "entry", spy)
    return read


@pytest.fixture
def written(engine) -> list[set[int]]:
    """For each pass, the station ids found among the parameters of the SQL statements it sent."""
    passes: list[set[int]] = []
    known = set(STATIONS) | {NEW_STATION}

    def collect(value) -> None:
        if isinstance(value, int) and value in known:
            passes[-1].add(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                collect(item)
        elif isinstance(value, dict):
            collect(list(value.values()))

    def record(_conn, _cursor, statement, parameters, _context, _executemany):
        if passes and statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE", "SELECT")):
            collect(parameters)

    event.listen(engine, "before_cursor_execute", record)
    yield passes
    event.remove(engine, "before_cursor_execute", record)


def run(engine, settings, source: str, written: list[set[int]] | None = None, **options) -> passes.RunSummary:
    if written is not None:
        written.append(set())
    return passes.run_pass(engine, settings, source, **options)


def others(rows: dict[str, list[tuple]], stations: set[int]) -> dict[str, list[tuple]]:
    """db_snapshot.contents without the rows of `stations` (the first column of every data table)."""
    data_tables = {"stations", "prices", "price_history", "ruptures"}
    return {
        table: [row for row in found if table not in data_tables or row[0] not in stations]
        for table, found in rows.items()
    }


def station_row(rows: dict[str, list[tuple]], station: int) -> tuple:
    return next(row for row in rows["stations"] if row[0] == station)


def assert_as_a_full_reading_leaves_it(engine, settings, source: str) -> None:
    """A forced full reading of `source`, comparing every station with what is stored, finds nothing to change."""
    before = contents(engine, last_seen=False)
    again = passes.run_pass(engine, settings, source, force=True)
    assert again.changes == 0
    assert contents(engine, last_seen=False) == before


def seen_by(engine, run_row) -> set[int]:
    """The stations whose last_seen_at is the time of `run_row` (within its start and end)."""
    with engine.connect() as conn:
        rows = conn.execute(select(Station.id, Station.last_seen_at)).all()
    return {station for station, seen in rows if run_row.started_at <= seen <= run_row.finished_at}


# --------------------------------------------------------------------------- one price, one opening hour


def test_an_update_reads_and_writes_only_the_station_whose_price_changed(engine, settings, tmp_path, parsed, written):
    station = STATIONS[5]
    source = write(tmp_path / "update.zip", new_price(FEED_A_XML, station, 1, "1.699", "2024-05-08 11:00:00"))
    run(engine, settings, str(FEED_A))
    before, history_before = contents(engine, last_seen=False), history(engine)
    parsed.clear()

    summary = run(engine, settings, source, written)

    assert parsed == [str(station)], "only the changed station is parsed"
    assert written[-1] == {station}, "no statement names any other station"
    expected = read_feed(Path(source))
    assert (summary.stations, summary.prices, summary.changes, summary.rejected) == (60, len(expected.current), 1, 0)
    assert current_prices(engine) == expected.current
    declared = (station, 1, paris_time("2024-05-08 11:00:00"))
    assert history(engine) == {**history_before, declared: Decimal("1.699")}, "one observation added"
    after = contents(engine, last_seen=False)
    assert others(after, {station}) == others(before, {station}), "every other row is as it was"
    assert station_row(after, station)[:-1] == station_row(before, station)[:-1], "its details did not change"
    assert seen_by(engine, runs(engine)[-1]) == set(STATIONS), "every station listed is seen by this run"
    assert_as_a_full_reading_leaves_it(engine, settings, source)


def test_a_station_whose_bytes_changed_only_in_an_opening_hour_is_updated(engine, settings, tmp_path, parsed, written):
    station = next(
        s
        for s in STATIONS
        if b'<jour id="1" nom="Lundi" ferme="">\n        <horaire ouverture="07.00"' in blocks(FEED_A_XML)[s]
    )
    monday = b'<jour id="1" nom="Lundi" ferme="">\n        <horaire ouverture="%s"'
    source = write(tmp_path / "hours.zip", edit(FEED_A_XML, station, monday % b"07.00", monday % b"06.45"))
    run(engine, settings, str(FEED_A))
    before = contents(engine, last_seen=False)
    parsed.clear()

    summary = run(engine, settings, source, written)

    assert parsed == [str(station)]
    assert written[-1] == {station}
    assert summary.changes == 0, "no price changed"
    with engine.connect() as conn:
        hours = conn.scalar(select(Station.opening_hours).where(Station.id == station))
    opening = {day["day"]: day["hours"][0][0] for day in hours if day["hours"]}
    assert opening[1] == "06:45", "Monday opens earlier"
    assert set(opening.values()) == {"06:45", "07:00"}, "the other days are as they were"
    after = contents(engine, last_seen=False)
    assert others(after, {station}) == others(before, {station})
    assert_as_a_full_reading_leaves_it(engine, settings, source)


# --------------------------------------------------------------------------- stations gone, new, and back


def test_a_station_gone_and_a_new_one_are_loaded_as_a_full_reading_loads_them(engine, settings, tmp_path, parsed):
    gone = next(s for s in STATIONS if b"<rupture " in blocks(FEED_A_XML)[s])
    source = write(tmp_path / "moved.zip", with_new_station(without(FEED_A_XML, gone), STATIONS[0], NEW_STATION))
    first = run(engine, settings, str(FEED_A))
    first_run = runs(engine)[-1]
    a, b = read_feed(FEED_A), read_feed(Path(source))
    parsed.clear()

    summary = run(engine, settings, source)

    assert parsed == [str(NEW_STATION)], "the new station is read; the gone one needs no reading"
    assert (summary.stations, first.stations) == (60, 60)
    assert current_prices(engine) == b.current, "the gone station's prices went, the new one's came"
    assert history(engine) == {**a.observations, **b.observations}, "history is kept and extended"
    with engine.connect() as conn:
        stored = dict(conn.execute(select(Station.id, Station.address)).all())
        gone_seen = conn.scalar(select(Station.last_seen_at).where(Station.id == gone))
    assert set(stored) == set(STATIONS) | {NEW_STATION}, "the gone station's row stays, as always"
    assert stored[NEW_STATION] == "1 RUE NEUVE"
    assert first_run.started_at <= gone_seen <= first_run.finished_at, "last seen by the first run"
    assert not {key for key in current_prices(engine) if key[0] == gone}
    assert_as_a_full_reading_leaves_it(engine, settings, source)

    # Back in the next feed, byte for byte as before it left: read again, its prices come back.
    parsed.clear()
    run(engine, settings, str(FEED_A))
    assert str(gone) in parsed
    assert current_prices(engine) == a.current
    assert_as_a_full_reading_leaves_it(engine, settings, str(FEED_A))


# --------------------------------------------------------------------------- force, failures, rules


def test_force_reads_every_station_again(engine, settings, tmp_path, parsed):
    station = STATIONS[7]
    source = write(tmp_path / "update.zip", new_price(FEED_A_XML, station, 1, "1.701", "2024-05-08 11:00:00"))
    run(engine, settings, str(FEED_A))
    parsed.clear()

    summary = run(engine, settings, source, force=True)

    assert sorted(parsed) == sorted(map(str, STATIONS))
    assert summary.changes == 1
    assert current_prices(engine) == read_feed(Path(source)).current
    parsed.clear()
    run(engine, settings, source, force=True)  # even the same feed, which a plain run would recognise
    assert sorted(parsed) == sorted(map(str, STATIONS))


def test_a_run_after_a_failed_one_loads_correctly_and_the_failed_fingerprints_are_not_kept(
    engine, settings, tmp_path, monkeypatch, parsed
):
    station = STATIONS[3]
    source = write(tmp_path / "update.zip", new_price(FEED_A_XML, station, 1, "1.659", "2024-05-08 11:00:00"))
    run(engine, settings, str(FEED_A))
    before = contents(engine)  # every column, last_seen_at and fingerprint included
    real_load_ruptures = load.load_ruptures

    def fail_after_writing(*args, **kwargs):
        real_load_ruptures(*args, **kwargs)  # station rows, fingerprints and prices are written by now
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(load, "load_ruptures", fail_after_writing)
    with pytest.raises(passes.EtlError, match="disk I/O error"):
        run(engine, settings, source)
    assert contents(engine) == before, "the failed run left nothing, fingerprints included"
    monkeypatch.setattr(load, "load_ruptures", real_load_ruptures)
    parsed.clear()

    summary = run(engine, settings, source)

    assert parsed == [str(station)], "the fingerprints are the last successful run's"
    assert summary.changes == 1
    assert current_prices(engine) == read_feed(Path(source)).current
    assert [r.status for r in runs(engine)] == ["success", "failed", "success"]
    assert_as_a_full_reading_leaves_it(engine, settings, source)


def test_new_parsing_rules_read_every_station_again(engine, settings, tmp_path, monkeypatch, parsed):
    source = write(tmp_path / "update.zip", new_price(FEED_A_XML, STATIONS[1], 1, "1.659", "2024-05-08 11:00:00"))
    run(engine, settings, str(FEED_A))
    monkeypatch.setattr(update, "rules_seed", lambda: 12345)  # as after an upgrade of the reading or loading code
    parsed.clear()

    run(engine, settings, source)

    assert sorted(parsed) == sorted(map(str, STATIONS))
    assert current_prices(engine) == read_feed(Path(source)).current


def test_after_a_backfill_every_station_is_read_again(engine, settings, tmp_path, parsed):
    source = write(tmp_path / "update.zip", new_price(FEED_A_XML, STATIONS[1], 1, "1.659", "2024-05-08 11:00:00"))
    run(engine, settings, str(FEED_A))
    passes.backfill(engine, settings, str(QUOTIDIEN))  # may move current prices of any station
    parsed.clear()

    run(engine, settings, source)

    assert set(STATIONS) <= set(map(int, parsed))


# --------------------------------------------------------------------------- what skipping must never hide


def test_a_station_with_a_rejected_record_is_read_and_counted_every_time(engine, settings, tmp_path, parsed):
    station, other = STATIONS[2], STATIONS[9]
    rejected = b'    <prix nom="GPLc" id="4" maj="9999-01-01 00:00:00" valeur="0.999"/>\n'
    future = edit(FEED_A_XML, station, b"    <services", rejected + b"    <services")
    first = write(tmp_path / "future.zip", future)
    later = write(tmp_path / "later.zip", new_price(future, other, 1, "1.659", "2024-05-08 11:00:00"))
    run(engine, settings, str(FEED_A))

    one = run(engine, settings, first)
    parsed.clear()
    two = run(engine, settings, later)

    assert one.reasons == two.reasons == {"price time in the future": 1}
    assert sorted(parsed) == sorted([str(station), str(other)]), "the station with a rejection is read again"
    expected = read_feed(Path(later)).current
    assert expected.pop((station, 4))[1].year == 9998  # the standard library's reading keeps a time in 9999
    assert current_prices(engine) == expected
    assert_as_a_full_reading_leaves_it(engine, settings, later)


def test_a_station_back_to_bytes_read_before_a_rejected_update_is_read_again(engine, settings, tmp_path, parsed):
    """Its fingerprint said what its rows held; once a later reading moved its prices, it says nothing more."""
    station = STATIONS[2]
    rejected = b'    <prix nom="GPLc" id="4" maj="9999-01-01 00:00:00" valeur="0.999"/>\n'
    moved = new_price(FEED_A_XML, station, 1, "1.659", "2024-05-08 11:00:00")
    moved = edit(moved, station, b"    <services", rejected + b"    <services")
    run(engine, settings, str(FEED_A))
    run(engine, settings, write(tmp_path / "moved.zip", moved))
    parsed.clear()

    run(engine, settings, str(FEED_A))

    assert parsed == [str(station)]
    assert current_prices(engine) == read_feed(FEED_A).current
    assert_as_a_full_reading_leaves_it(engine, settings, str(FEED_A))


def test_a_document_laid_out_otherwise_is_read_whole(engine, settings, tmp_path, parsed):
    station = STATIONS[4]
    commented = new_price(FEED_A_XML, station, 1, "1.659", "2024-05-08 11:00:00")
    commented = commented.replace(b"<pdv_liste>\n", b"<pdv_liste>\n  <!-- a comment -->\n", 1)
    source = write(tmp_path / "commented.zip", commented)
    run(engine, settings, str(FEED_A))
    parsed.clear()

    run(engine, settings, source)

    assert sorted(parsed) == sorted(map(str, STATIONS))
    assert current_prices(engine) == read_feed(Path(source)).current
    # The stations it left as they were keep their fingerprints: the next genuine feed skips them.
    parsed.clear()
    run(
        engine,
        settings,
        write(tmp_path / "next.zip", new_price(FEED_A_XML, station, 1, "1.649", "2024-05-08 12:00:00")),
    )
    assert parsed == [str(station)]


def test_a_price_unit_read_in_context_makes_the_whole_document_read(engine, settings, tmp_path, parsed):
    """ "2" alone is euros or thousandths depending on the rest of the document: read it with all of it."""
    station = STATIONS[6]
    source = write(tmp_path / "integer.zip", new_price(FEED_A_XML, station, 1, "2", "2024-05-08 11:00:00"))
    run(engine, settings, str(FEED_A))
    parsed.clear()

    run(engine, settings, source)

    assert set(parsed) == set(map(str, STATIONS))
    expected = read_feed(Path(source)).current
    assert expected[(station, 1)][0] == Decimal("2.000")
    assert current_prices(engine) == expected


def test_a_station_listed_twice_makes_the_whole_document_read(engine, settings, tmp_path, parsed):
    station = STATIONS[8]
    twice = FEED_A_XML.replace(b"</pdv_liste>", blocks(FEED_A_XML)[station] + b"</pdv_liste>")
    source = write(tmp_path / "twice.zip", new_price(twice, STATIONS[0], 1, "1.659", "2024-05-08 11:00:00"))
    run(engine, settings, str(FEED_A))
    parsed.clear()

    run(engine, settings, source)

    assert sorted(parsed) == sorted([*map(str, STATIONS), str(station)])
    assert current_prices(engine) == read_feed(Path(source)).current


# --------------------------------------------------------------------------- the layout that allows skipping


def _first_block(xml: bytes) -> bytes:
    return blocks(xml)[STATIONS[0]]


LAYOUTS = {
    "genuine": (FEED_A_XML, True),
    "attributes-in-another-order": (
        FEED_A_XML.replace(b'<pdv id="35200001" ', b'<pdv cp="35200" id="35200001" '),
        True,
    ),
    "comment": (FEED_A_XML.replace(b"</pdv>\n", b"</pdv>\n  <!-- </pdv> -->\n", 1), False),
    "cdata": (FEED_A_XML.replace(b"<adresse>", b"<adresse><![CDATA[</pdv>]]>", 1), False),
    "processing-instruction": (FEED_A_XML.replace(b"</pdv>\n", b"</pdv>\n  <?pi x?>\n", 1), False),
    "doctype": (FEED_A_XML.replace(b"?>\n", b'?>\n<!DOCTYPE pdv_liste [<!ENTITY e "x">]>\n', 1), False),
    "self-closed-station": (
        FEED_A_XML.replace(_first_block(FEED_A_XML), b'  <pdv id="35200001" cp="35200"/>\n', 1),
        False,
    ),
    "station-inside-another": (
        FEED_A_XML.replace(b"<services/>", b'<services/><pdv id="1000001"></pdv>', 1),
        False,
    ),
    "text-between-stations": (FEED_A_XML.replace(b"</pdv>\n", b"</pdv>\n  loose text\n", 1), False),
    "other-element-between-stations": (FEED_A_XML.replace(b"</pdv>\n", b"</pdv>\n  <x/>\n", 1), False),
    "truncated": (FEED_A_XML[:-20], False),
    "after-the-root": (FEED_A_XML + b"<pdv_liste/>\n", False),
    "root-with-attributes": (FEED_A_XML.replace(b"<pdv_liste>", b'<pdv_liste xmlns="urn:x">', 1), False),
}


@pytest.mark.parametrize("name", LAYOUTS)
def test_only_the_genuine_feeds_layout_lets_stations_be_found_without_parsing(name):
    """In the genuine layout every "<pdv " starts a station; what could hide or fake a tag disables skipping."""
    document, genuine = LAYOUTS[name]
    found = set()
    for size in (1, 5, 13, 4096, 1 << 16):
        scanner = update.LayoutScanner()
        for offset in range(0, len(document), size):
            scanner.feed(document[offset : offset + size])
        scanner.close()
        assert scanner.genuine is genuine, f"chunks of {size} bytes"
        found.add((tuple(scanner.ids), tuple(scanner.fingerprints)))
    if genuine:
        ((ids, fingerprints),) = found  # the same whatever the chunks
        first = 0 if name == "attributes-in-another-order" else STATIONS[0]
        assert list(ids) == [first, *STATIONS[1:]]
        assert len(set(fingerprints)) == len(STATIONS)


# --------------------------------------------------------------------------- the real feed, two hours later


def test_the_real_update_two_hours_later_reads_only_the_stations_that_changed(engine, settings, parsed):
    if not all(path.is_file() for path in REAL_PAIR):
        pytest.skip(f"{REAL_FEEDS} is absent")
    older, newer = REAL_PAIR
    before, after = blocks(xml_bytes(older)), blocks(xml_bytes(newer))
    changed = {station for station, block in after.items() if before.get(station) != block}
    assert len(changed) == 27 and len(after) == 10_003  # the pair as SOURCES.md describes it
    run(engine, settings, str(older))
    parsed.clear()

    summary = run(engine, settings, str(newer))

    assert sorted(map(int, parsed)) == sorted(changed)
    expected = read_feed(newer)
    assert (summary.stations, summary.prices) == (len(expected.stations), len(expected.current))
    assert current_prices(engine) == expected.current
    assert_as_a_full_reading_leaves_it(engine, settings, str(newer))
