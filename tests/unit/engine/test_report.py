"""The cycle report: a line per step, the deltas that became full runs, each run's details, what is left to export."""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings, run_entra_export
from airflow_provider_aadsync.engine.report import render_cycle_report, step_highlights
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.world import ad_group, ad_user, import_full


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}") as opened:
        yield opened


def test_report_lists_steps_fallbacks_runs_and_the_plan_left(store):
    import_full(store, "ad", [ad_user(1), ad_user(2), ad_group(20, "Staff", members=[1, 2])])
    imported = store.list_runs(limit=1)[0]["id"]
    synced = run_sync(store, load_sync_rules(), connector="ad", mode="delta")  # no full sync yet: runs as full
    staged = run_entra_export(store, writer=None, settings=ExportSettings(staging=True))  # type: ignore[arg-type]
    steps = [
        {"task": "import_ad", "state": "success", "summary": {"run_id": imported}},
        {"task": "sync_ad", "state": "success", "summary": synced.summary()},
        {"task": "sync_entra", "state": "upstream_failed", "summary": None},
        {"task": "import_entra", "state": "failed", "summary": None},
        {"task": "export_entra", "state": "success", "summary": staged.summary()},
    ]
    text = render_cycle_report(store, steps, title="aadsync_cycle / manual__1")
    assert text.startswith("# AADSync cycle report: aadsync_cycle / manual__1\n")
    assert f"| import_ad | {imported} | full-import on `ad` | success | no changes |" in text
    assert (f"| sync_ad | {synced.run_id} | full-sync on `ad` | success | projections 3 · metaverse changes") in text
    assert "| sync_entra | | | upstream_failed | no run recorded |" in text
    assert "| import_entra | | | failed | no run recorded: see the task's log |" in text
    assert (
        f"| export_entra | {staged.run_id} | export-staging on `entra` | staged | planned user adds 2 · "
        "planned group adds 1 · planned member adds 2 |"
    ) in text
    assert "- sync_ad: the delta ran as a **full-sync** because no full sync has run yet" in text
    assert f"## Run {synced.run_id}: full-sync on `ad` — success" in text
    assert "## Export plan for `entra`" in text and "| planned_user_adds | 2 |" in text


def test_report_says_nothing_is_left_to_export_and_no_fallbacks(store):
    import_full(store, "ad", [ad_user(1)])
    synced = run_sync(store, load_sync_rules(), connector="ad", mode="full")
    store.finish_run(store.start_run("export", "entra"), "success", {"batch_calls": 0, "batch_calls_minimum": 0})
    text = render_cycle_report(
        store, [{"task": "sync_ad", "state": "success", "summary": synced.summary()}], title="t", plan_connector="x"
    )
    assert "Deltas that became full runs" not in text
    assert "## Export plan for `x`\n\nNothing left to export." in text


def test_export_highlights_show_writes_and_batch_calls_against_the_minimum():
    run = {
        "profile": "export",
        "counters": {"user_creates": 2000, "member_adds": 2204, "user_updates": 0, "batch_calls": 110,
                     "batch_calls_minimum": 110, "throttle_wait_seconds": 1.5},
    }  # fmt: skip
    assert step_highlights(run) == (
        "user creates 2,000 · member adds 2,204 · throttle wait s 1.50 · $batch calls 110 (minimum 110)"
    )
    assert step_highlights({"profile": "delta-import", "counters": {"adds": 0}}) == "no changes"


def test_an_ad_export_line_counts_ldap_writes_not_batch_calls():
    """The AD export (group writeback, ConsistencyGuid) writes over LDAP: its line says how many writes against the
    minimum, and the member modify operations, never Graph's ``$batch`` calls (it makes none)."""
    run = {
        "profile": "export",
        "counters": {"group_adds": 1, "user_updates": 2000, "member_adds": 3, "member_modify_operations": 1,
                     "ldap_writes": 2002, "ldap_writes_minimum": 2002},
    }  # fmt: skip
    assert step_highlights(run) == (
        "group adds 1 · user updates 2,000 · member adds 3 · member modify operations 1 · LDAP writes 2,002 "
        "(minimum 2,002)"
    )


def test_every_error_and_conflict_is_a_row_capped_with_where_to_see_the_rest(store):
    import datetime as dt

    from airflow_provider_aadsync.engine.store import export_conflict

    run_id = store.start_run("export", "entra")
    store.record_errors(
        run_id,
        [{"anchor": f"a{i}", "dn": f"CN=U{i},DC=x", "code": "graph-400", "message": f"bad|{i}"} for i in range(5)],
    )
    store.finish_run(run_id, "completed-export-errors", {"errors": 5})
    with store.engine.begin() as connection:
        connection.execute(
            export_conflict.insert(),
            [
                {"connector": "entra", "anchor": "a1", "attribute": "userPrincipalName", "wanted_value": "j@x.com",
                 "placeholder": "j1234@x.onmicrosoft.com", "detected_at": dt.datetime.now(dt.UTC), "run_id": run_id},
                {"connector": "entra", "anchor": "a2", "attribute": "proxyAddresses", "wanted_value": "smtp:k@x.com",
                 "placeholder": None, "detected_at": dt.datetime.now(dt.UTC), "run_id": run_id},
            ],
        )  # fmt: skip
    summary = {"run_id": run_id}
    text = render_cycle_report(store, [{"task": "export_entra", "summary": summary}], title="t", plan_connector="x")
    assert "## Needs a person" in text and "Per-object errors (5):" in text
    for i in range(5):
        assert f"| {run_id} | CN=U{i},DC=x | a{i} | graph-400 | bad\\|{i} |" in text
    assert "Duplicate-attribute conflicts (2):" in text
    assert "| userPrincipalName | j@x.com | j1234@x.onmicrosoft.com |" in text
    assert "| proxyAddresses | smtp:k@x.com | (value dropped) |" in text
    capped = render_cycle_report(
        store, [{"task": "export_entra", "summary": summary}], title="t", plan_connector="x", max_rows=2
    )
    assert "CN=U1,DC=x" in capped and "CN=U2,DC=x" not in capped
    assert (
        f"3 more errors: see the sync manager (AADSync in the Airflow navigation) or `aadsync report --json {run_id}`"
        in capped
    )
    assert "| graph-400 |" not in capped.split("## Run")[1]  # the rows are in one place, not repeated per run


def test_a_clean_cycle_says_nothing_needs_a_person(store):
    run_id = store.start_run("export", "entra")
    store.finish_run(run_id, "success", {})
    text = render_cycle_report(store, [{"task": "e", "summary": {"run_id": run_id}}], title="t", plan_connector="x")
    assert "No per-object errors and no duplicate-attribute conflicts." in text
