"""``aadsync-dev bench cycle``: the whole sync cycle through Airflow on the Celery deployment, at scale.

Starts a Samba DC seeded with the given directory (the fixture cache), the Graph emulator (its own process, empty dev
tenant, unthrottled), a throw-away PostgreSQL server and the Celery deployment over it (world/airflow_celery.py: Redis,
api-server, scheduler, dag-processor, triggerer, two workers of one task slot each; the sync store is the PostgreSQL
database ``aadsync_store``), then triggers through the REST API:

1. ``aadsync_full``: full imports, full syncs, the exports (the initial load of the tenant);
2. ``aadsync_cycle``, the first delta: it reads back what the full cycle wrote to AD itself (the ConsistencyGuid
   writeback, on as shipped: every user's ``mS-DS-ConsistencyGuid``), as it would in production;
3. ``aadsync_cycle`` after ``--changes`` AD changes (the demo's add, modify, rename, delete, member add and member
   remove, then title changes): the steady-state delta, measured against the full cycle (target ≤ 2 %).

For each DAG run it reports each task's seconds (Airflow's task instance, REST API), the objects the step handled
(the step's own run record in the store: objects read by an import, evaluated by a sync, Graph write requests planned
by the Entra export, LDAP objects written by the AD export) and objects/s, the task process's peak RSS
(:class:`~aadsync_devkit.bench.machine.TaskMemorySampler`), the Graph requests the emulator counted, and the wall time
a real tenant would take: Graph's write budget (3,000 write requests per 150 s per app and tenant; each request in a
``$batch`` counts on its own) applied to the run's write requests, modelled rather than waited for.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ldap3

import airflow_provider_aadsync
from aadsync_devkit.bench.machine import TaskMemorySampler, machine_facts
from aadsync_devkit.processes import HOST, free_port
from aadsync_devkit.world.airflow_celery import CeleryAirflow
from aadsync_devkit.world.airflow_runs import LocalAirflow
from aadsync_devkit.world.demo import make_demo_changes
from aadsync_devkit.world.fixtures import cached_seeded_dc, seeded_cache_path
from aadsync_devkit.world.graph import LocalGraphEmulator
from aadsync_devkit.world.postgres import LocalPostgres
from aadsync_devkit.world.samba import SambaDC
from airflow_provider_aadsync.engine.store import Store, as_utc

REPOSITORY = Path(airflow_provider_aadsync.__file__).resolve().parents[1]
RESULTS_DIR = REPOSITORY / "bench" / "results"
INSTANCE = "bench"
DELTA_VS_FULL = 0.02
#: Graph's identity-and-access write limits (DESIGN §5; learn.microsoft.com/graph/throttling-limits): per app and
#: tenant, and per tenant for all apps. The first binds for one sync app (20 writes/s against 60).
APP_WRITES, APP_WINDOW_SECONDS = 3_000, 150.0
TENANT_WRITES, TENANT_WINDOW_SECONDS = 18_000, 300.0
#: ``--quick``: the profile CI runs (its shape, not its timings, is checked): the DAG tests' cached directory, so
#: the three DAG runs and the deployment's start fit in about two minutes.
QUICK = {"users": 200, "groups": 10, "group_size": 150}
#: Which counter of a step's run record counts the objects it handled, by task kind.
OBJECT_COUNTERS = {
    "import": ("objects_read",),
    "sync": ("objects_evaluated",),
    "export_entra": ("planned_requests",),
    "export_ad": ("objects_written", "ldap_writes", "planned_operations"),
}
_WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")


def make_changes(dc: SambaDC, count: int) -> list[str]:
    """``count`` AD changes (at least the demo's six kinds): the demo's, then new titles for further users."""
    done = make_demo_changes(dc)
    touched = {done["modified"], done["renamed"], done["deleted"]}
    made = [f"{kind}: {what}" for kind, what in done.items() if kind != "changed_upns"]  # a note, not a change
    conn = dc.connect()
    try:
        base = f"OU=Users,OU=AADSync,{dc.base_dn}"
        conn.search(base, "(&(objectCategory=person)(objectClass=user))", attributes=["1.1"], size_limit=count + 10)
        dns = sorted(e["dn"] for e in conn.response if e["type"] == "searchResEntry" and e["dn"] not in touched)
        for dn in dns[: max(0, count - len(made))]:
            conn.modify(dn, {"title": [(ldap3.MODIFY_REPLACE, [f"Bench title {time.time():.0f}"])]})
            if conn.result["result"] != 0:
                raise RuntimeError(f"bench change failed (title of {dn}): {conn.result['description']}")
            made.append(f"title: {dn}")
    finally:
        conn.unbind()
    return made


def graph_requests(counters: dict[str, Any]) -> dict[str, int]:
    """Reads and directory writes in the emulator's counters. Each request inside a ``$batch`` is counted by its own
    route (and by Graph's limits on its own); the ``$batch`` envelope, token requests and the app's extension
    definitions (set-up on ``/applications``) are left out of the writes."""
    reads = writes = 0
    for key, count in counters["requests"].items():
        method, route = key.split(" ", 1)
        if "/oauth2/" in route or "/_emulator/" in route or route.endswith("$batch"):
            continue
        if method == "GET":
            reads += count
        elif method in _WRITE_METHODS and "/applications" not in route:
            writes += count
    return {"reads": reads, "writes": writes, "batch_items": counters.get("batchItems", 0), "429": counters["429"]}


def real_tenant(dag_seconds: float, export_seconds: float, writes: int) -> dict[str, Any]:
    """The DAG run's wall time had the export been paced to Graph's write budget: the first ``APP_WRITES`` writes at
    once, each further ``APP_WRITES`` one window later; the export never faster than it ran here unthrottled."""
    windows = max(0, math.ceil(writes / APP_WRITES) - 1)
    last_share = min(1.0, APP_WRITES / writes) if writes else 1.0
    export = max(export_seconds, windows * APP_WINDOW_SECONDS + export_seconds * last_share)
    return {
        "write_budget": f"{APP_WRITES}/{APP_WINDOW_SECONDS:g} s per app and tenant",
        "write_requests": writes,
        "export_entra_seconds": export,
        "cycle_seconds": dag_seconds - export_seconds + export,
    }


def _seconds(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()


def _step_records(store_url: str, since: str) -> dict[str, dict[str, Any]]:
    """The store's run records of the steps of one DAG run, by the task that wrote them (``import_ad``...)."""
    started = dt.datetime.fromisoformat(since)
    found: dict[str, dict[str, Any]] = {}
    with Store.open(store_url, instance=INSTANCE) as store:
        for record in reversed(store.list_runs(limit=100)):
            if as_utc(record["started_at"]) < started:
                continue
            kind = next((k for k in ("import", "sync", "export") if k in record["profile"]), None)
            if kind:
                found[f"{kind}_{record['connector']}"] = record
    return found


def _objects(task_id: str, counters: dict[str, Any]) -> tuple[int | None, str | None]:
    keys = OBJECT_COUNTERS.get(task_id) or OBJECT_COUNTERS.get(task_id.split("_", 1)[0], ())
    for key in keys:
        if key in counters:
            return int(counters[key]), key
    if task_id.startswith("import") and counters:  # an import that read nothing records no objects_read
        return sum(int(counters.get(key, 0)) for key in ("adds", "updates", "renames", "deletes")), "changes"
    return None, None


def measure_run(
    deployment: CeleryAirflow,
    graph: LocalGraphEmulator,
    sampler: TaskMemorySampler,
    dag_id: str,
    *,
    timeout: float,
) -> dict[str, Any]:
    """Trigger ``dag_id`` through the REST API, wait for it, and gather its figures."""
    graph.admin("DELETE", "/_emulator/counters").raise_for_status()
    run_id = deployment.trigger(dag_id)
    run = deployment.wait_for_run(dag_id, run_id, timeout=timeout)
    sampler.sample()
    instances = deployment.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
    records = _step_records(deployment.store_url(), run["start_date"])
    requests = graph_requests(graph.admin("GET", "/_emulator/counters").json())
    tasks = []
    for ti in sorted(instances, key=lambda t: t["start_date"] or "~"):
        record = records.get(ti["task_id"])
        counters = dict(record["counters"]) if record else {}
        objects, counter = _objects(ti["task_id"], counters)
        seconds = ti["duration"] or 0.0
        tasks.append(
            {
                "task_id": ti["task_id"],
                "state": ti["state"],
                "worker": (ti["hostname"] or "").split("@", 1)[0] or None,
                "try_number": ti["try_number"],
                "seconds": seconds,
                "step_seconds": (as_utc(record["ended_at"]) - as_utc(record["started_at"])).total_seconds()
                if record and record["ended_at"]
                else None,
                "objects": objects,
                "objects_counter": counter,
                "objects_per_second": objects / seconds if objects is not None and seconds else None,
                "peak_rss": sampler.peaks.get(ti["id"]),
                "step_result": record["result"] if record else None,
                "step_counters": counters,
            }
        )
    dag_seconds = _seconds(run["start_date"], run["end_date"])
    export = next((t["seconds"] for t in tasks if t["task_id"] == "export_entra"), 0.0)
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "state": run["state"],
        "seconds": dag_seconds,
        "tasks": tasks,
        "graph_requests": requests,
        "real_tenant": real_tenant(dag_seconds, export, requests["writes"]),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def bench_cycle(
    users: int,
    groups: int,
    group_size: int,
    changes: int,
    home: Path,
    *,
    dc_host: str = HOST,
    timeout: float = 4 * 3600,
    progress: Callable[[str], None] = print,
    save: Callable[[dict[str, Any]], None] = lambda results: None,
) -> dict[str, Any]:
    """The three DAG runs on a fresh deployment; every server started here is stopped before returning. ``save``
    gets the results so far after each DAG run (a long run stopped midway keeps what it measured)."""
    results: dict[str, Any] = {"users": users, "groups": groups, "group_size": group_size, "changes": changes}
    started = time.perf_counter()
    cached = seeded_cache_path(users=users, groups=groups, group_size=group_size).exists()
    dc = cached_seeded_dc(home / "samba", users=users, groups=groups, group_size=group_size, host=dc_host)
    results["fixture"] = "restored from cache" if cached else "built and cached"
    results["fixture_seconds"] = time.perf_counter() - started
    progress(f"DC {results['fixture']} in {results['fixture_seconds']:.1f} s")
    # PostgreSQL runs as the postgres user when this is root: its home must not sit in a root-private directory
    pg_home = Path(tempfile.mkdtemp(prefix="aadsync-bench-pg-"))
    postgres = LocalPostgres(pg_home)
    graph = LocalGraphEmulator(home / "graph", port=free_port())
    sampler = TaskMemorySampler()
    deployment: CeleryAirflow | None = None
    try:
        postgres.start()
        graph.start()
        results["machine"] = machine_facts(REPOSITORY, postgres.bin_dir)
        world = LocalAirflow(
            home / "airflow",
            connections={
                "aadsync_ad": {"conn_type": "aadsync_ad", **dc.connection_info()},
                "aadsync_entra": graph.connection_info(),
            },
            variables={
                "aadsync_instance": INSTANCE,
                "aadsync_retries": "0",  # a failed step fails the benchmark, it is not hidden by a retry
                # unthrottled, as the emulator: the real budget is modelled from the write requests instead
                "aadsync_write_budget": "1000000",
                "aadsync_write_window_seconds": "1",
            },
            env={"AADSYNC_HOME": str(home / "aadsync")},
        )
        # no scheduled runs: every run is the one this benchmark triggers
        env = {"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}
        deployment = CeleryAirflow(world, postgres, workers=2, concurrency=1, env=env)
        up = time.perf_counter()
        deployment.start(timeout=600)
        for dag_id in ("aadsync_full", "aadsync_cycle"):
            deployment.wait_for_dag(dag_id, timeout=600)
            deployment.unpause(dag_id)
        results["deployment_seconds"] = time.perf_counter() - up
        progress(f"Celery deployment up in {results['deployment_seconds']:.1f} s")
        sampler.start()
        for label, dag_id in (("full", "aadsync_full"), ("first_delta", "aadsync_cycle")):
            results[label] = measure_run(deployment, graph, sampler, dag_id, timeout=timeout)
            progress(f"{dag_id} ({label}): {results[label]['state']} in {results[label]['seconds']:.1f} s")
            save(results)
        results["changes_made"] = make_changes(dc, changes)
        results["delta"] = measure_run(deployment, graph, sampler, "aadsync_cycle", timeout=timeout)
        progress(f"aadsync_cycle (delta of {changes} changes): {results['delta']['state']}")
        results["delta_share_of_full"] = results["delta"]["seconds"] / results["full"]["seconds"]
        steps = {label: sum(t["step_seconds"] or 0 for t in results[label]["tasks"]) for label in ("full", "delta")}
        results["delta_share_of_full_steps"] = steps["delta"] / steps["full"] if steps["full"] else None
        results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        sampler.stop()
        if deployment is not None:
            deployment.stop()
        graph.stop()
        postgres.stop()
        shutil.rmtree(pg_home, ignore_errors=True)
        dc.stop()
    return results


def _mib(value: int | None) -> str:
    return f"{value / 2**20:,.0f} MiB" if value else "–"


def render_cycle(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        f"Whole cycle through Airflow (CeleryExecutor, 2 workers × 1 slot, PostgreSQL store): {results['users']:,} "
        f"users, {results['groups']:,} groups of 20"
        + (f", one group of {results['group_size']:,}" if results["group_size"] else "")
        + f"; DC {results['fixture']}",
        f"machine: {machine['cores']} cores, {(machine['memory_bytes'] or 0) / 2**30:.0f} GiB, {machine['cpu_model']}; "
        f"load average {machine['load_average'][0]:.2f} at the start, "
        f"{machine.get('load_average_end', [0])[0]:.2f} at the end (shared machine)",
    ]
    for label, title in (("full", "full cycle"), ("first_delta", "first delta"), ("delta", "delta cycle")):
        run = results[label]
        if label == "delta":
            title += f" after {results['changes']} AD changes"
        lines += [
            "",
            f"{run['dag_id']} ({title}): {run['state']} in {run['seconds']:.1f} s",
            "",
            "| task | worker | task s | step s | objects | objects/s | peak RSS |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for task in run["tasks"]:
            objects = "" if task["objects"] is None else f"{task['objects']:,} ({task['objects_counter']})"
            rate = "" if task["objects_per_second"] is None else f"{task['objects_per_second']:,.0f}"
            step = "" if task["step_seconds"] is None else f"{task['step_seconds']:.2f}"
            lines.append(
                f"| {task['task_id']} ({task['state']}) | {task['worker'] or ''} | {task['seconds']:.1f} | {step} | "
                f"{objects} | {rate} | {_mib(task['peak_rss'])} |"
            )
        graph, tenant = run["graph_requests"], run["real_tenant"]
        lines.append(
            f"Graph: {graph['reads']:,} reads, {graph['writes']:,} writes ({graph['batch_items']:,} in $batch), "
            f"{graph['429']} × 429. A real tenant at {tenant['write_budget']}: export_entra "
            f"{tenant['export_entra_seconds']:,.0f} s, the whole run {tenant['cycle_seconds']:,.0f} s "
            f"({tenant['cycle_seconds'] / 60:,.1f} min; modelled, not waited)"
        )
    share = results["delta_share_of_full"]
    lines += [
        "",
        f"delta cycle of {results['changes']} changes: {results['delta']['seconds']:.1f} s = {share:.2%} of the full "
        f"cycle's {results['full']['seconds']:.1f} s (target ≤ {DELTA_VS_FULL:.0%}); the steps' own time "
        f"(run records, without Airflow's task start-up): {results['delta_share_of_full_steps']:.2%} of the full's",
        "task s: the task instance's duration (Airflow); step s: the step's run record (the provider's own work); "
        "objects/s over task s; peak RSS: VmHWM of the task process, sampled every 0.2 s",
    ]
    return "\n".join(lines) + "\n"


def default_results_path(users: int) -> Path:
    return RESULTS_DIR / f"cycle-{users}-{dt.datetime.now(dt.UTC):%Y-%m-%d}.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=5_000)
    parser.add_argument("--group-size", type=int, default=0, help="one extra group of this many users")
    parser.add_argument("--changes", type=int, default=10, help="AD changes before the measured delta cycle (≥ 6)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"the CI profile: {QUICK['users']:,} users, {QUICK['groups']} groups (overrides the sizes)",
    )
    parser.add_argument(
        "--dc-host",
        default=HOST,
        help="the DC's loopback address (another one, e.g. 127.0.0.20, leaves 127.0.0.1:389 to the tests)",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="where to write the figures (default bench/results/cycle-N-DATE.json)"
    )


def run_from_arguments(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """``bench cycle``: measure, print, and write the JSON (the runner's ``--json`` writes it once more)."""
    sizes = QUICK if args.quick else {"users": args.users, "groups": args.groups, "group_size": args.group_size}
    path = args.json or default_results_path(sizes["users"])
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = "quick" if args.quick else "full"

    def save(results: dict[str, Any]) -> None:
        path.write_text(json.dumps({"profile": profile, **results}, indent=2, default=str), encoding="utf-8")

    results = bench_cycle(
        sizes["users"], sizes["groups"], sizes["group_size"], args.changes, scratch, dc_host=args.dc_host, save=save
    )
    save(results)
    print(render_cycle(results))
    print(f"figures written to {path}")
    return {"profile": profile, **results}
