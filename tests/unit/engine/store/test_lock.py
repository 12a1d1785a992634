"""The instance lock on SQLite: taken atomically by exactly one of many processes, renewed while a step runs, held by
a cycle between its steps, and fenced: a zombie whose lock was taken over cannot write."""

from __future__ import annotations

import datetime as dt
import json
import logging
import multiprocessing
import os
import re
import signal
import threading
import time
import types
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine import progress
from airflow_provider_aadsync.engine.runs.source import BatchRequest
from airflow_provider_aadsync.engine.store import (
    SCHEMA_VERSION,
    Store,
    StoreLockedError,
    StoreLockLostError,
    fenced,
    lock,
    schema_version,
    store_lock,
    watermark,
)
from airflow_provider_aadsync.engine.store.fenced import fenced_writer
from airflow_provider_aadsync.hooks.entra import EntraHook
from airflow_provider_aadsync.hooks.entra_settings import EntraConnectionSettings

CONTEXT = multiprocessing.get_context("fork")


def open_store(path: Path) -> Store:
    return Store.open(f"sqlite:///{path}", instance="test")


def lock_row(store: Store, name: str = "test"):
    """The instance row (or, with ``name``, a scope row: ``test#import:ad``, ``test#step``)."""
    with store.engine.connect() as connection:
        return connection.execute(sa.select(store_lock).where(store_lock.c.name == name)).one()


def write_watermark(store: Store, cookie: bytes) -> None:
    with store.transaction() as connection:
        store.save_watermark(connection, "ad", "DC=corp", cookie, "dc1")


# ------------------------------------------------------------------------------------------------ atomic takeover
def _contend(path: str, index: int, barrier, results) -> None:
    store = open_store(Path(path))
    barrier.wait()
    try:
        granted = store.acquire_lock(f"worker_{index}")
        results.put((index, granted.token))
    except StoreLockedError:
        results.put((index, None))
    finally:
        store.close()


@pytest.mark.parametrize("round_", range(3))
def test_an_expired_lock_is_taken_over_by_exactly_one_of_many_processes(tmp_path, round_):
    """Eight processes released at once at an expired lock: one holds it, seven are refused (before the fix the
    expiry was read outside the write transaction, and several 'won')."""
    path = tmp_path / "store.sqlite"
    with open_store(path) as store:
        store.acquire_lock("killed_task", lease=dt.timedelta(seconds=-1))
    barrier, results = CONTEXT.Barrier(8), CONTEXT.Queue()
    workers = [CONTEXT.Process(target=_contend, args=(str(path), i, barrier, results)) for i in range(8)]
    for worker in workers:
        worker.start()
    outcomes = dict(results.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(timeout=30)
    winners = {index: token for index, token in outcomes.items() if token is not None}
    assert len(winners) == 1, outcomes
    with open_store(path) as store:
        row = lock_row(store)
    assert row.holder == f"worker_{next(iter(winners))}" and row.token == 2 == next(iter(winners.values()))


def test_threads_with_their_own_handles_race_for_a_free_lock(tmp_path):
    path = tmp_path / "store.sqlite"
    handles = [open_store(path) for _ in range(6)]
    barrier, won, refused = threading.Barrier(6), [], []

    def contend(index: int) -> None:
        barrier.wait()
        try:
            handles[index].acquire_lock(f"thread_{index}")
            won.append(index)
        except StoreLockedError:
            refused.append(index)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and len(refused) == 5
    assert lock_row(handles[0]).holder == f"thread_{won[0]}"
    for handle in handles:
        handle.close()


# ------------------------------------------------------------------------------------------------------- renewal
def test_the_lease_is_renewed_while_the_step_runs_and_released_at_its_end(tmp_path):
    with open_store(tmp_path / "store.sqlite") as store, open_store(tmp_path / "store.sqlite") as other:
        with store.locked("long_export", lease=dt.timedelta(seconds=0.6)) as granted:
            first_expiry = lock_row(store).expires_at
            time.sleep(1.5)  # more than two leases: without renewal the lock would be free for the taking
            with pytest.raises(StoreLockedError, match="locked by 'long_export'"):
                other.acquire_lock("next_cycle")
            assert lock_row(store).expires_at > first_expiry
            write_watermark(store, b"still-mine")
            assert granted.lost is None
        row = lock_row(store)
        assert row.holder == "" and row.token == granted.token  # released; the token stays for the next one
        assert other.acquire_lock("next_cycle").token == granted.token + 1


def test_a_renewal_that_finds_the_lock_taken_stops_the_step_before_its_next_write(tmp_path):
    with open_store(tmp_path / "store.sqlite") as store, open_store(tmp_path / "store.sqlite") as other:
        with store.locked("dag:run_1", lease=dt.timedelta(seconds=0.3)) as granted:
            other.acquire_lock("dag:run_1")  # the retry of the same DAG run takes the lock back
            deadline = time.monotonic() + 5
            while granted.lost is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert granted.lost and "was taken over" in granted.lost
            with pytest.raises(StoreLockLostError):
                write_watermark(store, b"zombie")
        assert store.get_watermark("ad", "DC=corp") is None
        assert lock_row(store).holder == "dag:run_1"  # the ended zombie step did not release the retry's lock


# ------------------------------------------------------------------------------------------------------ fencing
def test_a_retry_fences_off_the_attempt_it_replaces(tmp_path):
    """Same holder, two attempts (a zombie task and its retry): the newer token wins, the older cannot write."""
    path = tmp_path / "store.sqlite"
    with open_store(path) as zombie, open_store(path) as retry:
        with zombie.locked("dag:run_1"):
            write_watermark(zombie, b"before-retry")
            with retry.locked("dag:run_1"):
                with pytest.raises(StoreLockLostError, match="taken over"):
                    write_watermark(zombie, b"zombie")
                with pytest.raises(StoreLockLostError):  # and every later write, without asking the store
                    zombie.start_run("export", "entra")
                write_watermark(retry, b"retry")
        assert zombie.get_watermark("ad", "DC=corp").cookie == b"retry"
        assert zombie.list_runs() == []


def _zombie(path: str, ready, resume, results) -> None:
    store = open_store(Path(path))
    try:
        with store.locked("cycle_a", lease=dt.timedelta(seconds=1)):
            write_watermark(store, b"a-1")
            ready.set()
            resume.wait(30)  # the parent freezes this process (SIGSTOP) here, past the lease
            try:
                write_watermark(store, b"a-zombie")
                results.put("written")
            except StoreLockLostError as error:
                results.put(f"refused: {error}")
    finally:
        store.close()


def test_a_frozen_process_whose_lease_was_taken_over_cannot_write(tmp_path):
    """A task frozen past its lease (a long GC pause, a suspended VM) wakes up after another cycle took the
    expired lock: its next write is refused and rolled back, the other cycle's data stands."""
    path = tmp_path / "store.sqlite"
    open_store(path).close()
    ready, resume, results = CONTEXT.Event(), CONTEXT.Event(), CONTEXT.Queue()
    child = CONTEXT.Process(target=_zombie, args=(str(path), ready, resume, results))
    child.start()
    try:
        assert ready.wait(30)
        os.kill(child.pid, signal.SIGSTOP)
        time.sleep(1.3)
        with open_store(path) as other:
            with other.locked("cycle_b"):
                write_watermark(other, b"b-1")
            os.kill(child.pid, signal.SIGCONT)
            resume.set()
            outcome = results.get(timeout=30)
            assert outcome.startswith("refused: sync instance 'test': the lock of 'cycle_a'"), outcome
            assert other.get_watermark("ad", "DC=corp").cookie == b"b-1"
    finally:
        os.kill(child.pid, signal.SIGCONT)
        child.join(timeout=30)


def test_the_fence_checks_the_token_inside_the_write_transaction(tmp_path):
    """One statement per transaction, inside it: a rolled-back write leaves nothing, a fenced one commits."""
    with open_store(tmp_path / "store.sqlite") as store:
        statements: list[str] = []
        sa.event.listen(store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
        with store.locked("step"):
            statements.clear()
            write_watermark(store, b"one")
            fence = [sql for sql in statements if "store_lock" in sql]
        assert len(fence) == 1 and fence[0].startswith("UPDATE store_lock")
        with store.engine.connect() as connection:
            assert connection.execute(sa.select(watermark.c.cookie)).scalar() == b"one"


# -------------------------------------------------------------------------------------------------- cycle hold
def test_a_cycle_holds_the_instance_between_its_steps_until_released(tmp_path):
    with open_store(tmp_path / "store.sqlite") as store, open_store(tmp_path / "store.sqlite") as other:
        cycle = store.acquire_lock("aadsync_full:run_1", hold=dt.timedelta(minutes=60))
        for _step in ("import_ad", "sync_ad", "export_entra"):
            with store.locked("aadsync_full:run_1") as step:
                assert step.token > cycle.token and step.hold == dt.timedelta(minutes=60)
                write_watermark(store, b"x")
            row = lock_row(store)
            assert row.holder == "aadsync_full:run_1"
            assert lock.as_utc(row.expires_at) > lock.utcnow() + dt.timedelta(minutes=59)
            with pytest.raises(StoreLockedError, match=r"locked by 'aadsync_full:run_1' since"):
                other.acquire_lock("aadsync_cycle:run_2")
            with pytest.raises(StoreLockedError):
                with other.locked("cli:1234"):
                    pass
        assert store.release_lock("aadsync_full:run_1")
        assert not other.release_lock("aadsync_full:run_1")
        assert other.acquire_lock("aadsync_cycle:run_2").hold is None


def test_lock_state_names_the_holder_and_since_when(tmp_path):
    with open_store(tmp_path / "store.sqlite") as store:
        assert lock.lock_state(store) is None
        store.acquire_lock("aadsync_cycle:scheduled__1", hold=dt.timedelta(minutes=5))
        state = lock.lock_state(store)
        assert state.held() and state.holder == "aadsync_cycle:scheduled__1"
        assert "locked by 'aadsync_cycle:scheduled__1' since" in state.describe("test")


def test_a_wait_for_the_lock_is_told_with_its_holder_and_open_run(tmp_path, caplog, monkeypatch):
    """A run that waits for the instance says so, naming who holds it, the run it is doing and since when."""
    caplog.set_level(logging.INFO)
    with open_store(tmp_path / "store.sqlite") as store, open_store(tmp_path / "store.sqlite") as other:
        store.acquire_lock("vm:4242")
        run_id = store.start_run("export", "entra")
        with pytest.raises(StoreLockedError), progress.track("export to entra"):
            monkeypatch.setenv(lock.LOCK_WAIT_ENV, "0.6")  # a loaded machine: some time left for a wait
            with other.locked("vm:5151"):
                pass
        waits = [r.getMessage() for r in caplog.records if r.name == progress.log.name]
        assert len(waits) == 1, waits
        assert re.fullmatch(
            rf"export to entra: waiting 0\.\d\d s for the run lock of sync instance 'test' held by 'vm:4242' "
            rf"\(run {run_id}, export of entra, since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC\), 1 wait so far",
            waits[0],
        ), waits[0]
        caplog.clear()
        releaser = threading.Timer(0.3, store.release_lock, args=("vm:4242",))
        releaser.start()
        with lock.cycle(other, "vm:5151", wait=dt.timedelta(seconds=5), poll_seconds=0.05):
            pass
        releaser.join()
        waits = [r.getMessage() for r in caplog.records if r.name == progress.log.name]
        assert waits and all("for the run lock of sync instance 'test' held by 'vm:4242'" in w for w in waits)
        assert progress.current().waits.counts["lock"] >= 3  # polls counted, told once per interval


@pytest.mark.parametrize(("value", "seconds"), [("", 0.0), ("0", 0.0), ("90", 90.0), ("soon", None), ("-1", None)])
def test_the_lock_wait_setting(monkeypatch, value, seconds):
    monkeypatch.setenv(lock.LOCK_WAIT_ENV, value)
    if seconds is None:
        with pytest.raises(ValueError, match=f"AADSYNC_LOCK_WAIT={value!r} is not a number of seconds"):
            lock.lock_wait_from_env()
    else:
        assert lock.lock_wait_from_env() == dt.timedelta(seconds=seconds)


def test_a_store_of_schema_version_4_gains_the_lock_columns(tmp_path):
    path = tmp_path / "store.sqlite"
    with open_store(path) as store:
        with store.engine.begin() as connection:
            for column in ("token", "hold_seconds", "renewed_at"):
                connection.exec_driver_sql(f"ALTER TABLE store_lock DROP COLUMN {column}")
            connection.execute(sa.delete(schema_version).where(schema_version.c.version >= 5))  # a version 4 store
            connection.exec_driver_sql(
                "INSERT INTO store_lock (name, holder, acquired_at, expires_at) "
                "VALUES ('test', 'old', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
    with open_store(path) as store:
        assert store.current_version() == SCHEMA_VERSION
        assert store.acquire_lock("new").token == 1


def _open(path: str, barrier, results) -> None:
    barrier.wait()
    try:
        open_store(Path(path)).close()
        results.put("ok")
    except Exception as error:  # what the test reports
        results.put(repr(error))


def test_processes_opening_a_new_store_at_once_take_turns_migrating_it(tmp_path):
    """Two cycles started together open a store that does not exist yet: before, several failed with 'table
    schema_version already exists' (pysqlite ran the DDL outside a transaction)."""
    for round_ in range(3):
        path = tmp_path / f"new-{round_}.sqlite"
        barrier, results = CONTEXT.Barrier(6), CONTEXT.Queue()
        workers = [CONTEXT.Process(target=_open, args=(str(path), barrier, results)) for _ in range(6)]
        for worker in workers:
            worker.start()
        outcomes = [results.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(timeout=30)
        assert outcomes == ["ok"] * 6


class _Graph:
    """A writer that records what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[object] = []
        self.counters = {"batch_requests": 0}

    def batch(self, requests: list[object]) -> dict:
        self.sent.append(requests)
        return {}


def test_a_write_outside_the_store_checks_the_lock_after_a_silence(tmp_path):
    """A process frozen between recording a batch as sent and sending it wakes up: before the request leaves, the
    writer asks the store again (its confirmation is older than half a lease) and sends nothing."""
    path = tmp_path / "store.sqlite"
    with open_store(path) as store, open_store(path) as other:
        with store.locked("dag:run_1", lease=dt.timedelta(seconds=60)) as granted:
            graph = _Graph()
            writer = fenced_writer(graph, store)
            statements: list[str] = []
            sa.event.listen(store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
            writer.batch(["create alice"])
            assert graph.sent == [["create alice"]] and statements == []  # fresh: no round trip
            assert writer.counters is graph.counters  # everything else passes through
            other.acquire_lock("dag:run_1")  # the retry takes the lock back while this attempt is frozen
            granted.confirmed_at -= 31  # ... for more than half a lease
            with pytest.raises(StoreLockLostError, match="the lock of 'dag:run_1'"):
                writer.batch(["create bob"])
            assert graph.sent == [["create alice"]]


def test_a_renewal_answered_after_a_freeze_does_not_vouch_for_the_write(tmp_path, monkeypatch):
    """The CI's zombie (tests/reliability/test_concurrency.py): frozen while the answer of the renewal before a
    write was on its way. The renewal had committed; meanwhile the lock was taken over. Before, the process woke up to
    "held" and sent its batch; now an answer that comes back later than half a lease is asked again, and the write
    is refused. (The freeze moves the check's clock on by 31 s of a 60 s lease, so the heartbeat, every 20 s, cannot
    be what finds the loss.)"""
    path = tmp_path / "store.sqlite"
    real_renew, frozen_for = lock.renew, [0.0]
    monkeypatch.setattr(fenced, "time", types.SimpleNamespace(monotonic=lambda: time.monotonic() + frozen_for[0]))
    with open_store(path) as store, open_store(path) as other:
        with store.locked("dag:run_1", lease=dt.timedelta(seconds=60)) as granted:

            def renew_then_freeze(handle, lease, connection=None):
                held = real_renew(handle, lease, connection)
                if held and not frozen_for[0]:
                    other.acquire_lock("dag:run_1")  # the retry takes the lock back while this attempt is frozen
                    frozen_for[0] = 31  # ... for longer than half a lease
                return held

            monkeypatch.setattr(fenced, "renew", renew_then_freeze)
            graph = _Graph()
            writer = fenced_writer(graph, store)
            granted.confirmed_at -= 31  # a silence: the writer asks the store before sending
            with pytest.raises(StoreLockLostError, match="the lock of 'dag:run_1'"):
                writer.batch(["create carol"])
            assert graph.sent == [] and frozen_for[0] == 31 and granted.lost


def test_a_store_too_slow_to_confirm_the_lock_stops_the_write(tmp_path, monkeypatch):
    """Renewals that each answer later than half a lease vouch for nothing: after a few, the write is refused with
    the reason (not retried for ever)."""
    path = tmp_path / "store.sqlite"
    with open_store(path) as store:
        with store.locked("dag:run_1", lease=dt.timedelta(seconds=0.2)) as granted:
            asked: list[float] = []

            def slow_renew(handle, lease, connection=None):
                asked.append(time.monotonic())
                time.sleep(0.15)
                return True

            monkeypatch.setattr(fenced, "renew", slow_renew)
            graph = _Graph()
            granted.confirmed_at -= 1
            with pytest.raises(StoreLockLostError, match="took more than half the lease"):
                fenced_writer(graph, store).batch(["create dave"])
            assert graph.sent == [] and len(asked) == fenced.CONFIRM_ATTEMPTS


def test_a_resend_after_a_throttling_wait_checks_the_lock_again(tmp_path, monkeypatch):
    """Within one fenced call EntraHook waits out Graph's Retry-After and sends again. When the lock was taken over
    during the wait (a retry of the same DAG run took it back; or the process was frozen past its lease) the resend
    went out all the same; now each write request asks the store first, and the resend is refused. An unfenced hook
    (or a lock still held) resends as before."""
    path = tmp_path / "store.sqlite"
    hook = EntraHook(
        settings=EntraConnectionSettings(
            tenant_id="t", client_id="c", client_secret="Cl1ent~secret", graph_url="https://graph.test"
        )
    )
    monkeypatch.setattr(hook, "get_token", lambda: "token")
    sent: list[dict] = []
    throttle = {"next": True}

    def graph(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        status = 429 if throttle["next"] else 200  # throttled, then done
        throttle["next"] = not throttle["next"]
        return httpx.Response(200, json={"responses": [{"id": "1", "status": status, "headers": {"Retry-After": "1"}}]})

    hook.__dict__["_http"] = httpx.Client(base_url="https://graph.test/v1.0", transport=httpx.MockTransport(graph))
    requests = [BatchRequest("1", "PATCH", "/users/u1", {"displayName": "Carol"})]
    with open_store(path) as store, open_store(path) as other:
        with store.locked("dag:run_1", lease=dt.timedelta(seconds=60)) as granted:
            monkeypatch.setattr("airflow_provider_aadsync.hooks.entra.time.sleep", lambda seconds: None)
            assert fenced_writer(hook, store).batch(requests)["1"].status == 200  # held: resent after the wait
            assert len(sent) == 2

            def takeback_in_the_wait(seconds: float) -> None:
                # A retry of the same DAG run takes the lock back at once: no expiry, and the lock was confirmed
                # moments ago (the heartbeat keeps it fresh through a wait), so only asking the store finds it.
                other.acquire_lock("dag:run_1")
                granted.confirmed_at -= seconds  # the wait itself (the heartbeat confirms every 20 s here)

            monkeypatch.setattr("airflow_provider_aadsync.hooks.entra.time.sleep", takeback_in_the_wait)
            with pytest.raises(StoreLockLostError, match="the lock of 'dag:run_1'"):
                fenced_writer(hook, store).batch(requests)
            assert len(sent) == 3  # the throttled call only: no resend
    monkeypatch.setattr("airflow_provider_aadsync.hooks.entra.time.sleep", lambda seconds: None)
    throttle["next"] = True
    assert hook.batch(requests)["1"].status == 200 and len(sent) == 5  # no fenced call: nothing to check
