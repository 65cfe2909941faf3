"""The data model: typed SQLAlchemy 2 declarative models.

Units are fixed here once: coordinates in WGS84 degrees, prices in euros per
litre (stored as integer thousandths so no float ever touches a price), and
timestamps timezone-aware, stored as UTC.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from utils import UTC

THOUSAND = Decimal(1000)


class UTCDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out, on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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
    type_annotation_map = {  # noqa: RUF012 - read by SQLAlchemy at class creation
        dt.datetime: UTCDateTime,
        Decimal: Euros,
        dict[str, Any]: JSON,
        list[Any]: JSON,
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
    last_seen_at: Mapped[dt.datetime]


class Price(Base):
    """The current price of one fuel at one station."""

    __tablename__ = "prices"
    __table_args__ = (Index("ix_prices_gastype_price", "gastype_id", "price"),)

    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"), primary_key=True)
    gastype_id: Mapped[int] = mapped_column(ForeignKey("gas_types.id"), primary_key=True)
    price: Mapped[Decimal]
    updated_at: Mapped[dt.datetime]


class PriceHistory(Base):
    """One row per observed price declaration; never rewritten."""

    __tablename__ = "price_history"

    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"), primary_key=True)
    gastype_id: Mapped[int] = mapped_column(ForeignKey("gas_types.id"), primary_key=True)
    updated_at: Mapped[dt.datetime] = mapped_column(primary_key=True)
    price: Mapped[Decimal]


class Rupture(Base):
    """Current out-of-stock state of one fuel at one station."""

    __tablename__ = "ruptures"
    __table_args__ = (
        CheckConstraint("kind IS NULL OR kind IN ('temporaire', 'definitive')", name="rupture_kind_known"),
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
    error: Mapped[str | None] = mapped_column(Text)
