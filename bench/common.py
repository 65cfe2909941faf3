"""What the benchmarks share: where the feed generator is, a database loaded with a generated feed, and (from the
tests' app_server) how the app is served and Chromium launched."""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT / "tests"))
from app_server import CHROMIUM, CHROMIUM_ARGS, app_environ, serve  # noqa: E402,F401  (shared with the browser tests)

GEN_FEED = SHARED / "tools" / "gen_feed.py"


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


def median_ms(action: Callable[[], object], runs: int) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def signed_in_app(username: str, password: str):
    """An AppTest of the whole app, signed in through the sidebar's form, on the dashboard; and a rerun of the
    whole frame (AppTest otherwise reruns only the page script it finished on)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "home.py"), default_timeout=120)

    def whole_app() -> None:
        at._finished_page_script_hash = at._page_hash = ""
        at.run()

    at.run()
    whole_app()  # the sign-in form as the entry script draws it, so that what is typed reaches it
    inputs = {field.label: field for field in at.sidebar.text_input}
    inputs["Username"].input(username)
    inputs["Password"].input(password)
    next(button for button in at.sidebar.button if button.label == "Sign in").click()
    whole_app()
    assert at.title[0].value == "My prices today", [t.value for t in at.title]
    return at, whole_app


def bench_arguments(doc: str, **extra: int) -> argparse.Namespace | None:
    """The options --stations (10,000), --runs (20) and `extra` (integers and their defaults); None, with the reason
    on stderr, when the feed generator is absent. Logging below warnings is silenced for the measures."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in {"stations": 10_000, **extra, "runs": 20}.items():
        parser.add_argument(f"--{name}", type=int, default=default)
    args = parser.parse_args()
    if not GEN_FEED.exists():
        print(f"needs {GEN_FEED} (the shared feed generator)", file=sys.stderr)
        return None
    logging.disable(logging.WARNING)
    return args


def quiet_app_environment(data_dir: str) -> None:
    """The app's settings for a benchmark: its own data dir, no scheduler, no captcha, no map tiles."""
    os.environ.update(CARBUROAM_DATA_DIR=data_dir, ETL_AUTOSTART="off", REGISTRATION_CAPTCHA="off", MAP_PROVIDER="none")
