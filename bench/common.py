"""What the benchmarks share: where the feed generator and Chromium are, and a database loaded with a generated feed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
GEN_FEED = SHARED / "tools" / "gen_feed.py"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def load_generated_feed(work: Path, stations: int, *options: str):
    """Generate a feed of `stations` stations (seed 3, and gen_feed's `options`) in `work` and load it into the
    configured database.

    Returns (engine, settings, the run's summary); the settings are read from the environment.
    """
    from ingest import passes
    from session import init_db, make_engine
    from settings import load_settings

    feed = work / "feed.zip"
    command = [sys.executable, str(GEN_FEED), "--stations", str(stations), "--seed", "3", "--out", str(feed), *options]
    subprocess.run(command, check=True, capture_output=True)
    settings = load_settings()
    engine = make_engine(settings.database_url)
    init_db(engine)
    return engine, settings, passes.run_pass(engine, settings, str(feed))
