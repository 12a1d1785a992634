"""The Celery deployment as local processes (issue 19): Redis, PostgreSQL (Airflow's metadata DB and the sync store),
the api-server, scheduler, dag-processor, triggerer and two Celery workers. ``aadsync_full`` triggered through the
REST API succeeds against the real DC and the Graph emulator; its tasks ran on both workers; the store it wrote is
the PostgreSQL database; Entra ID ends with the directory's state (~60 s here). Two named sync instances deployed
next to it (``east`` and ``west``: each its own store database, tenant and OU) run ``aadsync_<name>_full`` at once on
the same workers without touching each other, their Graph writers one at a time through the shared pool. A worker
SIGKILLed during ``export_entra`` of ``aadsync_cycle``: the retry on the other worker ends exact (45-75 s of the file's
time: a delta cycle, the 10 s heartbeat timeout and the retry)."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from aadsync_devkit.world.airflow_celery import GRAPH_WRITER_POOL, STORE_DB, CeleryAirflow, store_database
from aadsync_devkit.world.demo import make_demo_changes
from aadsync_devkit.world.samba import SambaDC
from aadsync_devkit.world.seed import MAIL_DOMAIN, USER_CLASSES
from airflow_provider_aadsync.cli import main
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.store.tables import cs_object
from tests.support.airflow_world import REPO, airflow_world, module_tenant, new_tenant
from tests.support.servers import GRAPH_SECRET, drop_tenant, entra_hook_for, trust
from tests.support.states import ad_state, graph_state

pytestmark = pytest.mark.integration

USERS, GROUPS, BIG = 200, 10, 150  # the DAG tests' directory: a cached fixture
DAG_ID = "aadsync_full"
INSTANCE = "celery"
#: the named instances deployed next to the default one, each syncing its own OU (outside OU=AADSync) to its tenant
NAMED = ("east", "west")
NAMED_USERS = 3
README = (REPO / "README.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def dc(start_dc) -> SambaDC:
    return start_dc(users=USERS, groups=GROUPS, group_size=BIG)


tenant = module_tenant("celery")


@pytest.fixture(scope="module")
def named_tenants(graph_server) -> Iterator[dict[str, dict]]:
    """A tenant of its own for each named instance."""
    created = {name: new_tenant(graph_server, f"celery{name}") for name in NAMED}
    yield created
    for other in created.values():
        drop_tenant(graph_server, other)


def named_ou(dc: SambaDC, name: str) -> str:
    return f"OU={name.capitalize()},OU=TwoInstances,{dc.base_dn}"


@pytest.fixture(scope="module")
def celery(dc, graph_server, tenant, named_tenants, postgres_server, tmp_path_factory) -> Iterator[CeleryAirflow]:
    """The deployment over the session's PostgreSQL server; one task slot per worker, so the DAG's parallel tasks
    (the AD and Entra imports) must go to both workers. Also the named instances east and west (README "Several sync
    instances in one deployment"): a store database each (the deployment's ``instances``), a connection to its own
    tenant (``aadsync_entra_<name>``, the default a named instance reads) and a connectors file scoping the shared AD
    connection to its own OU. Stopped by PID at the end."""
    root = tmp_path_factory.mktemp("celery")
    variables = {"aadsync_instance": INSTANCE, "aadsync_retries": "1", "aadsync_retry_delay_seconds": "1"}
    for name in NAMED:
        scope = {"ad": [{"name": "ad", "conn_id": "aadsync_ad",
                         "partitions": [{"dn": dc.base_dn, "include_ous": [named_ou(dc, name)]}]}]}  # fmt: skip
        (root / f"{name}.yaml").write_text(yaml.safe_dump(scope), encoding="utf-8")
        variables[f"aadsync_{name}__connectors_file"] = str(root / f"{name}.yaml")
    tenants = {f"aadsync_entra_{name}": named_tenants[name] for name in NAMED}
    world = airflow_world(root, dc, graph_server, tenant, variables=variables, tenants=tenants)
    # a task whose worker died is failed (and retried) after 10 s without a heartbeat, not Airflow's 5 minutes
    env = {
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "10",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    }
    deployment = CeleryAirflow(world, postgres_server, concurrency=1, env=env, instances=NAMED)
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


def test_the_aadsync_airflow_commands_trigger_follow_and_report_runs_through_the_rest_api(celery):
    """The product's client (``aadsync airflow``, env from ``aadsync-dev env``): a preview run of ``aadsync_full``
    followed to success, one of an unknown DN to failure (exit 1), ``status`` of both; a wrong password is refused
    naming the variable. The previews run two short tasks, not the cycle."""
    if not any(run["state"] == "success" for run in celery.api("GET", f"/dags/{DAG_ID}/dagRuns")["dag_runs"]):
        celery.unpause(DAG_ID)  # alone (-k): the full run first, so the store holds the object to preview
        assert celery.wait_for_run(DAG_ID, celery.trigger(DAG_ID), timeout=600)["state"] == "success"
    with Store.open(celery.store_url(), instance=INSTANCE) as store, store.engine.connect() as connection:
        dn = connection.execute(sa.select(cs_object.c.dn).where(cs_object.c.connector == "ad").limit(1)).scalar_one()
    password = celery.admin_password()
    env = {"AADSYNC_AIRFLOW_API_URL": celery.base_url, "AADSYNC_AIRFLOW_USER": "admin"}
    env["AADSYNC_AIRFLOW_PASSWORD"] = password

    refused = CliRunner().invoke(main, ["airflow", "status", DAG_ID], env=env | {"AADSYNC_AIRFLOW_PASSWORD": "nope"})
    assert refused.exit_code == 1 and "AADSYNC_AIRFLOW_PASSWORD" in refused.output, refused.output

    started = time.monotonic()
    wait = ["--wait", "--poll", "0.5", "--json"]
    good = CliRunner().invoke(
        main, ["airflow", "trigger", DAG_ID, "--conf", json.dumps({"preview_dn": dn}), *wait], env=env
    )
    assert good.exit_code == 0, good.output
    run = json.loads(good.output)
    states = {task["task_id"]: task["state"] for task in run["tasks"]}
    assert run["state"] == "success" and states["preview"] == "success" and states["acquire_instance"] == "skipped"
    bad = CliRunner().invoke(
        main, ["airflow", "trigger", DAG_ID, "--conf", '{"preview_dn": "CN=Nobody"}', *wait], env=env
    )
    assert bad.exit_code == 1 and "failed (tasks: preview)" in bad.output, bad.output
    print(f"aadsync airflow trigger --wait, two preview runs: {time.monotonic() - started:.1f} s")

    latest = CliRunner().invoke(main, ["airflow", "status", DAG_ID], env=env)
    assert latest.exit_code == 1 and "preview: failed" in latest.output and " on worker" in latest.output
    earlier = CliRunner().invoke(main, ["airflow", "status", DAG_ID, "--run-id", run["dag_run_id"]], env=env)
    assert earlier.exit_code == 0 and f"{DAG_ID} run {run['dag_run_id']}: success" in earlier.output
    listed = CliRunner().invoke(main, ["airflow", "status"], env=env)
    assert listed.exit_code == 0 and run["dag_run_id"] in listed.output
    outputs = refused.output + good.output + bad.output + latest.output + earlier.output + listed.output
    assert password not in outputs and "nope" not in outputs


def test_a_worker_killed_during_export_entra_the_retry_runs_on_the_other_worker_and_ends_exact(
    celery, dc, graph_server, tenant
):
    """After the full run: the demo's AD changes, then ``aadsync_cycle`` with a slow Graph; while ``export_entra``
    runs, its worker's whole session gets SIGKILL (a machine lost). The scheduler fails the task for its missing
    heartbeat, Airflow retries it on the surviving worker, and Entra ends with the directory's state."""
    dag_id = "aadsync_cycle"
    if not any(run["state"] == "success" for run in celery.api("GET", f"/dags/{DAG_ID}/dagRuns")["dag_runs"]):
        celery.unpause(DAG_ID)  # run alone (-k): the full run first, as the test above does
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
    try:
        run = celery.wait_for_run(dag_id, run_id, timeout=600)
    finally:
        celery.restart_worker(killed)  # the machine back: the tests after this one use both workers
    print(f"{dag_id} with a worker killed: {time.monotonic() - started:.1f} s")
    export = celery.api("GET", path)
    assert run["state"] == "success", f"{celery.task_states(dag_id, run_id)}{celery.log_tail()}"
    tries = {key: export[key] for key in ("state", "try_number", "hostname")}
    assert export["try_number"] == 2 and export["hostname"].split("@", 1)[0] != killed, (killed, tries)
    assert graph_state(entra_hook_for(graph_server, tenant)) == ad_state(dc)


def seed_named_directories(dc: SambaDC) -> None:
    """Each named instance's OU: a few users and a group of them, names that say whose they are."""
    conn = dc.connect()
    try:
        assert conn.add(f"OU=TwoInstances,{dc.base_dn}", ["top", "organizationalUnit"]), conn.result
        for name in NAMED:
            ou = named_ou(dc, name)
            assert conn.add(ou, ["top", "organizationalUnit"]), conn.result
            members = []
            for n in range(1, NAMED_USERS + 1):
                dn = f"CN={name}{n},{ou}"
                attrs = {"sAMAccountName": f"{name}{n}", "userPrincipalName": f"{name}{n}@{MAIL_DOMAIN}",
                         "givenName": name, "sn": str(n), "displayName": f"{name} {n}"}  # fmt: skip
                assert conn.add(dn, USER_CLASSES, attrs), conn.result
                members.append(dn)
            group = {"sAMAccountName": f"{name}-team", "groupType": -2147483646, "member": members}
            assert conn.add(f"CN={name}-team,{ou}", ["top", "group"], group), conn.result
    finally:
        conn.unbind()


def remove_named_directories(dc: SambaDC) -> None:
    """Delete the named instances' OUs again, so the default instance's later cycles never see them."""
    conn = dc.connect()
    try:
        conn.delete(f"OU=TwoInstances,{dc.base_dn}", controls=[("1.2.840.113556.1.4.805", True, None)])  # tree
    finally:
        conn.unbind()


def print_timeline(instances: dict[str, list[dict]]) -> None:
    """Each task instance of the runs: seconds from the first start to its queueing, start and end, and its worker."""
    when = {(name, ti["task_id"]): ti for name, tis in instances.items() for ti in tis if ti["start_date"]}
    zero = min(dt.datetime.fromisoformat(ti["start_date"]) for ti in when.values())

    def at(value: str | None) -> str:
        return f"{(dt.datetime.fromisoformat(value) - zero).total_seconds():5.1f}" if value else "    -"

    for (name, task), ti in sorted(when.items(), key=lambda item: item[1]["start_date"]):
        print(f"  {name:5} {task:17} queued {at(ti['queued_when'])} start {at(ti['start_date'])} "
              f"end {at(ti['end_date'])} {ti['hostname']}")  # fmt: skip


def moment(ti: dict, key: str) -> dt.datetime:
    return dt.datetime.fromisoformat(ti[key])


def overlaps(first: dict, second: dict) -> bool:
    return moment(first, "start_date") < moment(second, "end_date") and moment(second, "start_date") < moment(
        first, "end_date"
    )


def test_two_named_instances_run_at_once_on_the_same_workers_into_their_own_stores_and_tenants(
    celery, dc, graph_server, named_tenants
):
    """``aadsync_east_full`` and ``aadsync_west_full`` triggered together through the REST API: both succeed on the
    two workers; each tenant holds exactly its own OU's objects and each store only its own directory; and the
    ``export_entra`` tasks of both, in the pool the README documents (1 slot), never ran at the same time."""
    dag_ids = {name: f"aadsync_{name}_full" for name in NAMED}
    seed_named_directories(dc)
    try:
        for dag_id in dag_ids.values():
            celery.wait_for_dag(dag_id, timeout=120)
            celery.unpause(dag_id)
        started = time.monotonic()
        run_ids = {name: celery.trigger(dag_id) for name, dag_id in dag_ids.items()}
        runs = {name: celery.wait_for_run(dag_ids[name], run_ids[name], timeout=600) for name in NAMED}
        seconds = time.monotonic() - started
        instances = {
            name: celery.api("GET", f"/dags/{dag_ids[name]}/dagRuns/{run_ids[name]}/taskInstances")["task_instances"]
            for name in NAMED
        }
        for name in NAMED:
            states = {ti["task_id"]: ti["state"] for ti in instances[name]}
            assert runs[name]["state"] == "success", f"{dag_ids[name]}: {states}{celery.log_tail()}"
        print(f"{' and '.join(dag_ids.values())} at once on Celery: {seconds:.1f} s")
        print_timeline(instances)

        # tasks of both ran on the deployment's workers, and between them both workers served
        hosts = {(name, ti["task_id"]): ti["hostname"].split("@", 1)[0] for name in NAMED for ti in instances[name]
                 if ti["state"] == "success"}  # fmt: skip
        assert set(hosts.values()) == {"worker1", "worker2"}, hosts
        for name in NAMED:
            assert {task for run, task in hosts if run == name} >= {"import_ad", "import_entra", "export_entra"}

        # each tenant holds exactly its own directory, nothing of the other's
        tenants = {name: graph_state(entra_hook_for(graph_server, named_tenants[name])) for name in NAMED}
        directories = {name: ad_state(dc, named_ou(dc, name)) for name in NAMED}
        for name in NAMED:
            assert tenants[name] == directories[name], name
            assert len(directories[name][0]) == NAMED_USERS and set(directories[name][1]) == {f"{name}-team"}
        east, west = (tenants[name] for name in NAMED)
        assert not east[0] & west[0] and not set(east[1]) & set(west[1])

        # two stores: separate databases, each holding its own instance's runs and only its own OU's objects
        assert len({celery.store_url(name) for name in NAMED} | {celery.store_url()}) == 3
        for name in NAMED:
            assert celery.store_url(name).endswith(f"/{store_database(name)}")
            with Store.open(celery.store_url(name), instance=name) as store:
                runs_of = {(r["profile"], r["connector"], r["result"]) for r in store.list_runs(limit=20)}
                with store.engine.connect() as connection:
                    query = sa.select(cs_object.c.dn, cs_object.c.object_type).where(
                        cs_object.c.connector == "ad", ~cs_object.c.is_deleted
                    )
                    found = connection.execute(query).all()
                    entra = connection.execute(
                        sa.select(sa.func.count()).where(cs_object.c.connector == "entra", ~cs_object.c.is_deleted)
                    ).scalar()
            assert {("full-import", "ad", "success"), ("export", "entra", "success")} <= runs_of, runs_of
            assert all(dn.lower().endswith(named_ou(dc, name).lower()) for dn, _ in found), found
            kinds = sorted(kind for _, kind in found if kind in ("user", "group"))
            assert kinds == ["group"] + ["user"] * NAMED_USERS, found
            assert entra == NAMED_USERS + 1

        # the Graph writers of both DAGs shared the README's pool, 1 slot, and never overlapped
        pool = celery.api("GET", f"/pools/{GRAPH_WRITER_POOL}")
        assert pool["slots"] == 1 and f"airflow pools set {GRAPH_WRITER_POOL} 1 " in README
        exports = {name: next(ti for ti in instances[name] if ti["task_id"] == "export_entra") for name in NAMED}
        assert {ti["pool"] for ti in exports.values()} == {GRAPH_WRITER_POOL}
        spans = {name: (ti["queued_when"], ti["start_date"], ti["end_date"]) for name, ti in exports.items()}
        assert not overlaps(*exports.values()), spans
        # a queued task holds its pool slot too: the second export was queued only once the first had ended
        first, second = sorted(NAMED, key=lambda name: moment(exports[name], "queued_when"))
        assert moment(exports[second], "queued_when") >= moment(exports[first], "end_date"), spans
        ready = next(moment(ti, "end_date") for ti in instances[second] if ti["task_id"] == "export_ad")
        waited = (moment(exports[second], "queued_when") - ready).total_seconds()
        print(f"export_entra of {second} waited {waited:.1f} s for the pool's slot: {spans}")
    finally:
        remove_named_directories(dc)
