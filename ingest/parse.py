"""Streaming a feed document into StationEntry records with lxml, safely and in constant memory."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterator
from typing import BinaryIO

from lxml import etree

from ingest.errors import FeedError
from ingest.records import (
    FUELS_BY_TEXT,
    FUTURE_TOLERANCE,
    MAX_ADDRESS_CHARS,
    MAX_TOWN_CHARS,
    MIN_PRICE_MILLI,
    ROAD_TYPES,
    RUPTURE_KINDS,
    STATION_ID_TEXT,
    OpeningHours,
    ParseReport,
    StationEntry,
    UnfitText,
    feed_text,
    parse_coordinates,
    parse_horaires,
    parse_ouverture,
    parse_paris_time,
    parse_price_milli,
    parse_services,
    service_texts,
    unit_from_context,
)
from utils import utcnow

_UNSEEN = object()
# About 150 bytes a time and 500 a block: a few megabytes at most, whatever the document's size.
# The real instant feed has ~13,500 distinct times for 33,500 prices; a daily archive has at most
# 86,400 (one a second), which a backfill keeps all of (ARCHIVE_CACHED_TIMES, about 15 MB).
MAX_CACHED_TIMES = 20_000
ARCHIVE_CACHED_TIMES = 100_000
MAX_CACHED_BLOCKS = 5_000  # of each kind: distinct service lists never evict the few opening-hour blocks


class _PdvParser:
    """Turns <pdv> elements into entries, remembering values that repeat across stations.

    A feed holds a few hundred distinct prices and a couple of thousand distinct
    opening-hour blocks for 10,000 stations, so each distinct one is decoded only once.
    """

    def __init__(self, report: ParseReport, now: dt.datetime, max_cached_times: int):
        self.report = report
        self.max_cached_times = max_cached_times
        self.latest = now + FUTURE_TOLERANCE
        self.times: dict[str, dt.datetime | None] = {}
        self.prices: dict[str, int | None] = {}
        # Small integers read once in the context of the document so far, then kept: "2" stays 2.000 EUR.
        self.contextual_prices: dict[str, int | None] = {}
        self.blocks: dict[Callable, dict[Hashable, OpeningHours | tuple[str, ...]]] = defaultdict(dict)  # by parser

    def bound_caches(self) -> None:
        """Forget the values decoded so far when they are too many: a yearly archive has millions of distinct
        times, and a large feed (or a generated one) tens of thousands of distinct opening-hour blocks."""
        if len(self.times) > self.max_cached_times:
            self.times.clear()
        for blocks in self.blocks.values():
            if len(blocks) > MAX_CACHED_BLOCKS:
                blocks.clear()

    def price(self, raw: str | None) -> int | None:
        if raw in self.prices:
            return self.prices[raw]
        contextual = unit_from_context(raw)
        if contextual:
            self.report.contextual += 1
            if raw in self.contextual_prices:
                return self.contextual_prices[raw]
        milli = parse_price_milli(raw, self.report.price_units)
        if raw and ("." in raw or (milli or 0) >= MIN_PRICE_MILLI):  # the unit is settled for this document
            # Context-free values go to the cache the station loop reads directly; the others come back
            # here each time, so that every price read in context is counted.
            (self.contextual_prices if contextual else self.prices)[raw] = milli
        return milli

    def block(self, element, parse):
        blocks, key = self.blocks[parse], etree.tostring(element, encoding="unicode")  # a fifth cheaper than bytes
        value = blocks.get(key)
        if value is None:
            value = blocks[key] = parse(element)
        return value

    def services(self, element) -> tuple[str, ...]:
        """A <services> list, read once for each distinct list of texts (the real feed: 5,553 for 9,191 stations)."""
        lists, texts = self.blocks[parse_services], service_texts(element)
        labels = lists.get(texts)
        if labels is None:
            labels = lists[texts] = parse_services(texts)
        return labels

    def entry(self, pdv) -> StationEntry | None:
        """The station of `pdv`, or None when it is rejected (counted in the report with its reason)."""
        report = self.report
        rejected, contextual = report.rejected, report.contextual
        try:
            entry = self._entry(pdv)
        except UnfitText as exc:
            report.reject(str(exc))
            return None
        if entry is not None and (report.rejected != rejected or report.contextual != contextual):
            report.unclean.add(entry.station["id"])
        return entry

    def _entry(self, pdv) -> StationEntry | None:
        report, times, prices_seen, latest = self.report, self.times, self.prices, self.latest
        attrib = pdv.attrib
        raw_id = attrib.get("id", "")
        if not STATION_ID_TEXT.fullmatch(raw_id):
            report.reject("station without a valid id")
            return None
        station_id = int(raw_id)
        zip_code = (attrib.get("cp") or "").strip()[:5]
        latitude, longitude = parse_coordinates(attrib.get("latitude"), attrib.get("longitude"), zip_code)
        pop = attrib.get("pop")
        address = town = ""
        automate = False
        opening_hours = None
        services: tuple[str, ...] = ()
        prices: list[tuple] = []
        ruptures: list[tuple] = []
        for child in pdv:
            tag = child.tag
            if tag == "prix":
                raw_fuel = child.get("id")
                if raw_fuel is None and not len(child.attrib):
                    continue  # <prix/>: a station without any price
                fuel = FUELS_BY_TEXT.get(raw_fuel)
                raw_price = child.get("valeur")
                milli = prices_seen.get(raw_price, _UNSEEN)
                if milli is _UNSEEN:
                    milli = self.price(raw_price)
                raw_time = child.get("maj")
                maj = times.get(raw_time, _UNSEEN)
                if maj is _UNSEEN:
                    maj = parse_paris_time(raw_time, times)
                if fuel is None:
                    report.reject("unknown fuel")
                elif milli is None:
                    report.reject("implausible price")
                elif maj is None:
                    report.reject("missing or implausible price time")
                elif maj > latest:
                    report.reject("price time in the future")
                else:
                    prices.append((station_id, fuel, milli, maj))
            elif tag == "rupture":
                raw_fuel = child.get("id")
                if raw_fuel is None and not len(child.attrib):
                    continue
                fuel = FUELS_BY_TEXT.get(raw_fuel)
                if fuel is None:
                    report.reject("unknown fuel")
                    continue
                started = parse_paris_time(child.get("debut"), times)
                ended = parse_paris_time(child.get("fin"), times)
                if (started is not None and started > latest) or (ended is not None and ended > latest):
                    report.reject("out-of-stock time in the future")
                    continue
                kind = child.get("type")
                ruptures.append((station_id, fuel, started, ended, kind if kind in RUPTURE_KINDS else None))
            elif tag == "adresse":
                address = feed_text(child.text, MAX_ADDRESS_CHARS)
            elif tag == "ville":
                town = feed_text(child.text, MAX_TOWN_CHARS)
            elif tag == "horaires":
                automate = child.get("automate-24-24") == "1"
                opening_hours = self.block(child, parse_horaires)
            elif tag == "ouverture":
                if child.attrib:
                    opening_hours = self.block(child, parse_ouverture)
            elif tag == "services":
                services = self.services(child)
        station = {
            "id": station_id,
            "latitude": latitude,
            "longitude": longitude,
            "zip_code": zip_code,
            "town": town,
            "address": address,
            "road_type": pop if pop in ROAD_TYPES else "R",
            "automate_24_24": automate,
            "opening_hours": opening_hours,
            "services": services,
        }
        return StationEntry(station, prices, ruptures)


# Entities are never resolved, nothing is fetched, no DTD is read and libxml2's size limits stay on.
PARSER_OPTIONS = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
}


def parse_feed(
    stream: BinaryIO, report: ParseReport, now: dt.datetime | None = None, max_cached_times: int = MAX_CACHED_TIMES
) -> Iterator[StationEntry]:
    """Stream the <pdv> elements of a feed document, one entry each, in constant memory.

    Entities are never resolved, nothing is fetched from the network, and a
    document that carries a DOCTYPE is refused outright. A record that cannot
    be right (bad id, time more than a day after `now`, unfit text...) is
    rejected and counted in `report`, never raised.
    """
    etree.clear_error_log()  # libxml2's log is per thread: its first fatal entry is then this document's
    context = etree.iterparse(stream, events=("end",), tag="pdv", **PARSER_OPTIONS)
    parser = _PdvParser(report, now or utcnow(), max_cached_times)
    try:
        for _, pdv in context:
            if report.root is None:
                _check_document(pdv.getroottree(), report)
            entry = parser.entry(pdv)
            pdv.clear(keep_tail=False)
            parent = pdv.getparent()
            while parent is not None and pdv.getprevious() is not None:
                del parent[0]
            if entry is None:
                continue
            report.stations += 1
            report.prices += len(entry.prices)
            yield entry
            parser.bound_caches()
    except etree.XMLSyntaxError as exc:
        first = next(iter(exc.error_log.filter_from_fatals()), None)
        detail = f"{first.message}, line {first.line}, column {first.column}" if first else str(exc)
        raise FeedError(f"the feed's XML is malformed or truncated: {detail}") from exc
    if report.root is None:
        if context.root is None:
            raise FeedError("the feed holds no XML document")
        _check_document(context.root.getroottree(), report)


def _check_document(tree, report: ParseReport) -> None:
    if tree.docinfo.doctype:
        raise FeedError("the feed declares a DOCTYPE, which a genuine feed never does; refused")
    root = tree.getroot().tag
    if root != "pdv_liste":
        raise FeedError(f"the feed's root element is <{root}>, expected <pdv_liste>")
    report.root = root
