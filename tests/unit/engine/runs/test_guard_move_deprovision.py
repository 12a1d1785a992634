"""With ``deprovision="move"`` the AD export moves a deprovisioned account to the holding OU: it stays a member of
every group (AD rewrites the member DN of a moved object), so its memberships are not removals: 60 of 100 members
moved to the holding OU must not stop the export with stopped-member-removal-threshold-exceeded (a first version of
the implicit removals counted them)."""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine.connectors.ad.writer import ADExportSettings
from airflow_provider_aadsync.engine.runs.export_guard_check import check_guards
from airflow_provider_aadsync.engine.runs.export_guards import count_mass_changes
from airflow_provider_aadsync.engine.store import Store
from tests.support.plans import add_group, plan_row


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}", instance="test") as opened:
        yield opened


def test_moves_to_the_holding_ou_are_not_member_removals(store):
    settings = ADExportSettings(deprovision="move", holding_ou="OU=Holding,DC=corp,DC=example")
    add_group(store, "ad", "staff", "Staff", 100, "member")
    for n in range(60):
        plan_row(store, "ad", f"m{n}", f"CN=m{n},OU=Users,DC=corp,DC=example", operation="delete", object_type="user")
    changes = count_mass_changes(store, "ad", settings)
    assert (changes.member_removes, changes.groups_over_share) == (0, ())
    assert check_guards(changes, settings, "export-ad") is None
