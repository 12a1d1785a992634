"""The Celery deployment as local processes (issue 19): Redis, PostgreSQL (Airflow's metadata DB and the sync store),
the api-server, scheduler, dag-processor, triggerer and two Celery workers. ``aadsync_full`` triggered through the
REST API succeeds against the real DC and the Graph emulator; its tasks ran on both workers; the store it wrote is
the PostgreSQL database; Entra ID ends with the directory's state (~60 s here). Marked slow (``-m slow``): a worker
SIGKILLed during ``export_entra`` of ``aadsync_cycle``, and the retry on the other worker ends exact."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from aadsync_devkit.world.airflow_celery import STORE_DB, CeleryAirflow
from aadsync_devkit.world.demo import make_demo_changes
from aadsync_devkit.world.samba import SambaDC
from airflow_provider_aadsync.engine.store import Store
from tests.support.airflow_world import airflow_world, new_tenant
from tests.support.servers import GRAPH_SECRET, entra_hook_for, trust
from tests.support.states import ad_state, graph_state

pytestmark = pytest.mark.integration

USERS, GROUPS, BIG = 200, 10, 150  # the DAG tests' directory: a cached fixture
DAG_ID = "aadsync_full"
INSTANCE = "celery"


@pytest.fixture(scope="module")
def dc(start_dc) -> SambaDC:
    return start_dc(users=USERS, groups=GROUPS, group_size=BIG)


@pytest.fixture(scope="module")
def tenant(graph_server):
    created = new_tenant(graph_server, "celery")
    yield created
    httpx.delete(f"{graph_server.base_url}/_emulator/tenants/{created['id']}", verify=trust(graph_server))


@pytest.fixture(scope="module")
def celery(dc, graph_server, tenant, postgres_server, tmp_path_factory) -> Iterator[CeleryAirflow]:
    """The deployment over the session's PostgreSQL server; one task slot per worker, so the DAG's parallel tasks
    (the AD and Entra imports) must go to both workers. Stopped by PID at the end."""
    world = airflow_world(
        tmp_path_factory.mktemp("celery"),
        dc,
        graph_server,
        tenant,
        variables={"aadsync_instance": INSTANCE, "aadsync_retries": "1", "aadsync_retry_delay_seconds": "1"},
    )
    # a task whose worker died is failed (and retried) after 10 s without a heartbeat, not Airflow's 5 minutes
    env = {
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "10",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    }
    deployment = CeleryAirflow(world, postgres_server, concurrency=1, env=env)
    started = time.monotonic()
    deployment.start(timeout=300)
    print(f"Celery deployment up in {time.monotonic() - started:.1f} s: {deployment.status()['services']}")
    try:
        deployment.wait_for_dag(DAG_ID, timeout=240)
        yield deployment
    finally:
        deployment.stop()
        assert not any(service["running"] for service in deployment.status()["services"].values())


def test_aadsync_full_through_the_rest_api_runs_on_both_workers_into_the_postgres_store(
    celery, dc, graph_server, tenant
):
    celery.unpause(DAG_ID)
    started = time.monotonic()
    run_id = celery.trigger(DAG_ID)
    run = celery.wait_for_run(DAG_ID, run_id, timeout=600)
    seconds = time.monotonic() - started
    instances = celery.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
    states = {ti["task_id"]: ti["state"] for ti in instances}
    assert run["state"] == "success", f"run {run_id}: {states}{celery.log_tail()}"
    print(f"{DAG_ID} on Celery through the REST API: {seconds:.1f} s")

    hosts = {ti["task_id"]: ti["hostname"] for ti in instances if ti["state"] == "success"}
    print(f"task instances by worker: {hosts}")
    assert {host.split("@", 1)[0] for host in hosts.values()} == {"worker1", "worker2"}, hosts

    with Store.open(celery.store_url(), instance=INSTANCE) as store:
        runs = {(r["profile"], r["connector"], r["result"]) for r in store.list_runs(limit=10)}
    assert store.engine.dialect.name == "postgresql" and celery.store_url().endswith(f"/{STORE_DB}")
    assert {("full-import", "ad", "success"), ("full-sync", "ad", "success"), ("export", "entra", "success")} <= runs

    assert graph_state(entra_hook_for(graph_server, tenant)) == ad_state(dc)
    logs = "".join(path.read_text(errors="replace") for path in celery.log_dir.glob("*.log"))
    assert dc.admin_password not in logs and GRAPH_SECRET not in logs


@pytest.mark.slow  # 45-75 s more (delta cycle, 10 s heartbeat timeout, retry): with it 87-138 s, over budget
def test_a_worker_killed_during_export_entra_the_retry_runs_on_the_other_worker_and_ends_exact(
    celery, dc, graph_server, tenant
):
    """After the full run: the demo's AD changes, then ``aadsync_cycle`` with a slow Graph; while ``export_entra``
    runs, its worker's whole session gets SIGKILL (a machine lost). The scheduler fails the task for its missing
    heartbeat, Airflow retries it on the surviving worker, and Entra ends with the directory's state."""
    dag_id = "aadsync_cycle"
    if not any(run["state"] == "success" for run in celery.api("GET", f"/dags/{DAG_ID}/dagRuns")["dag_runs"]):
        celery.unpause(DAG_ID)  # alone (-m slow): the full run first, as the test above does
        full = celery.trigger(DAG_ID)
        assert celery.wait_for_run(DAG_ID, full, timeout=600)["state"] == "success", celery.log_tail()
    make_demo_changes(dc)
    settings = f"{graph_server.base_url}/_emulator/settings"
    try:
        celery.unpause(dag_id)
        started = time.monotonic()
        run_id = celery.trigger(dag_id)
        # Graph slow only once the Entra import is done: the export's calls take seconds, the import's do not
        while celery.task_states(dag_id, run_id).get("import_entra", (None, 0))[0] != "success":
            assert time.monotonic() - started < 300, f"import_entra not done: {celery.task_states(dag_id, run_id)}"
            time.sleep(0.2)
        httpx.put(settings, json={"latencyMs": 3000}, verify=trust(graph_server))
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/export_entra"
        while (export := celery.api("GET", path, expect=(200, 404)) or {}).get("state") != "running":
            assert time.monotonic() - started < 300, f"export_entra never ran: {celery.task_states(dag_id, run_id)}"
            time.sleep(0.2)
        killed = export["hostname"].split("@", 1)[0]
        time.sleep(0.5)  # into the export's Graph calls
        assert celery.api("GET", path)["state"] == "running", "the export ended before the kill"
        celery.kill_worker(killed)
        print(f"SIGKILL {killed} during export_entra after {time.monotonic() - started:.1f} s")
    finally:
        httpx.put(settings, json={"latencyMs": None}, verify=trust(graph_server))
    run = celery.wait_for_run(dag_id, run_id, timeout=600)
    print(f"{dag_id} with a worker killed: {time.monotonic() - started:.1f} s")
    export = celery.api("GET", path)
    assert run["state"] == "success", f"{celery.task_states(dag_id, run_id)}{celery.log_tail()}"
    tries = {key: export[key] for key in ("state", "try_number", "hostname")}
    assert export["try_number"] == 2 and export["hostname"].split("@", 1)[0] != killed, (killed, tries)
    assert graph_state(entra_hook_for(graph_server, tenant)) == ad_state(dc)
