"""Airflow as a user meets it: ``airflow standalone`` (api-server, scheduler, dag processor, triggerer) serves the
repository's DAGs; a run of ``aadsync_full`` triggered through the REST API with a ``conf`` succeeds against the real
DC and the Graph emulator; and a real browser (Debian's headless Chromium) logs in to the UI and opens the DAG's
trigger form, which shows every param with its title and description. The screenshot is saved as a test artifact.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aadsync_devkit.world.airflow_standalone import StandaloneAirflow
from aadsync_devkit.world.samba import SambaDC
from airflow_provider_aadsync.operators.report import report_path
from tests.integration.browser import HeadlessChromium
from tests.integration.conftest import GRAPH_SECRET, trust
from tests.integration.test_dags_cycle import airflow_world, new_tenant, write_requests

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
USERS, GROUPS, BIG = 200, 10, 150  # the DAG tests' directory: a cached fixture
DAG_ID = "aadsync_full"


def artifacts_dir() -> Path:
    """Where UI tests leave screenshots: ``$AADSYNC_TEST_ARTIFACTS``, else ``tests/artifacts/`` (ignored by git)."""
    folder = Path(os.environ.get("AADSYNC_TEST_ARTIFACTS") or REPO / "tests" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def dc(start_dc) -> SambaDC:
    return start_dc(users=USERS, groups=GROUPS, group_size=BIG)


@pytest.fixture(scope="module")
def tenant(graph_server):
    created = new_tenant(graph_server, "standalone")
    yield created
    httpx.delete(f"{graph_server.base_url}/_emulator/tenants/{created['id']}", verify=trust(graph_server))


@pytest.fixture(scope="module")
def standalone(dc, graph_server, tenant, tmp_path_factory) -> Iterator[StandaloneAirflow]:
    """``airflow standalone`` on a free loopback port with its own AIRFLOW_HOME (SQLite), the repository's DAGs,
    the connections to the test DC and emulator from ``AIRFLOW_CONN_*``; stopped by process group at the end."""
    world = airflow_world(
        tmp_path_factory.mktemp("standalone"),
        dc,
        graph_server,
        tenant,
        # no retries: a failing task fails the run at once, with its error, instead of after the backoff
        variables={"aadsync_instance": "standalone", "aadsync_retries": "0"},
    )
    server = StandaloneAirflow(world)
    started = time.monotonic()
    server.start(timeout=300)
    print(f"airflow standalone healthy on {server.base_url} in {time.monotonic() - started:.1f} s")
    try:
        server.wait_for_dag(DAG_ID, timeout=240)
        yield server
    finally:
        server.stop()
        print(f"airflow standalone stopped; its log: {server.log_path}")


def test_rest_api_triggers_aadsync_full_with_conf_and_the_run_succeeds(standalone, dc, graph_server):
    """Unpause and trigger through ``/api/v2`` with ``conf={"staging": true}``: the run imports and syncs for real,
    stores the export plan and writes nothing to Graph, which shows the conf reached the tasks."""
    assert standalone.api("GET", f"/dags/{DAG_ID}")["is_paused"], "new DAGs start paused"
    standalone.unpause(DAG_ID)
    writes_before = write_requests(graph_server)

    started = time.monotonic()
    run_id = standalone.trigger(DAG_ID, {"staging": True})
    run = standalone.wait_for_run(DAG_ID, run_id, timeout=600)
    seconds = time.monotonic() - started
    states = standalone.task_states(DAG_ID, run_id)
    assert run["state"] == "success", f"run {run_id} {run['state']}; tasks: {states}{standalone.log_tail()}"
    print(f"{DAG_ID} through the REST API: {seconds:.1f} s")

    assert run["conf"] == {"staging": True} and run["run_type"] == "manual"
    assert {"choose_path", "import_ad", "import_entra", "sync_ad", "sync_entra", "export_entra", "report"} <= set(
        states
    )
    assert {task for task, (state, _) in states.items() if state != "success"} == {"preview", "export_ad"}, states
    assert states["preview"][0] == "skipped"  # the branch took the cycle, not the preview
    assert states["export_ad"][0] == "skipped"  # group writeback is opt-in: off by default, export_ad writes nothing
    assert write_requests(graph_server) == writes_before
    report = report_path(DAG_ID, run_id, standalone.world.home / "aadsync" / "reports").read_text(encoding="utf-8")
    assert f"export-staging on `entra` | staged | planned user adds {USERS}" in report, report
    log = standalone.log_path.read_text(encoding="utf-8", errors="replace")
    assert dc.admin_password not in log and GRAPH_SECRET not in log


def test_browser_logs_in_and_shows_the_trigger_form_with_the_params(standalone, tmp_path):
    """Headless Chromium: the simple auth manager's login form (admin + the generated password), then the DAG page,
    its Trigger button, and the trigger form with one field per param, titled and described as the DAG declares."""
    params = standalone.api("GET", f"/dags/{DAG_ID}/details")["params"]
    assert {"staging", "deletion_threshold", "endpoint", "preview_dn"} <= set(params)
    screenshot = artifacts_dir() / f"{DAG_ID}-trigger-form.png"
    dialog = "[...document.querySelectorAll('[role=dialog]')].find(d => d.innerText.includes('Run Parameters'))"

    started = time.monotonic()
    with HeadlessChromium(tmp_path / "chromium") as browser:
        try:
            browser.navigate(f"{standalone.base_url}/dags/{DAG_ID}")
            browser.wait_for("document.querySelector('input[name=password]')", what="the login form")
            assert "/auth/login" in browser.url()
            browser.type_into("input[name=username]", "admin")
            browser.type_into("input[name=password]", standalone.admin_password())
            browser.click(
                "[...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Sign in')",
                what="the Sign in button",
            )
            browser.wait_for("!location.pathname.startsWith('/auth/')", what="the UI after signing in")
            if f"/dags/{DAG_ID}" not in browser.url():  # the login may land on the home page
                browser.navigate(f"{standalone.base_url}/dags/{DAG_ID}")
            browser.wait_for(
                "document.querySelector('button[aria-label=\"Trigger Dag\"]')", what=f"{DAG_ID}'s Trigger button"
            )
            browser.click("document.querySelector('button[aria-label=\"Trigger Dag\"]')", what="the Trigger button")
            browser.wait_for(
                f"({dialog})?.querySelector('[name=element_staging]')", what="the trigger form's param fields"
            )
            form_text = browser.evaluate(f"({dialog}).innerText")
            field_names = browser.evaluate(f"[...({dialog}).querySelectorAll('[name^=element_]')].map(e => e.name)")
        except BaseException:
            failed = screenshot.with_name(f"{DAG_ID}-trigger-form-failed.png")
            with contextlib.suppress(Exception):
                print(f"screenshot where the browser check failed: {browser.screenshot(failed)}")
            raise
        browser.screenshot(screenshot)
        print(f"screenshot of the trigger form: {screenshot}")
    print(f"browser check: {time.monotonic() - started:.1f} s")

    assert f"Trigger Dag - {DAG_ID}" in form_text, form_text
    for name, param in params.items():
        assert f"element_{name}" in field_names, f"no field for param {name}: {field_names}"
        assert param["schema"]["title"] in form_text, f"title of {name} not shown:\n{form_text}"
        assert param["description"] in form_text, f"description of {name} not shown:\n{form_text}"
    assert screenshot.stat().st_size > 10_000
