"""Which rows a backup holds, and how a restore puts them back.

A backup holds every account's `users` row (username, e-mail, name, role, created_at and its
settings: yearly consumption, L/100 km, tank), its fuels (`user_gastypes`), its followed stations
with their custom names (`custom_stations`), its price alerts (`alert_rules`), and the `stations`
rows those point to, so that a restore into an empty database keeps its foreign keys (the next price
pass brings them up to date). What the alerts last found (`alert_states`) is not kept: after a
restore, an alert that holds at the next pass is mailed once, as a new alert would be.

It holds no sessions (`user_sessions`): a session restored from a backup could be one its owner
ended since ("sign out everywhere" after losing a phone) and would let that browser back in, and
a file full of live sign-ins would be one more secret to guard; after a restore people sign in
again, which costs them a password. Nor recovery codes (valid ten minutes), the sign-in throttle,
prices, history, brands or ETL runs: the feed and the next imports bring those back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Connection, Select, Table, delete, select, text
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine

from accounts.entries import Entry, email_of, name_of, role_of
from backups.archive import BackupError, Payload
from i18n import N_
from models import AlertRule, CustomStation, Euros, Station, User, UserGasType, UTCDateTime
from session import dialect_insert

Row = dict[str, Any]
ACCOUNT_TABLES: tuple[Table, ...] = (
    User.__table__,
    UserGasType.__table__,
    CustomStation.__table__,
    AlertRule.__table__,
)
# A table filled with its own ids leaves its sequence behind on PostgreSQL: the next insert would collide.
SEQUENCES_AFTER_RESTORE = (
    "SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT max(id) FROM users))",
    "SELECT setval(pg_get_serial_sequence('alert_rules', 'id'), (SELECT coalesce(max(id), 1) FROM alert_rules))",
)
STATION_COLUMNS = [column for column in Station.__table__.columns if column.name != "fingerprint"]


def dump(conn: Connection) -> dict[str, list[Row]]:
    """The backed-up rows of every table, as JSON values, ordered by primary key."""
    tables = {table.name: _json_rows(conn, select(table).order_by(*table.primary_key)) for table in ACCOUNT_TABLES}
    followed = select(CustomStation.station_id).union(
        select(AlertRule.station_id).where(AlertRule.station_id.is_not(None))
    )
    stations = select(*STATION_COLUMNS).where(Station.id.in_(followed)).order_by(Station.id)
    tables[Station.__tablename__] = _json_rows(conn, stations)
    return tables


def _json_rows(conn: Connection, query: Select) -> list[Row]:
    return [{key: _json_value(value) for key, value in row.items()} for row in conn.execute(query).mappings()]


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value) if isinstance(value, Decimal) else value  # an alert's threshold: no float's rounding


@dataclass(frozen=True)
class Content:
    """The rows of a backup, checked against the tables of this version and typed as the models want them."""

    users: list[Row]
    fuels: list[Row]
    followed: list[Row]
    alerts: list[Row]
    stations: list[Row]

    @classmethod
    def of(cls, payload: Payload) -> Content:
        tables = payload.get("tables")
        if not isinstance(tables, dict):
            raise BackupError(N_("the backup holds no tables"))
        users, fuels, followed, alerts = (_typed_rows(tables, table) for table in ACCOUNT_TABLES)
        return cls(users, fuels, followed, alerts, _typed_rows(tables, Station.__table__))


def _typed_rows(tables: dict, table: Table) -> list[Row]:
    rows = tables.get(table.name, [])
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise BackupError(N_("the backup's {table} table is not a list of rows"), table=table.name)
    columns = {column.name: column for column in table.columns}
    unknown = {key for row in rows for key in row} - columns.keys()
    if unknown:
        raise BackupError(
            N_("the backup's {table} rows have columns this version lacks: {columns}"),
            table=table.name,
            columns=", ".join(sorted(unknown)),
        )
    try:
        return [{key: _typed_value(columns[key].type, value) for key, value in row.items()} for row in rows]
    except (ValueError, InvalidOperation) as exc:
        raise BackupError(
            N_("the backup's {table} table holds a bad time or amount: {error}"), table=table.name, error=exc
        ) from None


def _typed_value(kind: TypeEngine, value: Any) -> Any:
    if isinstance(value, str) and isinstance(kind, UTCDateTime):
        return dt.datetime.fromisoformat(value)
    if isinstance(value, str) and isinstance(kind, Euros):
        return Decimal(value)
    return value


@dataclass(frozen=True)
class Restored:
    accounts: int
    fuels: int
    stations: int


def put_back(session: Session, content: Content, entries: Mapping[str, Entry]) -> Restored:
    """Restore the rows of the accounts in `entries` (username -> the credentials entry they will have).

    Each account's users row is updated, or created with its backed-up id when that id is free; its
    e-mail, name and role follow `entries`, its settings the backup. Its fuels, followed stations and
    alerts become the backup's; stations missing from the database are added. Other accounts are untouched.
    """
    current = {user.username: user for user in session.scalars(select(User))}
    taken = {user.id for user in current.values()}
    email_owners = {user.email: user.username for user in current.values()}
    ids: dict[int, int] = {}  # the backup's user id -> the id now
    for row in content.users:
        username = row["username"]
        entry = entries.get(username)
        if entry is None:
            continue
        values = {**row, "email": email_of(entry), "name": name_of(username, entry), "role": role_of(entry)}
        owner = email_owners.get(values["email"])
        if owner not in (None, username):
            raise BackupError(
                N_(
                    "the account {username} cannot be restored: its e-mail address is now {owner}'s; "
                    "nothing was changed"
                ),
                username=username,
                owner=owner,
            )
        backed_up_id = values.pop("id")
        user = current.get(username)
        if user is None:
            user = User(**values, id=None if backed_up_id in taken else backed_up_id)
            session.add(user)
            session.flush()
            taken.add(user.id)
        else:
            for key, value in values.items():
                setattr(user, key, value)
        ids[backed_up_id] = user.id
    session.flush()
    fuels = [{**row, "user_id": ids[row["user_id"]]} for row in content.fuels if row["user_id"] in ids]
    followed = [{**row, "user_id": ids[row["user_id"]]} for row in content.followed if row["user_id"] in ids]
    for model in (UserGasType, CustomStation, AlertRule):
        session.execute(delete(model).where(model.user_id.in_(ids.values())))
    alerts = _alerts(session, content.alerts, ids)
    needed = {row["station_id"] for row in followed} | {row["station_id"] for row in alerts if row["station_id"]}
    stations = [row for row in content.stations if row["id"] in needed]
    if stations:
        added = dialect_insert(session.get_bind().dialect.name, Station).on_conflict_do_nothing(
            index_elements=[Station.id]
        )
        session.execute(added, stations)
    kept_ids, new_ids = [a for a in alerts if "id" in a], [a for a in alerts if "id" not in a]  # one shape a batch
    for model, rows in ((UserGasType, fuels), (CustomStation, followed), (AlertRule, kept_ids), (AlertRule, new_ids)):
        if rows:
            session.execute(model.__table__.insert(), rows)
    if session.get_bind().dialect.name == "postgresql" and ids:
        for statement in SEQUENCES_AFTER_RESTORE:
            session.execute(text(statement))
    return Restored(accounts=len(ids), fuels=len(fuels), stations=len(followed))


def _alerts(session: Session, rows: list[Row], ids: dict[int, int]) -> list[Row]:
    """The backed-up alerts of the restored accounts, with their owners' ids now; each keeps its id when free."""
    taken = set(session.scalars(select(AlertRule.id)))
    alerts = []
    for row in rows:
        if row["user_id"] in ids:
            alert = {**row, "user_id": ids[row["user_id"]]}
            if alert["id"] in taken:
                del alert["id"]
            alerts.append(alert)
    return alerts
