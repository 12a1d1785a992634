from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.store import SCHEMA_VERSION, Store, StoreLockedError, cs_object


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
        store.acquire_lock("dag_run_1")  # an Airflow retry of the same run takes its lock back
    store.acquire_lock("dag_run_2")
    store.release_lock("dag_run_2")


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
