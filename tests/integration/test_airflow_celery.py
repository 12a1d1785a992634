"""The Celery deployment as local processes (issue 19): Redis, PostgreSQL (Airflow's metadata DB and the sync store),
the api-server, scheduler, dag-processor, triggerer and two Celery workers. ``aadsync_full`` triggered through the
REST API succeeds against the real DC and the Graph emulator; its tasks ran on both workers; the store it wrote is
the PostgreSQL database; Entra ID ends with the directory's state."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from aadsync_devkit.world.airflow_celery import STORE_DB, CeleryAirflow
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
        variables={"aadsync_instance": INSTANCE, "aadsync_retries": "0"},
    )
    deployment = CeleryAirflow(world, postgres_server, concurrency=1)
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
