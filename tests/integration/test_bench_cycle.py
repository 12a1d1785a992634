"""`aadsync-dev bench cycle --quick`: the whole cycle through Airflow on the Celery deployment (its own DC, emulator,
PostgreSQL and deployment, stopped at the end), as CI runs it: the three DAG runs succeed and the JSON has every
figure the README's table is made of. Timings are printed, never asserted (~2 minutes here, most of it Airflow's
start-up and per-task overhead)."""

from __future__ import annotations

import json

import pytest

from aadsync_devkit.bench import cycle
from aadsync_devkit.bench.runner import main

pytestmark = pytest.mark.integration

TASKS = {"import_ad", "import_entra", "sync_ad", "sync_entra", "export_ad", "export_entra", "report"}


def test_quick_cycle_benchmark_runs_every_dag_run_and_writes_its_figures(tmp_path):
    path = tmp_path / "cycle.json"
    assert main(["cycle", "--quick", "--json", str(path)]) == 0
    results = json.loads(path.read_text())

    assert results["profile"] == "quick" and results["users"] == cycle.QUICK["users"]
    machine = results["machine"]
    assert machine["cores"] >= 1 and machine["memory_bytes"] > 0 and machine["cpu_model"]
    assert machine["versions"]["apache-airflow"] and machine["versions"]["postgresql"].startswith("postgres")
    for label in ("full", "first_delta", "delta"):
        run = results[label]
        assert run["state"] == "success", (label, {t["task_id"]: t["state"] for t in run["tasks"]})
        tasks = {task["task_id"]: task for task in run["tasks"]}
        assert TASKS <= {name for name, task in tasks.items() if task["state"] == "success"}, label
        for name in ("import_ad", "sync_ad", "export_entra"):
            task = tasks[name]
            assert task["seconds"] > 0 and task["step_seconds"] is not None and task["objects"] is not None, task
            assert task["peak_rss"] and task["peak_rss"] > 50 * 2**20, task  # an Airflow task process: ≥ 50 MiB
        assert {"reads", "writes", "batch_items", "429"} <= run["graph_requests"].keys()
        assert run["real_tenant"]["cycle_seconds"] >= run["real_tenant"]["export_entra_seconds"] > 0
    full, delta = results["full"], results["delta"]
    users, groups, big = cycle.QUICK["users"], cycle.QUICK["groups"], cycle.QUICK["group_size"]
    full_tasks = {task["task_id"]: task for task in full["tasks"]}
    assert full_tasks["import_ad"]["objects"] >= users + groups + (1 if big else 0)
    assert full["graph_requests"]["writes"] >= users and full["graph_requests"]["429"] == 0
    delta_tasks = {task["task_id"]: task for task in delta["tasks"]}
    assert 6 <= delta_tasks["import_ad"]["objects"] <= results["changes"]  # the demo's changes and the titles
    assert 0 < delta["graph_requests"]["writes"] < 50
    assert len(results["changes_made"]) == results["changes"] == 10
    assert results["delta_share_of_full"] == pytest.approx(delta["seconds"] / full["seconds"])
