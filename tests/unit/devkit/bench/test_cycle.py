"""The cycle benchmark's arithmetic and bookkeeping: the real-tenant model, the Graph write count, the task memory
sampler (the whole benchmark runs in tests/integration/test_bench_cycle.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from aadsync_devkit.bench.cycle import APP_WINDOW_SECONDS, APP_WRITES, _objects, graph_requests, real_tenant
from aadsync_devkit.bench.machine import TaskMemorySampler


class TestRealTenant:
    def test_writes_within_one_budget_cost_no_wait(self):
        modelled = real_tenant(dag_seconds=100.0, export_seconds=20.0, writes=APP_WRITES)
        assert modelled["export_entra_seconds"] == 20.0 and modelled["cycle_seconds"] == 100.0

    def test_each_further_budget_waits_one_window_and_the_last_window_still_does_its_work(self):
        # 210,000 writes: 70 budgets, 69 windows of waiting, then the last 1/70 of the unthrottled export's work
        modelled = real_tenant(dag_seconds=1_000.0, export_seconds=700.0, writes=70 * APP_WRITES)
        assert modelled["export_entra_seconds"] == pytest.approx(69 * APP_WINDOW_SECONDS + 10.0)
        assert modelled["cycle_seconds"] == pytest.approx(300.0 + 69 * APP_WINDOW_SECONDS + 10.0)

    def test_an_export_slower_than_the_budget_keeps_its_own_time(self):
        assert real_tenant(50.0, 40.0, 10)["export_entra_seconds"] == 40.0
        assert real_tenant(50.0, 40.0, 0)["export_entra_seconds"] == 40.0


def test_graph_requests_count_batch_items_on_their_own_and_leave_set_up_and_tokens_out():
    counters = {
        "requests": {
            "POST /v1.0/$batch": 3,
            "POST /v1.0/users": 50,
            "PATCH /v1.0/users/{id}": 7,
            "POST /v1.0/groups/{id}/members/$ref": 4,
            "DELETE /v1.0/users/{id}": 1,
            "POST /{tenant}/oauth2/v2.0/token": 2,
            "POST /v1.0/applications/{id}/extensionProperties": 1,
            "GET /v1.0/users/delta": 6,
        },
        "batchItems": 60,
        "429": 0,
    }
    assert graph_requests(counters) == {"reads": 6, "writes": 62, "batch_items": 60, "429": 0}


def test_objects_of_a_step_come_from_its_own_counter_and_an_empty_import_counts_its_changes():
    assert _objects("import_ad", {"objects_read": 12, "adds": 3}) == (12, "objects_read")
    assert _objects("import_entra", {"adds": 0, "updates": 0}) == (0, "changes")
    assert _objects("sync_ad", {"objects_evaluated": 9}) == (9, "objects_evaluated")
    assert _objects("export_entra", {"planned_requests": 10}) == (10, "planned_requests")
    assert _objects("export_ad", {"ldap_writes": 1}) == (1, "ldap_writes")
    assert _objects("report", {}) == (None, None)


def test_the_sampler_reads_the_peak_of_a_process_titled_as_an_airflow_task_runner():
    """A child that titles itself as Airflow's task runner does, touches 64 MiB and waits: its VmHWM is read."""
    code = (
        "import setproctitle, sys, time; setproctitle.setproctitle('airflow worker -- 0192-test-ti');"
        "block = bytearray(64 * 2**20); sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(30)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        sampler = TaskMemorySampler()
        deadline = time.monotonic() + 10
        while "0192-test-ti" not in sampler.peaks and time.monotonic() < deadline:
            sampler.sample()
            time.sleep(0.05)
        assert sampler.peaks["0192-test-ti"] >= 64 * 2**20
        assert str(os.getpid()) not in sampler.peaks
    finally:
        child.kill()
        child.wait()
