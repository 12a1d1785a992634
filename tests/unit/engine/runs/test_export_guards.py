"""The export's mass-change guards: disables, member removals and identity changes counted from the plan, checked
before any write."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.ad.writer import ADExportSettings
from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings
from airflow_provider_aadsync.engine.report import render_runs
from airflow_provider_aadsync.engine.runs.export_guard_check import guard_report_line
from airflow_provider_aadsync.engine.runs.export_guards import (
    STOPPED_DISABLES,
    STOPPED_IDENTITY_CHANGES,
    STOPPED_MEMBER_REMOVALS,
    _changes_identity,
    _disables,
    count_mass_changes,
)
from airflow_provider_aadsync.engine.runs.export_run import run_export
from airflow_provider_aadsync.engine.store import (
    Store,
    pending_export,
    utcnow,
)
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.plans import RecordingExporter, add_group, plan_row, stage_removes
from tests.support.world import (
    ad_user,
    exports,
    import_delta,
    import_full,
    world_with_cloud_twins,
)


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}", instance="test") as opened:
        yield opened


def export(store: Store, settings, connector: str = "entra", command: str = "export-entra"):
    writer = RecordingExporter()
    result = run_export(
        store,
        connector=connector,
        settings=settings,
        plan=dict,
        exporter=lambda run_id: writer,
        command=command,
    )
    return result, writer


# ------------------------------------------------------------------------------------------------ a plan by hand
# ---------------------------------------------------------------------------------------------------- disables
def test_what_counts_as_a_disable():
    assert _disables({"accountEnabled": [False]}, {"accountEnabled": [True]})
    assert _disables({"accountEnabled": ["false"]}, {"accountEnabled": ["True"]})
    assert _disables({"accountEnabled": [False]}, {})  # unknown before: counted, to be safe
    assert not _disables({"accountEnabled": [False]}, {"accountEnabled": [False]})  # off already
    assert not _disables({"accountEnabled": [True]}, {"accountEnabled": [False]})  # an enable
    assert not _disables({"accountEnabled": []}, {"accountEnabled": [True]})  # a clear is no disable
    assert _disables({"userAccountControl": ["514"]}, {"userAccountControl": ["512"]})
    assert not _disables({"userAccountControl": ["66050"]}, {"userAccountControl": ["514"]})
    assert not _disables({"userAccountControl": ["512"]}, {"userAccountControl": ["514"]})
    assert not _disables({"displayName": ["x"]}, {"accountEnabled": [True]})


def test_mass_disable_staged_by_sync_stops_before_any_write_and_a_confirmed_run_goes_on(store):
    rules = world_with_cloud_twins(store, 8)
    import_delta(store, "ad", [ad_user(n, disabled=True) for n in range(1, 7)])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    assert count_mass_changes(store, "entra", ExportSettings()).disables == 6

    stopped, writer = export(store, ExportSettings(disable_threshold=5))
    assert stopped.result == STOPPED_DISABLES and not writer.ran
    assert "6 accounts would be disabled" in stopped.detail and "disable threshold of 5" in stopped.detail
    assert (
        "`disable_threshold`" in stopped.detail
        and f"`aadsync export-entra --instance test --store {store.url} --disable-threshold 6`" in stopped.detail
    )
    assert stopped.counters["planned_disables"] == 6 and len(exports(store)) == 6  # the plan is kept

    confirmed, writer = export(store, ExportSettings(disable_threshold=6))
    assert confirmed.result == "success" and writer.ran


def test_a_missing_user_account_control_contributes_nothing(store):
    """The shipped flow: no userAccountControl is no opinion on the account, never a disable."""
    rules = world_with_cloud_twins(store, 3)
    import_full(store, "ad", [ad_user(1, userAccountControl=None), ad_user(2), ad_user(3, disabled=True)])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    staged = {anchor: export["changes"] for anchor, export in exports(store).items()}
    assert staged == {"cloud-3": {"accountEnabled": [False]}}  # user 1 keeps its cloud account as it is
    assert count_mass_changes(store, "entra", ExportSettings()).disables == 1


def test_a_new_user_without_user_account_control_is_created_without_account_enabled(store):
    rules = load_sync_rules()
    import_full(store, "ad", [ad_user(1, userAccountControl=None), ad_user(2)])
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    adds = {export["changes"]["mailNickname"][0]: export["changes"] for export in exports(store).values()}
    assert "accountEnabled" not in adds["user1"] and adds["user2"]["accountEnabled"] == [True]


# --------------------------------------------------------------------------------------------- identity changes
def test_what_counts_as_an_identity_change():
    held = {"userPrincipalName": ["ann@corp.example"], "mail": ["ann@corp.example"], "sAMAccountName": ["ann"]}
    assert _changes_identity({"userPrincipalName": ["ann@typo.example"]}, held)
    assert _changes_identity({"mail": ["ann@elsewhere.example"]}, held)
    assert _changes_identity({"sAMAccountName": ["ann2"]}, held)  # AD's sign-in name
    assert _changes_identity({"mail": []}, held)  # cleared: the mail goes nowhere
    assert not _changes_identity({"userPrincipalName": ["Ann@Corp.Example"]}, held)  # letter case only
    assert not _changes_identity({"mail": ["ann@corp.example"]}, {})  # set where there was none
    assert not _changes_identity({"mailNickname": ["x"], "displayName": ["Ann B"]}, held)


def test_a_mass_upn_rewrite_staged_by_sync_stops_before_any_write_and_a_confirmed_run_goes_on(store):
    """A slip that gives every user another sign-in name (a UPN suffix rule gone wrong) deletes and disables
    nothing, yet signs everyone out: it stops as the other mass changes do."""
    rules = world_with_cloud_twins(store, 8)
    import_delta(store, "ad", [ad_user(n, userPrincipalName=f"user{n}@typo.example") for n in range(1, 7)])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    assert count_mass_changes(store, "entra", ExportSettings()).identity_changes == 6

    stopped, writer = export(store, ExportSettings(identity_change_threshold=5))
    assert stopped.result == STOPPED_IDENTITY_CHANGES and not writer.ran
    assert "6 accounts would get another sign-in name or mail address" in stopped.detail
    assert f"`aadsync export-entra --instance test --store {store.url} --identity-change-threshold 6`" in stopped.detail
    assert stopped.counters["planned_identity_changes"] == 6 and len(exports(store)) == 6  # the plan is kept
    assert "identity changes 6 of 5 (exceeded)" in render_runs(store, [stopped.run_id])

    confirmed, writer = export(store, ExportSettings(identity_change_threshold=6))
    assert confirmed.result == "success" and writer.ran


# ---------------------------------------------------------------------------------------------- member removals
def test_member_removals_in_total(store):
    for n in range(3):
        add_group(store, "entra", f"g{n}", f"Group {n}", 300, "members")
        stage_removes(store, "entra", f"g{n}", 100, "members")  # a third of each: no group over its share
    changes = count_mass_changes(store, "entra", ExportSettings())
    assert (changes.member_removes, changes.groups_over_share) == (300, ())

    stopped, writer = export(store, ExportSettings(member_removal_threshold=299))
    assert stopped.result == STOPPED_MEMBER_REMOVALS and not writer.ran
    assert "300 group member removals are pending" in stopped.detail
    assert (
        f"`aadsync export-entra --instance test --store {store.url} --member-removal-threshold 300`" in stopped.detail
    )
    done, writer = export(store, ExportSettings(member_removal_threshold=300))
    assert done.result == "success" and writer.ran


def test_more_than_half_of_one_group_of_twenty_or_more_stops(store):
    add_group(store, "entra", "sales", "Sales", 24, "members")
    stage_removes(store, "entra", "sales", 13, "members")  # 54 %
    add_group(store, "entra", "half", "Half", 40, "members")
    stage_removes(store, "entra", "half", 20, "members")  # exactly half: allowed
    add_group(store, "entra", "small", "Small", 19, "members")
    stage_removes(store, "entra", "small", 19, "members")  # all, but under 20 members: allowed
    changes = count_mass_changes(store, "entra", ExportSettings())
    assert [(g.anchor, g.removes, g.members, g.percent) for g in changes.groups_over_share] == [("sales", 13, 24, 55)]

    stopped, writer = export(store, ExportSettings())
    assert stopped.result == STOPPED_MEMBER_REMOVALS and not writer.ran
    assert stopped.detail.startswith('group "Sales"') and "13 of its 24 members (55 %)" in stopped.detail
    assert (
        f"`aadsync export-entra --instance test --store {store.url} --member-removal-group-percent 55`"
        in stopped.detail
    )
    assert "`member_removal_group_percent`" in stopped.detail
    assert stopped.counters["groups_over_member_removal_share"] == 1

    confirmed, writer = export(store, ExportSettings(member_removal_group_percent=55))
    assert confirmed.result == "success" and writer.ran


def test_the_ad_writeback_counts_its_member_attribute_and_names_its_command(store):
    add_group(store, "ad", "wb", "Group_wb", 30, "member")
    stage_removes(store, "ad", "wb", 30, "member")
    stopped, writer = export(store, ADExportSettings(), connector="ad", command="export-ad")
    assert stopped.result == STOPPED_MEMBER_REMOVALS and not writer.ran
    assert (
        "(100 %)" in stopped.detail
        and f"`aadsync export-ad --instance test --store {store.url} --member-removal-group-percent 100`"
        in stopped.detail
    )


def test_every_exceeded_guard_is_named_the_first_gives_the_result(store):
    add_group(store, "entra", "sales", "Sales", 30, "members")
    stage_removes(store, "entra", "sales", 30, "members")
    now = utcnow()
    with store.transaction() as connection:
        connection.execute(
            sa.insert(pending_export),
            [{"connector": "entra", "anchor": f"u{n}", "object_type": "user", "dn": f"users/u{n}",
              "operation": "delete", "changes": "{}", "state": "pending", "attempts": 0, "created_at": now,
              "updated_at": now} for n in range(3)],
        )  # fmt: skip
    stopped, writer = export(store, ExportSettings(deletion_threshold=2))
    assert stopped.result == "stopped-deletion-threshold-exceeded" and not writer.ran
    assert stopped.detail.startswith("3 deletes are pending, more than the deletion threshold of 2; nothing was")
    assert "--deletion-threshold 3" in stopped.detail and "Also: group" in stopped.detail
    assert "--member-removal-group-percent 100" in stopped.detail
    report = render_runs(store, [stopped.run_id])
    assert "- guards (pending of threshold): deletes 3 of 2 (exceeded) · disables 0 of 500" in report
    assert "groups losing more than 50 % of their members 1 (exceeded)" in report
    assert "| disable_threshold |" not in report  # thresholds are in the guards line, not the counter table


def test_guard_report_line_only_for_runs_with_guards():
    assert guard_report_line({"adds": 3}) is None


def test_the_memberships_of_groups_pending_delete_count_as_member_removals(store):
    """A slip in the group scoping that deprovisions 300 groups of 100 members: 300 deletes, under the deletion
    threshold, end 30,000 memberships. They count with the member removals (each pair once), and stop the export
    before any write; a group pending delete is not named as losing a share of its members (it is a delete)."""
    for n in range(300):
        add_group(store, "entra", f"g{n}", f"Group{n}", 100, "members")
        plan_row(store, "entra", f"g{n}", f"groups/g{n}", operation="delete")
    changes = count_mass_changes(store, "entra", ExportSettings())
    assert (changes.deletes, changes.member_removes, changes.groups_over_share) == (300, 30_000, ())
    result, exporter = export(store, ExportSettings())
    assert result.result == STOPPED_MEMBER_REMOVALS and not exporter.ran
    assert "30,000 group member removals" in result.detail


def test_one_group_deleted_on_purpose_is_not_stopped_by_the_share_of_its_members(store):
    add_group(store, "entra", "g1", "Project Alpha", 100, "members")
    plan_row(store, "entra", "g1", "groups/g1", operation="delete")
    changes = count_mass_changes(store, "entra", ExportSettings())
    assert (changes.deletes, changes.member_removes, changes.groups_over_share) == (1, 100, ())
    result, exporter = export(store, ExportSettings())
    assert result.result == "success" and exporter.ran
