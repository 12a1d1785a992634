"""Airflow as a user meets it: ``airflow standalone`` (api-server, scheduler, dag processor, triggerer) serves the
repository's DAGs; a run of ``aadsync_full`` triggered through the REST API with a ``conf`` succeeds against the real
DC and the Graph emulator; and a real browser (Debian's headless Chromium) logs in to the UI and opens the DAG's
trigger form, which shows every param with its title and description. The screenshot is saved as a test artifact.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from aadsync_devkit.world.airflow_standalone import StandaloneAirflow
from aadsync_devkit.world.samba import SambaDC
from airflow_provider_aadsync.operators.report import report_path
from tests.support.airflow_world import airflow_world, module_tenant, write_requests
from tests.support.browser import HeadlessChromium
from tests.support.servers import GRAPH_SECRET

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


tenant = module_tenant("standalone")


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
    assert {task for task, (state, _) in states.items() if state != "success"} == {"preview"}, states
    assert states["preview"][0] == "skipped"  # the branch took the cycle, not the preview
    # export_ad runs (ConsistencyGuid writeback is on by default, group writeback opt-in); staging, it writes nothing
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


# ------------------------------------------------------------------------------------------- the sync manager
def ensure_a_cycle_ran(standalone) -> None:
    """The sync manager reads what a cycle left in the store: the REST test above runs one; alone (``-k``), this
    test triggers the same staging run of aadsync_full itself."""
    runs = standalone.api("GET", f"/dags/{DAG_ID}/dagRuns")
    if any(run["state"] == "success" for run in runs["dag_runs"]):
        return
    standalone.unpause(DAG_ID)
    run_id = standalone.trigger(DAG_ID, {"staging": True})
    run = standalone.wait_for_run(DAG_ID, run_id, timeout=600)
    assert run["state"] == "success", f"{standalone.task_states(DAG_ID, run_id)}{standalone.log_tail()}"


def sign_in(browser: HeadlessChromium, standalone) -> None:
    """The simple auth manager's login form: afterwards the browser holds Airflow's ``_token`` cookie."""
    browser.navigate(f"{standalone.base_url}/auth/login")
    browser.wait_for("document.querySelector('input[name=password]')", what="the login form")
    browser.type_into("input[name=username]", "admin")
    browser.type_into("input[name=password]", standalone.admin_password())
    browser.click(
        "[...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Sign in')", what="Sign in"
    )
    browser.wait_for("!location.pathname.startsWith('/auth/')", what="the UI after signing in")


def test_sync_manager_plugin_api_pages_and_navigation_in_a_real_browser(standalone, tmp_path):
    """The provider's plugin in ``airflow standalone`` after a cycle: Airflow lists it, its API answers the admin's
    bearer token and refuses a request without one; in headless Chromium, signed in to Airflow (the UI's cookie),
    the navigation has AADSync, every page renders, and a search leads to an object's lineage. Screenshots of every
    page are kept as test artifacts."""
    ensure_a_cycle_ran(standalone)
    plugins = standalone.api("GET", "/plugins")["plugins"]
    [plugin] = [p for p in plugins if p["name"] == "aadsync"]
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/aadsync"
    assert [view["name"] for view in plugin["external_views"]] == ["AADSync"]
    assert standalone.api("GET", "/plugins/importErrors")["import_errors"] == []

    base = f"{standalone.base_url}/aadsync"
    for path in ("/api/runs", "/", "/api/objects?q=a", "/rules", "/static/style.css"):
        refused = httpx.get(base + path, timeout=30)
        assert refused.status_code == 401, f"{path} answered {refused.status_code} without a token"
    assert httpx.get(base + "/api/runs", headers={"Authorization": "Bearer forged"}, timeout=30).status_code == 403
    bearer = {"Authorization": f"Bearer {standalone.token()}"}

    def api(path: str) -> dict:
        response = httpx.get(base + path, headers=bearer, timeout=60)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:1000]}"
        return response.json()

    runs = api("/api/runs")
    assert {(run["profile"], run["connector"]) for run in runs["runs"]} >= {
        ("full-import", "ad"),
        ("full-import", "entra"),
        ("full-sync", "ad"),
        ("full-sync", "entra"),
    }
    sync_ad = next(run for run in runs["runs"] if run["profile"] == "full-sync" and run["connector"] == "ad")
    assert sync_ad["origin"]["dag_id"] == DAG_ID and sync_ad["origin"]["task_id"] == "sync_ad"  # its task instance
    assert sync_ad["counters"]["projections"] >= USERS and sync_ad["objects_changed"] > 0
    assert api(f"/api/runs/{sync_ad['id']}")["id"] == sync_ad["id"]
    assert api("/api/export-plan")["counts"]["planned_user_adds"] == USERS  # the staging run keeps the plan
    assert api("/api/rules")["rules"]
    # the connectors file of the DAGs (none here: the one connector ad) names every connector space in the store
    assert api("/api/connector-spaces") == {"configured": ["ad", "entra"], "unconfigured": []}
    hits = api("/api/objects?connector=ad&pending_export=false&q=%40")["connector_space"]
    user = next(hit for hit in hits if hit["object_type"] == "user" and hit["state"] == "connector")
    lineage = api(f"/api/objects/ad/{user['anchor']}")
    assert {link["connector"] for link in lineage["lineage"]} == {"ad", "entra"}
    assert lineage["metaverse"]["attributes"]

    shots = artifacts_dir() / "sync-manager"
    started = time.monotonic()
    with HeadlessChromium(tmp_path / "chromium") as browser:
        try:
            sign_in(browser, standalone)
            browser.navigate(f"{standalone.base_url}/plugin/aadsync")  # Airflow's UI with the plugin's view inside
            browser.wait_for(
                "[...document.querySelectorAll('a, button')].some(e => e.innerText.trim() === 'AADSync')",
                what="AADSync in Airflow's navigation",
            )
            # the UI embeds the view in a sandboxed iframe (its document is not scriptable from here): wait until it
            # has loaded the runs page, then let it paint
            browser.wait_for(
                "document.querySelector('iframe')?.src.endsWith('/aadsync/') && performance"
                ".getEntriesByType('resource').some(e => e.initiatorType === 'iframe' && e.name.endsWith('/aadsync/'))",
                what="the runs page inside Airflow's UI",
            )
            time.sleep(1.5)
            browser.screenshot(shots / "0-airflow-navigation.png")
            pages = {
                "1-runs": ("/", "#runs", "Objects changed per cycle"),
                "2-run": (f"/runs/{sync_ad['id']}", "#counters", "projections"),
                "3-rules": ("/rules", "#rules", "in-from-ad.yaml"),
                "4-export-plan": ("/export-plan", "#plan-operations", "planned_user_adds"),
                "5-search": ("/search", "#search-form", "any attribute value"),
            }
            for name, (path, selector, expected) in pages.items():
                browser.navigate(base + path)
                browser.wait_for(f"document.querySelector('{selector}')", what=f"the {name} page")
                assert expected in browser.text(), f"{name}: {expected!r} not shown"
                browser.screenshot(shots / f"{name}.png")
            # from a run to the Airflow task instance that made it
            browser.navigate(f"{base}/runs/{sync_ad['id']}")
            browser.click("document.querySelector('a.task-link')", what="the run's task link")
            task_path = f"/dags/{DAG_ID}/runs/{sync_ad['origin']['run_id']}/tasks/sync_ad"
            browser.wait_for(
                f"decodeURIComponent(location.pathname).endsWith({json.dumps(task_path)})",
                what="the task instance page",
            )
            browser.wait_for("document.body.innerText.includes('sync_ad')", what="the task instance")
            browser.screenshot(shots / "8-task-instance.png")
            # follow a search to an object's lineage, as a person would
            browser.navigate(base + "/search")
            browser.wait_for("document.querySelector('#search-form')", what="the search page")
            browser.type_into("input[name=q]", user["display_name"] or user["dn"])
            browser.click("document.querySelector('#search-form button')", what="the Search button")
            browser.wait_for("document.querySelector('#cs-hits a.object-link')", what="the search results")
            browser.screenshot(shots / "6-search-results.png")
            browser.click(
                f"[...document.querySelectorAll('#cs-hits a.object-link')].find(a => a.href.includes("
                f"{json.dumps(quote(user['anchor'], safe=''))}))",
                what="the user's result",
            )
            browser.wait_for("document.querySelector('#mv-attributes')", what="the object's lineage page")
            page = browser.text()
            browser.screenshot(shots / "7-object-lineage.png")
            browser.click("document.querySelector('#preview-link')", what="the preview link")
            browser.wait_for("document.querySelector('#preview-flows')", what="the sync preview")
            preview_page = browser.text()
            browser.screenshot(shots / "9-sync-preview.png")
        except BaseException:
            with contextlib.suppress(Exception):
                print(f"screenshot where the check failed: {browser.screenshot(shots / 'failed.png')}")
            raise
    print(f"sync manager browser check: {time.monotonic() - started:.1f} s; screenshots in {shots}")
    assert user["dn"] in page and "metaverse" in page
    assert "already joined to metaverse object" in preview_page and "Nothing was written." in preview_page
    assert all(link["rule"] in page for link in lineage["lineage"])
    assert all((shots / f"{name}.png").stat().st_size > 5_000 for name in [*pages, "6-search-results"])
