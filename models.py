"""The data model: typed SQLAlchemy 2 declarative models.

Units are fixed here once: coordinates in WGS84 degrees, prices in euros per
litre (stored as integer thousandths so no float ever touches a price), and
timestamps timezone-aware, stored as UTC.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ColumnElement,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    Text,
    TypeDecorator,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from utils import UTC

THOUSAND = Decimal(1000)


class UTCDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out, on every backend.

    PostgreSQL stores them as timestamptz. SQLite has no time type: they are
    stored as UTC ISO text (`sqlite_time_text`), which sorts in time order.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(26))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: dt.datetime | None, dialect) -> dt.datetime | str | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: timestamps must be timezone-aware")
        return sqlite_time_text(value) if dialect.name == "sqlite" else value.astimezone(UTC)

    def process_result_value(self, value: dt.datetime | str | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def sqlite_time_text(moment: dt.datetime) -> str:
    """'2024-05-08 10:51:04' (UTC; '.ffffff' only when there are microseconds): sorts as time does."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(" ")[:-6]  # less its "+00:00": half the CPU of replace(tzinfo=None).isoformat(" ")


class JSONText(TypeDecorator):
    """A JSON document kept as plain text, identical on every backend."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect) -> str | None:
        return None if value is None else json_text(value)

    def process_result_value(self, value: str | None, dialect) -> Any:
        return None if value is None else json.loads(value)


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # made once: json.dumps makes one per call


def json_text(value: Any) -> str:
    return _JSON.encode(value)


class Euros(TypeDecorator):
    """A price in euros (Decimal, 3 places) stored as an integer of thousandths."""

    impl = Integer
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect) -> int | None:
        if value is None:
            return None
        return int((Decimal(value) * THOUSAND).to_integral_value())

    def process_result_value(self, value: int | None, dialect) -> Decimal | None:
        return None if value is None else Decimal(value).scaleb(-3)


class Base(DeclarativeBase):
    type_annotation_map = {
        dt.datetime: UTCDateTime,
        Decimal: Euros,
        dict[str, Any]: JSONText,
        list[Any]: JSONText,
    }


class GasType(Base):
    __tablename__ = "gas_types"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(16), unique=True)


class Station(Base):
    __tablename__ = "stations"
    __table_args__ = (
        CheckConstraint("road_type IN ('R', 'A', 'N')", name="road_type_known"),
        Index("ix_stations_lat_lon", "latitude", "longitude"),
        Index("ix_stations_zip_code", "zip_code"),
        # On PostgreSQL, migration 0004 leaves room in each page (fillfactor 50): a run moves every listed
        # station's last_seen_at (an unindexed column), and the row is rewritten in its page, the indexes
        # untouched. Said here, SQLAlchemy would load its PostgreSQL dialects in every SQLite process.
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    zip_code: Mapped[str] = mapped_column(String(5))
    town: Mapped[str] = mapped_column(String(120))
    address: Mapped[str] = mapped_column(String(250))
    road_type: Mapped[str] = mapped_column(String(1), default="R")
    automate_24_24: Mapped[bool] = mapped_column(default=False)
    opening_hours: Mapped[list[Any] | None]
    services: Mapped[list[Any]] = mapped_column(default=list)
    # Address, postcode and town folded by utils.fold, for case- and accent-blind search.
    search_text: Mapped[str] = mapped_column(Text, default="")
    last_seen_at: Mapped[dt.datetime]
    # CRC-32 and length of the <pdv> bytes this station's rows (here and in prices, ruptures) say,
    # as ingest.update.LayoutScanner takes it: a run finding the same bytes needs not read the station again.
    # NULL: read it again next time (a record of it was rejected, a price unit was read in context,
    # or it is gone from the feed). Only the ETL's run pass writes it.
    fingerprint: Mapped[int | None] = mapped_column(BigInteger)


class StationBrand(Base):
    """A station's brand and name as OpenStreetMap gives them (ODbL); replaced whole by each brand import.

    No foreign key to stations: the brand table may name stations the price feed
    has not listed yet, and a price load never waits for it.
    """

    __tablename__ = "station_brands"

    station_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    brand: Mapped[str | None] = mapped_column(String(60))
    name: Mapped[str | None] = mapped_column(String(120))


class Price(Base):
    """The current price of one fuel at one station."""

    __tablename__ = "prices"
    __table_args__ = {"sqlite_with_rowid": False}

    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"), primary_key=True)
    gastype_id: Mapped[int] = mapped_column(ForeignKey("gas_types.id"), primary_key=True)
    price: Mapped[Decimal]
    updated_at: Mapped[dt.datetime]


class PriceHistory(Base):
    """One row per observed price declaration; never rewritten."""

    __tablename__ = "price_history"
    __table_args__ = {"sqlite_with_rowid": False}  # the composite key is the table: one B-tree, not two

    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"), primary_key=True)
    gastype_id: Mapped[int] = mapped_column(ForeignKey("gas_types.id"), primary_key=True)
    updated_at: Mapped[dt.datetime] = mapped_column(primary_key=True)
    price: Mapped[Decimal]


class DailyAggregate(Base):
    """One day's prices of one fuel in France (scope 'FR') or one department ('69', '2A', '974').

    Kept by ingest/aggregates.py, which says what a day's price at a station is; the charts read these
    rows rather than the history.
    """

    __tablename__ = "daily_aggregates"
    __table_args__ = (Index("ix_daily_aggregates_day", "day"),)

    scope: Mapped[str] = mapped_column(String(3), primary_key=True)
    gastype_id: Mapped[int] = mapped_column(ForeignKey("gas_types.id"), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)  # a calendar day in Paris
    median: Mapped[float] = mapped_column(Float)  # euros per litre
    mean: Mapped[float] = mapped_column(Float)
    lowest: Mapped[Decimal]
    highest: Mapped[Decimal]
    stations: Mapped[int]  # how many stations' prices the figures describe
    through: Mapped[dt.datetime]  # the newest observation counted


class Rupture(Base):
    """Current out-of-stock state of one fuel at one station."""

    __tablename__ = "ruptures"
    __table_args__ = (
        CheckConstraint("kind IS NULL OR kind IN ('temporaire', 'definitive')", name="rupture_kind_known"),
        {"sqlite_with_rowid": False},
    )

    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"), primary_key=True)
    gastype_id: Mapped[int] = mapped_column(ForeignKey("gas_types.id"), primary_key=True)
    started_at: Mapped[dt.datetime | None]
    ended_at: Mapped[dt.datetime | None]
    kind: Mapped[str | None] = mapped_column(String(16))


class User(Base):
    """The database side of an account; credentials never live here."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('user', 'admin')", name="role_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(32), unique=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(8), default="user")
    created_at: Mapped[dt.datetime]
    # Yearly consumption for the savings estimate: litres per year, or distance and L/100 km.
    litres_per_year: Mapped[float | None] = mapped_column(Float)
    km_per_year: Mapped[float | None] = mapped_column(Float)
    litres_per_100km: Mapped[float | None] = mapped_column(Float)
    # What one fill takes, for "is the detour worth it"; None: the default tank.
    tank_litres: Mapped[float | None] = mapped_column(Float)
    # The language of the app and of e-mails (settings.LANGUAGES); None: the browser's, then the default.
    language: Mapped[str | None] = mapped_column(String(8))


class UserGasType(Base):
    __tablename__ = "user_gastypes"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    gastype_id: Mapped[int] = mapped_column(ForeignKey("gas_types.id"), primary_key=True)


class CustomStation(Base):
    __tablename__ = "custom_stations"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id"), primary_key=True)
    custom_name: Mapped[str] = mapped_column(String(40))


class VerificationCode(Base):
    __tablename__ = "verification_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(128))
    purpose: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    attempts: Mapped[int] = mapped_column(default=0)
    used_at: Mapped[dt.datetime | None]


class UserSession(Base):
    """One signed-in browser. Its cookie holds a random token; only the token's SHA-256 is stored here."""

    __tablename__ = "user_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime]
    last_seen_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    device: Mapped[str] = mapped_column(String(80))
    revoked_at: Mapped[dt.datetime | None]


class SignInThrottle(Base):
    """Consecutive wrong passwords typed for one username, whether or not it has an account.

    The key is a digest of the name, so names typed by strangers are never stored as they were typed.
    """

    __tablename__ = "sign_in_throttle"

    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    not_before: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(index=True)


class EtlRun(Base):
    __tablename__ = "etl_runs"
    __table_args__ = (
        CheckConstraint("status IN ('success', 'failed')", name="status_known"),
        Index("ix_etl_runs_status_started", "status", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="run")
    started_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime]
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(Text)
    stations: Mapped[int] = mapped_column(default=0)
    prices: Mapped[int] = mapped_column(default=0)
    changes: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)
    duration_seconds: Mapped[float] = mapped_column(default=0.0)
    # Size and CRC-32 of the feed's XML: a feed identical to the last one loaded needs no parsing.
    feed_size: Mapped[int | None] = mapped_column(BigInteger)
    feed_crc32: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)

    @classmethod
    def newest(cls, *conditions: ColumnElement[bool]) -> Select[tuple[EtlRun]]:
        """The runs meeting `conditions`, newest first (of runs started at the same instant, the last recorded)."""
        return select(cls).where(*conditions).order_by(cls.started_at.desc(), cls.id.desc())


class BackfillProgress(Base):
    """How far a backfill of one file went: what the admin page shows, and where running it again resumes."""

    __tablename__ = "backfill_progress"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    feed_size: Mapped[int] = mapped_column(BigInteger)  # the file's identity (see EtlRun): resume only the same file
    feed_crc32: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    phase: Mapped[str] = mapped_column(String(16))  # 'loading', 'aggregates' or 'done'
    done: Mapped[int] = mapped_column(BigInteger)  # bytes of XML read, or days aggregated
    total: Mapped[int] = mapped_column(BigInteger)
    stations_done: Mapped[int]  # stations whose observations are committed: running the file again skips them


class PassRequest(Base):
    """A price update an administrator asked for; the running scheduler answers it (see ingest/scheduler.py)."""

    __tablename__ = "pass_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    requested_at: Mapped[dt.datetime]
    requested_by: Mapped[int | None]  # a user id, kept as a number: the account may be deleted since
    started_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    finished_at: Mapped[dt.datetime | None]
    outcome: Mapped[str | None] = mapped_column(Text)  # the run's summary line, or why it failed


class AdminAction(Base):
    """What an administrator did, to whom, and when: the audit trail the admin page shows.

    People are kept as user ids, not names: once an account is deleted, its rows here name nobody.
    """

    __tablename__ = "admin_actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(index=True)
    actor_id: Mapped[int]
    action: Mapped[str] = mapped_column(String(40))
    target_id: Mapped[int | None]
    detail: Mapped[str] = mapped_column(Text, default="")


class Place(Base):
    """A line of La Poste's postcode base (Licence Ouverte, credit La Poste): a commune, one of its postcodes, and
    the locality the line names inside it, if any; replaced whole by each places import (see ingest/places.py).

    `key` and `locality_key` are folded (place_search's name keys): the place box searches them by prefix.
    """

    __tablename__ = "places"
    __table_args__ = (
        # On PostgreSQL, migration 0006 makes these two with text_pattern_ops: LIKE 'prefix%' is answered from
        # the index whatever the database's collation (not said here, as for Station's fillfactor).
        Index("ix_places_key", "key"),
        Index("ix_places_locality_key", "locality_key"),
        Index("ix_places_postcode", "postcode"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    insee: Mapped[str] = mapped_column(String(5))
    name: Mapped[str] = mapped_column(String(80))  # as La Poste writes it: 'SAINT DENIS'
    key: Mapped[str] = mapped_column(String(80))
    department: Mapped[str] = mapped_column(String(3))  # from the INSEE code: '93', '2A', '974'
    postcode: Mapped[str] = mapped_column(String(5))
    locality: Mapped[str | None] = mapped_column(String(80))  # La Poste's 'Ligne_5'
    locality_key: Mapped[str | None] = mapped_column(String(80))
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)


class AlertRule(Base):
    """A price alert someone set (see alerts/rules.py for the kinds and what each column means to a kind).

    `threshold` is a price in euros per litre, or for a drop the euros it must fall by; `station_id` is one
    of the person's stations; `place`, `latitude`, `longitude` and `radius_km` describe a saved place.
    """

    __tablename__ = "alert_rules"
    __table_args__ = (
        CheckConstraint("kind IN ('price_below', 'drop', 'area_below', 'rupture', 'digest')", name="alert_kind_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    station_id: Mapped[int | None] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"))
    gastype_id: Mapped[int | None] = mapped_column(ForeignKey("gas_types.id"))
    threshold: Mapped[Decimal | None]
    place: Mapped[str | None] = mapped_column(String(120))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    radius_km: Mapped[float | None] = mapped_column(Float)
    paused: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime]


class AlertState(Base):
    """What the last evaluation found of one rule: a mail goes when `active` changes, never while it stays."""

    __tablename__ = "alert_states"

    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    active: Mapped[bool]
    changed_at: Mapped[dt.datetime]


class AlertMailDay(Base):
    """How many alert mails one person was sent on one day (Paris time), for the daily cap."""

    __tablename__ = "alert_mail_days"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # 'YYYY-MM-DD'
    sent: Mapped[int] = mapped_column(default=0)


class AlertOutbox(Base):
    """An alert mail composed and not sent yet: sent at the end of the pass, or retried at the next one."""

    __tablename__ = "alert_outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime]
    subject: Mapped[str] = mapped_column(String(200))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
