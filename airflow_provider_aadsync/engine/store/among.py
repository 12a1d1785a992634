"""``column IN (values)`` for many values, bound as one parameter instead of one per value.

SQLAlchemy renders ``column.in_(values)`` as one bound parameter per value, each coerced, named and rendered in Python
on every execution: a first full sync of 100,000 users bound about 1.5 million of them. :func:`among` binds the whole
list once, as a JSON array that SQLite reads with ``json_each`` and as an array PostgreSQL compares with ``= ANY``: the
same rows, the same index lookups, and no limit on the number of keys (SQLite binds at most 32,766 parameters). A
lookup of 2,000 ids costs a third less; a first full sync of 100,000 users about 1 s of 33 on SQLite, and 9 s of 59 on
PostgreSQL, where each value also travelled in the statement's text (bench/README, tenth run).
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from airflow_provider_aadsync.engine.store.errors import StoreError


class _ValueList(sa.types.TypeDecorator[list[Any]]):
    """A Python list bound as one parameter: JSON text for SQLite's ``json_each``, an array elsewhere."""

    impl = sa.types.Text
    cache_ok = True

    def __init__(self, item_type: sa.types.TypeEngine[Any]) -> None:
        super().__init__()
        self.item_type = item_type

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            # Text keys as text[]: a varchar(n)[] cast would cut a longer key to n characters, and it could then find
            # the row whose key is that prefix (bulk.py sends text as text[] for the same reason).
            item = sa.types.Text() if isinstance(self.item_type, sa.types.String) else self.item_type
            return dialect.type_descriptor(postgresql.ARRAY(item))
        return dialect.type_descriptor(sa.types.Text())

    def process_bind_param(self, value: list[Any] | None, dialect: Dialect) -> Any:
        if value is None:
            return value
        if dialect.name == "postgresql":
            return [_plain(item) if hasattr(item, "item") else item for item in value]
        return json.dumps(value, separators=(",", ":"), default=_plain)


def _plain(value: Any) -> Any:
    """A NumPy scalar (a key read from a frame) as the Python value it holds; anything else is refused."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"a key of type {type(value).__name__} cannot be bound in a value list")


class _Among(ColumnElement[bool]):
    """``column`` is one of the values of a bound list (compiled per dialect below)."""

    inherit_cache = True
    type = sa.Boolean()
    _is_implicitly_boolean = True  # a comparison: SQLite needs no "= 1" after it (which would cost its index)
    _traverse_internals = [  # noqa: RUF012 - SQLAlchemy's own declaration of what makes the cache key
        ("column", InternalTraversal.dp_clauseelement),
        ("values", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: ColumnElement[Any], values: sa.BindParameter[Any]) -> None:
        self.column = column
        self.values = values


@compiles(_Among, "sqlite")
def _among_sqlite(element: _Among, compiler: Any, **kw: Any) -> str:
    column, values = compiler.process(element.column, **kw), compiler.process(element.values, **kw)
    return f"{column} IN (SELECT value FROM json_each({values}))"


@compiles(_Among)
def _among_any(element: _Among, compiler: Any, **kw: Any) -> str:
    column, values = compiler.process(element.column, **kw), compiler.process(element.values, **kw)
    return f"{column} = ANY ({values})"


def among(column: ColumnElement[Any], values: Collection[Any]) -> ColumnElement[bool]:
    """``column.in_(values)`` for a collection of keys, bound as one parameter (see the module's text); no keys match
    no row. A subquery of keys stays ``column.in_(query)``."""
    listed = list(values)
    if not listed:
        return sa.false()
    return _Among(column, sa.bindparam(None, listed, type_=_ValueList(column.type), unique=True))


@functools.cache
def require_json_functions(connect: Callable[[str], sqlite3.Connection] = sqlite3.connect) -> None:
    """Refuse, with the reason, an SQLite library without its JSON functions (built in since 3.38; the json1 extension
    most builds carried before): a store on it would fail at its first lookup with "no such table: json_each"."""
    connection = connect(":memory:")
    try:
        connection.execute("SELECT value FROM json_each('[1]')").fetchall()
    except sqlite3.OperationalError as error:
        raise StoreError(
            f"the SQLite library this Python uses ({sqlite3.sqlite_version}) has no JSON functions ({error}); the "
            "store needs them: use a Python linked with SQLite 3.38 or later (or one built with json1), or a "
            "PostgreSQL store"
        ) from None
    finally:
        connection.close()
