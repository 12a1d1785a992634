from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.store import (
    SCHEMA_VERSION,
    SQLITE_CACHE_MIB,
    Store,
    StoreLockedError,
    as_utc,
    cs_object,
    larger_page_cache,
)


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}", instance="test") as opened:
        yield opened


def test_open_creates_schema_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'nested' / 'store.sqlite'}"
    with Store.open(url) as first:
        assert first.current_version() == SCHEMA_VERSION
    with Store.open(url) as second:
        assert second.migrate() == SCHEMA_VERSION
        with second.engine.connect() as connection:
            assert sa.inspect(connection).has_table("cs_reference")


def test_upsert_replaces_named_columns(store):
    row = {
        "connector": "ad",
        "anchor": "a",
        "dn": "CN=A",
        "object_type": "user",
        "attrs": "{}",
        "attrs_hash": "x",
        "refs_hash": "0",
        "is_deleted": False,
        "pending_import": "add",
        "updated_at": dt.datetime.now(dt.UTC),
    }
    with store.transaction() as connection:
        store.upsert(connection, cs_object, [row], update=["dn"])
        store.upsert(connection, cs_object, [{**row, "dn": "CN=B", "attrs_hash": "y"}], update=["dn"])
    with store.engine.connect() as connection:
        stored = connection.execute(sa.select(cs_object.c.dn, cs_object.c.attrs_hash)).one()
    assert tuple(stored) == ("CN=B", "x")


def test_watermark_commits_with_transaction_or_not_at_all(store):
    with pytest.raises(RuntimeError), store.transaction() as connection:
        store.save_watermark(connection, "ad", "DC=corp", b"cookie-1", "dc1")
        raise RuntimeError("import failed")
    assert store.get_watermark("ad", "DC=corp") is None
    with store.transaction() as connection:
        store.save_watermark(connection, "ad", "DC=corp", b"cookie-2", "dc1")
    assert store.get_watermark("ad", "DC=corp").cookie == b"cookie-2"


def test_lock_excludes_other_holders_but_not_the_same_one(store):
    with store.locked("dag_run_1"):
        with pytest.raises(StoreLockedError, match="locked by 'dag_run_1'"):
            store.acquire_lock("dag_run_2")
    store.acquire_lock("dag_run_2")  # released when the step ended
    store.acquire_lock("dag_run_2")  # an Airflow retry of the same run takes its lock back
    store.release_lock("dag_run_2")
    store.acquire_lock("dag_run_1")


def test_expired_lock_is_taken_over(store):
    store.acquire_lock("killed_task", lease=dt.timedelta(seconds=-1))
    store.acquire_lock("next_run")
    with pytest.raises(StoreLockedError):
        store.acquire_lock("killed_task")


def test_runs_and_errors(store):
    run_id = store.start_run("full-import", "ad")
    store.record_errors(run_id, [{"anchor": "a", "dn": "CN=A", "code": "undecodable-value", "message": "m"}])
    store.finish_run(run_id, "completed-import-errors", {"adds": 1, "errors": 1})
    assert store.get_run(run_id)["counters"] == {"adds": 1, "errors": 1}
    assert store.run_errors(run_id)[0]["code"] == "undecodable-value"


def check_write_columns(store: Store) -> None:
    """write_columns broadcasts constants, converts them as the column types do, and upserts the named columns."""
    now = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    columns = {
        "connector": "entra",
        "anchor": ["b", "a", "c"],
        "dn": ["users/b", "users/a", "users/c"],
        "object_type": "user",
        "attrs": ['{"x":["é"]}', "{}", "{}"],
        "attrs_hash": ["hb", "ha", "hc"],
        "refs_hash": "0",
        "is_deleted": False,
        "pending_import": "add",
        "updated_at": now,
    }
    with store.transaction() as connection:
        assert store.write_columns(connection, cs_object, columns, update=["dn", "attrs_hash"]) == 3
        changed = {**columns, "anchor": ["a"], "dn": ["users/A"], "attrs": ["{}"], "attrs_hash": ["ha2"]}
        assert store.write_columns(connection, cs_object, changed, update=["dn", "attrs_hash"]) == 1
        empty = {name: [] if isinstance(values, list) else values for name, values in columns.items()}
        assert store.write_columns(connection, cs_object, empty) == 0
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(cs_object.c.anchor, cs_object.c.dn, cs_object.c.attrs, cs_object.c.attrs_hash,
                      cs_object.c.is_deleted, cs_object.c.updated_at).order_by(cs_object.c.anchor)
        ).all()  # fmt: skip
    assert [tuple(row[:5]) for row in rows] == [
        ("a", "users/A", "{}", "ha2", False),
        ("b", "users/b", '{"x":["é"]}', "hb", False),
        ("c", "users/c", "{}", "hc", False),
    ]
    assert {as_utc(row.updated_at) for row in rows} == {now}


def test_write_columns(store):
    check_write_columns(store)


def test_write_columns_processes_a_repeated_value_once_and_equal_values_each(store):
    """One timestamp object on every row is converted once; an equal value that is another object is converted as
    itself."""
    now = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    same_instant = now.astimezone(dt.timezone(dt.timedelta(hours=1)))
    base = {"connector": "ad", "dn": "x", "object_type": "user", "attrs": "{}", "attrs_hash": "h", "refs_hash": "0",
            "is_deleted": False}  # fmt: skip
    with store.transaction() as connection:
        store.write_columns(connection, cs_object, {**base, "anchor": ["a", "b"], "updated_at": [now, now]})
        store.write_columns(connection, cs_object, {**base, "anchor": ["c", "d"], "updated_at": [now, same_instant]})
    with store.engine.connect() as connection:
        stored = dict(connection.execute(sa.select(cs_object.c.anchor, cs_object.c.updated_at)).all())
    # SQLite's DateTime keeps a value's own fields: the +01:00 one is converted as itself, not as the equal first one
    assert {anchor: as_utc(value) for anchor, value in stored.items()} == {
        **dict.fromkeys("abc", now),
        "d": now + dt.timedelta(hours=1),
    }


def test_every_store_connection_keeps_a_page_cache_big_enough_for_a_pass(store):
    # SQLite's 2 MiB default spilled a first full sync's dirty pages to the write-ahead log again and again
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA cache_size").scalar_one() == -SQLITE_CACHE_MIB * 1024
    assert SQLITE_CACHE_MIB >= 32


def test_a_larger_page_cache_lasts_while_it_is_asked_for_also_when_the_step_fails(store):
    def cache_size(connection: sa.Connection) -> int:
        return connection.exec_driver_sql("PRAGMA cache_size").scalar_one()

    with store.transaction() as connection:
        before = cache_size(connection)
        with larger_page_cache(connection, 64):
            assert cache_size(connection) == -64 * 1024  # KiB, as a negative number of them
        assert cache_size(connection) == before
        with pytest.raises(RuntimeError), larger_page_cache(connection, 8):
            raise RuntimeError("the step failed")
        assert cache_size(connection) == before
    with store.engine.connect() as connection, pytest.raises(RuntimeError, match="lost"):  # not a restore's error
        with larger_page_cache(connection, 8):
            connection.invalidate()
            raise RuntimeError("the connection was lost")


def test_write_columns_names_what_is_wrong(store):
    with store.transaction() as connection:
        with pytest.raises(ValueError, match=r"columns of different lengths for cs_object: \[1, 2\]"):
            store.write_columns(connection, cs_object, {"connector": "ad", "anchor": ["a", "b"], "dn": ["x"]})
        with pytest.raises(ValueError, match=r"write_columns\(cs_object\) needs values for is_deleted"):
            store.write_columns(
                connection,
                cs_object,
                {"connector": "ad", "anchor": ["a"], "dn": ["x"], "object_type": "user", "attrs": "{}",
                 "attrs_hash": "h", "refs_hash": "0", "updated_at": dt.datetime.now(dt.UTC)},
            )  # fmt: skip


def test_a_store_of_schema_version_5_gains_the_first_send_time_of_pending_exports(tmp_path):
    """Step 6: ``pending_export.sent_at`` (resume adopts only objects created after it); old rows keep NULL."""
    from airflow_provider_aadsync.engine.store import pending_export, schema_version

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    with Store.open(url) as store, store.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE pending_export DROP COLUMN sent_at")
        connection.execute(sa.delete(schema_version).where(schema_version.c.version >= 6))
        connection.exec_driver_sql(
            "INSERT INTO pending_export (connector, anchor, object_type, dn, operation, changes, state, attempts, "
            "created_at, updated_at) VALUES ('entra', 'a', 'user', 'u', 'add', '{}', 'sent', 1, "
            "'2026-01-01 00:00:00', '2026-01-01 00:00:00')"
        )
    with Store.open(url) as store:
        assert store.current_version() == SCHEMA_VERSION >= 6
        with store.engine.connect() as connection:
            (row,) = connection.execute(sa.select(pending_export)).all()
        assert row.anchor == "a" and row.sent_at is None


def test_a_run_records_who_ran_it_and_a_store_of_version_6_gains_the_column(tmp_path):
    """Step 7: ``run.origin``, the Airflow task instance that set ``Store.origin`` (the sync manager links to it);
    None for the CLI. An older store gains the column and keeps its runs."""
    from airflow_provider_aadsync.engine.store import schema_version

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    with Store.open(url) as store:
        old_run = store.start_run("full-import", "ad")
        with store.engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE run DROP COLUMN origin")
            connection.execute(sa.delete(schema_version).where(schema_version.c.version >= 7))
    with Store.open(url) as store:
        assert store.current_version() == SCHEMA_VERSION >= 7
        assert store.get_run(old_run)["origin"] is None
        store.origin = {"dag_id": "aadsync_cycle", "run_id": "manual__1", "task_id": "sync_ad", "map_index": -1}
        new_run = store.start_run("delta-sync", "ad")
        assert store.get_run(new_run)["origin"] == store.origin


def test_a_store_of_version_7_gains_the_run_notice_table_and_notices_round_trip(tmp_path):
    """Step 8: ``run_notice``, what a run could not write, grouped (code, subject, count, message, examples)."""
    from airflow_provider_aadsync.engine.store import schema_version

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    with Store.open(url) as store:
        run_id = store.start_run("export", "entra")
        with store.engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE run_notice")
            connection.execute(sa.delete(schema_version).where(schema_version.c.version >= 8))
    with Store.open(url) as store:
        assert store.current_version() == SCHEMA_VERSION >= 8
        notice = {"code": "unsupported-by-graph", "subject": "contact create", "count": 3,
                  "message": "Graph cannot create contacts", "examples": [{"dn": "CN=Partner"}]}  # fmt: skip
        store.record_notices(run_id, [notice])
        assert store.run_notices(run_id) == [notice]


def test_a_store_of_version_10_loses_the_join_key_value_index(tmp_path):
    """Step 11: one join-key index, on the folded value; a new store never has the one on ``value``."""
    from airflow_provider_aadsync.engine.store import schema_version

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"

    def join_key_indexes(store: Store) -> set[str]:
        with store.engine.connect() as connection:
            return {index["name"] for index in sa.inspect(connection).get_indexes("mv_join_key")}

    with Store.open(url) as store:
        assert join_key_indexes(store) == {"ix_mv_join_key_folded"}
        with store.engine.begin() as connection:
            connection.exec_driver_sql("CREATE INDEX ix_mv_join_key_value ON mv_join_key (attribute, value)")
            connection.execute(sa.delete(schema_version).where(schema_version.c.version >= 11))
    with Store.open(url) as store:
        assert store.current_version() == SCHEMA_VERSION >= 11
        assert join_key_indexes(store) == {"ix_mv_join_key_folded"}
