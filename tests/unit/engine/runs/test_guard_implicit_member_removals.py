"""Deleting a group's members empties the group as surely as removing them (Graph and AD drop a deleted object from
every group): the member removal guards (total and per-group share) count those memberships too, not only explicit
``pending_export_reference`` removes."""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings
from airflow_provider_aadsync.engine.runs.export_guard_check import check_guards
from airflow_provider_aadsync.engine.runs.export_guards import STOPPED_MEMBER_REMOVALS, count_mass_changes
from airflow_provider_aadsync.engine.store import Store
from tests.support.plans import add_group, plan_row


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}", instance="test") as opened:
        yield opened


def test_deleting_most_members_of_a_group_trips_the_per_group_share(store):
    # "All staff": 100 members m0..m99; 80 of them are deprovisioned (80 deletes, under the deletion threshold of
    # 500). Graph (and AD) drop a deleted object from every group: the group loses 80 % of its members in one run.
    add_group(store, "entra", "allstaff", "All staff", 100, "members")
    for n in range(80):
        plan_row(store, "entra", f"m{n}", f"users/m{n}", operation="delete", object_type="user")
    changes = count_mass_changes(store, "entra", ExportSettings())
    assert changes.deletes == 80
    assert [(g.anchor, g.removes, g.members) for g in changes.groups_over_share] == [("allstaff", 80, 100)]
    stop = check_guards(changes, ExportSettings(), "export-entra")
    assert stop is not None and stop.result == STOPPED_MEMBER_REMOVALS


def test_implicit_removals_count_once_towards_the_total(store):
    # 3 groups of 300 sharing the same 300 members; 200 members deleted: 600 memberships go (> 500).
    for g in range(3):
        add_group(store, "entra", f"g{g}", f"Group {g}", 300, "members")
    for n in range(200):
        plan_row(store, "entra", f"m{n}", f"users/m{n}", operation="delete", object_type="user")
    changes = count_mass_changes(store, "entra", ExportSettings(member_removal_group_percent=100))
    assert changes.member_removes == 600
