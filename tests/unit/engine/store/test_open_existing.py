"""``Store.open_existing``: the store opened as it is, to read it (the sync manager's open). It never creates the SQLite
file, never claims an unmarked store and never migrates; it refuses another instance's store as ``Store.open`` does,
and names what is not ready (no store yet, an older or a newer schema) and which step makes it ready."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.store import (
    SCHEMA_VERSION,
    Store,
    StoreInstanceError,
    StoreNotReadyError,
    schema_version,
    store_instance,
    utcnow,
)
from airflow_provider_aadsync.engine.store import owner as marker
from tests.support.stores import make_older_store, store_digest


def _versions(url: str) -> tuple[int, bool]:
    """The store's schema version and whether it has the owner marker's table, read without a Store handle."""
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        version = connection.execute(sa.select(sa.func.max(schema_version.c.version))).scalar_one()
        marked = sa.inspect(connection).has_table(store_instance.name)
    engine.dispose()
    return version, marked


def test_open_existing_of_a_missing_file_is_a_clear_error_and_creates_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'stores' / 'emea.sqlite'}"
    with pytest.raises(StoreNotReadyError) as raised:
        Store.open_existing(url, instance="emea")
    assert str(raised.value) == (
        f"store {url} does not exist yet: the first sync step of sync instance 'emea' (its cycle's first import) "
        "creates it; nothing was created"
    )
    assert list(tmp_path.iterdir()) == []  # neither the file nor its folder


def test_open_existing_of_an_empty_file_leaves_it_empty(tmp_path):
    path = tmp_path / "store.sqlite"
    path.touch()
    with pytest.raises(StoreNotReadyError, match="has no tables yet: the first sync step of sync instance 'emea'"):
        Store.open_existing(f"sqlite:///{path}", instance="emea")
    assert path.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["store.sqlite"]


def test_open_existing_reads_an_unmarked_store_and_leaves_it_unclaimed(tmp_path):
    path = tmp_path / "store.sqlite"
    url = f"sqlite:///{path}"
    with Store.open(url, instance="emea") as store:
        run_id = store.start_run("full-import", "ad")
        with store.engine.begin() as connection:
            connection.execute(sa.delete(store_instance))  # a current schema, no owner yet
    before = store_digest(path)
    with Store.open_existing(url, instance="apac") as store:
        assert [run["id"] for run in store.list_runs()] == [run_id]
        assert marker.read_owner(store.engine) is None
    assert store_digest(path) == before
    with Store.open(url, instance="apac") as store:  # the first sync step claims it
        assert marker.read_owner(store.engine).instance == "apac"


def test_open_existing_of_an_older_schema_changes_nothing_until_the_sync_migrates_it(tmp_path):
    path = tmp_path / "store.sqlite"
    url = f"sqlite:///{path}"
    make_older_store(url)
    before = store_digest(path)
    with pytest.raises(StoreNotReadyError) as raised:
        Store.open_existing(url, instance="emea")
    assert str(raised.value) == (
        f"store {url} has schema version 9, older than this package's {SCHEMA_VERSION}: the next sync step of sync "
        "instance 'emea' migrates it; it can be read once migrated (nothing was changed)"
    )
    assert _versions(url) == (9, False) and store_digest(path) == before  # not migrated, not claimed
    Store.open(url, instance="emea").close()  # the sync step's open
    with Store.open_existing(url, instance="emea") as store:
        assert store.current_version() == SCHEMA_VERSION


def test_open_existing_of_a_newer_schema_says_to_upgrade(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    with Store.open(url, instance="emea") as store, store.engine.begin() as connection:
        connection.execute(sa.insert(schema_version).values(version=SCHEMA_VERSION + 1, applied_at=utcnow()))
    with pytest.raises(StoreNotReadyError) as raised:
        Store.open_existing(url, instance="emea")
    assert str(raised.value) == (
        f"store {url} has schema version {SCHEMA_VERSION + 1}, newer than this package's {SCHEMA_VERSION}: upgrade "
        "airflow-provider-aadsync"
    )


def test_open_existing_refuses_another_instances_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    Store.open(url, instance="emea").close()
    with pytest.raises(StoreInstanceError, match="belongs to sync instance 'emea', not to sync instance 'apac'"):
        Store.open_existing(url, instance="apac")


def test_a_store_opened_as_it_is_never_recreates_its_removed_file(tmp_path):
    """SQLite opens the file with ``mode=rw``: a reconnect after the file was removed is an error, not a new store."""
    path = tmp_path / "store.sqlite"
    url = f"sqlite:///{path}"
    Store.open(url, instance="emea").close()
    store = Store.open_existing(url, instance="emea")
    store.close()  # the pool's connections closed: the next read connects again
    path.unlink()
    with pytest.raises(sa.exc.OperationalError, match="unable to open database file"):
        store.list_runs()
    store.close()
    assert not path.exists()
