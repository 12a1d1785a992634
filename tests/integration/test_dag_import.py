"""Airflow 3.3 itself runs the import DAG against the real DC and the Graph emulator: operators, connections from
the environment, the store shared between the tasks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_aadsync.engine.store import Store
from tests.integration.conftest import GRAPH_SECRET, entra_connection, entra_hook_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dc(start_dc):
    return start_dc(users=200, groups=10, group_size=150)


def test_dag_runs_full_then_delta(dc, graph_server, graph_tenant, tmp_path):
    airflow = str(Path(sys.executable).with_name("airflow"))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AADSYNC_HOME": str(tmp_path / "aadsync"),
        "AIRFLOW_CONN_AADSYNC_AD": json.dumps({"conn_type": "aadsync_ad", **dc.connection_info()}),
        "AIRFLOW_CONN_AADSYNC_ENTRA": entra_connection(graph_server, graph_tenant).as_json(),
    }
    hook = entra_hook_for(graph_server, graph_tenant)
    for number in range(3):
        hook.request("POST", "/users", json={
            "accountEnabled": True, "displayName": f"Cloud {number}", "mailNickname": f"cloud{number}",
            "userPrincipalName": f"cloud{number}@{graph_tenant['initialDomain']}",
            "passwordProfile": {"password": "Xy!12345678abc"}})  # fmt: skip
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    for mode in ("full", "delta"):
        done = subprocess.run(
            [airflow, "dags", "test", "aadsync_import", "-c", json.dumps({"mode": mode})],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert dc.admin_password not in done.stdout + done.stderr
        assert GRAPH_SECRET not in done.stdout + done.stderr
    with Store.open(f"sqlite:///{tmp_path / 'aadsync' / 'store' / 'default.sqlite'}") as store:
        runs = list(reversed(store.list_runs(limit=4)))
    assert [(run["profile"], run["connector"], run["result"]) for run in runs] == [
        ("full-import", "ad", "success"),
        ("full-import", "entra", "success"),
        ("delta-import", "ad", "success"),
        ("delta-import", "entra", "success"),
    ]
    assert runs[0]["counters"]["adds"] >= 210 and runs[1]["counters"]["adds"] == 3
    assert all(run["counters"]["adds"] == run["counters"]["updates"] == 0 for run in runs[2:])
