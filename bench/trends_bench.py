"""Price-history benchmark: charts and daily aggregates over a year of history.

    python bench/trends_bench.py [--stations 10000] [--rows 15000000] [--runs 20]

Loads a generated feed of N stations (dated today) into a fresh SQLite database, then writes about
--rows observations into price_history directly (executemany in key order, not through the feed):
each (station, fuel) pair's price changes at random moments over the 365 days before its current
price. Then reports the median of --runs:
- a station's 365-day chart query (prices.trends.daily_prices for one pair) - target <= 20 ms;
- the dashboard page rerun (Streamlit's AppTest) for a user with 20 stations x 3 fuels, whose
  7-day changes and 30-day sparklines read the history - target <= 300 ms;
- the Trends page rerun for the same user, 30-day period (no target in the issue);
- updating the daily aggregates after a pass that brought 2,000 new prices - target <= 1 s;
and, once, how long the aggregates of one day take (what a backfill pays per day of its file).
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from common import bench_arguments, load_generated_feed, median_ms, quiet_app_environment, signed_in_app  # noqa: E402

CHART_TARGET_MS, DASHBOARD_TARGET_MS, AGGREGATES_TARGET_MS = 20, 300, 1000
PASSWORD = "bench password 1"
FUELS = [1, 2, 5]
PASS_CHANGES = 2_000  # new prices in one pass: a busy 10 minutes


def write_history(database: Path, rows: int, seed: int = 5) -> int:
    """About `rows` past observations, spread over the pairs of the prices table; returns how many were written."""
    rng = random.Random(seed)
    db = sqlite3.connect(database)
    pairs = db.execute("SELECT station_id, gastype_id, price, updated_at FROM prices ORDER BY 1, 2").fetchall()
    per_pair = max(1, rows // len(pairs))
    written = 0
    db.execute("BEGIN")
    for station_id, fuel_id, price, updated_at in pairs:
        newest = dt.datetime.fromisoformat(updated_at)
        seconds = sorted(rng.sample(range(60, 365 * 86_400), per_pair))
        batch = []
        for back in reversed(seconds):  # oldest first: rows arrive in key order
            moment = (newest - dt.timedelta(seconds=back)).isoformat(" ")
            batch.append((station_id, fuel_id, moment, max(500, price + rng.randint(-120, 120))))
        db.executemany(
            "INSERT OR IGNORE INTO price_history (station_id, gastype_id, updated_at, price) VALUES (?, ?, ?, ?)", batch
        )
        written += len(batch)
    db.execute("COMMIT")
    db.close()
    return written


def a_pass(engine, now: dt.datetime, rng: random.Random) -> None:
    """What a pass writes: PASS_CHANGES new prices, observed now."""
    from sqlalchemy import select, update

    from models import Price, PriceHistory
    from session import writer

    with writer(engine).begin() as conn:
        pairs = conn.execute(select(Price.station_id, Price.gastype_id, Price.price)).all()
        for station_id, fuel_id, price in rng.sample(pairs, min(PASS_CHANGES, len(pairs))):
            conn.execute(
                PriceHistory.__table__.insert(),
                [{"station_id": station_id, "gastype_id": fuel_id, "updated_at": now, "price": price}],
            )
            conn.execute(
                update(Price).where(Price.station_id == station_id, Price.gastype_id == fuel_id).values(updated_at=now)
            )


def main() -> int:
    args = bench_arguments(__doc__, rows=15_000_000)
    if args is None:
        return 2

    with tempfile.TemporaryDirectory(prefix="carburoam-trends-") as tmp:
        quiet_app_environment(tmp)
        from sqlalchemy import func, select

        from accounts.service import Accounts
        from accounts.store import credential_store
        from ingest import aggregates
        from models import Price, PriceHistory, Station
        from prices import preferences
        from prices.trends import daily_prices
        from session import session_factory, writer
        from utils import utcnow

        today = utcnow() - dt.timedelta(hours=1)
        engine, settings, _ = load_generated_feed(Path(tmp), args.stations, "--day", today.strftime("%Y-%m-%dT%H:%M"))
        clock = time.perf_counter()
        written = write_history(Path(engine.url.database), args.rows)
        history_seconds = time.perf_counter() - clock
        with engine.connect() as conn:
            stored = conn.scalar(select(func.count()).select_from(PriceHistory))
        account = Accounts(settings, credential_store(settings), engine).register(
            "bench", "bench@example.org", "Bench", "User", PASSWORD, PASSWORD
        )
        Session = session_factory(engine)
        with Session() as session:
            near = session.scalars(
                select(Station.id).where(Station.latitude.is_not(None)).order_by(Station.id).limit(20)
            ).all()
            pairs = session.execute(select(Price.station_id, Price.gastype_id)).all()
        with session_factory(writer(engine)).begin() as session:
            for station_id in near:
                preferences.follow_station(session, account.user_id, station_id, f"Station {station_id}")
            preferences.set_fuels(session, account.user_id, FUELS)

        rng = random.Random(7)
        now = utcnow()
        with Session() as session:
            chart = median_ms(lambda: daily_prices(session, [tuple(rng.choice(pairs))], 365, now), args.runs)

        # The aggregates as the passes before this one left them: yesterday's and today's.
        with writer(engine).begin() as conn:
            aggregates.refresh_days(
                conn,
                aggregates.day_range(aggregates.paris_day(now) - dt.timedelta(days=1), aggregates.paris_day(now)),
                now,
            )
        clock = time.perf_counter()
        with writer(engine).begin() as conn:
            aggregates.refresh_days(conn, [aggregates.paris_day(now) - dt.timedelta(days=100)], now)
        one_day_ms = (time.perf_counter() - clock) * 1000
        refreshes, touched = [], []
        for _ in range(max(3, args.runs // 4)):
            moment = utcnow()
            a_pass(engine, moment, rng)
            clock = time.perf_counter()
            with writer(engine).begin() as conn:
                touched.append(len(aggregates.refresh_after_run(conn, moment)))
            refreshes.append((time.perf_counter() - clock) * 1000)
        engine.dispose()

        at, _ = signed_in_app("bench", PASSWORD)
        at.switch_page("pages/dashboard.py").run()
        dashboard = median_ms(at.run, args.runs)
        at.switch_page("pages/trends.py").run()
        assert at.title[0].value == "Price trends", [t.value for t in at.title]
        trends_page = median_ms(at.run, args.runs)

    print(
        f"{args.stations:,} stations, {stored:,} history rows ({written:,} generated in {history_seconds:.0f} s), "
        f"{len(pairs):,} station-fuel pairs; SQLite; median of {args.runs}"
    )
    rows = [
        ("a station's 365-day chart query", chart, CHART_TARGET_MS),
        ("dashboard rerun, 20 stations x 3 fuels with sparklines", dashboard, DASHBOARD_TARGET_MS),
        ("Trends page rerun, 20 stations x 3 fuels, 30 days", trends_page, None),
        (
            f"aggregates after a pass of {PASS_CHANGES:,} new prices ({statistics.median(touched):.0f} day)",
            statistics.median(refreshes),
            AGGREGATES_TARGET_MS,
        ),
        ("aggregates of one past day (a backfill's cost per day)", one_day_ms, None),
    ]
    for label, ms, target in rows:
        verdict = "" if target is None else f"  (target <= {target} ms: {'ok' if ms <= target else 'OVER'})"
        print(f"{label:<70} {ms:8.1f} ms{verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
