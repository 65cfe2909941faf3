"""Writing many rows at once, in the database's own encoding, with the columns models.py declares.

Rows are tuples whose values are already what the database stores (see `Encoder` and
`storage_table`), so nothing is converted row by row on the way. On SQLite they go through the
driver's executemany; on PostgreSQL they are COPYed into a temporary table, then moved into the
real one with one INSERT ... SELECT ... ON CONFLICT, inside the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import operator
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Dialect,
    MetaData,
    Table,
    TypeDecorator,
    bindparam,
    delete,
    dialects,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import DBAPIError

from ingest.records import opening_hours_document
from models import Base, Price, PriceHistory, Rupture, Station, json_text, sqlite_time_text
from session import dialect_insert
from utils import fold

BATCH_ROWS = 5_000
_COPIES = itertools.count(1)
# Types with an OID below this are PostgreSQL's own, the same in every database; a type made by CREATE TYPE
# (or an extension) has one of its database's, which may change: its columns are asked for each COPY.
FIRST_USER_OID = 16_384
# The type OIDs of each list of column types that binary COPY has written, for this process.
_COPY_TYPES: dict[tuple[str, ...], list[int]] = {}


def columns(model: type[Base]) -> tuple[str, ...]:
    """The names of `model`'s columns, in the order models.py declares them: the order of a row's values."""
    return tuple(model.__table__.columns.keys())


STATION_ROW = columns(Station)
PRICE_ROW = columns(Price)
HISTORY_ROW = columns(PriceHistory)
RUPTURE_ROW = columns(Rupture)
# A station's columns that its <pdv> says; the others are its id and what a run keeps about it.
STATION_COLUMNS = tuple(name for name in STATION_ROW if name not in ("id", "last_seen_at", "fingerprint"))
# The shape each document column is stored in, from the hashable value the parser gives.
DOCUMENT_SHAPES: dict[str, Callable[[Any], Any]] = {"opening_hours": opening_hours_document, "services": list}


@functools.cache
def storage_table(table: Table, dialect_name: str) -> Table:
    """`table` with each column typed as what the database stores, so values bind without conversion."""
    dialect = dialects.registry.load(dialect_name)()  # loads PostgreSQL's dialects only when it is the database
    kept = []
    for col in table.columns:
        kind = col.type.load_dialect_impl(dialect) if isinstance(col.type, TypeDecorator) else col.type
        kept.append(Column(col.name, kind, primary_key=col.primary_key))
    return Table(table.name, MetaData(), *kept)


def storage(conn: Connection, model: type[Base]) -> Table:
    return storage_table(model.__table__, conn.dialect.name)


class Encoder:
    """Encodes feed values the way the models store them, remembering each distinct value."""

    _station_columns = operator.itemgetter(*STATION_COLUMNS)

    def __init__(self, dialect: Dialect):
        self.sqlite = dialect.name == "sqlite"
        self._times: dict[dt.datetime, Any] = {}
        self._documents: dict[Hashable, str] = {}

    def time(self, moment: dt.datetime | None) -> Any:
        if moment is None or not self.sqlite:
            return moment
        text = self._times.get(moment)
        if text is None:
            text = self._times[moment] = sqlite_time_text(moment)
        return text

    def document(self, value: Hashable, shape: Callable[[Any], Any] = list) -> str | None:
        if value is None:
            return None
        text = self._documents.get(value)
        if text is None:
            text = self._documents[value] = json_text(shape(value))
        return text

    def station_values(self, station: dict) -> tuple:
        """The station's STATION_COLUMNS, encoded."""
        encoded = {name: self.document(station[name], shape) for name, shape in DOCUMENT_SHAPES.items()}
        encoded["search_text"] = fold(f"{station['address']} {station['zip_code']} {station['town']}")
        return self._station_columns(station | encoded)


def batches(rows: Iterable, size: int = BATCH_ROWS) -> Iterator[list]:
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def upsert(
    conn: Connection,
    target: Table,
    names: Sequence[str],
    rows: Iterable[tuple],
    update_columns: Sequence[str] = (),
    where=None,
) -> int:
    """INSERT ... ON CONFLICT (primary key) DO UPDATE `update_columns`, or DO NOTHING without any.

    `rows` are tuples matching `names`, already in storage encoding (see `storage_table`); an
    iterator is consumed as it goes. With `update_columns`, no two rows may share a key (PostgreSQL
    refuses to update a row twice in one statement). Returns the number of rows inserted or updated.
    """
    if conn.dialect.name == "postgresql":
        source = _copied(conn, target, names, rows)
        if source is None:
            return 0
        stmt = dialect_insert("postgresql", target).from_select(names, select(*(source.c[n] for n in names)))
        stmt = _on_conflict(stmt, target, update_columns, where).execution_options(preserve_rowcount=True)
        return conn.execute(stmt).rowcount
    stmt = dialect_insert(conn.dialect.name, target).values({name: bindparam(name) for name in names})
    return _execute_many(conn, _on_conflict(stmt, target, update_columns, where), names, rows)


def _on_conflict(stmt, target: Table, update_columns: Sequence[str], where):
    keys = [c.name for c in target.primary_key.columns]
    if not update_columns:
        return stmt.on_conflict_do_nothing(index_elements=keys)
    set_ = {c: stmt.excluded[c] for c in update_columns}
    return stmt.on_conflict_do_update(index_elements=keys, set_=set_, where=where and where(target, stmt))


def _copied(conn: Connection, target: Table, names: Sequence[str], rows: Iterable[tuple]) -> Table | None:
    """A temporary table of `names` (typed as in `target`) holding `rows`, COPYed in; it goes at commit.

    None when there is no row: nothing to make a table for.
    """
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        return None
    copy_table = Table(
        f"copy_{target.name}_{next(_COPIES)}",  # a table may be written twice in one transaction
        MetaData(),
        *(Column(name, target.c[name].type) for name in names),
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    )
    copy_table.create(conn)
    types = _copy_types(conn, copy_table)
    quote = conn.dialect.identifier_preparer.quote
    statement = f"COPY {quote(copy_table.name)} ({', '.join(map(quote, names))}) FROM STDIN (FORMAT BINARY)"
    dbapi = conn.dialect.loaded_dbapi
    try:
        with conn.connection.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
            copy.set_types(types)
            for row in itertools.chain((first,), rows):
                copy.write_row(row)
    except dbapi.Error as exc:
        raise DBAPIError.instance(statement, None, exc, dbapi.Error) from exc
    return copy_table


def _copy_types(conn: Connection, copy_table: Table) -> list[int]:
    """The type OIDs of `copy_table`'s columns: binary COPY, a sixth of text COPY's client CPU, needs them.

    The database tells them from the table just made, the first time a list of column types is copied;
    PostgreSQL's own types keep their OIDs, so the answer then serves every later COPY of the process.
    """
    key = tuple(str(column.type.compile(conn.dialect)) for column in copy_table.columns)
    types = _COPY_TYPES.get(key)
    if types is None:
        described = conn.execute(select(copy_table).limit(0))
        types = [description[1] for description in described.cursor.description]
        described.close()
        if all(oid < FIRST_USER_OID for oid in types):
            _COPY_TYPES[key] = types
    return types


def update_rows(conn: Connection, target: Table, names: Sequence[str], rows: Iterable[tuple]) -> int:
    """For each row (primary key, then a value for each of `names`), UPDATE `names` of the row with that key.

    As `upsert`: on PostgreSQL, one UPDATE ... FROM the rows COPYed in. `target` has a one-column primary key.
    """
    (key,) = target.primary_key.columns
    if conn.dialect.name == "postgresql":
        source = _copied(conn, target, (key.name, *names), rows)
        if source is None:
            return 0
        stmt = update(target).where(key == source.c[key.name]).values({name: source.c[name] for name in names})
        return conn.execute(stmt.execution_options(preserve_rowcount=True)).rowcount
    where = bindparam("row_key")  # a column's own name is reserved for its SET clause
    stmt = update(target).where(key == where).values({name: bindparam(name) for name in names})
    return _execute_many(conn, stmt, ("row_key", *names), rows)


def _execute_many(conn: Connection, stmt, names: Sequence[str], rows: Iterable[tuple]) -> int:
    """Run `stmt` (whose bound parameters are `names`) for each row, batch by batch; the rows changed."""
    compiled = stmt.compile(dialect=conn.dialect)
    if compiled.positional:
        order = [names.index(name) for name in compiled.positiontup]
        if order != list(range(len(names))):
            rows = map(operator.itemgetter(*order), rows)
    else:
        rows = (dict(zip(names, row, strict=True)) for row in rows)
    sql = str(compiled)
    return sum(conn.exec_driver_sql(sql, batch).rowcount for batch in batches(rows))


def delete_pairs(conn: Connection, target: Table, keys: Sequence[tuple[int, int]]) -> None:
    key_columns = tuple_(target.c.station_id, target.c.gastype_id)
    for batch in batches(keys, 1_000):
        conn.execute(delete(target).where(key_columns.in_(batch)))
