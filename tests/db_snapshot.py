"""Reading the database back in tests: table snapshots, current prices, history and the run log."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import func, select

import models
from models import EtlRun, Price, PriceHistory, Rupture, Station

DATA_TABLES = (Station, Price, PriceHistory, Rupture)


def table_rows(engine) -> dict[str, list[tuple]]:
    """Every row of the four data tables, ordered by primary key."""
    with engine.connect() as conn:
        return {
            model.__tablename__: [
                tuple(row)
                for row in conn.execute(select(model.__table__).order_by(*model.__table__.primary_key.columns))
            ]
            for model in DATA_TABLES
        }


def contents(engine, *, last_seen: bool = True) -> dict[str, list[tuple]]:
    """Every row of every table but the records of the work done, etl_runs and backfill_progress (optionally
    without the stations' last_seen_at)."""
    result = {}
    with engine.connect() as conn:
        for table in models.Base.metadata.sorted_tables:
            if table.name in ("etl_runs", "backfill_progress"):
                continue
            columns = [c for c in table.columns if last_seen or c.name != "last_seen_at"]
            result[table.name] = [
                tuple(row) for row in conn.execute(select(*columns).order_by(*table.primary_key.columns))
            ]
    return result


def etl_runs(engine) -> list:
    with engine.connect() as conn:
        return list(conn.execute(select(EtlRun.__table__).order_by(EtlRun.id)))


def current_prices(engine) -> dict[tuple[int, int], tuple[Decimal, dt.datetime]]:
    with engine.connect() as conn:
        rows = conn.execute(select(Price.station_id, Price.gastype_id, Price.price, Price.updated_at))
        return {(s, f): (p, u) for s, f, p, u in rows}


def history(engine) -> dict[tuple[int, int, dt.datetime], Decimal]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(PriceHistory.station_id, PriceHistory.gastype_id, PriceHistory.updated_at, PriceHistory.price)
        )
        return {(s, f, u): p for s, f, u, p in rows}


def count(engine, model) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(model))
