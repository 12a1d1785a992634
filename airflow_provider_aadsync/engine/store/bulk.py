"""PostgreSQL bulk work: rows written as one array per column, and planner statistics kept fresh after bulk writes.

Rows as arrays: a sync pass and an import write hundreds of thousands of rows. SQLAlchemy's executemany on psycopg2
sends them as multi-row ``VALUES`` statements of 1,000 rows, each row's parameters quoted and sent on their own: 82,000
join keys took 3.8 s. ``INSERT ... SELECT * FROM unnest(<array>, <array>, ...)`` sends one array per column and lets
the server unpack them (0.85 s for the same rows, the same upsert). Only plain column types take this path (text,
numbers, booleans, times); others (JSON, binary) keep the executemany.

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

#: Rows per unnest statement: bounds the statement's size (one array per column, the arrays quoted by the driver).
UNNEST_CHUNK_ROWS = 2_000

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


@functools.lru_cache(maxsize=64)
def _unnest_insert(table: sa.Table, names: tuple[str, ...], update: tuple[str, ...] | None) -> sa.Insert:
    """``INSERT INTO table (names) SELECT * FROM unnest(:name::type[], ...)``, upserting ``update`` on conflict."""
    arrays = [
        sa.cast(sa.bindparam(name, type_=postgresql.ARRAY(table.c[name].type)), postgresql.ARRAY(table.c[name].type))
        for name in names
    ]
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
    per column and statement of :data:`UNNEST_CHUNK_ROWS` rows."""
    statement = _unnest_insert(table, tuple(columns), tuple(update) if update else None)
    for start in range(0, count, UNNEST_CHUNK_ROWS):
        end = min(start + UNNEST_CHUNK_ROWS, count)
        connection.execute(
            statement,
            {
                name: values[start:end] if isinstance(values, list) else [values] * (end - start)
                for name, values in columns.items()
            },
        )


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
    if stale:
        preparer = connection.dialect.identifier_preparer
        connection.exec_driver_sql("ANALYZE " + ", ".join(preparer.format_table(by_name[name]) for name in stale))
        log.info("refreshed the planner statistics of %s", ", ".join(sorted(stale)))
    return sorted(stale)


def analyze_written(connection: Connection, written: Mapping[str, int], tables: Sequence[sa.Table]) -> list[str]:
    """Analyze those of ``tables`` that ``written`` (rows written by table, e.g. in this transaction: PostgreSQL's own
    counters see them only once it commits) shows :data:`STALE_ROWS` or more rows into; nothing on other stores.
    Returns the tables analyzed."""
    if connection.dialect.name != "postgresql":
        return []
    filled = [table for table in tables if written.get(table.name, 0) >= STALE_ROWS]
    if filled:
        preparer = connection.dialect.identifier_preparer
        connection.exec_driver_sql("ANALYZE " + ", ".join(preparer.format_table(table) for table in filled))
    return sorted(table.name for table in filled)
