"""Configuration, read in one place.

Every setting comes from the environment first, then from the top level of
`.streamlit/secrets.toml`, then from its default. `load_settings()` is cheap and
has no side effects; callers decide when to read it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent
SECRETS_FILE = PROJECT_DIR / ".streamlit" / "secrets.toml"
OFFICIAL_FEED_URL = "https://donnees.roulez-eco.fr/opendata/instantane_ruptures"
# Every price change of one year, from 2007 (see ../shared/feeds/FORMAT.md); the current year's lags a few days.
YEARLY_ARCHIVE_URL = "https://donnees.roulez-eco.fr/opendata/annee/{year}"
FIRST_ARCHIVE_YEAR = 2007
# data.gouv.fr's weekly export of OpenStreetMap fuel stations (bzip2 CSV, ODbL).
OSM_STATIONS_URL = "https://www.data.gouv.fr/fr/datasets/r/fcab3bd4-6c6d-4b73-95d2-cfd5e04ee651"
# La Poste's "base officielle des codes postaux" as data.gouv.fr serves it (Licence Ouverte).
LAPOSTE_PLACES_URL = "https://www.data.gouv.fr/fr/datasets/r/008a2dda-2c60-4b63-b910-998f6f818089"
MB = 1024 * 1024
# The languages of the interface: a catalog under locales/ each (README, "Adding a language").
LANGUAGES = ("fr", "en")
LOCALES_DIR = PROJECT_DIR / "locales"


def flag(raw: str) -> bool:
    """'on'/'off' (or true/false, yes/no, 1/0) as a bool."""
    value = raw.strip().lower()
    if value in ("on", "true", "yes", "1"):
        return True
    if value in ("off", "false", "no", "0"):
        return False
    raise ValueError(f"on or off, got {raw!r}")


def _setting(env: str, default: str, kind=str, secret: bool = False):
    return field(repr=not secret, metadata={"env": env, "default": default, "kind": kind})


@dataclass(frozen=True)
class Settings:
    data_dir: Path = _setting("CARBUROAM_DATA_DIR", str(PROJECT_DIR), Path)
    database_url: str = _setting("CARBUROAM_DATABASE_URL", "sqlite:///db.sqlite3")
    feed_url: str = _setting("CARBUROAM_FEED_URL", OFFICIAL_FEED_URL)
    interval_seconds: int = _setting("ETL_INTERVAL_SECONDS", "3600", int)
    retry_seconds: int = _setting("ETL_RETRY_SECONDS", "300", int)
    lease_retry_seconds: int = _setting("ETL_LEASE_RETRY_SECONDS", "30", int)
    request_poll_seconds: int = _setting("ETL_REQUEST_POLL_SECONDS", "5", int)
    brands_url: str = _setting("CARBUROAM_BRANDS_URL", OSM_STATIONS_URL)
    brands_interval_seconds: int = _setting("BRANDS_INTERVAL_SECONDS", str(7 * 24 * 3600), int)
    places_url: str = _setting("CARBUROAM_PLACES_URL", LAPOSTE_PLACES_URL)
    places_interval_seconds: int = _setting("PLACES_INTERVAL_SECONDS", str(30 * 24 * 3600), int)
    import_retry_seconds: int = _setting("IMPORT_RETRY_SECONDS", str(6 * 3600), int)
    http_connect_timeout: float = _setting("ETL_CONNECT_TIMEOUT", "10", float)
    http_read_timeout: float = _setting("ETL_READ_TIMEOUT", "60", float)
    http_retries: int = _setting("ETL_HTTP_RETRIES", "3", int)
    http_backoff: float = _setting("ETL_HTTP_BACKOFF", "1.0", float)
    max_download_mb: int = _setting("ETL_MAX_DOWNLOAD_MB", "100", int)
    max_xml_mb: int = _setting("ETL_MAX_XML_MB", "200", int)
    max_backfill_xml_mb: int = _setting("ETL_MAX_BACKFILL_XML_MB", "2048", int)
    load_mode: str = _setting("LOAD_MODE", "local")
    bucket_name_store: str = _setting("BUCKET_NAME_STORE", "")
    credentials_object_key: str = _setting("CREDENTIALS_OBJECT_KEY", "credentials.yaml")
    smtp_host: str = _setting("SMTP_HOST", "")
    smtp_port: int = _setting("SMTP_PORT", "587", int)
    smtp_user: str = _setting("SMTP_USER", "")
    smtp_password: str = _setting("SMTP_PASSWORD", "", secret=True)
    smtp_from: str = _setting("SMTP_FROM", "Carburoam <no-reply@localhost>")
    smtp_security: str = _setting("SMTP_SECURITY", "starttls")
    smtp_timeout: float = _setting("SMTP_TIMEOUT", "10", float)
    etl_autostart: bool = _setting("ETL_AUTOSTART", "on", flag)
    registration_captcha: bool = _setting("REGISTRATION_CAPTCHA", "on", flag)
    map_provider: str = _setting("MAP_PROVIDER", "carto")
    stale_after_days: int = _setting("PRICE_STALE_DAYS", "7", int)
    session_max_days: int = _setting("SESSION_MAX_DAYS", "30", int)
    session_idle_days: int = _setting("SESSION_IDLE_DAYS", "14", int)
    backup_target: str = _setting("BACKUP_TARGET", "")
    backup_interval_seconds: int = _setting("BACKUP_INTERVAL_SECONDS", str(24 * 3600), int)
    backup_keep: int = _setting("BACKUP_KEEP", "14", int)
    public_url: str = _setting("CARBUROAM_PUBLIC_URL", "http://localhost:8501")
    alert_max_mails_per_day: int = _setting("ALERT_MAX_MAILS_PER_DAY", "5", int)
    # The language of a first visit whose browser asks for none we speak, and of e-mails to people who chose none.
    language: str = _setting("CARBUROAM_LANGUAGE", LANGUAGES[0])

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "etl.pid"

    @property
    def credentials_file(self) -> Path:
        return self.data_dir / "credentials.yaml"

    @property
    def backup_location(self) -> str:
        """Where backups go: BACKUP_TARGET (a folder, or s3://bucket/prefix), else `backups/` in the data dir."""
        return self.backup_target or str(self.data_dir / "backups")

    @property
    def mail_dir(self) -> Path:
        return self.outputs_dir / "mail"

    @property
    def max_download_bytes(self) -> int:
        return self.max_download_mb * MB

    @property
    def max_xml_bytes(self) -> int:
        return self.max_xml_mb * MB

    @property
    def max_backfill_xml_bytes(self) -> int:
        return self.max_backfill_xml_mb * MB

    def environ(self) -> dict[str, str]:
        """These settings as environment variables, so a child process loads exactly them."""
        return {f.metadata["env"]: _as_text(getattr(self, f.name)) for f in fields(self)}


def _as_text(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _read_secrets(path: Path) -> dict:
    if not path.is_file():
        return {}
    import tomllib  # imported here: ~7 ms of CPU, which a process without a secrets file never needs

    with path.open("rb") as fh:
        return {k: v for k, v in tomllib.load(fh).items() if not isinstance(v, dict)}


def _anchor_sqlite_path(url: str, data_dir: Path) -> str:
    """A relative SQLite path is taken relative to the data dir, not the cwd."""
    prefix, _, path = url.partition(":///")
    if not prefix.startswith("sqlite") or not path or path.startswith(("/", ":memory:")):
        return url
    return f"{prefix}:///{data_dir / path}"


def _anchor_backup_target(target: str, data_dir: Path) -> str:
    """An S3 URL must name a bucket; a relative folder is taken relative to the data dir, not the cwd."""
    if target.startswith("s3://"):
        if not target.removeprefix("s3://").split("/")[0]:
            raise ValueError(f"BACKUP_TARGET must name a bucket (s3://bucket/prefix), got {target!r}")
        return target
    return str(data_dir / Path(target).expanduser()) if target else ""


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    secrets = _read_secrets(SECRETS_FILE)
    values = {}
    for setting in fields(Settings):
        name, kind = setting.metadata["env"], setting.metadata["kind"]
        raw = env.get(name) or secrets.get(name) or setting.metadata["default"]
        try:
            value = kind(str(raw))
        except ValueError as exc:
            expected = "a number" if kind in (int, float) else str(exc).split(", got")[0]
            raise ValueError(f"{name} must be {expected}, got {raw!r}") from None
        if kind in (int, float) and value < 0:
            raise ValueError(f"{name} must not be negative, got {raw!r}")
        values[setting.name] = value
    _check_choice("LOAD_MODE", values["load_mode"], ("local", "remote"))
    _check_choice("SMTP_SECURITY", values["smtp_security"], ("starttls", "ssl", "none"))
    _check_choice("MAP_PROVIDER", values["map_provider"], ("carto", "none"))
    _check_choice("CARBUROAM_LANGUAGE", values["language"], LANGUAGES)
    for name in ("SESSION_MAX_DAYS", "SESSION_IDLE_DAYS", "BACKUP_KEEP", "ALERT_MAX_MAILS_PER_DAY"):
        if values[name.lower()] == 0:
            raise ValueError(f"{name} must be at least 1" + (" day" if name.endswith("_DAYS") else ""))
    for env, field_name in (
        ("ETL_LEASE_RETRY_SECONDS", "lease_retry_seconds"),
        ("ETL_REQUEST_POLL_SECONDS", "request_poll_seconds"),
    ):
        if values[field_name] == 0:
            raise ValueError(f"{env} must be at least 1 second")
    if values["load_mode"] == "remote" and not values["bucket_name_store"]:
        raise ValueError("LOAD_MODE=remote needs BUCKET_NAME_STORE, the S3 bucket that keeps the credentials")
    values["data_dir"] = values["data_dir"].expanduser().resolve()
    values["backup_target"] = _anchor_backup_target(values["backup_target"], values["data_dir"])
    values["database_url"] = _anchor_sqlite_path(values["database_url"], values["data_dir"])
    values["public_url"] = values["public_url"].rstrip("/")
    return Settings(**values)
