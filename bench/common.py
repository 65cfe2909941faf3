"""What the benchmarks share: where the feed generator is, a database loaded with a generated feed, and (from the
tests' app_server) how the app is served and Chromium launched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT / "tests"))
from app_server import CHROMIUM, CHROMIUM_ARGS, app_environ, serve  # noqa: E402,F401  (shared with the browser tests)

GEN_FEED = SHARED / "tools" / "gen_feed.py"


def load_generated_feed(work: Path, stations: int):
    """Generate a feed of `stations` stations (seed 3) in `work` and load it into the configured database.

    Returns (engine, settings, the run's summary); the settings are read from the environment.
    """
    from ingest import passes
    from session import init_db, make_engine
    from settings import load_settings

    feed = work / "feed.zip"
    command = [sys.executable, str(GEN_FEED), "--stations", str(stations), "--seed", "3", "--out", str(feed)]
    subprocess.run(command, check=True, capture_output=True)
    settings = load_settings()
    engine = make_engine(settings.database_url)
    init_db(engine)
    return engine, settings, passes.run_pass(engine, settings, str(feed))
