"""The import scopes of the instance lock on SQLite: the imports of one run hold the instance together (each
connector on a row of its own, each retry fencing off its own older attempt), a sync or export step fences off any
import still running and refuses imports while it runs, other holders stay out, and on SQLite the imports take turns
instead of failing on the database's write lock."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.store import Store, StoreLockedError, StoreLockLostError, lock, store_lock

RUN = "aadsync_cycle:run_1"
HOLD = dt.timedelta(minutes=60)


def open_store(path: Path) -> Store:
    return Store.open(f"sqlite:///{path}", instance="test")


def rows(store: Store) -> dict[str, tuple[str, int]]:
    """Every lock row of the store as name -> (holder, token)."""
    with store.engine.connect() as connection:
        return {row.name: (row.holder, row.token) for row in connection.execute(sa.select(store_lock))}


def write_watermark(store: Store, connector: str, cookie: bytes) -> None:
    with store.transaction() as connection:
        store.save_watermark(connection, connector, "DC=corp", cookie, "dc1")


def cookie(store: Store, connector: str) -> bytes | None:
    mark = store.get_watermark(connector, "DC=corp")
    return mark.cookie if mark else None


def test_imports_of_a_run_hold_the_instance_on_rows_of_their_own(tmp_path):
    path = tmp_path / "store.sqlite"
    with open_store(path) as store, open_store(path) as other:
        cycle = store.acquire_lock(RUN, hold=HOLD)
        with store.locked(RUN, scope="import:ad") as granted:
            assert (granted.row, granted.generation) == ("test#import:ad", cycle.token)
            assert rows(store)["test"] == (RUN, cycle.token)  # the instance token stays: siblings are not fenced
            assert rows(store)["test#import:ad"] == (RUN, 1)
            write_watermark(store, "ad", b"ad-1")
            with pytest.raises(StoreLockedError, match=f"locked by '{RUN}'"):
                other.acquire_lock("aadsync_full:run_2")
            with pytest.raises(StoreLockedError):
                with other.locked("aadsync_full:run_2", scope="import:entra"):
                    pass
        assert rows(store)["test#import:ad"] == ("", 1)
        assert rows(store)["test"][0] == RUN  # the cycle's hold keeps the instance after its imports
        assert cookie(store, "ad") == b"ad-1"


def test_a_retry_of_an_import_fences_off_its_own_older_attempt(tmp_path):
    path = tmp_path / "store.sqlite"
    with open_store(path) as zombie, open_store(path) as retry:
        zombie.acquire_lock(RUN, hold=HOLD)
        with zombie.locked(RUN, scope="import:ad"):
            write_watermark(zombie, "ad", b"before-retry")
            # a retry of import_ad while the zombie attempt is between two writes (SQLite: not inside one)
            retried = lock.acquire(retry, RUN, scope="import:ad", step=True)
            retry.lease = retried
            with pytest.raises(StoreLockLostError, match="the import:ad lock of"):
                write_watermark(zombie, "ad", b"zombie")
            write_watermark(retry, "ad", b"retry")
            retry.lease = None
        assert cookie(zombie, "ad") == b"retry"


def test_a_sync_step_fences_off_running_imports_and_refuses_new_ones(tmp_path):
    path = tmp_path / "store.sqlite"
    with open_store(path) as importer, open_store(path) as syncer:
        importer.acquire_lock(RUN, hold=HOLD)
        with importer.locked(RUN, scope="import:entra"):
            write_watermark(importer, "entra", b"entra-1")
            with syncer.locked(RUN) as sync:  # a whole-instance step of the same run: newer wins
                assert rows(syncer)["test#import:entra"][0] == ""
                with pytest.raises(StoreLockLostError):
                    write_watermark(importer, "entra", b"zombie")
                with pytest.raises(StoreLockedError, match="a sync or export step of .* runs since"):
                    with importer.locked(RUN, scope="import:ad"):
                        pass
                assert rows(syncer)["test#step"] == (RUN, sync.token)
                write_watermark(syncer, "ad", b"sync")
            assert rows(syncer)["test#step"][0] == ""
        with importer.locked(RUN, scope="import:ad"):  # once the step ended, imports come in again
            write_watermark(importer, "ad", b"ad-2")
        assert (cookie(importer, "entra"), cookie(importer, "ad")) == (b"entra-1", b"ad-2")


def test_on_sqlite_the_imports_of_a_run_take_turns(tmp_path):
    """SQLite has one writer at a time and an import writes its connector space in one transaction: a second
    import of the run waits for the first (instead of failing on the busy database) and then runs."""
    path = tmp_path / "store.sqlite"
    events: list[tuple[str, float]] = []
    with open_store(path) as first, open_store(path) as second:
        first.acquire_lock(RUN, hold=HOLD)
        started = threading.Event()

        def import_entra() -> None:
            started.wait(10)
            with second.locked(RUN, scope="import:entra"):
                events.append(("entra-start", time.monotonic()))
                write_watermark(second, "entra", b"entra")

        thread = threading.Thread(target=import_entra)
        thread.start()
        with first.locked(RUN, scope="import:ad"):
            started.set()
            with first.transaction() as connection:  # the import's one long transaction
                first.save_watermark(connection, "ad", "DC=corp", b"ad", "dc1")
                time.sleep(1.0)
            events.append(("ad-end", time.monotonic()))
        thread.join(30)
        assert [name for name, _ in sorted(events, key=lambda event: event[1])] == ["ad-end", "entra-start"]
        assert (cookie(first, "ad"), cookie(first, "entra")) == (b"ad", b"entra")


def test_without_a_cycle_the_last_import_releases_the_instance(tmp_path):
    """A CLI import (no cycle hold) takes the instance itself and releases it when it ends."""
    path = tmp_path / "store.sqlite"
    with open_store(path) as store, open_store(path) as other:
        with store.locked("cli:pid-1", scope="import:ad"):
            assert rows(store)["test"][0] == "cli:pid-1"
            with pytest.raises(StoreLockedError, match="locked by 'cli:pid-1'"):
                other.acquire_lock("cli:pid-2")
        assert rows(store)["test"][0] == ""
        assert other.acquire_lock("cli:pid-2").token == 2


def test_a_killed_imports_row_goes_stale_after_one_lease_and_the_cycles_release_clears_it(tmp_path):
    """A killed import (no heartbeat, no end) leaves its row held for one step lease, not the cycle's hold: the
    other imports of the run stop waiting for it then, its retry takes the row back with a new token, and the
    report's release frees every row of the run."""
    path = tmp_path / "store.sqlite"
    short = dt.timedelta(seconds=1)
    with open_store(path) as store, open_store(path) as other:
        store.acquire_lock(RUN, hold=HOLD)
        lock.acquire(store, RUN, lease=short, scope="import:ad", step=True)  # then killed
        with store.engine.connect() as connection:
            expires = connection.execute(
                sa.select(store_lock.c.expires_at).where(store_lock.c.name == "test#import:ad")
            ).scalar_one()
        assert lock.as_utc(expires) - lock.utcnow() <= short  # the step lease, not the 60-minute hold
        time.sleep(1.2)
        started = time.monotonic()
        with other.locked(RUN, scope="import:entra"):  # SQLite: no turn to wait for a dead import
            write_watermark(other, "entra", b"entra")
        assert time.monotonic() - started < 5
        with other.locked(RUN, scope="import:ad") as retry:
            assert retry.token == 2  # fences off the killed attempt
            write_watermark(other, "ad", b"ad")
        lock.acquire(store, RUN, lease=HOLD, scope="import:ad", step=True)  # killed again, row live
        assert rows(store)["test#import:ad"][0] == RUN
        assert store.release_lock(RUN)  # the report (teardown)
        assert {name: holder for name, (holder, _) in rows(store).items()} == {
            "test": "",
            "test#import:ad": "",
            "test#import:entra": "",
        }
        assert other.acquire_lock("aadsync_full:run_2").token > 0
