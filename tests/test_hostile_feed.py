"""A feed whose records are wrong or hostile loads its good records and rejects, and counts, the others.

The feed is feed_a (already loaded, as on a running service) plus records an attacker or a broken
upstream export could write: ids that are no station id, times in year 9999, a 1 MB address, control
and bidi characters, and markup, markdown and links in every text field. A bad record must never fail
the run nor touch the data of good stations; markup is text like any other, stored exactly (the pages
escape it).
"""

from __future__ import annotations

import datetime as dt
import io
from collections import Counter
from decimal import Decimal
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from sqlalchemy import select

from conftest import FIXTURES
from db_snapshot import DATA_TABLES, contents, current_prices, etl_runs
from feed_reader import xml_bytes
from ingest import passes
from ingest.parse import parse_feed
from ingest.records import ParseReport
from models import Station

UTC = dt.UTC
FEED_A = FIXTURES / "feed_a.zip"
FIRST_STATION = b'<pdv id="35200001"'  # feed_a's first station, which has no GPLc out-of-stock record
MARKUP_STATION, SPACED_STATION = 35999005, 35999006  # the good stations among those appended to feed_a
NEW_STATIONS = {MARKUP_STATION, SPACED_STATION}
MARKUP = {
    "address": "[click](http://evil.example) <img src=x onerror=alert(1)> **bold** & co",
    "town": "<script>alert('x')</script> http://evil.example _Rennes_",
    "services": ["<b>Wifi</b>", "[Lavage](javascript:alert(1))", "http://evil.example/**x**", "# Bar & <i>Tabac</i>"],
}
HOSTILE_REJECTIONS = {
    "station without a valid id": 3,
    "text field too long": 1,
    "control characters in a text field": 3,
    "price time in the future": 1,
    "out-of-stock time in the future": 1,
}


def text(value: str) -> str:
    """`value` as XML element content; a carriage return as a reference, or the parser would make it a newline."""
    return escape(value, {"\r": "&#13;"})


def pdv(
    station_id: str, address: str = "1 Rue de la Paix", town: str = "Rennes", services: tuple[str, ...] = ()
) -> str:
    """A <pdv> in the instant feed's shape, with one plausible Gazole price."""
    labels = "".join(f"<service>{text(label)}</service>" for label in services)
    return (
        f'<pdv id="{station_id}" latitude="4811000" longitude="-167000" cp="35000" pop="R">'
        f"<adresse>{text(address)}</adresse><ville>{text(town)}</ville><services>{labels}</services>"
        '<prix nom="Gazole" id="1" maj="2024-05-08 10:00:00" valeur="1.799"/></pdv>\n'
    )


def hostile_feed_xml() -> bytes:
    """feed_a's XML with future records in its first station and hostile stations appended."""
    xml = xml_bytes(FEED_A)
    future = (
        b'<prix nom="Gazole" id="1" maj="9999-12-31 23:59:59" valeur="0.999"/>'
        b'<rupture nom="GPLc" id="4" debut="9999-01-01 00:00:00" fin="" type="temporaire"/>'
    )
    end_of_first = xml.index(b"</pdv>", xml.index(FIRST_STATION))
    xml = xml[:end_of_first] + future + xml[end_of_first:]
    stations = "".join(
        (
            pdv("99999999999999999999999"),
            pdv("-35000001"),
            pdv("0"),
            pdv("35999001", address="A" * 1_000_000),
            pdv("35999002", address="12 Rue\x7f des Lilas"),  # DEL: allowed by XML 1.0, a control all the same
            pdv("35999003", town="Rennes\u202egnp.exe"),  # RIGHT-TO-LEFT OVERRIDE: displays as "Rennesexe.png"
            pdv("35999004", services=("Wifi\u2066",)),
            pdv(str(MARKUP_STATION), MARKUP["address"], MARKUP["town"], tuple(MARKUP["services"])),
            pdv(str(SPACED_STATION), address="12 Rue\tdes\n    Lilas\r\nBât. B", services=("Lavage\tmanuel",)),
        )
    )
    # Latin-1 like the real feed; characters beyond it become character references, as the real feed writes them.
    return xml.replace(b"</pdv_liste>", stations.encode("latin-1", "xmlcharrefreplace") + b"</pdv_liste>")


def write_hostile_feed(directory: Path) -> Path:
    path = directory / "hostile.xml"
    path.write_bytes(hostile_feed_xml())
    return path


def without_stations(rows: dict[str, list[tuple]], ids: set[int]) -> dict[str, list[tuple]]:
    """`rows` (db_snapshot.contents) without the rows of stations `ids` (the first column of each data table)."""
    data_tables = {model.__tablename__ for model in DATA_TABLES}
    return {
        table: [row for row in found if table not in data_tables or row[0] not in ids] for table, found in rows.items()
    }


def test_hostile_records_are_rejected_and_counted_while_good_ones_load_exactly(engine, settings, tmp_path):
    passes.run_pass(engine, settings, str(FEED_A))
    before = contents(engine, last_seen=False)

    summary = passes.run_pass(engine, settings, str(write_hostile_feed(tmp_path)))

    assert summary.reasons == HOSTILE_REJECTIONS
    assert summary.rejected == sum(HOSTILE_REJECTIONS.values())
    assert "station without a valid id (3)" in str(summary), "the operator sees why records were rejected"
    run = etl_runs(engine)[-1]
    assert (run.status, run.stations, run.rejected) == ("success", 62, sum(HOSTILE_REJECTIONS.values()))

    after = contents(engine, last_seen=False)
    assert without_stations(after, NEW_STATIONS) == before, "nothing but the two good new stations changed"
    with engine.connect() as conn:
        stored = {row.id: row for row in conn.execute(select(Station).where(Station.id.in_(NEW_STATIONS)))}
    markup = stored[MARKUP_STATION]
    assert (markup.address, markup.town, markup.services) == (MARKUP["address"], MARKUP["town"], MARKUP["services"])
    spaced = stored[SPACED_STATION]
    assert (spaced.address, spaced.services) == ("12 Rue des Lilas Bât. B", ["Lavage manuel"])
    declared = (Decimal("1.799"), dt.datetime(2024, 5, 8, 8, 0, tzinfo=UTC))  # 10:00 in Paris
    prices = current_prices(engine)
    assert (prices[(MARKUP_STATION, 1)], prices[(SPACED_STATION, 1)]) == (declared, declared)


def document(body: str) -> io.BytesIO:
    return io.BytesIO(f'<?xml version="1.0" encoding="ISO-8859-1"?>\n<pdv_liste>{body}</pdv_liste>'.encode("latin-1"))


@pytest.mark.parametrize(
    ("paris_wall_clock", "accepted"),
    [("2024-05-09 11:59:59", True), ("2024-05-09 12:00:01", False)],
    ids=["23h59-ahead", "24h00-ahead"],
)
def test_times_more_than_a_day_after_the_run_are_rejected(paris_wall_clock: str, accepted: bool):
    """The bound is the run's own time plus one day (Paris is UTC+2 in May), not the clock of each record."""
    run_time = dt.datetime(2024, 5, 8, 10, 0, tzinfo=UTC)
    report = ParseReport()
    xml = document(
        '<pdv id="35000001" cp="35000" pop="R"><adresse>1 Rue</adresse><ville>Rennes</ville>'
        f'<prix nom="Gazole" id="1" maj="{paris_wall_clock}" valeur="1.799"/>'
        f'<rupture nom="E85" id="3" debut="2024-05-01 08:00:00" fin="{paris_wall_clock}" type="temporaire"/></pdv>'
    )

    (entry,) = parse_feed(xml, report, run_time)

    assert (len(entry.prices), len(entry.ruptures)) == ((1, 1) if accepted else (0, 0))
    assert report.rejected == (0 if accepted else 2)
    assert report.reasons == (
        Counter() if accepted else Counter({"price time in the future": 1, "out-of-stock time in the future": 1})
    )
