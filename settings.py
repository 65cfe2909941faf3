"""Configuration, read in one place.

Every setting comes from the environment first, then from the top level of
`.streamlit/secrets.toml`, then from the default below.  `load_settings()` is
cheap and has no side effects; callers decide when to read it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent
SECRETS_FILE = PROJECT_DIR / ".streamlit" / "secrets.toml"
OFFICIAL_FEED_URL = "https://donnees.roulez-eco.fr/opendata/instantane_ruptures"
MB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    feed_url: str
    interval_seconds: int
    retry_seconds: int
    http_connect_timeout: float
    http_read_timeout: float
    http_retries: int
    http_backoff: float
    max_download_bytes: int
    max_xml_bytes: int
    max_backfill_xml_bytes: int

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "etl.pid"


def _read_secrets(path: Path) -> dict:
    if not path.is_file():
        return {}
    with path.open("rb") as fh:
        return {k: v for k, v in tomllib.load(fh).items() if not isinstance(v, dict)}


def _anchor_sqlite_path(url: str, data_dir: Path) -> str:
    """A relative SQLite path is taken relative to the data dir, not the cwd."""
    prefix, _, path = url.partition(":///")
    if not prefix.startswith("sqlite") or not path or path.startswith(("/", ":memory:")):
        return url
    return f"{prefix}:///{data_dir / path}"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    secrets = _read_secrets(SECRETS_FILE)

    def get(name: str, default: str) -> str:
        value = env.get(name)
        if value is None or value == "":
            value = secrets.get(name, default)
        return str(value)

    def get_number(name: str, default: float, kind: type = int):
        raw = get(name, str(default))
        try:
            value = kind(raw)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {raw!r}") from None
        if value < 0:
            raise ValueError(f"{name} must not be negative, got {raw!r}")
        return value

    data_dir = Path(get("CARBUROAM_DATA_DIR", str(PROJECT_DIR))).expanduser().resolve()
    database_url = _anchor_sqlite_path(get("CARBUROAM_DATABASE_URL", "sqlite:///db.sqlite3"), data_dir)
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        feed_url=get("CARBUROAM_FEED_URL", OFFICIAL_FEED_URL),
        interval_seconds=get_number("ETL_INTERVAL_SECONDS", 3600),
        retry_seconds=get_number("ETL_RETRY_SECONDS", 300),
        http_connect_timeout=get_number("ETL_CONNECT_TIMEOUT", 10.0, float),
        http_read_timeout=get_number("ETL_READ_TIMEOUT", 60.0, float),
        http_retries=get_number("ETL_HTTP_RETRIES", 3),
        http_backoff=get_number("ETL_HTTP_BACKOFF", 1.0, float),
        max_download_bytes=get_number("ETL_MAX_DOWNLOAD_MB", 100) * MB,
        max_xml_bytes=get_number("ETL_MAX_XML_MB", 200) * MB,
        max_backfill_xml_bytes=get_number("ETL_MAX_BACKFILL_XML_MB", 2048) * MB,
    )
