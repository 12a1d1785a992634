"""store.among: ``column IN (keys)`` bound as one parameter, the same rows as ``column.in_(keys)``.

The checks take a ``store``: SQLite here, PostgreSQL where tests/integration/test_store_postgres.py collects them again.
"""

from __future__ import annotations

import datetime as dt
import sqlite3

import numpy as np
import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.store import Store, StoreError, link
from airflow_provider_aadsync.engine.store.among import among, require_json_functions

#: More keys than SQLite binds parameters in one statement (32,766): ``in_`` could not take them at once.
MANY = 40_000
#: Anchors as the connectors write them, and text a JSON array must carry unchanged.
ODD_ANCHORS = ["b'quote", 'dq"uote', "back\\slash", "Müller ünïcødé", "tab\there", "CN=x,OU=y"]


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}", instance="test") as opened:
        yield opened


def _links(store: Store) -> None:
    now = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
    anchors = [f"a{number:05d}" for number in range(MANY)] + ODD_ANCHORS
    columns = {
        "connector": "ad",
        "anchor": anchors,
        "mv_id": list(range(1, len(anchors) + 1)),
        "rule": "In from AD - User Join",
        "link_type": "join",
        "created_at": now,
    }
    with store.transaction() as connection:
        store.write_columns(connection, link, columns)


def check_among_finds_what_in_finds(store: Store) -> None:
    """Integer and text keys, keys no row holds, odd text, NumPy integers: the rows of ``in_``, none for no keys."""
    _links(store)
    int_keys = [3, 7, 7, 11, 10**9]
    text_keys = ["a00002", "a00005", "missing", *ODD_ANCHORS]
    with store.engine.connect() as connection:

        def found(condition: sa.ColumnElement[bool]) -> list[tuple[str, int]]:
            query = sa.select(link.c.anchor, link.c.mv_id).where(link.c.connector == "ad", condition)
            return sorted(tuple(row) for row in connection.execute(query))

        assert found(among(link.c.mv_id, int_keys)) == found(link.c.mv_id.in_(int_keys))
        assert [mv_id for _anchor, mv_id in found(among(link.c.mv_id, int_keys))] == [3, 7, 11]
        assert found(among(link.c.anchor, text_keys)) == found(link.c.anchor.in_(text_keys))
        assert {anchor for anchor, _mv_id in found(among(link.c.anchor, text_keys))} == {
            "a00002",
            "a00005",
            *ODD_ANCHORS,
        }
        assert found(among(link.c.mv_id, np.array([4, 5], dtype=np.int64))) == found(link.c.mv_id.in_([4, 5]))
        assert found(among(link.c.mv_id, set())) == []
        # A key longer than the column (255) finds nothing, not the row holding its first 255 characters.
        long_key = "a00003" + "x" * 300
        connection.execute(sa.update(link).where(link.c.anchor == "a00003").values(anchor=long_key[:255]))
        assert found(among(link.c.anchor, [long_key])) == found(link.c.anchor.in_([long_key])) == []
        # A deleting statement takes it as a reading one does.
        connection.execute(sa.delete(link).where(among(link.c.anchor, ODD_ANCHORS[:2])))
        assert found(among(link.c.anchor, ODD_ANCHORS)) == found(link.c.anchor.in_(ODD_ANCHORS[2:]))
        assert len(found(among(link.c.anchor, ODD_ANCHORS))) == len(ODD_ANCHORS) - 2


def check_among_binds_one_parameter_for_any_number_of_keys(store: Store) -> None:
    """40,000 keys in one statement (past SQLite's limit of bound parameters), and one statement text for every
    number of keys: the compiled form is cached, not rendered again per list."""
    _links(store)
    keys = list(range(1, MANY + 1))
    with store.engine.connect() as connection:
        query = sa.select(sa.func.count()).select_from(link).where(among(link.c.mv_id, keys))
        assert connection.execute(query).scalar_one() == MANY
        texts = {
            str(sa.select(link.c.anchor).where(among(link.c.mv_id, keys[:size])).compile(dialect=connection.dialect))
            for size in (1, 2, 500)
        }
        compiled = sa.select(link.c.anchor).where(among(link.c.mv_id, keys)).compile(dialect=connection.dialect)
    assert len(texts) == 1
    assert len(compiled.params) == 1


def test_among_finds_what_in_finds(store):
    check_among_finds_what_in_finds(store)


def test_among_binds_one_parameter_for_any_number_of_keys(store):
    check_among_binds_one_parameter_for_any_number_of_keys(store)


def test_among_plans_an_index_lookup_on_sqlite(store):
    """SQLite looks the keys up through the index: no ``= 1`` after the condition (SQLAlchemy adds one to a boolean
    that is not a comparison), which would make it scan the table."""
    _links(store)
    with store.engine.connect() as connection:
        compiled = sa.select(link.c.anchor).where(among(link.c.mv_id, [1, 2])).compile(dialect=connection.dialect)
        plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", ("[1,2]",)).all()
    details = " ".join(row[-1] for row in plan)
    assert "= 1" not in str(compiled)
    assert "ix_link_mv" in details and "SCAN link" not in details, details


def test_among_refuses_a_key_json_cannot_carry(store):
    with store.engine.connect() as connection, pytest.raises(sa.exc.StatementError, match="object"):
        connection.execute(sa.select(link.c.anchor).where(among(link.c.anchor, [object()])))


def test_an_sqlite_without_json_functions_is_refused_with_the_reason():
    class WithoutJson(sqlite3.Connection):
        def execute(self, sql, *args):
            if "json_each" in sql:
                raise sqlite3.OperationalError("no such table: json_each")
            return super().execute(sql, *args)

    def connect(path):
        return sqlite3.connect(path, factory=WithoutJson)

    with pytest.raises(StoreError, match=r"no JSON functions \(no such table: json_each\).*SQLite 3\.38"):
        require_json_functions(connect)
    require_json_functions()  # this machine's SQLite has them
