"""Downloading a file over HTTP(S): the feed, or a reference file (brands, places); retries, time-outs, a size cap,
TLS always verified. Every error names the file, so a failed places import never reads as a feed outage."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ingest.errors import FeedError

DOWNLOAD_CHUNK = 1 << 16


def _http_session(settings) -> requests.Session:
    retry = Retry(
        total=settings.http_retries,
        connect=settings.http_retries,
        read=settings.http_retries,
        status=settings.http_retries,
        backoff_factor=settings.http_backoff,
        status_forcelist=(500, 502, 503, 504),
        allowed_methods=frozenset({"GET"}),
        raise_on_status=False,
        respect_retry_after_header=False,  # a server's Retry-After may say hours; our own backoff applies
    )
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


def fetch_feed(url: str, download_dir: Path, settings, what: str = "feed file") -> Path:
    """Download `url` into an owner-only (0600, as tempfile makes it) file under `download_dir`, within the cap.

    `what` names the file in errors: "feed file", "brands file", "postcode base"."""
    host = urlsplit(url).hostname or url
    cap = settings.max_download_bytes
    download_dir.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, removed by the caller
        dir=download_dir, prefix="feed-", suffix=".download", delete=False
    )
    path = Path(tmp.name)
    try:
        with (
            tmp,
            _http_session(settings) as session,
            session.get(
                url, stream=True, timeout=(settings.http_connect_timeout, settings.http_read_timeout)
            ) as response,
        ):
            if response.status_code != 200:
                raise FeedError(f"{host} answered HTTP {response.status_code} when asked for the {what}")
            announced = int(response.headers.get("Content-Length") or 0)
            if announced > cap:
                raise FeedError(f"the {what} is {announced:,} bytes, over the {cap:,}-byte download cap")
            received = 0
            for chunk in response.iter_content(DOWNLOAD_CHUNK):
                received += len(chunk)
                if received > cap:
                    raise FeedError(f"the {what} exceeded the {cap:,}-byte download cap")
                tmp.write(chunk)
    except BaseException as exc:
        path.unlink(missing_ok=True)
        if isinstance(exc, requests.exceptions.RequestException):
            raise FeedError(_describe(exc, host, what)) from exc
        raise
    return path


def _describe(exc: requests.exceptions.RequestException, host: str, what: str) -> str:
    cause = _root_cause(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS certificate verification failed for {host}: {cause}"
    if _timed_out(exc):
        return f"the server {host} did not answer in time ({cause})"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return f"the download from {host} was cut off ({cause})"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"could not download the {what} from {host}: {cause}"
    return f"the download from {host} failed: {cause}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the errors requests and urllib3 wrapped inside it, outermost first."""
    cause: BaseException | None = exc
    while cause is not None:
        yield cause
        inner = getattr(cause, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((arg for arg in cause.args if isinstance(arg, BaseException)), None)
        cause = inner


def _timed_out(exc: BaseException) -> bool:
    # requests reports a read timeout after the retries, or one mid-body, as a ConnectionError.
    for cause in _causes(exc):
        if isinstance(cause, urllib3.exceptions.NewConnectionError):
            return False  # a subclass of ConnectTimeoutError, but "refused" is no timeout
        if isinstance(cause, urllib3.exceptions.TimeoutError | TimeoutError):
            return True
    return False


def _root_cause(exc: BaseException) -> str:
    """The innermost reason wrapped around a network error, on one line."""
    *_, cause = _causes(exc)
    return (str(cause) or type(cause).__name__).splitlines()[0][:300]
