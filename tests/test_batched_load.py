"""A run writes the feed a batch of stations at a time, inside its one transaction.

What a user relies on: the database ends exactly as if the feed were written in one go (a station
gone, a new one, one listed twice in two batches), and a failure after some batches are written,
or a feed refused once all are, leaves the database as it was. Batches of 7 stations make the
60-station fixtures span nine of them; expected values come from feed_reader.py.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from conftest import FIXTURES
from db_snapshot import contents, current_prices, history
from db_snapshot import etl_runs as runs
from feed_reader import read_feed, xml_bytes
from ingest import passes
from models import Rupture

FEED_A = FIXTURES / "feed_a.zip"
FEED_B = FIXTURES / "feed_b.zip"
BLOCK = re.compile(rb'  <pdv id="(\d+)".*?</pdv>\n', re.S)
SMALL_BATCH = 7
NEW_STATION = 35999999


def blocks(xml: bytes) -> dict[int, bytes]:
    return {int(m[1]): m[0] for m in BLOCK.finditer(xml)}


def write(path: Path, xml: bytes) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("PrixCarburants_instantane.xml", xml)
    return path


def ruptures(engine) -> dict[tuple[int, int], tuple]:
    query = select(Rupture.station_id, Rupture.gastype_id, Rupture.started_at, Rupture.ended_at, Rupture.kind)
    with engine.connect() as conn:
        return {(s, f): (a, b, k) for s, f, a, b, k in conn.execute(query)}


def edited_feeds(tmp_path: Path) -> list[Path]:
    """feed_b edited as upstream edits it: a station gone, a new one, one listed again at the end with
    a newer Gazole price and without its other prices; then the same an hour later, listed only there, another gone."""
    xml = xml_bytes(FEED_B)
    found = blocks(xml)
    stations = list(found)
    twice = stations[2]
    again = re.sub(rb"\n\s*<prix [^>]*/>", b"", found[twice])
    gazole = next(m[0] for m in re.finditer(rb'<prix [^>]*id="1"[^>]*/>', found[twice]))
    newer = re.sub(rb'maj="[^"]*" valeur="[^"]*"', b'maj="2024-05-09 07:00:00" valeur="1.599"', gazole)
    again = again.replace(b"</pdv>", b"  " + newer + b"\n  </pdv>")
    new = found[stations[5]].replace(b'<pdv id="%d"' % stations[5], b'<pdv id="%d"' % NEW_STATION)
    edited = xml.replace(found[stations[-1]], b"").replace(b"</pdv_liste>", again + new + b"</pdv_liste>")
    later = edited.replace(found[twice], b"").replace(found[stations[10]], b"")
    return [write(tmp_path / "edited.zip", edited), write(tmp_path / "later.zip", later)]


def test_a_feed_written_in_batches_ends_as_one_written_at_once(engine, settings, tmp_path, monkeypatch):
    for source in [FEED_A, FEED_B, *edited_feeds(tmp_path)]:
        monkeypatch.setattr(passes, "BATCH_STATIONS", SMALL_BATCH)
        summary = passes.run_pass(engine, settings, str(source))

        expected = read_feed(source)
        assert current_prices(engine) == expected.current
        assert ruptures(engine) == expected.ruptures
        assert expected.observations.items() <= history(engine).items()
        assert (summary.stations, summary.prices) == (
            sum(1 for _ in BLOCK.finditer(xml_bytes(source))),
            len(expected.current),
        )
        batched = contents(engine, last_seen=False)
        monkeypatch.setattr(passes, "BATCH_STATIONS", 100_000)
        at_once = passes.run_pass(engine, settings, str(source), force=True)
        assert at_once.changes == 0, "reading it all in one batch finds nothing to change"
        assert contents(engine, last_seen=False) == batched
        assert (at_once.stations, at_once.prices, at_once.rejected) == (
            summary.stations,
            summary.prices,
            summary.rejected,
        )


def _fewer_stations(tmp_path: Path) -> Path:
    """feed_b with only 20 of its 60 stations: under half of the last run's, refused once all are written."""
    xml = xml_bytes(FEED_B)
    for block in list(blocks(xml).values())[20:]:
        xml = xml.replace(block, b"")
    return write(tmp_path / "fewer.zip", xml)


@pytest.mark.parametrize("failure", ["database error in the sixth batch", "too few stations"])
def test_a_failure_after_batches_are_written_leaves_the_database_as_it_was(
    engine, settings, tmp_path, monkeypatch, failure
):
    passes.run_pass(engine, settings, str(FEED_A))
    before = contents(engine)
    monkeypatch.setattr(passes, "BATCH_STATIONS", SMALL_BATCH)
    written = []
    load_snapshot = passes.load_snapshot

    def load_then_fail(conn, snapshot, seen_at):
        counts = load_snapshot(conn, snapshot, seen_at)
        written.append(snapshot.stations)
        if failure.startswith("database") and len(written) == 6:
            raise OperationalError("INSERT", {}, Exception("disk I/O error"))
        return counts

    monkeypatch.setattr(passes, "load_snapshot", load_then_fail)
    source = FEED_B if failure.startswith("database") else _fewer_stations(tmp_path)

    with pytest.raises(passes.EtlError, match=r"disk I/O error|under half") as refused:
        passes.run_pass(engine, settings, str(source))

    assert len(written) >= 3, "several batches were written before the failure"
    assert contents(engine) == before
    assert (runs(engine)[-1].status, runs(engine)[-1].error) == ("failed", str(refused.value))
    monkeypatch.setattr(passes, "load_snapshot", load_snapshot)
    passes.run_pass(engine, settings, str(FEED_B))
    assert current_prices(engine) == read_feed(FEED_B).current, "the next run loads as if nothing had happened"
