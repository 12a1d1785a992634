"""Managers cleared en masse are guarded with the member removals: a slip in a manager flow (or in the managers'
scope) stages a manager removal for every user, and an export would clear the manager of every account (org charts,
approval workflows) without deleting or disabling anything. A user whose manager would be removed and not replaced
counts against the member removal threshold; a change of manager (remove the old, add the new) does not."""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine.connectors.ad.writer import ADExportSettings
from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings, run_entra_export
from airflow_provider_aadsync.engine.report import render_runs
from airflow_provider_aadsync.engine.runs.export_guard_check import check_guards, guard_report_line
from airflow_provider_aadsync.engine.runs.export_guards import STOPPED_MEMBER_REMOVALS, count_mass_changes
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.fakes import FakeGraphWriter
from tests.support.plans import add_group, cs_row, plan_references, plan_row, stage_removes
from tests.support.stores import fresh_store
from tests.support.world import BASE, ad_user, guid, import_delta, import_full


@pytest.fixture
def store(tmp_path):
    with fresh_store(tmp_path) as opened:
        yield opened


def user(store, connector: str, anchor: str, manager: str | None = None) -> None:
    """A user of the connector space, with its manager (the reference the target holds) when given."""
    cs_row(store, connector, anchor, f"users/{anchor}", object_type="user", members=[manager] if manager else [],
           attribute="manager")  # fmt: skip


# ------------------------------------------------------------------------------------------------ a plan by hand
def test_what_counts_as_a_manager_removal(store):
    for anchor in ("cleared", "changed", "given", "leaver", "report", "report-moved", "boss", "new-boss"):
        user(store, "entra", anchor, manager=None if anchor in ("given", "boss", "new-boss") else "boss")
    plan_references(store, "entra", "cleared", "manager", ["boss"], operation="remove")  # removed, not replaced
    plan_references(store, "entra", "changed", "manager", ["boss"], operation="remove")  # a change: remove + add
    plan_references(store, "entra", "changed", "manager", ["new-boss"], operation="add")
    plan_references(store, "entra", "given", "manager", ["boss"], operation="add")  # a manager set: no removal
    plan_row(store, "entra", "leaver", "users/leaver", operation="delete", object_type="user")
    plan_references(store, "entra", "leaver", "Manager", ["boss"], operation="remove")  # the deletion guard's
    changes = count_mass_changes(store, "entra", ExportSettings())
    assert (changes.manager_removes, changes.member_removes, changes.deletes) == (1, 0, 1)

    # the manager deleted: its reports lose their manager (a deleted object is nobody's manager), unless given another
    plan_row(store, "entra", "boss", "users/boss", operation="delete", object_type="user")
    plan_references(store, "entra", "report-moved", "manager", ["new-boss"], operation="add")
    changes = count_mass_changes(store, "entra", ExportSettings())
    assert changes.manager_removes == 2  # "cleared" and "report"; "changed" and "report-moved" get a new manager
    # AD's deprovisioning by move keeps the moved manager's links: only the explicit removal counts
    moved = ADExportSettings(deprovision="move", holding_ou="OU=Holding,DC=corp,DC=example")
    assert count_mass_changes(store, "entra", moved).manager_removes == 1


def test_managers_cleared_count_with_the_member_removals_against_one_threshold(store):
    add_group(store, "entra", "g", "Group", 300, "members")
    stage_removes(store, "entra", "g", 100, "members")  # a third: under the per-group share
    for n in range(4):
        user(store, "entra", f"u{n}", manager="boss")
        plan_references(store, "entra", f"u{n}", "manager", ["boss"], operation="remove")
    changes = count_mass_changes(store, "entra", ExportSettings())
    assert (changes.member_removes, changes.manager_removes, changes.reference_removes) == (100, 4, 104)
    assert check_guards(changes, ExportSettings(member_removal_threshold=104), "export-entra") is None
    stop = check_guards(changes, ExportSettings(member_removal_threshold=103), "export-entra")
    assert stop is not None and stop.result == STOPPED_MEMBER_REMOVALS
    assert stop.detail.startswith(
        "104 member and manager removals are pending (100 group member removals, 4 users whose manager would be "
        "cleared), more than the member removal threshold of 103; nothing was written."
    )
    assert "`aadsync export-entra --member-removal-threshold 104`" in stop.detail
    counters = changes.counters(ExportSettings(member_removal_threshold=103))
    assert counters["planned_member_removes"] == 100 and counters["planned_manager_removes"] == 4
    assert "member and manager removals 104 of 103 (exceeded)" in guard_report_line(counters)
    # a run recorded before managers were counted has no manager counter: its members alone
    older = {name: value for name, value in counters.items() if name != "planned_manager_removes"}
    assert "member and manager removals 100 of 103 ·" in guard_report_line(older)


# ------------------------------------------------------------------------------------------ staged by the sync
def person(n: int, manager: int | None = None):
    """AD user ``n`` whose ``manager`` is AD user ``manager`` (an empty list: AD holds none)."""
    obj = ad_user(n)
    obj.references = {"manager": [(guid(manager), f"CN=user{manager},OU=Users,{BASE}")] if manager else []}
    return obj


def test_a_mass_manager_clear_stops_before_any_write_a_mass_change_does_not_and_a_confirmed_run_clears(store):
    rules = load_sync_rules()
    graph = FakeGraphWriter()
    import_full(store, "ad", [person(1), person(2), *(person(n, manager=1) for n in range(3, 13))])
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    assert run_entra_export(store, graph, settings=ExportSettings(resend_settle_seconds=0)).result == "success"
    assert len(graph.managers) == 10

    # every report moves to user2: ten changes of manager, no manager cleared
    import_delta(store, "ad", [person(n, manager=2) for n in range(3, 13)])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    assert count_mass_changes(store, "entra", ExportSettings()).manager_removes == 0
    moved = run_entra_export(store, graph, settings=ExportSettings(member_removal_threshold=0, resend_settle_seconds=0))
    assert moved.result == "success" and moved.counters["manager_sets"] == 10
    assert len(graph.managers) == 10

    # a slip in the manager flow: every manager cleared
    import_delta(store, "ad", [person(n) for n in range(3, 13)])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    graph.calls.clear()
    settings = ExportSettings(member_removal_threshold=9, resend_settle_seconds=0)
    stopped = run_entra_export(store, graph, settings=settings)
    assert stopped.result == STOPPED_MEMBER_REMOVALS and graph.calls == [] and len(graph.managers) == 10
    assert stopped.detail.startswith("10 member and manager removals are pending (0 group member removals, 10 users")
    assert f"`aadsync export-entra --instance test --store {store.url} --member-removal-threshold 10`" in stopped.detail
    assert "member and manager removals 10 of 9 (exceeded)" in render_runs(store, [stopped.run_id])

    settings = ExportSettings(member_removal_threshold=10, resend_settle_seconds=0)
    confirmed = run_entra_export(store, graph, settings=settings)
    assert confirmed.result == "success" and confirmed.counters["manager_removes"] == 10 and graph.managers == {}
