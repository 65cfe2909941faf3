"""`streamlit run home.py` as a real server on a free local port, Debian's nginx in front of it, and how Debian's
Chromium is launched, for the tests and benchmarks that drive a browser at them."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from net import free_port

ROOT = Path(__file__).resolve().parents[1]
APP_START_SECONDS = 60
NGINX = Path("/usr/sbin/nginx")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # deck.gl draws with WebGL. With --disable-gpu, headless Chromium offers WebGL only through
    # SwiftShader, which recent versions enable for WebGL only with this flag.
    "--enable-unsafe-swiftshader",
]


class NoAnswer(RuntimeError):
    """A server started for a test or a benchmark exited or never answered its health check."""


def app_environ(data_dir: Path, feed: Path) -> dict[str, str]:
    """This process's environment less the project's settings, over `data_dir`; no mail, no S3, no ETL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "CARBUROAM_", "AWS_"))}
    env.update(
        CARBUROAM_DATA_DIR=str(data_dir),
        CARBUROAM_FEED_URL=str(feed),  # never the official feed, should a pass ever start
        ETL_AUTOSTART="off",
        REGISTRATION_CAPTCHA="off",
        MAP_PROVIDER="none",
        CARBUROAM_LANGUAGE="en",  # a browser without Accept-Language reads English; one test asks for French
        LOAD_MODE="local",
        STREAMLIT_BROWSER_GATHER_USAGE_STATS="false",
    )
    return env


def wait_healthy(process: subprocess.Popen, url: str, log: Path) -> None:
    """Wait for `url` to answer its health check; fail with the end of `log` if `process` exits or never answers."""
    deadline = time.monotonic() + APP_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise NoAnswer(f"{url}: the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.read().strip() == b"ok":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)  # the poll interval, under the deadline above
    raise NoAnswer(f"no answer from {url}/_stcore/health within {APP_START_SECONDS} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def serve(env: dict[str, str], log: Path) -> Iterator[str]:
    """`streamlit run home.py` on a free port with the environment `env`, its output to `log`; its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "streamlit", "run", "home.py", "--server.port", str(port)]
    command += ["--server.headless", "true", "--server.address", "127.0.0.1"]
    # No file watcher: it would watch the whole project (.venv included) and rerun on any edit.
    command += ["--server.fileWatcherType", "none"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_healthy(process, url, log)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


@contextlib.contextmanager
def nginx(folder: Path, http_block: str, url: str) -> Iterator[str]:
    """Debian's nginx running `http_block` (upstreams and servers), unprivileged, with its files in `folder`;
    `url` (a server of the block), once the app answers through it.

    Skips the test without nginx, unless CARBUROAM_REQUIRE_BROWSER is set: then it fails.
    """
    if not NGINX.exists():
        if os.environ.get("CARBUROAM_REQUIRE_BROWSER"):
            pytest.fail(f"CARBUROAM_REQUIRE_BROWSER is set but there is no nginx at {NGINX}")
        pytest.skip(f"Debian's nginx is not installed at {NGINX} (apt-get install nginx-light)")
    user = pwd.getpwuid(os.getuid()).pw_name  # the workers write their temporary files in `folder`
    temp = "\n".join(
        f"{kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (folder / "nginx.conf").write_text(
        f"user {user};\nworker_processes 1;\ndaemon off;\npid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'error.log'};\nevents {{}}\n"
        f"http {{\naccess_log off;\n{temp}\n{http_block}\n}}\n"
    )
    process = subprocess.Popen([str(NGINX), "-p", str(folder), "-c", str(folder / "nginx.conf")])
    try:
        wait_healthy(process, url, folder / "error.log")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def compose_http_block(port: int, replicas: dict[str, str], cache: Path) -> str:
    """deploy/nginx.conf's http block on a local port, with its replicas at the given URLs, its static files'
    cache in the folder `cache`, and the site block of deploy/site.conf."""
    config = (ROOT / "deploy" / "nginx.conf").read_text()
    block = config.split("http {", 1)[1].rsplit("}", 1)[0]
    for name, url in replicas.items():
        block = block.replace(f"server {name}:8501;", f"server {url.removeprefix('http://')};")
    block = block.replace("listen 80;", f"listen 127.0.0.1:{port};")
    block = block.replace("/var/cache/nginx/carburoam", str(cache))
    return block.replace("include /etc/nginx/site.conf;", f"include {ROOT / 'deploy' / 'site.conf'};")
