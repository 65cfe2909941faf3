"""Finder benchmark: the public station finder (/find) on a 10,000-station database, against the issue's targets.

    python bench/finder_bench.py [--stations 10000] [--runs 20] [--loads 3] [--no-browser]

Generates a feed of N stations (../shared/tools/gen_feed.py --seed 3) and loads it with the ETL into a
fresh SQLite database in a temporary data dir. Brands: the real OpenStreetMap CSV
(../shared/feeds/real/brands-osm_*.csv) is imported with ingest.imports when present; its ids match
only some generated stations (the generator reuses the feed's id scheme, not its stations), so every
generated station left without a brand gets one drawn (seeded) from the ten commonest brands of that
file, in about their real shares, or none for one in ten, as in the real file.

Then, in this one run, it reports the median of --runs (every figure with its ratio to its target):
- the finder query: 20 km around the centre of Paris, Gazole, sorted by price (finder.stations_around
  then finder.results, in a fresh session as the page does) <= 30 ms;
- place_search.resolve_place of a town, its first letters, a postcode, a street and its town, and a text
  nothing matches, each <= 20 ms; with La Poste's real postcode base
  (../shared/feeds/real/places_laposte-*.csv, 39,204 places) imported when present, place_search.suggest
  of first letters and postcode digits, resolve_place of villages without a station and a postcode
  shared by communes, and spelt_like of misspelt names (what a search that found nothing offers), each
  <= 20 ms;
- reruns of the finder page (Streamlit's AppTest; home.py, then switch_page to pages/find.py): with
  ?q=<the town with most stations>&radius=20 <= 300 ms; with no search (the France map, cached 60 s by
  st.cache_resource) both cached and uncached (its cache cleared before each run) <= 300 ms;
- the France map's payload: the bytes of the pydeck JSON the page sends <= 1,000,000;
- the France map in Chromium: `streamlit run home.py` on a free port, /find opened by Playwright in
  /usr/bin/chromium (new profile each time, anything but the app refused), timed from navigation start
  to the deck.gl canvas showing its points (a 2D copy of the WebGL canvas has painted pixels) <= 2 s:
  the fresh server is first opened at /find?q=<town>&radius=20 (a shared link: imports, place
  suggestions; it checks the page ran inside home.py's frame), then the France map's first load (server
  cache cold), then --loads more loads within the map's 60 s cache (warm), one by one and as a median;
  for each, when the page's title showed, when the map's data arrived (the biggest websocket message)
  and when its canvas appeared; then --loads loads by a returning visitor (one profile, whose browser
  cache holds Streamlit's and deck.gl's scripts from a first load).
Chromium draws WebGL in software here (--disable-gpu: SwiftShader), slower than a person's GPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from common import CHROMIUM, CHROMIUM_ARGS, GEN_FEED, SHARED, app_environ, load_generated_feed, serve  # noqa: E402

REAL_BRANDS = SHARED / "feeds" / "real"
# What a person types in the place box, read against the 39,204 places: first letters, digits, villages.
SUGGESTED = ("sai", "saint den", "ch", "693", "belle p", "sables")  # 'sables': Les Sables-d'Olonne, after its article
VILLAGES = ("Chazay-d'Azergues", "saint denis (30)", "69380")
MISSPELT = ("Marseile", "St Etiene")  # spelt_like compares the second with the 4,000 names starting with 's'
VIEWPORT = {"width": 1400, "height": 1000}

PARIS_CENTRE = (48.8566, 2.3522)
RADIUS_KM = 20
GAZOLE = 1
QUERY_TARGET_MS = 30
PLACE_TARGET_MS = 20
PAGE_TARGET_MS = 300
PAYLOAD_TARGET_BYTES = 1_000_000
DRAWN_TARGET_MS = 2_000
DRAWN_TIMEOUT_MS = 60_000
PAINTED_PIXELS = 1_000  # a canvas with this many painted pixels has drawn its points (10,000 points: ~70,000)
# The ten commonest brands of the 2026-06-01 OpenStreetMap file, with their approximate number of stations;
# `None` stands for the stations the file gives no brand.
BRAND_SHARES = {
    "TotalEnergies": 1870,
    "Intermarché": 1600,
    "Carrefour": 1370,
    "Système U": 880,
    None: 820,
    "E.Leclerc": 730,
    "Esso": 580,
    "Avia": 560,
    "TotalEnergies Access": 430,
    "Auchan": 290,
    "BP": 150,
}

# Polls every animation frame until the deck.gl canvas has drawn; times are from navigation start.
DRAWN_JS = """async ([minimum, timeout]) => {
  const copy = document.createElement('canvas');
  const context = copy.getContext('2d', {willReadFrequently: true});
  const times = {titled: null, canvas: null, drawn: null, pixels: 0};
  while (performance.now() < timeout) {
    await new Promise(resolve => requestAnimationFrame(resolve));
    if (times.titled === null && document.querySelector('[data-testid="stMain"] h1')) times.titled = performance.now();
    const gl = document.querySelector('[data-testid="stDeckGlJsonChart"] canvas');
    if (!gl || !gl.width || !gl.height) continue;
    if (times.canvas === null) times.canvas = performance.now();
    copy.width = gl.width;
    copy.height = gl.height;
    context.clearRect(0, 0, copy.width, copy.height);
    context.drawImage(gl, 0, 0);
    const pixels = context.getImageData(0, 0, copy.width, copy.height).data;
    let painted = 0;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
    if (painted >= minimum) {
      times.drawn = performance.now();
      times.pixels = painted;
      return times;
    }
  }
  return times;
}"""


def median_ms(action: Callable[[], object], runs: int, before: Callable[[], object] | None = None) -> float:
    """Median wall time of `action()` in ms; `before()` runs untimed before each run."""
    timings = []
    for _ in range(runs):
        if before is not None:
            before()
        started = time.perf_counter()
        action()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def report(label: str, value: float, target: float, unit: str = "ms") -> None:
    verdict = "ok" if value <= target else "OVER"
    shown = f"{value:,.0f}" if unit == "bytes" else f"{value:,.1f}"
    print(f"  {label:<62} {shown:>10} {unit:<5} target <= {target:,} {unit}: ratio {value / target:5.2f}  {verdict}")


def info(label: str, text: str) -> None:
    print(f"  {label:<62} {text}")


# --------------------------------------------------------------------------- the database


def prepare(work: Path, stations: int) -> tuple[str, int]:
    """Generate and load the feed, import and synthesise brands; return a line saying what was loaded."""
    from sqlalchemy import func, insert, select

    from ingest import imports
    from models import Station, StationBrand
    from session import session_factory, writer

    engine, settings, summary = load_generated_feed(work, stations)
    place_files = sorted(REAL_BRANDS.glob("places_laposte-*.csv"))
    places = "places: no La Poste file"
    if place_files:
        clock = time.perf_counter()
        table = imports.import_reference(engine, settings, imports.PLACES, str(place_files[-1]))
        places = f"places: {table.describe(place_files[-1].name)} in {time.perf_counter() - clock:.1f} s"

    brand_files = sorted(REAL_BRANDS.glob("brands-osm_*.csv"))
    imported = 0
    if brand_files:
        imported = len(imports.import_reference(engine, settings, imports.BRANDS, str(brand_files[-1])).stations)
    Session = session_factory(engine)
    with Session() as session:
        ids = session.scalars(select(Station.id).order_by(Station.id)).all()
        branded = set(session.scalars(select(StationBrand.station_id)))
    matched = sum(1 for station_id in ids if station_id in branded)
    draw = random.Random(3)
    names, weights = list(BRAND_SHARES), list(BRAND_SHARES.values())
    rows = [
        {"station_id": station_id, "brand": brand, "name": None}
        for station_id in ids
        if station_id not in branded and (brand := draw.choices(names, weights)[0]) is not None
    ]
    with writer(engine).begin() as conn:
        conn.execute(insert(StationBrand.__table__), rows)
    with Session() as session:
        with_brand = session.scalar(
            select(func.count())
            .select_from(Station)
            .join(StationBrand, StationBrand.station_id == Station.id)
            .where(StationBrand.brand.is_not(None))
        )
    engine.dispose()
    source = brand_files[-1].name if brand_files else "no real brand file"
    line = (
        f"{summary}\nbrands: {imported:,} rows imported from {source} ({matched:,} match a generated station), "
        f"{len(rows):,} synthesised; {with_brand:,} of {len(ids):,} stations have a brand\n{places}"
    )
    return line, len(ids)


# --------------------------------------------------------------------------- the read side


def place_texts(Session) -> dict[str, str]:
    """A town (the one with most stations), its first letters, a postcode, a street and its town, nothing."""
    from sqlalchemy import func, select

    from models import Station
    from prices import place_search, towns

    with Session() as session:
        biggest = towns.group_towns(towns.fetch_rows(session, towns.station_rows()))[0]
        postcode = session.scalar(
            select(Station.zip_code).group_by(Station.zip_code).order_by(func.count().desc(), Station.zip_code)
        )
        town = place_search.resolve_place(session, towns.town_label(biggest))
        addresses = session.scalars(
            select(Station.address).where(Station.id.in_(town.station_ids)).order_by(Station.id)
        )
        street = None
        for address in addresses:
            words = [word for word in address.split() if not word[0].isdigit()]
            text = f"{' '.join(words)} {biggest.name}"
            if len(words) >= 2 and getattr(place_search.resolve_place(session, text), "kind", None) == "street_town":
                street = text
                break
    texts = {"town": biggest.name, "town_prefix": biggest.name[:4], "postcode": postcode}
    if street:
        texts["street_town"] = street
    texts["nothing"] = "Zzyzx Qwerty"
    return texts


def bench_read_side(runs: int) -> str:
    """The finder query, place resolution and suggestions; returns the town to search on the page."""
    from prices import finder, place_search
    from prices.detour import Trip
    from session import make_engine, session_factory
    from settings import load_settings
    from utils import utcnow

    engine = make_engine(load_settings().database_url)
    Session = session_factory(engine)
    now, trip = utcnow(), Trip()

    def around() -> list:
        with Session() as session:
            return finder.stations_around(session, *PARIS_CENTRE, RADIUS_KM, GAZOLE)

    def finder_query() -> list:
        return finder.results(around(), now, trip, sort="price")

    stations = around()
    found = finder_query()
    print(f"\nRead side (median of {runs}, each in a fresh session):")
    label = f"finder: {RADIUS_KM} km around Paris, Gazole, by price ({len(found)} results)"
    report(label, median_ms(finder_query, runs), QUERY_TARGET_MS)
    info("  of which finder.stations_around", f"{median_ms(around, runs):10.1f} ms")
    info("  of which finder.results", f"{median_ms(lambda: finder.results(stations, now, trip), runs):10.1f} ms")

    texts = place_texts(Session)
    for text in texts.values():

        def resolve(text: str = text) -> place_search.PlaceMatch | None:
            with Session() as session:
                return place_search.resolve_place(session, text)

        match = resolve()
        understood = f"{match.kind}, {len(match.station_ids)} stations" if match else "nothing found"
        report(f"resolve_place({text!r}): {understood}", median_ms(resolve, runs), PLACE_TARGET_MS)

    bench_places(Session, runs)
    engine.dispose()
    return texts["town"]


def bench_places(Session, runs: int) -> None:
    """What the place box suggests as a person types, and villages found, over La Poste's places."""
    from sqlalchemy import func, select

    from models import Place
    from prices import place_search

    with Session() as session:
        count = session.scalar(select(func.count()).select_from(Place))
    if not count:
        print("  place_search.suggest: skipped (no La Poste file in ../shared)")
        return
    for text in SUGGESTED:

        def suggest(text: str = text) -> list[str]:
            with Session() as session:
                return place_search.suggest(session, text)

        first = (suggest() or ["nothing"])[0]
        label = f"suggest({text!r}) over {count:,} places: {first}"
        report(label, median_ms(suggest, runs), PLACE_TARGET_MS)
    for text in VILLAGES:

        def resolve(text: str = text) -> place_search.PlaceMatch | None:
            with Session() as session:
                return place_search.resolve_place(session, text)

        match = resolve()
        label = f"resolve_place({text!r}): {match.label if match else 'nothing found'}"
        report(label, median_ms(resolve, runs), PLACE_TARGET_MS)
    for text in MISSPELT:

        def spelt_like(text: str = text) -> list[str]:
            with Session() as session:
                return place_search.spelt_like(session, text)

        label = f"spelt_like({text!r}), a text that names no place: {(spelt_like() or ['nothing'])[0]}"
        report(label, median_ms(spelt_like, runs), PLACE_TARGET_MS)


# --------------------------------------------------------------------------- the page, in AppTest


def understood(at) -> str:
    """The page's sentence saying what it found, as plain text."""
    sentences = [m.value for m in at.markdown if " stations in and around " in m.value]
    return sentences[0].replace("**", "").replace("\\", "") if sentences else "no results sentence"


def bench_page(runs: int, town: str) -> None:
    from streamlit.testing.v1 import AppTest

    def find_page(params: dict[str, str]) -> tuple[AppTest, float]:
        at = AppTest.from_file(str(ROOT / "home.py"), default_timeout=120)
        at.run()
        for name, value in params.items():
            at.query_params[name] = value
        started = time.perf_counter()
        at.switch_page("pages/find.py").run()
        first = (time.perf_counter() - started) * 1000
        if at.exception:
            sys.exit(f"the finder page failed: {[e.value for e in at.exception]}")
        return at, first

    def payload(at: AppTest) -> int:
        (chart,) = at.get("deck_gl_json_chart")
        return len(chart.proto.json.encode())

    def points(at: AppTest) -> int:
        (chart,) = at.get("deck_gl_json_chart")
        return len(next(layer for layer in json.loads(chart.proto.json)["layers"] if layer["id"] == "stations")["data"])

    print(f"\nFinder page reruns (AppTest: home.py, then pages/find.py; median of {runs}):")
    search, first = find_page({"q": town, "radius": str(RADIUS_KM)})
    info(f"?q={town}&radius={RADIUS_KM}", understood(search))
    report(f"rerun, ?q={town}&radius={RADIUS_KM}", median_ms(search.run, runs), PAGE_TARGET_MS)
    if understood(search) == "no results sentence":
        sys.exit("the reruns lost the search")
    info("  first render (imports finder_ui and the place box's component)", f"{first:10.1f} ms")
    info("  its map's pydeck JSON", f"{payload(search):10,} bytes ({points(search):,} points)")

    from ui import map_ui  # the module the page imported: its caches are the page's

    france, first = find_page({})
    report(
        f"rerun, no search: France map ({points(france):,} points), cached", median_ms(france.run, runs), PAGE_TARGET_MS
    )
    uncached = median_ms(france.run, runs, before=lambda: (map_ui._france.clear(), map_ui._france_layout.clear()))
    report("rerun, no search: France map, uncached (cache cleared)", uncached, PAGE_TARGET_MS)
    info("  first render of the France map (uncached)", f"{first:10.1f} ms")
    report("France map payload: the pydeck JSON sent", payload(france), PAYLOAD_TARGET_BYTES, "bytes")


# --------------------------------------------------------------------------- the page, in Chromium


def new_profile(browser, url: str):
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    context.route(lambda address: not address.startswith(url), lambda route: route.abort())
    return context


def load(browser, url: str, path: str, profile=None) -> tuple[dict, str]:
    """Open `path` in a new profile (or in `profile`, whose cache holds what earlier loads fetched); the in-page
    times (ms from navigation start) and the sidebar's text.

    times["data"] is when the biggest websocket message (the map's data) reached the browser, as seen by Playwright.
    """
    context = profile or new_profile(browser, url)
    received: list[tuple[int, float]] = []
    try:
        page = context.new_page()
        page.on(
            "websocket",
            lambda socket: socket.on("framereceived", lambda data: received.append((len(data), time.time() * 1000))),
        )
        page.goto(f"{url}{path}", wait_until="commit")
        times = page.evaluate(DRAWN_JS, [PAINTED_PIXELS, DRAWN_TIMEOUT_MS])
        origin = page.evaluate("performance.timeOrigin")
        sidebar = page.locator('[data-testid="stSidebar"]').inner_text(timeout=10_000)
        size, at = max(received, default=(0, origin))
        times.update(data=at - origin, data_bytes=size)
        page.close()
        return times, sidebar
    finally:
        if profile is None:
            context.close()


def steps(times: dict) -> str:
    return (
        f"title {times['titled'] or 0:.0f} ms, map data ({times['data_bytes']:,} bytes) {times['data']:.0f} ms, "
        f"canvas {times['canvas'] or 0:.0f} ms, drawn {drawn(times)}"
    )


def bench_browser(data_dir: Path, loads: int, town: str) -> None:
    from playwright.sync_api import sync_playwright

    print(f"\nFrance map in Chromium ({CHROMIUM}, software WebGL), from navigation start, new profile each load:")
    with (
        serve(app_environ(data_dir, data_dir / "feed.zip"), data_dir / "streamlit.log") as url,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            search = f"/find?q={town}&radius={RADIUS_KM}"
            times, sidebar = load(browser, url, search)  # the fresh server's first page
            info(f"{search}, fresh server", steps(times))
            info(
                "  check: the page ran inside home.py (sign-in, navigation by role)",
                "yes" if framed(sidebar) else "NO: pages/find.py ran alone (file-named pages, no sign-in)",
            )
            times, sidebar = load(browser, url, "/find")
            first = times["drawn"] or DRAWN_TIMEOUT_MS
            report("France map drawn, first load (server cache cold)", first, DRAWN_TARGET_MS)
            info("", steps(times))
            warm = []
            for number in range(2, loads + 2):
                times, _ = load(browser, url, "/find")
                warm.append(times["drawn"] or DRAWN_TIMEOUT_MS)
                label = "France map drawn, second load (server cache warm)" if number == 2 else f"  load {number}"
                report(label, warm[-1], DRAWN_TARGET_MS)
                info("", steps(times))
            report(f"France map drawn, warm: median of {len(warm)} loads", statistics.median(warm), DRAWN_TARGET_MS)
            info("  painted pixels when drawn", f"{times['pixels']:,}")
            # A person coming back: the browser has the app's scripts (Streamlit's, deck.gl's) in its cache.
            # (Playwright turns the HTTP cache off in a profile that routes requests: this one does not.)
            profile = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
            load(browser, url, "/find", profile)
            again = []
            for number in range(1, loads + 1):
                times, _ = load(browser, url, "/find", profile)
                again.append(times["drawn"] or DRAWN_TIMEOUT_MS)
                info(f"  returning visitor, load {number}", steps(times))
            report(
                f"France map drawn, returning visitor: median of {len(again)}",
                statistics.median(again),
                DRAWN_TARGET_MS,
            )
            profile.close()
        finally:
            browser.close()


def drawn(times: dict) -> str:
    return f"{times['drawn']:.0f} ms" if times["drawn"] else f"not drawn within {DRAWN_TIMEOUT_MS} ms"


def framed(sidebar: str) -> bool:
    """The sidebar home.py draws for a person signed out: the pages' titles and the sign-in form."""
    return "Sign in" in sidebar and "Find a station" in sidebar


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--loads", type=int, default=3, help="warm browser loads after the first")
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium measurement")
    args = parser.parse_args()
    if not GEN_FEED.is_file():
        print(f"needs {GEN_FEED} (the shared feed generator)", file=sys.stderr)
        return 2
    browser = not args.no_browser and CHROMIUM.exists()
    logging.disable(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="carburoam-finder-") as tmp:
        for name in [name for name in os.environ if name.startswith("CARBUROAM_")]:
            del os.environ[name]
        os.environ.update(CARBUROAM_DATA_DIR=tmp, ETL_AUTOSTART="off", REGISTRATION_CAPTCHA="off", MAP_PROVIDER="none")
        os.environ["CARBUROAM_LANGUAGE"] = "en"  # the page's sentences are read in English
        loaded, stations = prepare(Path(tmp), args.stations)
        print(f"{stations:,} generated stations (seed 3), SQLite; load average {os.getloadavg()[0]:.2f}")
        print(loaded)
        town = bench_read_side(args.runs)
        bench_page(args.runs, town)
        if browser:
            bench_browser(Path(tmp), args.loads, town)
        else:
            print(f"\nFrance map in Chromium: skipped ({'--no-browser' if args.no_browser else f'no {CHROMIUM}'})")
        print(f"\nload average at the end: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
