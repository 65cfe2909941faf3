"""Downloading the feed over HTTP(S): retries, timeouts, TLS, truncation and size caps, against real local servers.

Every server here is a real `ThreadingHTTPServer` on 127.0.0.1 (port 0), optionally wrapped in TLS
with a certificate made at test time. Failing downloads are run over a database that already holds
feed_a, and must leave its four data tables exactly as they were, record a failed run and leave no
`feed-*.download` temporary file behind in the data dir.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from certs import Certificate, self_signed_certificate, tls_server_context
from conftest import FIXTURES
from db_snapshot import etl_runs, table_rows
from ingest import passes
from settings import load_settings

FEED_A = FIXTURES / "feed_a.zip"
FEED_A_BYTES = FEED_A.read_bytes()
MB = 1024 * 1024


# --------------------------------------------------------------------------- database helpers


def leftover_downloads(settings) -> list[Path]:
    return sorted(settings.data_dir.rglob("feed-*.download"))


@pytest.fixture
def loaded(engine, settings) -> dict[str, list[tuple]]:
    """feed_a loaded from its local file: the last good data a failed download must keep."""
    assert passes.run_pass(engine, settings, str(FEED_A)).stations == 60
    rows = table_rows(engine)
    assert len(rows["stations"]) == 60 and rows["prices"]
    return rows


def assert_download_refused(engine, settings, url: str, match: str, before: dict) -> str:
    """The pass fails with a one-line reason matching `match`; data, temp files and run log as they should be."""
    runs_before = len(etl_runs(engine))
    with pytest.raises(passes.EtlError, match=match) as excinfo:
        passes.run_pass(engine, settings, url)
    reason = str(excinfo.value)
    assert reason.strip() and "\n" not in reason, f"not one line: {reason!r}"
    assert table_rows(engine) == before, "the failed download changed the data"
    runs = etl_runs(engine)
    assert len(runs) == runs_before + 1
    assert (runs[-1].status, runs[-1].source, runs[-1].error) == ("failed", url, reason)
    assert leftover_downloads(settings) == []
    return reason


def settings_with(monkeypatch, **env: str):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


# --------------------------------------------------------------------------- local feed server


Respond = Callable[["FeedHandler", int], None]


class FeedHandler(BaseHTTPRequestHandler):
    server: FeedServer

    def do_GET(self):
        with self.server.lock:
            self.server.requests.append(self.path)
            number = len(self.server.requests)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up on purpose
            self.server.respond(self, number)

    def log_message(self, format, *args):
        pass


class FeedServer(ThreadingHTTPServer):
    """A real HTTP(S) server on 127.0.0.1 whose answer to request n is `respond(handler, n)`."""

    daemon_threads = True

    def __init__(self, respond: Respond, tls: ssl.SSLContext | None = None):
        super().__init__(("127.0.0.1", 0), FeedHandler)
        self.respond = respond
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self.release = threading.Event()  # handlers that hang wait on this; set at teardown
        self.scheme = "https" if tls else "http"
        if tls:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server_address[1]}/opendata/instantane_ruptures"

    def stop(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()
        self.thread.join(timeout=10)


def send(handler: FeedHandler, body: bytes, status: int = 200, length: int | None = -1, **headers: str) -> None:
    """Answer with `body`; Content-Length is its size, or `length` when given, or absent when None."""
    handler.send_response(status)
    handler.send_header("Content-Type", "application/zip")
    if length is not None:
        handler.send_header("Content-Length", str(len(body) if length == -1 else length))
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()


def feed_a(handler: FeedHandler, _number: int) -> None:
    send(handler, FEED_A_BYTES)


def hang(handler: FeedHandler, _number: int) -> None:
    """Accept the request and never answer (until the test is over)."""
    handler.server.release.wait(timeout=60)


def stall_mid_body(handler: FeedHandler, _number: int) -> None:
    """Send the headers and half the body, then go silent (until the test is over)."""
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(FEED_A_BYTES)))
    handler.end_headers()
    handler.wfile.write(FEED_A_BYTES[: len(FEED_A_BYTES) // 2])
    handler.wfile.flush()
    handler.server.release.wait(timeout=60)


# --------------------------------------------------------------------------- retries and statuses


def test_server_error_then_feed_is_retried_and_loaded(engine, settings, serve):
    server = serve(lambda handler, n: send(handler, b"oops", status=500) if n == 1 else feed_a(handler, n))
    summary = passes.run_pass(engine, settings, server.url)
    assert summary.stations == 60
    assert len(server.requests) == 2
    assert len(table_rows(engine)["stations"]) == 60
    (run,) = etl_runs(engine)
    assert (run.status, run.source, run.stations) == ("success", server.url, 60)
    assert leftover_downloads(settings) == []


@pytest.mark.parametrize(("retries", "attempts"), [("3", 4), ("0", 1)])
def test_server_always_unavailable_fails_after_the_retries(
    engine, settings, loaded, serve, monkeypatch, retries, attempts
):
    settings = settings_with(monkeypatch, ETL_HTTP_RETRIES=retries)
    server = serve(lambda handler, n: send(handler, b"<h1>Service Unavailable</h1>", status=503))
    reason = assert_download_refused(engine, settings, server.url, r"answered HTTP 503", loaded)
    assert "127.0.0.1" in reason
    assert len(server.requests) == attempts


def test_not_found_is_not_retried(engine, settings, loaded, serve):
    server = serve(lambda handler, n: send(handler, b"not found", status=404))
    assert_download_refused(engine, settings, server.url, r"127\.0\.0\.1 answered HTTP 404", loaded)
    assert len(server.requests) == 1


def test_html_page_served_as_the_feed_is_refused(engine, settings, loaded, serve):
    """A captive portal or maintenance page answered with 200 is not mistaken for an empty feed."""
    page = b"<!DOCTYPE html><html><body><h1>Maintenance en cours</h1></body></html>"
    server = serve(lambda handler, n: send(handler, page))
    assert_download_refused(engine, settings, server.url, r"web page \(HTML\) instead of the feed", loaded)


def test_retry_after_does_not_stall_the_pass(engine, settings, loaded, serve, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr("urllib3.util.retry.time.sleep", waits.append)  # record the waits instead of waiting
    server = serve(lambda handler, n: send(handler, b"busy", status=503, Retry_After="3600"))
    assert_download_refused(engine, settings, server.url, r"answered HTTP 503", loaded)
    assert len(server.requests) == 4
    assert sum(waits) <= 60, f"the pass would have waited {sum(waits):,.0f} s: {waits}"


# --------------------------------------------------------------------------- network failures


def test_server_that_never_answers_times_out(engine, settings, loaded, serve, monkeypatch):
    settings = settings_with(monkeypatch, ETL_READ_TIMEOUT="0.5")
    server = serve(hang)
    reason = assert_download_refused(engine, settings, server.url, r"(?i)timed out|did not answer in time", loaded)
    assert "127.0.0.1" in reason
    assert len(server.requests) == 4  # the first attempt and 3 retries, each given up after 0.5 s


@pytest.mark.parametrize("respond", [hang, stall_mid_body], ids=["no_answer", "stalls_mid_body"])
def test_timeout_reason_says_the_server_did_not_answer_in_time(engine, settings, loaded, serve, monkeypatch, respond):
    settings = settings_with(monkeypatch, ETL_READ_TIMEOUT="0.5", ETL_HTTP_RETRIES="0")
    server = serve(respond)
    assert_download_refused(engine, settings, server.url, r"127\.0\.0\.1 did not answer in time", loaded)


def test_connection_refused_is_reported(engine, settings, loaded):
    with socket.socket() as closed_port:  # bound, not listening: connections are refused
        closed_port.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed_port.getsockname()[1]}/feed.zip"
        assert_download_refused(
            engine, settings, url, r"could not download the feed file from 127\.0\.0\.1: .*Connection refused", loaded
        )


@pytest.mark.parametrize(
    ("announced", "match"),
    [
        pytest.param(
            True,
            r"download from 127\.0\.0\.1 was cut off \(IncompleteRead\(\d+ bytes read, \d+ more expected\)",
            id="content_length_larger_than_body",
        ),
        # Without Content-Length a cut is indistinguishable from the end: the archive check catches it.
        pytest.param(False, r"zip archive is truncated or corrupt", id="no_content_length"),
    ],
)
def test_download_cut_off_mid_body_is_refused(engine, settings, loaded, serve, announced, match):
    def cut_off(handler: FeedHandler, _number: int) -> None:
        send(handler, FEED_A_BYTES[: len(FEED_A_BYTES) // 2], length=len(FEED_A_BYTES) if announced else None)
        handler.close_connection = True

    server = serve(cut_off)
    assert_download_refused(engine, settings, server.url, match, loaded)


@pytest.mark.parametrize(
    ("announced", "match"),
    [
        pytest.param(True, r"the feed file is 2,097,152 bytes, over the 1,048,576-byte download cap", id="announced"),
        pytest.param(False, r"the feed file exceeded the 1,048,576-byte download cap", id="streamed"),
    ],
)
def test_download_over_the_cap_is_refused(engine, settings, loaded, serve, monkeypatch, announced, match):
    settings = settings_with(monkeypatch, ETL_MAX_DOWNLOAD_MB="1")
    body = FEED_A_BYTES + b"\0" * (2 * MB - len(FEED_A_BYTES))
    server = serve(lambda handler, n: send(handler, body, length=-1 if announced else None))
    assert_download_refused(engine, settings, server.url, match, loaded)
    assert len(server.requests) == 1


def test_download_just_under_the_cap_is_accepted(engine, settings, serve, monkeypatch):
    """Control for the cap: the same server and setting let a feed under 1 MB through."""
    settings = settings_with(monkeypatch, ETL_MAX_DOWNLOAD_MB="1")
    server = serve(lambda handler, n: send(handler, FEED_A_BYTES, length=None))
    assert passes.run_pass(engine, settings, server.url).stations == 60
    assert leftover_downloads(settings) == []


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> dict[str, Certificate]:
    directory = tmp_path_factory.mktemp("tls")
    return {
        "localhost": self_signed_certificate(directory, "localhost", ["127.0.0.1", "localhost"]),
        "elsewhere": self_signed_certificate(directory, "elsewhere", ["feeds.example.org"]),
    }


def test_self_signed_certificate_is_refused_and_nothing_downloaded(
    engine, settings, loaded, serve, certificates, monkeypatch
):
    # The default trust store; these variables would also override a `session.verify = False`.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    server = serve(feed_a, tls=tls_server_context(*certificates["localhost"]))
    reason = assert_download_refused(
        engine, settings, server.url, r"TLS certificate verification failed for 127\.0\.0\.1", loaded
    )
    assert "CERTIFICATE_VERIFY_FAILED" in reason or "certificate verify failed" in reason
    assert server.requests == [], "a GET went through over an unverified connection"


def test_certificate_for_another_host_is_refused(engine, settings, loaded, serve, certificates, monkeypatch):
    """Even from a trusted CA, a certificate that does not name 127.0.0.1 is refused."""
    cert_path, key_path = certificates["elsewhere"]
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_path))
    server = serve(feed_a, tls=tls_server_context(cert_path, key_path))
    reason = assert_download_refused(engine, settings, server.url, r"TLS certificate verification failed", loaded)
    assert "127.0.0.1" in reason
    assert server.requests == []


def test_trusted_certificate_loads_the_feed(engine, settings, serve, certificates, monkeypatch):
    """Control for the TLS tests: the same server, its certificate trusted, serves a feed that loads."""
    cert_path, key_path = certificates["localhost"]
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_path))
    server = serve(feed_a, tls=tls_server_context(cert_path, key_path))
    assert passes.run_pass(engine, settings, server.url).stations == 60
    assert server.requests == ["/opendata/instantane_ruptures"]
    assert leftover_downloads(settings) == []
