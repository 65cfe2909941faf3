"""Page benchmark: how long a person waits for each page to redraw, on a realistic database.

    python bench/pages_bench.py [--stations 10000] [--runs 20]

Loads a generated feed of N stations into a fresh SQLite database, creates a
user following 20 stations and 3 fuels, then reports the median of --runs:
- script reruns (Streamlit's AppTest) of the dashboard with the whole frame
  (sign-in check, navigation, sidebar), and of the dashboard, "My stations"
  (the 20 followed stations, Gazole) and demo page scripts;
- the price-board and stations-around (25 km around central Paris, as the
  finder reads them) queries on their own.
Targets: every page rerun <= 250 ms, each query <= 20 ms.
The finder page (pages/find.py) has its own benchmark: bench/finder_bench.py.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from common import bench_arguments, load_generated_feed, median_ms, quiet_app_environment, signed_in_app  # noqa: E402

PAGE_TARGET_MS, QUERY_TARGET_MS = 250, 20
PASSWORD = "bench password 1"
AROUND_KM = 25
PARIS_CENTRE = (48.8566, 2.3522)


def prepare(work: Path, stations: int) -> int:
    """Load the feed, create the user with 20 favourites and 3 fuels; return the user's id."""
    from sqlalchemy import select

    from accounts.service import Accounts
    from accounts.store import credential_store
    from models import Station
    from prices import preferences
    from session import session_factory, writer

    engine, settings, _ = load_generated_feed(work, stations)
    account = Accounts(settings, credential_store(settings), engine).register(
        "bench", "bench@example.org", "Bench", "User", PASSWORD, PASSWORD
    )
    with session_factory(engine)() as session:
        near = session.scalars(
            select(Station.id).where(Station.latitude.is_not(None)).order_by(Station.id).limit(20)
        ).all()
    with session_factory(writer(engine)).begin() as session:
        for station_id in near:
            preferences.follow_station(session, account.user_id, station_id, f"Station {station_id}")
        preferences.set_fuels(session, account.user_id, [1, 2, 5])
    engine.dispose()
    return account.user_id


def main() -> int:
    args = bench_arguments(__doc__)
    if args is None:
        return 2

    with tempfile.TemporaryDirectory(prefix="carburoam-pages-") as tmp:
        quiet_app_environment(tmp)
        user_id = prepare(Path(tmp), args.stations)

        from prices import finder, queries
        from session import make_engine, session_factory
        from settings import load_settings

        at, whole_app = signed_in_app("bench", PASSWORD)
        results = {"dashboard, whole app (frame + page)": median_ms(whole_app, args.runs)}
        at.switch_page("pages/dashboard.py").run()
        results["dashboard page"] = median_ms(at.run, args.runs)

        at.switch_page("pages/stations.py").run()
        assert at.title[0].value == "My stations", [t.value for t in at.title]
        listed = len(at.dataframe[0].value) if at.dataframe else 0
        results[f"My stations page ({listed} followed stations)"] = median_ms(at.run, args.runs)

        at.switch_page("pages/demo.py").run()
        results["demo page"] = median_ms(at.run, args.runs)

        engine = make_engine(load_settings().database_url)
        Session = session_factory(engine)
        with Session() as session:
            board = median_ms(lambda: queries.favourites_board(session, user_id), args.runs)
            around = median_ms(lambda: finder.stations_around(session, *PARIS_CENTRE, AROUND_KM, 1), args.runs)
            shown = len(finder.stations_around(session, *PARIS_CENTRE, AROUND_KM, 1))
        engine.dispose()

    print(f"{args.stations:,} stations, a user with 20 stations and 3 fuels; SQLite; median of {args.runs}")
    for label, ms in results.items():
        verdict = "ok" if ms <= PAGE_TARGET_MS else "OVER"
        print(f"rerun {label:<55} {ms:7.1f} ms  (target <= {PAGE_TARGET_MS} ms: {verdict})")
    for label, ms in (
        ("price board (60 rows)", board),
        (f"stations around, {AROUND_KM} km ({shown} stations)", around),
    ):
        verdict = "ok" if ms <= QUERY_TARGET_MS else "OVER"
        print(f"query {label:<55} {ms:7.1f} ms  (target <= {QUERY_TARGET_MS} ms: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
