"""Load benchmark: what N people browsing at once cost the server, and how long each step takes them.

    python bench/load_bench.py [--stations 10000] [--sessions 1 5 10]

Loads a generated feed of N stations (../shared/tools/gen_feed.py --seed 3) into a fresh SQLite database,
registers one account per concurrent person (each following 10 stations), starts `streamlit run home.py`
with the project's own settings (.streamlit/config.toml: no file watcher; MAP_PROVIDER=none, no ETL
scheduler), and drives Debian's Chromium with Playwright: one browser, one profile per person, all at
once. Each person's journey, in one browser tab (one Streamlit session), as a person clicks:
  demo -> search a town in the finder -> sign in -> dashboard -> My stations -> search again, signed in.
After one unmeasured journey (the server's imports and caches), for each N it reports:
- the server's CPU seconds per journey (user + system of the server process, over the N journeys);
- the server's resident memory per session (its growth while the N sessions are open, divided by N);
- p50 / p90 of each step's time, over the N people.
Targets (issue 9): <= 0.5 s of server CPU per journey, <= 2 MB per session. A sign-in checks one bcrypt
hash (cost 12): about 0.2 s of CPU of each journey is that.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from common import CHROMIUM, CHROMIUM_ARGS, GEN_FEED, load_generated_feed  # noqa: E402

CPU_TARGET_S, RSS_TARGET_MB = 0.5, 2.0
PASSWORD = "bench password 1"
STEP_TIMEOUT_MS = 60_000
CLICKS = 3
STEPS = ("demo", "search", "sign in", "dashboard", "my stations", "search signed in")


def prepare(data_dir: Path, stations: int, people: int) -> str:
    """Load the feed and register `people` accounts following 10 stations each; return a town to search."""
    from sqlalchemy import func, select

    from accounts.service import Accounts
    from accounts.store import credential_store
    from models import Station
    from prices import preferences
    from session import session_factory, writer

    engine, settings, _ = load_generated_feed(data_dir, stations)
    accounts = Accounts(settings, credential_store(settings), engine)
    with session_factory(engine)() as session:
        town = session.scalar(
            select(Station.town).group_by(Station.town).order_by(func.count().desc(), Station.town).limit(1)
        )
        followed = session.scalars(select(Station.id).where(Station.town == town).limit(10)).all()
    for number in range(people):
        account = accounts.register(
            f"person{number}", f"person{number}@example.org", "Bench", "Person", PASSWORD, PASSWORD
        )
        with session_factory(writer(engine)).begin() as session:
            for station_id in followed:
                preferences.follow_station(session, account.user_id, station_id, f"Station {station_id}")
    engine.dispose()
    return town


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "home.py", "--server.port", str(port)],
        cwd=ROOT,
        env=os.environ,
        stdout=(data_dir / "streamlit.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the app did not start")


async def journey(browser, url: str, person: int, town: str, server=None):
    """One person's clicks through the app: the seconds each step took until what it shows was there, and the
    person's browser profile, left open (its Streamlit session lives as long as the tab). Given the server's
    process (when this journey is the only one), also the server's CPU seconds of each step, as "cpu <step>"."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    context = await browser.new_context(viewport={"width": 1366, "height": 900})
    page = await context.new_page()
    main, sidebar = page.locator('[data-testid="stMain"]'), page.locator('[data-testid="stSidebar"]')
    times: dict[str, float] = {}

    async def step(name: str, action, shown) -> None:
        # A click that lands while the page is still redrawing can be lost, as a person's can: click again.
        started = time.perf_counter()
        cpu = sum(server.cpu_times()[:2]) if server else 0.0
        for attempt in range(CLICKS):
            await action()
            try:
                await shown.first.wait_for(timeout=STEP_TIMEOUT_MS // CLICKS)
                break
            except PlaywrightTimeout:
                if attempt == CLICKS - 1:
                    raise
                times["clicks again"] = times.get("clicks again", 0) + 1
        times[name] = times.get(name, 0.0) + time.perf_counter() - started
        if server:
            times[f"cpu {name}"] = times.get(f"cpu {name}", 0.0) + sum(server.cpu_times()[:2]) - cpu

    async def search() -> None:
        # The place box is a component in its own frame; Enter takes the first place offered: the text typed, once
        # the server has answered the last keystroke.
        frame = main.frame_locator('iframe[title="streamlit_searchbox.searchbox"]')
        box = frame.locator("input")
        await box.click()
        await box.fill(town)
        await frame.get_by_role("option", name=town, exact=True).first.wait_for()
        await box.press("Enter")

    async def open_page(title: str) -> None:
        await sidebar.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title, exact=True).click()

    async def sign_in() -> None:
        await sidebar.locator('input[aria-label="Username"]').fill(f"person{person}")
        await sidebar.locator('input[aria-label="Password"]').fill(PASSWORD)
        await sidebar.get_by_role("button", name="Sign in").click()

    try:
        await step("demo", lambda: page.goto(f"{url}/demo"), main.locator('[data-testid="stDataFrame"]'))
        await step("search", lambda: open_page("Find a station"), main.get_by_role("heading", name="Find a station"))
        await step("search", search, main.get_by_text(" in and around "))
        await step("sign in", sign_in, sidebar.get_by_text(f"Signed in as person{person}"))
        await step("dashboard", lambda: open_page("My prices"), main.get_by_role("heading", name="My prices today"))
        await step("my stations", lambda: open_page("My stations"), main.get_by_role("heading", name="My stations"))
        await step(
            "search signed in", lambda: open_page("Find a station"), main.get_by_role("heading", name="Find a station")
        )
        await step("search signed in", search, main.get_by_text(" in and around "))
        return times, context
    except Exception:
        await context.close()
        raise


async def batch(url: str, people: int, town: str, server) -> tuple[float, float, dict[str, list[float]]]:
    """N journeys at once; (server CPU seconds, server RSS growth in MB while their sessions are open, step times)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            cpu, rss = sum(server.cpu_times()[:2]), server.memory_info().rss
            alone = server if people == 1 else None
            finished = await asyncio.gather(*(journey(browser, url, person, town, alone) for person in range(people)))
            cpu_used = sum(server.cpu_times()[:2]) - cpu
            rss_growth = (server.memory_info().rss - rss) / 2**20
            for _, context in finished:
                await context.close()
        finally:
            await browser.close()
    steps = {name: [times[name] for times, _ in finished] for name in STEPS}
    steps["clicks again"] = [times.get("clicks again", 0) for times, _ in finished]
    if people == 1:
        steps |= {f"cpu {name}": [finished[0][0][f"cpu {name}"]] for name in STEPS}
    return cpu_used, rss_growth, steps


def p(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 5, 10])
    args = parser.parse_args()
    if not GEN_FEED.exists() or not CHROMIUM.exists():
        print(f"needs {GEN_FEED} and {CHROMIUM}", file=sys.stderr)
        return 2
    import psutil

    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="carburoam-load-") as tmp:
        data_dir = Path(tmp)
        os.environ.update(CARBUROAM_DATA_DIR=tmp, ETL_AUTOSTART="off", REGISTRATION_CAPTCHA="off", MAP_PROVIDER="none")
        town = prepare(data_dir, args.stations, max(args.sessions))
        process, url = start_server(data_dir)
        try:
            server = psutil.Process(process.pid)
            asyncio.run(batch(url, 1, town, server))  # the server's imports and caches: not measured
            print(f"{args.stations:,} stations; journeys: {' -> '.join(STEPS)} ('{town}')")
            print(f"load average before: {os.getloadavg()[0]:.2f} (2 CPUs)")
            for people in args.sessions:
                cpu, rss, steps = asyncio.run(batch(url, people, town, server))
                per_journey, per_session = cpu / people, rss / people
                print(f"\n{people} at once:")
                print(
                    f"  server CPU per journey   {per_journey:6.2f} s   (target <= {CPU_TARGET_S} s: "
                    f"{'ok' if per_journey <= CPU_TARGET_S else 'OVER'})"
                )
                print(
                    f"  server memory per session {per_session:5.1f} MB  (target <= {RSS_TARGET_MB} MB: "
                    f"{'ok' if per_session <= RSS_TARGET_MB else 'OVER'})"
                )
                again = steps.pop("clicks again")
                if people == 1:
                    cpu_steps = ", ".join(f"{name} {steps.pop(f'cpu {name}')[0]:.2f}" for name in STEPS)
                    print(f"  server CPU by step (s): {cpu_steps}")
                for name, values in steps.items():
                    print(f"  {name:<18} p50 {p(values, 0.5):5.2f} s   p90 {p(values, 0.9):5.2f} s")
                print(f"  clicks made again (lost while a page redrew): {sum(again)}")
            print(f"\nserver resident memory at the end: {server.memory_info().rss / 2**20:.0f} MB")
        finally:
            process.terminate()
            process.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
