"""Concurrency: one sync instance, one writer, against the real DC and the Graph emulator.

- Two whole cycles of one instance started together in two OS processes, on SQLite and on PostgreSQL: the second
  waits for the first (the run table's step times never overlap) and the end state is exact (Entra ID holds each
  object once and matches AD).
- A zombie (PostgreSQL): an export process frozen (SIGSTOP) mid-export past its lease; another process takes the
  expired lock over and finishes the export; the zombie, woken up, is refused at its next store write, so it sends
  nothing more to Graph, and the end state is exact.
- Airflow: ``aadsync_full`` and ``aadsync_cycle`` of one instance started together: the second waits in
  ``acquire_instance`` until the first one's report released the instance; their steps never overlap.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from aadsync_devkit.world.airflow_runs import outcome
from aadsync_devkit.world.samba import SambaDC
from airflow_provider_aadsync.engine.store import Store, lock
from tests.support.airflow_world import airflow_world, new_tenant, write_requests
from tests.support.cycle_process import run_steps
from tests.support.servers import drop_tenant, entra_connection, entra_hook_for
from tests.support.states import ad_state, batch_calls, graph_state

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
USERS, GROUPS, BIG = 200, 10, 150  # the DAG tests' directory: a cached fixture
INSTANCE = "concurrency"


@pytest.fixture(scope="module")
def dc(start_dc) -> SambaDC:
    return start_dc(users=USERS, groups=GROUPS, group_size=BIG)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    server = request.getfixturevalue("postgres_server")
    name = f"c_{uuid.uuid4().hex[:16]}"
    request.addfinalizer(lambda: server.drop_database(name))
    return server.create_database(name)


@pytest.fixture
def tenant(graph_server):
    created = new_tenant(graph_server, f"conc{uuid.uuid4().hex[:6]}")
    yield created
    drop_tenant(graph_server, created)


def config(tmp_path: Path, name: str, store_url: str, dc: SambaDC, graph_server, tenant: dict, **extra) -> dict:
    return {
        "store_url": store_url,
        "instance": INSTANCE,
        "holder": name,
        "ad": dc.connection_info(),
        "entra": json.loads(entra_connection(graph_server, tenant).as_json()),
        **extra,
    }


def start(tmp_path: Path, settings: dict) -> subprocess.Popen:
    """The steps in a process of their own; its output goes to files (a full pipe must never stall a lock holder)."""
    name = settings["holder"]
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(settings))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.cycle_process", str(path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=(tmp_path / f"{name}.out").open("w"),
        stderr=(tmp_path / f"{name}.err").open("w"),
    )


def finish(tmp_path: Path, child: subprocess.Popen, name: str, timeout: float = 300) -> tuple[int, list[dict], str]:
    returncode = child.wait(timeout=timeout)
    lines = (tmp_path / f"{name}.out").read_text().splitlines()
    errors = (tmp_path / f"{name}.err").read_text()
    return returncode, [json.loads(line) for line in lines if line.startswith("{")], errors


def in_a_write(store_url: str) -> bool:
    """Whether some process is inside a write transaction of the store (SQLite: holds its write lock; PostgreSQL: a
    session idles in a transaction)."""
    if store_url.startswith("sqlite:///"):
        probe = sqlite3.connect(store_url.removeprefix("sqlite:///"), timeout=0.05)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.rollback()
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            probe.close()
    engine = sa.create_engine(store_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return bool(
                connection.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
                    )
                ).scalar()
            )
    finally:
        engine.dispose()


#: x86-64 system calls a thread blocks in while it waits for an answer (read, poll, select, recvfrom, recvmsg,
#: epoll_wait, pselect6, ppoll, epoll_pwait).
_WAITING_SYSCALLS = {"0", "7", "23", "45", "47", "232", "270", "271", "281"}


def waiting_for_an_answer(pid: int) -> bool:
    """Whether the stopped process's main thread is blocked reading a socket (Graph's or the store's answer), not
    between two steps of its own (e.g. after recording a batch as sent and before sending it)."""
    if platform.machine() != "x86_64":
        return True  # the system call numbers below are x86-64's; elsewhere only the store check applies
    return Path(f"/proc/{pid}/syscall").read_text().split()[0] in _WAITING_SYSCALLS


def freeze_while_waiting(pid: int, store_url: str) -> None:
    """SIGSTOP the process while it waits for Graph, outside any store transaction. A process frozen inside a write
    holds the database's write lock (SQLite) or its row lock (PostgreSQL) until it wakes up or dies, so nobody can
    take over (safe, not live); one frozen in the instant between its last lock check and the request leaving makes
    that one write on waking, which the run that took over reconciles. Neither is the case under test."""
    for _ in range(500):
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.02)
        if waiting_for_an_answer(pid) and not in_a_write(store_url):
            return
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.003)
    raise AssertionError("the export process was never caught waiting for Graph outside a store transaction")


def test_two_cycles_started_together_never_interleave_and_end_exact(tmp_path, store_url, dc, graph_server, tenant):
    started = time.monotonic()
    children = {name: start(tmp_path, config(tmp_path, name, store_url, dc, graph_server, tenant)) for name in "ab"}
    outcomes = {name: finish(tmp_path, child, name) for name, child in children.items()}
    seconds = time.monotonic() - started
    for name, (returncode, steps, errors) in outcomes.items():
        assert returncode == 0, f"cycle {name} failed:\n{errors[-3000:]}"
        assert [step["step"] for step in steps] == ["import_ad", "import_entra", "sync_ad", "sync_entra",
                                                    "export_entra", "export_ad"]  # fmt: skip
        assert all(step["result"] in ("success", "staged") for step in steps), steps

    with Store.open(store_url, instance=INSTANCE) as store:
        spans = {}
        for name, (_, steps, _) in outcomes.items():
            runs = [store.get_run(step["run_id"]) for step in steps]
            spans[name] = (min(run["started_at"] for run in runs), max(run["ended_at"] for run in runs))
    first, second = sorted(spans.values())
    assert first[1] <= second[0], f"the cycles interleaved: {spans}"
    print(f"two cycles on {store_url.split(':')[0]}: {seconds:.1f} s")

    assert graph_state(entra_hook_for(graph_server, tenant)) == ad_state(dc)  # each object once, as in AD


@pytest.fixture
def postgres_url(postgres_server) -> Iterator[str]:
    name = f"z_{uuid.uuid4().hex[:16]}"
    yield postgres_server.create_database(name)
    postgres_server.drop_database(name)


def test_a_zombie_whose_lease_was_taken_over_cannot_write(
    tmp_path, postgres_url, dc, graph_server, tenant, emulator_settings_for
):
    """On PostgreSQL (the store of several workers; tests/unit/engine/test_lock.py freezes a process on SQLite):
    the Entra export of process A is frozen mid-export for longer than its lease (1 s here); process B takes
    the expired lock over and finishes the export. A, woken up, is refused at its next store write: it sends nothing
    more to Graph, and Entra ID ends exact (no object twice, nothing missing)."""
    begun = time.monotonic()
    prepare = config(tmp_path, "prepare", postgres_url, dc, graph_server, tenant, cycle=False)
    run_steps({**prepare, "steps": ["import_ad", "import_entra", "sync_ad", "sync_entra"]})
    calls_before = batch_calls(graph_server)
    zombie = start(tmp_path, {**prepare, "holder": "worker-a", "steps": ["export_entra"], "lease_seconds": 1.0})
    try:
        deadline = time.monotonic() + 120
        while batch_calls(graph_server) < calls_before + 1:
            assert zombie.poll() is None and time.monotonic() < deadline, "the export did not get going"
            time.sleep(0.005)
        emulator_settings_for(graph_server, latencyMs=150)  # slow Graph down so the export is caught midway
        while batch_calls(graph_server) < calls_before + 2:
            assert zombie.poll() is None and time.monotonic() < deadline, "the export ended too soon"
            time.sleep(0.005)
        freeze_while_waiting(zombie.pid, postgres_url)
        time.sleep(1.5)  # past the frozen process's lease: nobody renews it
        emulator_settings_for(graph_server, latencyMs=None)
        # (the settle wait before reconciling interrupted creates is short here: the emulator answers at once)
        taker = start(tmp_path, {**prepare, "holder": "worker-b", "steps": ["export_entra"],
                                 "export_settings": {"resend_settle_seconds": 0.5}})  # fmt: skip
        returncode, steps, errors = finish(tmp_path, taker, "worker-b")
        assert returncode == 0 and steps[0]["result"] == "success", errors[-3000:]
        writes_after_takeover = write_requests(graph_server)
    finally:
        os.kill(zombie.pid, signal.SIGCONT)
    returncode, _, errors = finish(tmp_path, zombie, "worker-a")
    print(f"zombie test: {time.monotonic() - begun:.1f} s")
    assert returncode != 0 and "StoreLockLostError" in errors, errors[-3000:]
    assert "the lock of 'worker-a'" in errors and "was taken over" in errors
    assert write_requests(graph_server) == writes_after_takeover  # the zombie wrote nothing after waking up
    with Store.open(postgres_url, instance=INSTANCE) as store:
        exports = sorted(run["result"] for run in store.list_runs() if run["profile"] == "export")
    assert exports == ["stopped-lock-lost", "success"]
    assert graph_state(entra_hook_for(graph_server, tenant)) == ad_state(dc)


# ------------------------------------------------------------------------------------------------------ Airflow
def step_spans(home: Path, dag_id: str) -> tuple[str, str, int]:
    """(first step's start, last step's end, reschedules of acquire_instance) of the one DAG run in a metadata DB."""
    with sqlite3.connect(home / "airflow.db") as connection:
        start, end = connection.execute(
            "select min(start_date), max(end_date) from task_instance where dag_id = ? and task_id in "
            "('import_ad', 'import_entra', 'sync_ad', 'sync_entra', 'export_entra', 'export_ad')",
            (dag_id,),
        ).fetchone()
        waits = connection.execute(
            "select count(*) from task_reschedule r join task_instance t on r.ti_id = t.id "
            "where t.dag_id = ? and t.task_id = 'acquire_instance'",
            (dag_id,),
        ).fetchone()[0]
    return start, end, waits


def test_a_run_of_the_other_dag_waits_for_the_cycle_that_holds_the_instance(tmp_path, dc, graph_server, tenant):
    """``aadsync_full`` and ``aadsync_cycle`` of one instance, started together by two Airflows (two schedulers'
    worth: separate metadata DBs, one store): one takes the instance, the other waits in ``acquire_instance``
    (rescheduled, no worker slot) until the first one's report released it. Their steps never overlap and Entra ID
    ends exact."""
    shared = tmp_path / "aadsync"
    variables = {"aadsync_instance": "airflow", "aadsync_instance_poke_seconds": "1", "aadsync_retries": "0"}
    worlds = {
        dag_id: airflow_world(tmp_path / dag_id, dc, graph_server, tenant, variables=variables)
        for dag_id in ("aadsync_full", "aadsync_cycle")
    }
    for world in worlds.values():
        world.extra_env["AADSYNC_HOME"] = str(shared)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda world: world.migrate(), worlds.values()))
    started = time.monotonic()
    children = {}
    for dag_id, world in worlds.items():
        log = (tmp_path / f"{dag_id}.log").open("w")
        children[dag_id] = subprocess.Popen(
            world.dags_test_command(dag_id), env=world.environment(), stdout=log, stderr=subprocess.STDOUT,
            cwd=world.home,
        )  # fmt: skip
    for dag_id, child in children.items():
        returncode = child.wait(timeout=600)
        run = outcome(dag_id, returncode, (tmp_path / f"{dag_id}.log").read_text(), time.monotonic() - started)
        assert run.succeeded, run.tail()
    print(f"aadsync_full and aadsync_cycle of one instance together: {time.monotonic() - started:.1f} s")

    spans = {dag_id: step_spans(world.home, dag_id) for dag_id, world in worlds.items()}
    (first_start, first_end, first_waits), (second_start, second_end, second_waits) = sorted(spans.values())
    assert first_end <= second_start, f"the DAG runs interleaved: {spans}"
    assert first_waits == 0 and second_waits >= 1, spans  # the second one waited in acquire_instance
    with Store.open(f"sqlite:///{shared / 'store' / 'airflow.sqlite'}", instance="airflow") as store:
        runs = sorted(store.list_runs(limit=50), key=lambda run: run["started_at"])
        half = len(runs) // 2  # both DAG runs ran the same steps (the AD export records a run when writeback is on)
        assert len(runs) in (10, 12) and not store.release_lock("nobody")
        assert max(run["ended_at"] for run in runs[:half]) <= runs[half]["started_at"]
        assert lock.lock_state(store).holder == ""  # released by the second run's report
    assert graph_state(entra_hook_for(graph_server, tenant)) == ad_state(dc)
