"""Read-side benchmark: the page queries on a full-size database, against the 20 ms target.

    python bench/queries_bench.py [--stations 10000] [--repeat 20]

Generates a feed of N stations (../shared/tools/gen_feed.py) in a temporary
directory, loads it with the ETL into a fresh SQLite database there, creates a
user following the 20 stations nearest central Paris and 3 fuels, then prints
the median of --repeat timings of each query (price boards, the finder's
stations around a point, a place typed resolved and its stations, the demo's
stations, freshness), each in its own session as a page runs it, and its ratio
to the target. The finder page as a whole has its own benchmark,
bench/finder_bench.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest import passes  # noqa: E402
from models import Station, User  # noqa: E402
from prices import finder, place_search, preferences, queries  # noqa: E402
from session import init_db, make_engine, session_factory, writer  # noqa: E402
from settings import load_settings  # noqa: E402
from utils import utcnow  # noqa: E402

GEN_FEED = ROOT.parent / "shared" / "tools" / "gen_feed.py"
TARGET_MS = 20.0
PARIS_CENTRE = (48.8566, 2.3522)
WIDE_RADIUS_KM = 25.0  # the circle in a 50 x 50 km view
NEAR_RADIUS_KM = 10.0
FAVOURITES = 20
FUELS = (1, 2, 5)


def seed_user(Session) -> int:
    """A user following the 20 stations nearest central Paris, and Gazole, SP95 and E10."""
    with Session() as session, session.begin():
        user = User(username="bench", email="bench@example.org", name="Bench", created_at=utcnow())
        session.add(user)
        session.flush()
        nearest = finder.stations_around(session, *PARIS_CENTRE, finder.MAX_RADIUS_KM, FUELS[0])[:FAVOURITES]
        for number, station in enumerate(nearest, start=1):
            preferences.follow_station(session, user.id, station.id, f"Favourite {number}")
        preferences.set_fuels(session, user.id, FUELS)
        return user.id


def most_common_town(Session) -> str:
    with Session() as session:
        statement = select(Station.town).group_by(Station.town).order_by(func.count().desc(), Station.town).limit(1)
        return session.scalar(statement)


def resolve(session, text: str) -> place_search.PlaceMatch:
    match = place_search.resolve_place(session, text)
    if match is None:
        sys.exit(f"no place found for {text!r}")
    return match


def median_ms(Session, query: Callable, repeat: int) -> tuple[float, int]:
    """Median wall time in ms of `query(session)` in a fresh session each time, and its row count."""
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        with Session() as session, session.begin():
            rows = query(session)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings), len(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    if not GEN_FEED.is_file():
        sys.exit(f"{GEN_FEED} is missing: this benchmark needs ../shared/tools/gen_feed.py")

    with tempfile.TemporaryDirectory(prefix="queries-bench-") as work_dir:
        work = Path(work_dir)
        feed = work / "feed.zip"
        subprocess.run(
            [sys.executable, str(GEN_FEED), "--stations", str(args.stations), "--out", str(feed)], check=True
        )
        os.environ["CARBUROAM_DATA_DIR"] = str(work)
        os.environ["CARBUROAM_DATABASE_URL"] = f"sqlite:///{work / 'bench.sqlite3'}"
        settings = load_settings()
        engine = make_engine(settings.database_url)
        init_db(engine)
        print(passes.run_pass(engine, settings, str(feed)))

        Session = session_factory(engine)
        user_id = seed_user(session_factory(writer(engine)))
        town = most_common_town(Session)
        with Session() as session:
            demo = dict(queries.demo_stations(session, (1, 2)))
        cases = [
            (
                f"favourites_board ({FAVOURITES} stations x {len(FUELS)} fuels)",
                lambda s: queries.favourites_board(s, user_id),
            ),
            (
                f"finder.stations_around ({WIDE_RADIUS_KM:.0f} km, Gazole)",
                lambda s: finder.stations_around(s, *PARIS_CENTRE, WIDE_RADIUS_KM, 1),
            ),
            (
                f"finder.stations_around ({NEAR_RADIUS_KM:.0f} km, Gazole)",
                lambda s: finder.stations_around(s, *PARIS_CENTRE, NEAR_RADIUS_KM, 1),
            ),
            (f"resolve_place ({town!r}): its stations", lambda s: resolve(s, town).station_ids),
            (
                f"resolve_place + stations_for ({town!r}, 10 km, Gazole)",
                lambda s: finder.stations_for(s, resolve(s, town), NEAR_RADIUS_KM, 1),
            ),
            ("demo_stations (Gazole + SP95)", lambda s: queries.demo_stations(s, (1, 2))),
            ("board_for (demo: 3 stations x 2 fuels)", lambda s: queries.board_for(s, demo, (1, 2))),
            ("freshness", lambda s: [queries.freshness(s)]),
        ]

        print(f"\nmedian of {args.repeat} runs, each in its own session; target {TARGET_MS:.0f} ms per query")
        print(f"{'query':<62} {'rows':>6} {'median':>10} {'/ target':>9}")
        for label, query in cases:
            median, rows = median_ms(Session, query, args.repeat)
            print(f"{label:<62} {rows:>6} {median:>7.2f} ms {median / TARGET_MS:>9.2f}")
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
