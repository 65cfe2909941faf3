"""The keep-alive probe (probe-action/probe.js): Node and puppeteer-core driving Debian's Chromium.

Against the app itself (`streamlit run home.py`), against a closed port, and against local pages
standing in for the host: a sleeping app's page whose wake-up button, in the page or in a frame
from another origin, brings the app back; an HTTP error; an app showing an exception; an app that
never renders. Each run asserts the exit code and the line the probe printed. The Docker action's
image is Puppeteer's own for the locked puppeteer-core.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app_server import CHROMIUM, app_environ, serve
from net import free_port
from session import init_db, make_engine
from settings import load_settings

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
ACTION = ROOT / "probe-action"
PROBE = ACTION / "probe.js"
PUPPETEER = ACTION / "node_modules" / "puppeteer-core"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
WELCOME = "Stop overpaying at the pump"  # pages/welcome.py, what the probe waits for by default
WAKE_UP = "Yes, get this app back up!"
CLICKED = f'probe: clicked "{WAKE_UP}"'


@pytest.fixture(scope="module")
def node() -> str:
    """Node, with the probe's packages installed and Debian's Chromium for it to drive."""
    node = shutil.which("node")
    missing = [
        what
        for what, absent in (
            ("node (apt-get install nodejs npm)", node is None),
            (f"{PUPPETEER} (npm ci in probe-action)", not PUPPETEER.is_dir()),
            (f"Chromium at {CHROMIUM} (apt-get install chromium)", not CHROMIUM.exists()),
        )
        if absent
    ]
    if missing:
        if os.environ.get("CARBUROAM_REQUIRE_BROWSER"):
            pytest.fail(f"CARBUROAM_REQUIRE_BROWSER is set but the probe cannot run without {', '.join(missing)}")
        pytest.skip(f"the probe needs {', '.join(missing)}; set CARBUROAM_REQUIRE_BROWSER=1 to make this a failure")
    return node


def run_probe(node: str, url: str | None, timeout_ms: int = 30_000) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROBE_", "PUPPETEER_", "CHROME_"))}
    env.update(PROBE_TIMEOUT_MS=str(timeout_ms), PUPPETEER_EXECUTABLE_PATH=str(CHROMIUM))
    if url is not None:
        env["PROBE_URL"] = url
    return subprocess.run(
        [node, str(PROBE)], env=env, capture_output=True, text=True, timeout=timeout_ms / 1000 + 30, check=False
    )


def expect_failure(result: subprocess.CompletedProcess[str], reason: str) -> None:
    """A non-zero exit and, on stderr, one line matching `reason`."""
    assert result.returncode != 0, f"the probe succeeded: {result.stdout}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"not one line on stderr: {result.stderr!r}"
    assert re.fullmatch(f"probe: {reason}", lines[0]), lines[0]


# --------------------------------------------------------------------------- the app itself


@pytest.fixture(scope="module")
def app_url(tmp_path_factory) -> Iterator[str]:
    """`streamlit run home.py` over a fresh, empty data dir: the welcome page needs no prices."""
    folder = tmp_path_factory.mktemp("probe")
    data_dir = folder / "data"
    data_dir.mkdir()
    env = app_environ(data_dir, FIXTURES / "feed_a.zip")
    engine = make_engine(load_settings(env).database_url)
    init_db(engine)
    engine.dispose()
    with serve(env, folder / "streamlit.log") as url:
        yield url


def test_the_probe_waits_for_the_apps_welcome_page_and_exits_0(node, app_url):
    result = run_probe(node, app_url, timeout_ms=60_000)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout.splitlines() == [f'probe: {app_url} shows "{WELCOME}"']


def test_an_app_that_cannot_open_its_database_fails_with_the_apps_message(node, tmp_path):
    env = app_environ(tmp_path, FIXTURES / "feed_a.zip")
    env["CARBUROAM_DATABASE_URL"] = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/carburoam"  # nothing there
    with serve(env, tmp_path / "streamlit.log") as url:
        result = run_probe(node, url, timeout_ms=60_000)
    expect_failure(result, "the app shows an error: The database cannot be opened: .+")


def test_a_closed_port_fails_with_connection_refused(node):
    result = run_probe(node, f"http://127.0.0.1:{free_port()}")
    expect_failure(result, r"cannot open the page: net::ERR_CONNECTION_REFUSED at http://127\.0\.0\.1:\d+/?")


def test_without_an_address_the_probe_says_so(node):
    expect_failure(run_probe(node, None), "PROBE_URL is not set: .+")


# --------------------------------------------------------------------------- pages standing in for the host


@dataclass
class Host:
    """A local HTTP server answering each path with (status, html); the paths it was asked, in order."""

    pages: dict[str, tuple[int, str]]
    port: int = 0
    asked: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


@pytest.fixture
def host() -> Iterator[Callable[[dict[str, tuple[int, str]]], Host]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(pages: dict[str, tuple[int, str]]) -> Host:
        site = Host(pages)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/favicon.ico":  # the browser asks for the tab's icon on its own
                    site.asked.append(self.path)
                status, html = site.pages.get(self.path, (404, "<h1>Not found</h1>"))
                body = html.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        site.port = server.server_address[1]
        return site

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# The host's page for a sleeping app: its button asks the host to wake the app up, then the app shows.
SLEEPING = f"""<!doctype html>
<title>Zzzz</title>
<p>This app has gone to sleep due to inactivity. Would you like to wake it back up?</p>
<button type="button">{WAKE_UP}</button>
<script>
  document.querySelector("button").addEventListener("click", async () => {{
    await fetch("/wake");
    document.body.innerHTML = "<h1>Carburoam</h1><p>{WELCOME}: follow your stations and your fuels.</p>";
  }});
</script>
"""


def test_the_wake_up_button_is_clicked_then_the_app_is_waited_for(node, host):
    site = host({"/": (200, SLEEPING), "/wake": (200, "ok")})
    result = run_probe(node, site.url)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout.splitlines() == [CLICKED, f'probe: {site.url} shows "{WELCOME}"']
    assert site.asked == ["/", "/wake"]


def test_the_wake_up_button_in_a_frame_from_another_origin_is_clicked(node, host):
    site = host({"/app": (200, SLEEPING), "/wake": (200, "ok")})
    # The frame comes from localhost, the page from 127.0.0.1: another site, in its own process.
    frame = f"http://localhost:{site.port}/app"
    site.pages["/"] = (200, f'<!doctype html><title>Carburoam</title><iframe src="{frame}" width="800"></iframe>')
    result = run_probe(node, site.url)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout.splitlines() == [CLICKED, f'probe: {site.url} shows "{WELCOME}"']
    assert site.asked == ["/", "/app", "/wake"]


def test_an_http_error_fails_with_its_status(node, host):
    site = host({"/": (503, "<h1>Service Unavailable</h1>")})
    expect_failure(run_probe(node, site.url), r"http://127\.0\.0\.1:\d+/ answered HTTP 503 Service Unavailable")


def test_an_app_showing_an_exception_fails_with_its_message(node, host):
    exception = """<!doctype html><div data-testid="stException">
    <div>OperationalError: unable to open database file</div>
    <pre>Traceback (most recent call last):
  File "home.py", line 8</pre></div>"""
    site = host({"/": (200, exception)})
    expect_failure(
        run_probe(node, site.url),
        r'the app shows an error: OperationalError: unable to open database file Traceback .* File "home.py", line 8',
    )


def test_an_app_that_never_renders_times_out(node, host):
    site = host({"/": (200, "<!doctype html><p>Your app is in the oven</p>")})
    expect_failure(run_probe(node, site.url, timeout_ms=2_000), f'timed out after 2 s waiting for "{WELCOME}"')


def test_a_wake_up_that_never_brings_the_app_back_times_out(node, host):
    site = host({"/": (200, SLEEPING.replace(WELCOME, "Still waking up")), "/wake": (200, "ok")})
    result = run_probe(node, site.url, timeout_ms=3_000)
    expect_failure(result, f'timed out after 3 s waiting for "{WELCOME}" after clicking "{re.escape(WAKE_UP)}"')
    assert result.stdout.splitlines() == [CLICKED]


def test_the_docker_image_is_puppeteers_own_at_the_locked_version():
    """The action runs the probe with the puppeteer-core the tests ran, in the image made for it."""
    locked = json.loads((ACTION / "package-lock.json").read_text())["packages"]["node_modules/puppeteer-core"]
    (image,) = re.findall(r"^FROM (\S+)$", (ACTION / "Dockerfile").read_text(), re.MULTILINE)
    assert image == f"ghcr.io/puppeteer/puppeteer:{locked['version']}"
