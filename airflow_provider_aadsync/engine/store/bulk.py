"""PostgreSQL bulk work: rows written as one array per column, and planner statistics kept fresh after bulk writes.

Rows as arrays: a sync pass and an import write hundreds of thousands of rows. SQLAlchemy's executemany on psycopg2
sends an upsert one statement per row: 82,000 join keys took 3.8 s. ``INSERT ... SELECT * FROM unnest(<array>,
<array>, ...)`` sends one array per column and lets the server unpack them (0.85 s for the same rows, the same upsert).
What the row by row path did, the arrays do too: a text over its column's length is refused (the arrays are of
unlimited text, checked when assigned to the column: cast to ``varchar(n)[]`` they would be cut silently), and of
several rows with one key in one upsert the last one wins (PostgreSQL refuses to update a row twice in one statement:
the earlier ones are dropped first). Only plain column types take this path (text, numbers, booleans, times), with
values of those types; others (JSON, binary) keep the executemany.

Statistics: PostgreSQL plans from statistics that autovacuum refreshes in the background, a minute or more after a
commit. A step that runs straight after a bulk write (a full sync after a full import, an unchanged full sync after
the first one) plans on empty or stale statistics: the sync memo's join of links and member changes took 25 s instead
of 0.02 s. :func:`refresh_statistics` analyzes the store's tables whose rows changed by a tenth or more since they were
last analyzed, as autovacuum would, before a pass reads them; :func:`analyze_written` analyzes the tables a pass has
just filled itself before it reads them (its own rows count in PostgreSQL's statistics only once it commits): a first
full sync's inbound reference step took 9.0 s on the metaverse tables' empty statistics, 3.5 s after.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)

#: Rows per unnest statement, and about the most text one statement carries (one array per column, quoted by the
#: driver into one statement, copied on the way): wide rows (an object's attributes) go fewer at a time.
UNNEST_CHUNK_ROWS = 2_000
UNNEST_CHUNK_BYTES = 16 * 1024 * 1024

#: Column types written as arrays, each with the Python type its values must have (None aside): an array holds one
#: type, where a row's parameter of another type would be converted by the column's assignment cast.
_ARRAY_TYPES: tuple[tuple[type[sa.types.TypeEngine[Any]], type], ...] = (
    (sa.String, str),
    (sa.Boolean, bool),
    (sa.Integer, int),
    (sa.DateTime, dt.datetime),
)

#: Rows changed since the last analyze, as a share of the table's rows, from which a table is analyzed again
#: (autovacuum's default autovacuum_analyze_scale_factor), and the fewest changed rows that are worth it.
STALE_SHARE = 0.1
STALE_ROWS = 1_000


def writes_as_arrays(connection: Connection, table: sa.Table, columns: Mapping[str, Any]) -> bool:
    """Whether :func:`write_as_arrays` can write these columns (name → values, or one value for every row) of
    ``table`` on this connection: PostgreSQL, and every column of a plain type holding values of that type only."""
    if connection.dialect.name != "postgresql":
        return False
    for name, values in columns.items():
        column_type = table.c[name].type
        expected = next((python for sql, python in _ARRAY_TYPES if isinstance(column_type, sql)), None)
        if expected is None:
            return False
        for value in values if isinstance(values, list) else [values]:
            if value is not None and type(value) is not expected and not isinstance(value, expected):
                return False
            if expected is int and type(value) is bool:  # a boolean in an integer column: not one array type
                return False
    return True


def _array_of(column: sa.Column[Any]) -> postgresql.ARRAY[Any]:
    """The array type a column's values travel in: text of any length for text (its length is checked when the value
    is assigned to the column, as a row's would be), the column's own type for the others."""
    return postgresql.ARRAY(sa.Text() if isinstance(column.type, sa.String) else column.type)


@functools.lru_cache(maxsize=64)
def _unnest_insert(table: sa.Table, names: tuple[str, ...], update: tuple[str, ...] | None) -> sa.Insert:
    """``INSERT INTO table (names) SELECT * FROM unnest(:name::type[], ...)``, upserting ``update`` on conflict."""
    arrays = [sa.cast(sa.bindparam(name, type_=_array_of(table.c[name])), _array_of(table.c[name])) for name in names]
    rows = sa.func.unnest(*arrays).table_valued(*names).render_derived(name="unnested")
    statement = postgresql.insert(table).from_select(list(names), sa.select(*[rows.c[name] for name in names]))
    if update is None:
        return statement
    key = [column.name for column in table.primary_key.columns]
    return statement.on_conflict_do_update(index_elements=key, set_={name: statement.excluded[name] for name in update})


def write_as_arrays(
    connection: Connection, table: sa.Table, columns: Mapping[str, Any], count: int, update: Sequence[str] | None
) -> None:
    """Insert (``update`` given: upsert) ``count`` rows given as columns (a non-list value is every row's), one array
    per column, :data:`UNNEST_CHUNK_ROWS` rows or :data:`UNNEST_CHUNK_BYTES` of text a statement."""
    if update:
        columns, count = _last_of_each_key(table, columns, count)
    statement = _unnest_insert(table, tuple(columns), tuple(update) if update else None)
    step = _rows_per_statement(columns, count)
    for start in range(0, count, step):
        end = min(start + step, count)
        connection.execute(
            statement,
            {
                name: values[start:end] if isinstance(values, list) else [values] * (end - start)
                for name, values in columns.items()
            },
        )


def _last_of_each_key(table: sa.Table, columns: Mapping[str, Any], count: int) -> tuple[dict[str, Any], int]:
    """The columns with, of several rows with one primary key, only the last (the row by row upsert's outcome)."""
    keys = [columns[column.name] for column in table.primary_key.columns]
    rows = zip(*(values if isinstance(values, list) else [values] * count for values in keys), strict=True)
    last = {key: position for position, key in enumerate(rows)}
    if len(last) == count:
        return dict(columns), count
    kept = sorted(last.values())
    return {
        name: [values[position] for position in kept] if isinstance(values, list) else values
        for name, values in columns.items()
    }, len(kept)


def _rows_per_statement(columns: Mapping[str, Any], count: int) -> int:
    """:data:`UNNEST_CHUNK_ROWS`, fewer when the first rows' text says a statement would carry more than
    :data:`UNNEST_CHUNK_BYTES`."""
    sample = min(count, 100)
    text = sum(
        len(value)
        for values in columns.values()
        if isinstance(values, list)
        for value in values[:sample]
        if type(value) is str
    )
    per_row = text / sample if sample else 0
    return max(1, min(UNNEST_CHUNK_ROWS, int(UNNEST_CHUNK_BYTES / per_row) if per_row else UNNEST_CHUNK_ROWS))


def refresh_statistics(connection: Connection, tables: Sequence[sa.Table]) -> list[str]:
    """Analyze those of ``tables`` whose rows changed by :data:`STALE_SHARE` or more since their last analyze
    (PostgreSQL's own counters, committed changes only); nothing on other stores. Returns the tables analyzed."""
    if connection.dialect.name != "postgresql" or not tables:
        return []
    by_name = {table.name: table for table in tables}
    stale = [
        name
        for name, changed, rows in connection.execute(
            sa.text(
                "SELECT relname, n_mod_since_analyze, n_live_tup FROM pg_stat_user_tables "
                "WHERE schemaname = current_schema() AND relname = ANY(:names)"
            ),
            {"names": sorted(by_name)},
        )
        if changed >= STALE_ROWS and changed >= STALE_SHARE * rows
    ]
    _analyze(connection, [by_name[name] for name in stale])
    if stale:
        log.info("refreshed the planner statistics of %s", ", ".join(sorted(stale)))
    return sorted(stale)


def _analyze(connection: Connection, tables: Sequence[sa.Table]) -> None:
    """``ANALYZE (SKIP_LOCKED)`` of ``tables``, in name order: a table a VACUUM or another ANALYZE holds is skipped
    (autovacuum is doing it), not waited for."""
    if tables:
        preparer = connection.dialect.identifier_preparer
        names = sorted(preparer.format_table(table) for table in tables)
        connection.exec_driver_sql("ANALYZE (SKIP_LOCKED) " + ", ".join(names))


def analyze_written(connection: Connection, written: Mapping[str, int], tables: Sequence[sa.Table]) -> list[str]:
    """Analyze those of ``tables`` that ``written`` (rows written by table, e.g. in this transaction: PostgreSQL's own
    counters see them only once it commits) shows :data:`STALE_ROWS` or more rows into; nothing on other stores.
    Returns the tables analyzed."""
    if connection.dialect.name != "postgresql":
        return []
    filled = [table for table in tables if written.get(table.name, 0) >= STALE_ROWS]
    _analyze(connection, filled)
    return sorted(table.name for table in filled)
