"""Load benchmark: what N people browsing at once cost the server, and how long each step takes them.

    python bench/load_bench.py [--stations 10000] [--sessions 1 5 10] [--through nginx|app|both] [--memory-sessions 6]

Loads a generated feed of N stations (../shared/tools/gen_feed.py --seed 3) into a fresh SQLite database,
registers one account per concurrent person (each following 10 stations), starts `streamlit run home.py`
with the project's own settings (.streamlit/config.toml: no file watcher; MAP_PROVIDER=none, no ETL
scheduler) and, as production ships it (`--through nginx`, the default), Debian's nginx in front with
deploy/nginx.conf and deploy/site.conf (it keeps Streamlit's static files); `--through app` sends the browsers
straight to the app server, `both` measures both ways on the same server. It drives Debian's Chromium with
Playwright: one browser, one profile per person, all at once. Each person's journey, in one browser tab (one
Streamlit session), as a person clicks:
  demo -> search a town in the finder -> sign in -> dashboard -> My stations -> search again, signed in.
After one unmeasured journey (the server's imports and caches), for each N it reports:
- the app server's CPU seconds per journey (user + system of its process, over the N journeys), and nginx's;
- the script runs per journey and what the app sent over the websocket, read from the browser's frames;
- p50 / p90 of each step's time, over the N people;
- for one person alone, the server CPU, script runs and bytes of each step.
Then memory: `--memory-sessions` people one after the other, each tab left open; the server's resident memory
grows by about one session's worth with each (the first also fills per-process caches, so the figure is the
growth from the first open session to the last, per session), and Streamlit's own count of the session state
(its /_stcore/metrics, with server.enableExpensiveMemoryStats).
Targets (issue 9): <= 0.5 s of server CPU per journey, <= 2 MB per session. A sign-in checks one bcrypt
hash (cost 12): about 0.2 s of CPU of each journey is that.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from common import CHROMIUM, CHROMIUM_ARGS, GEN_FEED, load_generated_feed  # noqa: E402

from app_server import NGINX, compose_http_block, nginx  # noqa: E402  (on the path through common)

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
    # The memory stats only cost when /_stcore/metrics is asked, which this benchmark does once, at the end.
    command = [sys.executable, "-m", "streamlit", "run", "home.py", "--server.port", str(port)]
    process = subprocess.Popen(
        [*command, "--server.enableExpensiveMemoryStats", "true"],
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


class Usage:
    """CPU seconds of the app server and of nginx (its master and workers), read between two moments."""

    def __init__(self, server, proxy) -> None:
        self.server, self.proxy = server, proxy

    def now(self) -> tuple[float, float]:
        proxy = [self.proxy, *self.proxy.children()] if self.proxy else []
        return sum(self.server.cpu_times()[:2]), sum(sum(p.cpu_times()[:2]) for p in proxy)


class Frames:
    """What the app sent one tab over its websocket: script runs begun (a new_session message opens each) and bytes."""

    def __init__(self, page) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        self.runs = self.bytes = 0

        def received(payload) -> None:
            if isinstance(payload, bytes | bytearray):
                self.bytes += len(payload)
                self.runs += ForwardMsg.FromString(payload).WhichOneof("type") == "new_session"

        page.on("websocket", lambda socket: socket.on("framereceived", received))


async def journey(browser, url: str, person: int, town: str, usage: Usage | None = None):
    """One person's clicks through the app: the seconds each step took until what it shows was there, the script
    runs and websocket bytes of each ("runs <step>", "bytes <step>"), and the person's browser profile, left open
    (its Streamlit session lives as long as the tab). Given the processes' usage (when this journey is the only
    one), also the server's CPU seconds of each step, as "cpu <step>"."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    context = await browser.new_context(viewport={"width": 1366, "height": 900})
    page = await context.new_page()
    frames = Frames(page)
    main, sidebar = page.locator('[data-testid="stMain"]'), page.locator('[data-testid="stSidebar"]')
    times: dict[str, float] = {}

    def add(name: str, value: float) -> None:
        times[name] = times.get(name, 0) + value

    async def step(name: str, action, shown) -> None:
        # A click that lands while the page is still redrawing can be lost, as a person's can: click again.
        started, runs, sent = time.perf_counter(), frames.runs, frames.bytes
        cpu = usage.now()[0] if usage else 0.0
        for attempt in range(CLICKS):
            await action()
            try:
                await shown.first.wait_for(timeout=STEP_TIMEOUT_MS // CLICKS)
                break
            except PlaywrightTimeout:
                if attempt == CLICKS - 1:
                    raise
                add("clicks again", 1)
        add(name, time.perf_counter() - started)
        if usage:
            await page.wait_for_timeout(500)  # what the step set off after showing (a component's report, say)
            add(f"cpu {name}", usage.now()[0] - cpu)
        add(f"runs {name}", frames.runs - runs)
        add(f"bytes {name}", frames.bytes - sent)

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


async def batch(url: str, people: int, town: str, usage: Usage) -> tuple[float, float, dict[str, list[float]]]:
    """N journeys at once; (app server CPU seconds, nginx CPU seconds, each measure of each journey)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            before = usage.now()
            alone = usage if people == 1 else None
            finished = await asyncio.gather(*(journey(browser, url, person, town, alone) for person in range(people)))
            after = usage.now()
            for _, context in finished:
                await context.close()
        finally:
            await browser.close()
    names = {name for times, _ in finished for name in times}
    return after[0] - before[0], after[1] - before[1], {n: [t.get(n, 0) for t, _ in finished] for n in names}


async def memory(url: str, people: int, town: str, server) -> list[float]:
    """The server's resident memory (MB) after each of `people` journeys made one after the other, tabs left open."""
    from playwright.async_api import async_playwright

    resident = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            contexts = []
            for person in range(people):
                contexts.append((await journey(browser, url, person, town))[1])
                await asyncio.sleep(1)  # the last runs' messages sent and their threads ended
                resident.append(server.memory_info().rss / 2**20)
            print(f"  session state, Streamlit's count: {session_state_kb(url) / people:.1f} KB per open session")
            for context in contexts:
                await context.close()
        finally:
            await browser.close()
    return resident


def session_state_kb(url: str) -> float:
    """Streamlit's own measure of every open session's state (objects reached from it), in KB."""
    with urllib.request.urlopen(f"{url}/_stcore/metrics?families=cache_memory_bytes") as answer:
        text = answer.read().decode()
    return sum(float(v) for v in re.findall(r'cache_type="st_session_state"[^}]*\} (\S+)', text)) / 1024


def p(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def report(people: int, cpu: float, proxy_cpu: float, steps: dict[str, list[float]]) -> None:
    per_journey = cpu / people
    verdict = "ok" if per_journey <= CPU_TARGET_S else "OVER"
    print(f"  app server CPU per journey {per_journey:5.2f} s   (target <= {CPU_TARGET_S} s: {verdict})")
    print(f"  nginx CPU per journey      {proxy_cpu / people:5.2f} s")
    runs = sum(sum(steps[f"runs {name}"]) for name in STEPS) / people
    sent = sum(sum(steps[f"bytes {name}"]) for name in STEPS) / people / 2**20
    print(f"  script runs per journey    {runs:5.1f}     websocket, app to browser: {sent:.2f} MB per journey")
    if people == 1:
        for name in STEPS:
            print(
                f"    {name:<18} server CPU {steps[f'cpu {name}'][0]:5.2f} s, {steps[f'runs {name}'][0]:.0f} runs, "
                f"{steps[f'bytes {name}'][0] / 1024:7.0f} KB"
            )
    for name in STEPS:
        print(f"  {name:<18} p50 {p(steps[name], 0.5):5.2f} s   p90 {p(steps[name], 0.9):5.2f} s")
    print(f"  clicks made again (lost while a page redrew): {sum(steps.get('clicks again', [0])):.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--through", choices=("nginx", "app", "both"), default="nginx")
    parser.add_argument("--memory-sessions", type=int, default=6)
    args = parser.parse_args()
    needs = [GEN_FEED, CHROMIUM] + ([NGINX] if args.through != "app" else [])
    if not all(path.exists() for path in needs):
        print(f"needs {', '.join(map(str, needs))}", file=sys.stderr)
        return 2
    import psutil

    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="carburoam-load-") as tmp, contextlib.ExitStack() as stack:
        data_dir = Path(tmp)
        os.environ.update(CARBUROAM_DATA_DIR=tmp, ETL_AUTOSTART="off", REGISTRATION_CAPTCHA="off", MAP_PROVIDER="none")
        town = prepare(data_dir, args.stations, max([*args.sessions, args.memory_sessions]))
        process, app_url = start_server(data_dir)
        stack.callback(process.wait, timeout=30)
        stack.callback(process.terminate)
        server = psutil.Process(process.pid)
        ways = {"app": (app_url, Usage(server, None))}
        if args.through != "app":
            (data_dir / "nginx").mkdir()
            port = free_port()
            http = compose_http_block(port, {"app1": app_url, "app2": app_url}, data_dir / "nginx" / "static-cache")
            proxy_url = stack.enter_context(nginx(data_dir / "nginx", http, f"http://127.0.0.1:{port}"))
            proxy = psutil.Process(int((data_dir / "nginx" / "nginx.pid").read_text()))
            ways = {"nginx": (proxy_url, Usage(server, proxy)), **(ways if args.through == "both" else {})}
        for url, usage in ways.values():
            asyncio.run(batch(url, 1, town, usage))  # the server's imports and caches, nginx's cache: not measured
        print(f"{args.stations:,} stations; journeys: {' -> '.join(STEPS)} ('{town}')")
        print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
        for people in args.sessions:
            for way, (url, usage) in ways.items():
                cpu, proxy_cpu, steps = asyncio.run(batch(url, people, town, usage))
                print(f"\n{people} at once, {'through nginx' if way == 'nginx' else 'straight to the app server'}:")
                report(people, cpu, proxy_cpu, steps)
        if args.memory_sessions > 1:
            print(f"\nmemory: {args.memory_sessions} people one after the other, each tab left open")
            resident = asyncio.run(memory(next(iter(ways.values()))[0], args.memory_sessions, town, server))
            per_session = (resident[-1] - resident[0]) / (len(resident) - 1)
            verdict = "ok" if per_session <= RSS_TARGET_MB else "OVER"
            print(f"  server resident memory after each (MB): {', '.join(f'{mb:.1f}' for mb in resident)}")
            print(f"  server memory per session  {per_session:5.2f} MB  (target <= {RSS_TARGET_MB} MB: {verdict})")
        print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
        print(f"server resident memory at the end: {server.memory_info().rss / 2**20:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
