"""Confirming an export's mass change by its exact counts (``confirm_mass_change``): a raised threshold kept in a DAG
run's params let a rerun of that run through any mass change up to it; a confirmation lets through only the counts
the stop named, and only for the guards it names."""

from __future__ import annotations

import re
from typing import Any

import pydantic
import pytest

from airflow_provider_aadsync.engine.connectors.ad.writer import ADExportSettings
from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings
from airflow_provider_aadsync.engine.report import render_runs
from airflow_provider_aadsync.engine.runs.export_confirmation import (
    CONFIRMATION_PATTERN,
    format_confirmation,
    normalized_confirmation,
    parse_confirmation,
)
from airflow_provider_aadsync.engine.runs.export_guard_check import check_guards, guard_report_line
from airflow_provider_aadsync.engine.runs.export_guards import (
    STOPPED_DELETES,
    STOPPED_DISABLES,
    STOPPED_MEMBER_REMOVALS,
    GroupRemoval,
    MassChanges,
)
from airflow_provider_aadsync.engine.runs.export_run import run_export
from tests.support.plans import RecordingExporter, add_group, plan_row, stage_removes
from tests.support.stores import fresh_store


@pytest.fixture
def store(tmp_path):
    with fresh_store(tmp_path) as opened:
        yield opened


# -------------------------------------------------------------------------------------------------- the value
def test_a_confirmation_is_name_count_pairs_in_any_order_written_in_one_form():
    assert parse_confirmation("deletes=812") == {"deletes": 812}
    assert parse_confirmation(" member_removals = 1204 , Deletes=812 ") == {"member_removals": 1204, "deletes": 812}
    assert parse_confirmation("identity-changes=3,disables=0") == {"identity_changes": 3, "disables": 0}
    assert parse_confirmation(None) == parse_confirmation("") == parse_confirmation("  ") == {}
    assert normalized_confirmation("member_removals=1204,deletes=812") == "deletes=812,member_removals=1204"
    assert normalized_confirmation(" ") is None
    assert format_confirmation({"identity_changes": 1, "disables": 2}) == "disables=2,identity_changes=1"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("812", "a number alone does not say which guard"),
        ("true", "a yes would confirm whatever mass change is pending"),
        ("deletes:812", "'deletes:812' is not name=count; expected name=count pairs separated by commas"),
        ("deletes=812,", "'' is not name=count"),
        ("=812", "'=812' is not name=count"),
        ("delete=812", "'delete' is no guard that can be confirmed (names: deletes, disables, member_removals, "),
        ("deletes=1,204", "'204' is not name=count"),
        ("deletes=8.12", "deletes='8.12': the count must be a whole number"),
        ("deletes=-1", "deletes='-1': the count must be a whole number"),
        ("deletes=", "deletes='': the count must be a whole number"),
        ("deletes=1,Deletes=2", "deletes is named twice"),
    ],
)
def test_a_malformed_confirmation_is_refused_saying_the_form(value, problem):
    with pytest.raises(ValueError, match="confirm_mass_change") as refused:
        parse_confirmation(value)
    assert problem in str(refused.value)
    with pytest.raises(pydantic.ValidationError, match="confirm_mass_change"):
        ExportSettings(confirm_mass_change=value)


MALFORMED = ["812", "true", "deletes:812", "deletes=812,", "=812", "delete=812", "deletes=1,204", "deletes=8.12"]


@pytest.mark.parametrize(
    "value", ["deletes=812", " member_removals = 1204 , deletes=812 ", "identity-changes=3,disables=0", "", "  "]
)
def test_the_params_pattern_takes_what_the_parser_takes(value):
    # the DAG param's JSON-schema pattern (jsonschema searches it, as re.search does)
    assert re.search(CONFIRMATION_PATTERN, value) and isinstance(parse_confirmation(value), dict)


@pytest.mark.parametrize("value", [*MALFORMED, "deletes=-1", "deletes=", "deletes=812;disables=1", "deletes=812 x"])
def test_the_params_pattern_refuses_what_the_parser_refuses(value):
    assert re.search(CONFIRMATION_PATTERN, value) is None
    with pytest.raises(ValueError, match="confirm_mass_change"):
        parse_confirmation(value)


def test_the_settings_hold_the_fixed_form():
    settings = ADExportSettings(confirm_mass_change="member_removals=5, deletes=2")
    assert settings.confirm_mass_change == "deletes=2,member_removals=5"
    assert settings.confirmed == {"deletes": 2, "member_removals": 5}
    assert ExportSettings(confirm_mass_change="").confirm_mass_change is None
    assert ExportSettings().confirmed == {}


# ------------------------------------------------------------------------------------------------- the check
def changes(**counts: Any) -> MassChanges:
    return MassChanges(**{"deletes": 0, "disables": 0, "member_removes": 0, **counts})


def test_the_exact_count_lets_a_guard_over_its_threshold_through():
    plan = changes(deletes=812)
    assert check_guards(plan, ExportSettings(confirm_mass_change="deletes=812"), "export-entra") is None
    # guards within their thresholds need no confirmation, and one for them changes nothing
    assert check_guards(changes(deletes=5), ExportSettings(), "export-entra") is None
    assert check_guards(changes(deletes=5), ExportSettings(confirm_mass_change="deletes=9"), "export-entra") is None


def test_the_stop_recommends_the_exact_confirmation_first_then_the_threshold():
    stop = check_guards(changes(deletes=812), ExportSettings(), "export-entra")
    assert stop is not None and stop.result == STOPPED_DELETES
    assert stop.detail.startswith("812 deletes are pending, more than the deletion threshold of 500; nothing was")
    confirm = stop.detail.index(
        "confirm exactly this count for one run: `confirm_mass_change` = `deletes=812` (task or DAG param), or "
        "`aadsync export-entra --confirm-mass-change deletes=812`; a plan of other counts stops again."
    )
    standing = stop.detail.index(
        "For a standing change, raise the threshold instead (a Variable keeps it for every run): run the export again "
        "with a deletion threshold of at least 812 (task parameter `deletion_threshold`, Variable "
        "`aadsync_deletion_threshold`, or `aadsync export-entra --deletion-threshold 812`)."
    )
    assert confirm < standing


def test_a_confirmation_of_another_count_stops_naming_both_numbers():
    stop = check_guards(changes(deletes=813), ExportSettings(confirm_mass_change="deletes=812"), "export-ad")
    assert stop is not None and stop.result == STOPPED_DELETES
    assert "This run confirmed deletes=812, but 813 are pending now (deletes=813)" in stop.detail
    assert "`aadsync export-ad --confirm-mass-change deletes=813`" in stop.detail
    fewer = check_guards(changes(deletes=811), ExportSettings(confirm_mass_change="deletes=812"), "export-ad")
    assert fewer is not None and "confirmed deletes=812, but 811 are pending now" in fewer.detail


def test_a_confirmation_of_one_guard_does_not_let_another_through():
    # last week's deletes confirmed; today the plan disables 600 accounts and deletes nothing
    stale = ExportSettings(confirm_mass_change="deletes=812")
    stop = check_guards(changes(disables=600), stale, "export-entra")
    assert stop is not None and stop.result == STOPPED_DISABLES
    assert "`confirm_mass_change` = `disables=600`" in stop.detail and "This run confirmed" not in stop.detail
    # the same count under another name confirms nothing either
    assert check_guards(changes(disables=812), stale, "export-entra") is not None


def test_several_guards_over_need_every_count_and_the_message_gives_the_whole_value():
    plan = changes(deletes=812, member_removes=1200, manager_removes=4)
    stop = check_guards(plan, ExportSettings(), "export-entra")
    assert (
        stop is not None and stop.result == STOPPED_DELETES and "Also: 1,204 member and manager removals" in stop.detail
    )
    value = "deletes=812,member_removals=1204"
    assert f"confirm exactly these counts for one run: `confirm_mass_change` = `{value}`" in stop.detail
    assert f"`aadsync export-entra --confirm-mass-change {value}`" in stop.detail
    # one of the two confirmed: the other still stops, and the value to give still names both
    half = check_guards(plan, ExportSettings(confirm_mass_change="deletes=812"), "export-entra")
    assert half is not None and half.result == STOPPED_MEMBER_REMOVALS
    assert half.detail.startswith("1,204 member and manager removals are pending")
    assert f"`confirm_mass_change` = `{value}`" in half.detail
    assert "--deletion-threshold" not in half.detail  # the confirmed guard needs no raised threshold
    assert check_guards(plan, ExportSettings(confirm_mass_change=value), "export-entra") is None


def test_a_named_instances_stop_names_its_own_variable_for_the_threshold():
    stop = check_guards(changes(deletes=812), ExportSettings(), "export-entra", "emea")
    assert stop is not None
    assert (
        "a deletion threshold of at least 812 (task parameter `deletion_threshold`, Variable "
        "`aadsync_emea__deletion_threshold` (the named instance's own; `aadsync_deletion_threshold` when emea is the "
        "default instance, named by the Variable aadsync_instance), or `aadsync export-entra --instance emea "
        "--deletion-threshold 812`)"
    ) in stop.detail
    default = check_guards(changes(disables=600), ExportSettings(), "export-entra", "default")
    assert "Variable `aadsync_disable_threshold`, or" in default.detail and "__" not in default.detail


def test_a_named_instances_stop_gives_the_commands_for_its_own_store():
    """Following the CLI advice of a named instance's stop confirms or raises the limit of that instance, not the
    default one (the CLI's --instance default)."""
    plan = changes(deletes=812, member_removes=1204)
    stop = check_guards(plan, ExportSettings(), "export-ad", "emea")
    assert stop is not None
    value = "deletes=812,member_removals=1204"
    assert f"`aadsync export-ad --instance emea --confirm-mass-change {value}`" in stop.detail
    assert "`aadsync export-ad --instance emea --deletion-threshold 812`" in stop.detail
    assert "`aadsync export-ad --instance emea --member-removal-threshold 1204`" in stop.detail
    assert "`aadsync export-ad --confirm" not in stop.detail and "`aadsync export-ad --deletion" not in stop.detail
    default = check_guards(plan, ExportSettings(), "export-ad", "default")
    assert f"`aadsync export-ad --confirm-mass-change {value}`" in default.detail and "--instance" not in default.detail


def test_member_removals_confirm_the_per_group_share_by_the_runs_removal_count():
    group = GroupRemoval("sales", '"Sales"', 13, 24)
    plan = changes(member_removes=15, groups_over_share=(group,))
    stop = check_guards(plan, ExportSettings(), "export-entra")
    assert stop is not None and stop.detail.startswith('group "Sales" would lose 13 of its 24 members (55 %)')
    assert "`confirm_mass_change` = `member_removals=15`" in stop.detail
    assert "--member-removal-group-percent 55" in stop.detail
    assert check_guards(plan, ExportSettings(confirm_mass_change="member_removals=15"), "export-entra") is None
    assert check_guards(plan, ExportSettings(confirm_mass_change="member_removals=13"), "export-entra") is not None


# ------------------------------------------------------------------------------------------------ an export run
def export(store, settings):
    writer = RecordingExporter()
    result = run_export(
        store, connector="entra", settings=settings, plan=dict, exporter=lambda run_id: writer, command="export-entra"
    )
    return result, writer


def test_an_export_of_a_named_instance_stops_naming_the_instances_variable(tmp_path):
    with fresh_store(tmp_path, instance="emea") as store:
        stage_deletes(store, 0, 6)
        stopped, writer = export(store, ExportSettings(deletion_threshold=5))
        assert stopped.result == STOPPED_DELETES and not writer.ran
        assert "Variable `aadsync_emea__deletion_threshold` (the named instance's own; " in stopped.detail
        assert (
            f"`aadsync export-entra --instance emea --store {store.url} --confirm-mass-change deletes=6`"
            in stopped.detail
        )
        assert store.list_runs(1)[0]["detail"] == stopped.detail


def stage_deletes(store, first: int, last: int) -> None:
    for n in range(first, last):
        plan_row(store, "entra", f"u{n}", f"users/u{n}", operation="delete", object_type="user")


def test_an_export_goes_on_with_the_exact_count_and_stops_when_the_plan_grew(store):
    stage_deletes(store, 0, 6)
    stopped, writer = export(store, ExportSettings(deletion_threshold=5))
    assert stopped.result == STOPPED_DELETES and not writer.ran
    assert "`confirm_mass_change` = `deletes=6`" in stopped.detail

    confirmed, writer = export(store, ExportSettings(deletion_threshold=5, confirm_mass_change="deletes=6"))
    assert confirmed.result == "success" and writer.ran
    assert confirmed.detail == "mass change confirmed for this run: deletes=6 (over its threshold)"
    assert confirmed.counters["confirmed_deletes"] == 6
    report = render_runs(store, [confirmed.run_id])
    assert "deletes 6 of 5 (exceeded, confirmed)" in report and "| confirmed_deletes |" not in report

    stage_deletes(store, 6, 7)  # the DAG run cleared later: its confirmation met a plan one delete larger
    again, writer = export(store, ExportSettings(deletion_threshold=5, confirm_mass_change="deletes=6"))
    assert again.result == STOPPED_DELETES and not writer.ran
    assert "This run confirmed deletes=6, but 7 are pending now" in again.detail
    assert "deletes 7 of 5 (exceeded; confirmed 6)" in render_runs(store, [again.run_id])


def test_a_confirmation_for_a_guard_not_exceeded_is_harmless_and_reported(store):
    add_group(store, "entra", "sales", "Sales", 10, "members")
    stage_removes(store, "entra", "sales", 3, "members")
    done, writer = export(store, ExportSettings(confirm_mass_change="member_removals=3,identity_changes=2"))
    assert done.result == "success" and writer.ran
    assert done.detail == (
        "confirmation member_removals=3,identity_changes=2 not needed: 3 member removals pending, 0 identity changes "
        "pending, within the threshold"
    )
    report = render_runs(store, [done.run_id])
    assert "member and manager removals 3 of 500 (confirmed 3: not needed)" in report
    assert "identity changes 0 of 500 (confirmed 2: not needed)" in report
    staged, _writer = export(store, ExportSettings(staging=True, confirm_mass_change="deletes=1"))
    assert staged.result == "staged" and staged.detail.endswith("; confirmation deletes=1 not needed: 0 deletes "
                                                                "pending, within the threshold")  # fmt: skip


def test_guard_report_line_without_a_confirmation_is_unchanged():
    counters = {"planned_deletes": 3, "deletion_threshold": 2, "disable_threshold": 500, "identity_change_threshold": 5}
    assert guard_report_line(counters).startswith("deletes 3 of 2 (exceeded) · disables 0 of 500 · ")
