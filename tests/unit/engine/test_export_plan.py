"""The export plan is counted by the connector it belongs to: LDAP writes for AD, Graph ``$batch`` calls for Entra.

Before the connector registry, every plan was counted as an Entra plan, so `aadsync export-plan --connector ad`
showed 31 ``$batch`` calls for a written-back group of 12,000 members (4 LDAP writes)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from airflow_provider_aadsync.cli import main
from airflow_provider_aadsync.engine.report import render_cycle_report, render_export_plan
from airflow_provider_aadsync.engine.store import Store
from tests.support.plans import plan_references, plan_row
from tests.support.stores import fresh_store

OU = "OU=Writeback,DC=corp,DC=example"
MEMBERS = 12_000


@pytest.fixture
def store(tmp_path):
    with fresh_store(tmp_path) as opened:
        yield opened


def staged_ad_writeback(store: Store) -> None:
    """A Microsoft 365 group sync staged for writeback: one add, 12,000 member adds (5,000 per modify operation)."""
    plan_row(store, "ad", "provisional:g", f"CN=Group_x,{OU}", operation="add", changes={"displayName": ["X"]})
    plan_references(store, "ad", "provisional:g", "member", [f"m{n}" for n in range(MEMBERS)])


def staged_entra(store: Store) -> None:
    plan_row(store, "entra", "provisional:u1", "users/provisional:u1", operation="add", object_type="user",
             changes={"displayName": ["Ada"], "userPrincipalName": ["ada@corp.example"]})  # fmt: skip
    plan_row(
        store, "entra", "provisional:g1", "groups/provisional:g1", operation="add", changes={"displayName": ["Staff"]}
    )
    plan_references(store, "entra", "provisional:g1", "members", [f"m{n}" for n in range(45)])
    plan_row(
        store, "entra", "u2", "users/u2", operation="update", object_type="user", changes={"department": ["Sales"]}
    )
    plan_row(store, "entra", "u3", "users/u3", operation="delete", object_type="user")
    plan_references(store, "entra", "g2", "members", ["m1", "m2"], operation="remove")


#: The Entra plan as render_export_plan printed it before the registry (the plan's table and operations) ...
ENTRA_BEFORE_TABLE = (
    "# Export plan for `entra`\n\n| planned | count |\n|---|---:|\n| batch_calls_minimum | 3 |\n"
    "| planned_deletes | 1 |\n| planned_group_adds | 1 |\n| planned_member_adds | 45 |\n"
    "| planned_member_removes | 2 |\n| planned_requests | 9 |\n| planned_user_adds | 1 |\n"
    "| planned_user_deletes | 1 |\n| planned_user_updates | 1 |\n"
)
ENTRA_OPERATIONS = (
    "\nFirst 4 operations:\n\n- add group `groups/provisional:g1` (pending, 45 member changes)\n"
    "    - displayName: ['Staff']\n- add user `users/provisional:u1` (pending)\n    - displayName: ['Ada']\n"
    "    - userPrincipalName: ['ada@corp.example']\n- delete user `users/u3` (pending)\n"
    "- update user `users/u2` (pending)\n    - department: ['Sales']\n"
)


def test_export_plan_of_ad_counts_ldap_writes(store):
    staged_ad_writeback(store)
    text = render_export_plan(store, connector="ad")
    # 1 add + ceil(12,000 / 5,000) member modify operations
    assert "| ldap_writes_minimum | 4 |" in text and "Minimum LDAP writes: 4\n" in text
    assert "| planned_member_adds | 12,000 |" in text and "| planned_group_adds | 1 |" in text
    assert "batch" not in text and "planned_requests" not in text


def test_export_plan_of_entra_is_unchanged_but_for_the_line_naming_its_unit(store):
    staged_entra(store)
    text = render_export_plan(store, connector="entra")
    assert text == ENTRA_BEFORE_TABLE + "\nMinimum Graph $batch calls: 3\n" + ENTRA_OPERATIONS


def test_export_plan_of_an_unknown_connector_counts_by_operation_only(store):
    plan_row(store, "hr", "h1", "hr/h1", operation="add", object_type="user")
    plan_references(store, "hr", "h1", "manager", ["h2"])
    text = render_export_plan(store, connector="hr")
    assert "| planned_user_adds | 1 |" in text and "| planned_member_adds | 1 |" in text
    assert "Minimum" not in text and "batch" not in text and "ldap" not in text


def test_cycle_report_counts_what_is_left_for_the_ad_plan(store):
    staged_ad_writeback(store)
    text = render_cycle_report(store, [], title="t", plan_connector="ad")
    assert "## Export plan for `ad`" in text and "Minimum LDAP writes: 4" in text and "batch" not in text


def test_cli_export_plan_of_ad_shows_ldap_writes(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    with Store.open(url) as store:
        staged_ad_writeback(store)
    result = CliRunner().invoke(main, ["export-plan", "--connector", "ad", "--store", url])
    assert result.exit_code == 0, result.output
    assert "# Export plan for `ad`" in result.output and "Minimum LDAP writes: 4" in result.output
    assert "| ldap_writes_minimum | 4 |" in result.output and "batch" not in result.output
