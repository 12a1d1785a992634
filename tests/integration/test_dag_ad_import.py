"""Airflow 3.3 itself runs the AD import DAG against the real DC: operator, connection from the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_aadsync.engine.store import Store

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dc(start_dc):
    return start_dc(users=200, groups=10, group_size=150)


def test_dag_runs_full_then_delta(dc, tmp_path):
    airflow = str(Path(sys.executable).with_name("airflow"))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AADSYNC_HOME": str(tmp_path / "aadsync"),
        "AIRFLOW_CONN_AADSYNC_AD": json.dumps({"conn_type": "aadsync_ad", **dc.connection_info()}),
    }
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    for mode in ("full", "delta"):
        done = subprocess.run(
            [airflow, "dags", "test", "aadsync_ad_import", "-c", json.dumps({"mode": mode})],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert dc.admin_password not in done.stdout + done.stderr
    with Store.open(f"sqlite:///{tmp_path / 'aadsync' / 'store' / 'default.sqlite'}") as store:
        full, delta = reversed(store.list_runs(limit=2))
    assert (full["profile"], full["result"]) == ("full-import", "success")
    assert full["counters"]["adds"] >= 210
    assert (delta["profile"], delta["result"]) == ("delta-import", "success")
    assert delta["counters"]["adds"] == delta["counters"]["updates"] == 0
