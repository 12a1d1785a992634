"""Airflow 3.3 itself runs the shipped DAGs (``airflow dags test``) against the real DC and the Graph emulator:
``aadsync_full`` then ``aadsync_cycle`` bring Entra ID to the directory's state; staging and preview runs write
nothing; an export that fails midway is retried by Airflow and ends exact; a failed step fails the DAG run, still
gets its report, and calls the failure hook."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from aadsync_devkit.world.airflow_runs import LocalAirflow, outcome, task_states
from aadsync_devkit.world.demo import make_demo_changes
from aadsync_devkit.world.samba import SambaDC
from aadsync_devkit.world.seed import MAIL_DOMAIN, dev_writeback_variables, ensure_writeback_ou
from tests.support.airflow_world import airflow_world, main_store, module_tenant, new_tenant, succeeded, write_requests
from tests.support.servers import entra_connection, entra_hook_for, trust
from tests.support.states import ad_state, batch_calls, graph_state, graph_writes

pytestmark = pytest.mark.integration

USERS, GROUPS, BIG = 200, 10, 150


@pytest.fixture(scope="module")
def dc(start_dc) -> SambaDC:
    dc = start_dc(users=USERS, groups=GROUPS, group_size=BIG)
    conn = dc.connect()
    try:
        ensure_writeback_ou(conn, dc.base_dn)  # these cycles run the AD export too: they opt in to group writeback
    finally:
        conn.unbind()
    return dc


tenant = module_tenant("corp")


@pytest.fixture(scope="module")
def airflow(dc, graph_server, tenant, tmp_path_factory) -> LocalAirflow:
    """One AIRFLOW_HOME (metadata DB migrated once) and one AADSYNC_HOME (stores) for the module."""
    world = airflow_world(
        tmp_path_factory.mktemp("airflow-world"),
        dc,
        graph_server,
        tenant,
        variables={
            "aadsync_instance": "main",
            "aadsync_retry_delay_seconds": "1",
            **dev_writeback_variables(dc.base_dn),
        },
    )
    world.migrate()
    return world


# ---------------------------------------------------------------------------------------------- expected state


# ------------------------------------------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def synced(airflow, dc, graph_server, tenant) -> dict:
    """``aadsync_full`` on the seeded directory, the demo's AD changes, then ``aadsync_cycle``; what the later tests
    start from."""
    hook = entra_hook_for(graph_server, tenant)
    full = succeeded(airflow.dags_test("aadsync_full"), dc)
    after_full = (graph_state(hook), ad_state(dc))
    changes = make_demo_changes(dc)
    cycle = succeeded(airflow.dags_test("aadsync_cycle"), dc)
    return {"full": full, "after_full": after_full, "changes": changes, "cycle": cycle, "hook": hook}


def test_full_then_cycle_bring_entra_to_the_directory_state(airflow, dc, synced):
    graph, ad = synced["after_full"]
    assert graph == ad
    assert len(ad[0]) == USERS and len(ad[1][f"BigGroup-{BIG}"]) == BIG
    report = airflow.report(synced["full"])
    for line in ("full-import on `ad` | success", "full-import on `entra` | success", "full-sync on `ad` | success",
                 "full-sync on `entra` | success", f"export on `entra` | success | user creates {USERS} · group "
                 f"creates {GROUPS + 1} · member adds"):  # fmt: skip
        assert line in report, report
    assert "Nothing left to export." in report

    hook = synced["hook"]
    assert graph_state(hook) == ad_state(dc)  # after the demo's changes and the delta cycle
    new_hire = hook.request("GET", "/users", params={"$filter": f"userPrincipalName eq 'demo.newhire@{MAIL_DOMAIN}'"})
    assert [user["displayName"] for user in new_hire["value"]] == ["Demo New Hire"]
    report = airflow.report(synced["cycle"])
    assert "delta-import on `ad` | success | adds 1 · updates 4 · renames 1 · deletes 1" in report, report
    assert "delta-sync on `ad` | success" in report and "Deltas that became full runs" not in report
    assert (
        "export on `entra` | success | user creates 1 · user updates 1 · user deletes 1 · member adds 1 · "
        "member removes 2 · $batch calls 3 (minimum 3)"  # the delete in a call of its own
    ) in report
    with main_store(airflow) as store:
        runs = [(run["profile"], run["connector"], run["result"]) for run in reversed(store.list_runs(limit=6))]
    # The two imports run in parallel tasks (either may start first); syncs and exports stay in order after them.
    assert sorted(runs[:2]) == [("delta-import", "ad", "success"), ("delta-import", "entra", "success")]
    assert runs[2:] == [("delta-sync", "ad", "success"), ("delta-sync", "entra", "success"),
                        ("export", "ad", "success"), ("export", "entra", "success")]  # fmt: skip


def test_staging_run_writes_nothing_and_reports_the_plan(airflow, dc, graph_server, synced):
    conn = dc.connect()
    try:
        assert conn.add(
            f"CN=Staged Hire,OU=Users,OU=AADSync,{dc.base_dn}",
            ["top", "person", "organizationalPerson", "user"],
            {
                "sAMAccountName": "staged.hire",
                "userPrincipalName": f"staged.hire@{MAIL_DOMAIN}",
                "sn": "Hire",
                "displayName": "Staged Hire",
            },
        ), conn.result
    finally:
        conn.unbind()
    before = graph_writes(graph_server)
    run = succeeded(airflow.dags_test("aadsync_cycle", {"staging": True}), dc)
    assert graph_writes(graph_server) == before  # no request of any write method, /applications included
    report = airflow.report(run)
    assert "export-staging on `entra` | staged | planned user adds 1" in report, report
    assert "## Export plan for `entra`" in report and f"- userPrincipalName: ['staged.hire@{MAIL_DOMAIN}']" in report


def test_preview_run_writes_nothing(airflow, dc, graph_server, synced):
    with main_store(airflow) as store:
        runs_before = store.list_runs(limit=1)[0]["id"]
    before = write_requests(graph_server)
    dn = f"CN=Staged Hire,OU=Users,OU=AADSync,{dc.base_dn}"
    run = succeeded(airflow.dags_test("aadsync_cycle", {"preview_dn": dn}), dc)
    assert write_requests(graph_server) == before
    with main_store(airflow) as store:
        assert store.list_runs(limit=1)[0]["id"] == runs_before  # no import, sync or export ran
    states = task_states(airflow.home, "aadsync_cycle", run.run_id)
    assert states["preview"][0] == "success" and states["import_ad"][0] == states["report"][0] == "skipped"
    report = airflow.report(run)
    assert f"Preview of ad user {dn}" in report and "Nothing was written." in report
    assert "Outbound to entra" in report


def test_export_failed_midway_is_retried_by_airflow_and_ends_exact(airflow, dc, graph_server):
    """A fresh instance and tenant: the cycle's deltas run as full ones; Graph starts failing (503) in the middle of
    the export, so the task fails; Airflow retries it after the backoff and the retry resumes: no duplicate, no gap."""
    tenant = new_tenant(graph_server, "retry")
    hook = entra_hook_for(graph_server, tenant)
    settings = f"{graph_server.base_url}/_emulator/settings"
    env = {
        "AIRFLOW_CONN_AADSYNC_ENTRA": entra_connection(graph_server, tenant).as_json(),
        "AIRFLOW_VAR_AADSYNC_INSTANCE": "retry",
        "AIRFLOW_VAR_AADSYNC_RETRY_DELAY_SECONDS": "2",
    }
    httpx.delete(f"{graph_server.base_url}/_emulator/counters", verify=trust(graph_server))
    httpx.put(settings, json={"latencyMs": 40}, verify=trust(graph_server))
    started = time.monotonic()
    child = subprocess.Popen(
        airflow.dags_test_command("aadsync_cycle"),
        env=airflow.environment(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=airflow.home,
    )
    try:
        while batch_calls(graph_server) < 4 and child.poll() is None and time.monotonic() - started < 120:
            time.sleep(0.005)
        httpx.put(settings, json={"faultRatio5xx": 1.0, "faultRetryAfterSeconds": 0}, verify=trust(graph_server))
        with main_store(airflow, "retry") as store:
            while not any(run["result"] == "stopped-extension-error" for run in store.list_runs(limit=3)):
                assert child.poll() is None and time.monotonic() - started < 120, "the export did not fail"
                time.sleep(0.02)
        httpx.put(settings, json={"faultRatio5xx": None, "latencyMs": None}, verify=trust(graph_server))
        output, _ = child.communicate(timeout=300)
    finally:
        httpx.put(settings, json={"faultRatio5xx": None, "latencyMs": None, "faultRetryAfterSeconds": None},
                  verify=trust(graph_server))  # fmt: skip
        if child.poll() is None:
            child.kill()
    run = succeeded(outcome("aadsync_cycle", child.returncode, output, time.monotonic() - started), dc)
    assert task_states(airflow.home, "aadsync_cycle", run.run_id)["export_entra"] == ("success", 2)
    assert graph_state(hook) == ad_state(dc)
    with main_store(airflow, "retry") as store:
        runs = reversed(store.list_runs(limit=3))  # the cycle ends with the Entra export
        exports = [run["result"] for run in runs if (run["profile"], run["connector"]) == ("export", "entra")]
    assert exports == ["stopped-extension-error", "success"]
    report = airflow.report(run)
    assert "Deltas that became full runs" in report
    assert "import_ad: the delta ran as a **full-import** because no DirSync cookie saved yet" in report, report
    assert "sync_ad: the delta ran as a **full-sync** because no full sync has run yet" in report


def test_deletion_threshold_override_stops_the_export_fails_the_run_and_calls_the_failure_hook(
    airflow, dc, graph_server, synced, tmp_path
):
    """A run with the param ``deletion_threshold=0`` and a pending delete: the export stops before any write, the
    task fails with the step result, the DAG run fails, the report still shows the stopped run, and the failure hook
    logs it, while a callable named by the old Variable is not run (no code named by configuration). The next run
    (default threshold) writes the delete and the staged add: Entra ID matches AD again."""
    marker = tmp_path / "failed.json"
    conn = dc.connect()
    try:
        assert conn.delete(f"CN=Demo New Hire,OU=Users,OU=AADSync,{dc.base_dn}"), conn.result
    finally:
        conn.unbind()
    before = write_requests(graph_server)
    run = airflow.dags_test(
        "aadsync_cycle",
        {"deletion_threshold": 0},
        AIRFLOW_VAR_AADSYNC_RETRIES="0",
        AIRFLOW_VAR_AADSYNC_ON_FAILURE_CALLBACK="tests.integration.test_dags_cycle.record_failure",
        AADSYNC_TEST_FAILURE_FILE=str(marker),
    )
    assert run.returncode == 1 and run.state == "failed", run.tail()
    assert write_requests(graph_server) == before
    assert "Entra export stopped: stopped-deletion-threshold-exceeded" in run.output
    states = task_states(airflow.home, "aadsync_cycle", run.run_id)
    assert states["export_entra"][0] == "failed" and states["report"][0] == "success"
    report = airflow.report(run)
    assert "export on `entra` | stopped-deletion-threshold-exceeded |" in report, report
    assert "1 deletes are pending, more than the deletion threshold of 0; nothing was written" in report
    assert not marker.exists()  # the Variable aadsync_on_failure_callback names code: no longer read
    assert "AADSync task aadsync_cycle.export_entra" in run.output, run.tail()

    succeeded(airflow.dags_test("aadsync_cycle"), dc)
    assert graph_state(synced["hook"]) == ad_state(dc)


def record_failure(context) -> None:
    """Named by the old Variable in the test above: it must never be imported and called."""
    import os

    Path(os.environ["AADSYNC_TEST_FAILURE_FILE"]).write_text(
        json.dumps({"task": context["ti"].task_id, "run_id": context["run_id"]})
    )
