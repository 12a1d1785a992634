"""Renames, moves and the deprovisioning move split a DN into its RDN and parent with ldap3's ``to_dn``, which splits
wrongly when an RDN value ends in an escaped backslash or an escaped space (``CN=Back\\\\,OU=W`` becomes one
component ``CN=Back\\\\,OU=W``). Samba takes and returns such DNs (probed: ``CN=Back\\\\,...`` and ``CN=Trail\\ ,...``
are added and read back), and the hook's modify DN to one of them is refused ``namingViolation``: the group is never
renamed, or never moved to the holding OU, on every run."""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine.connectors.ad.writer import ADExportSettings, run_ad_export
from airflow_provider_aadsync.engine.dn import same_dn
from airflow_provider_aadsync.hooks.active_directory import ActiveDirectoryHook
from airflow_provider_aadsync.hooks.active_directory_settings import ADConnectionSettings
from tests.support.fakes import FakeLdapWriter
from tests.support.plans import cs_row, plan_row
from tests.support.stores import fresh_store

OU = "OU=Writeback,DC=corp,DC=example"
HOLDING = "OU=Holding,DC=corp,DC=example"
ENDINGS = ["Back\\\\", "Trail\\ "]  # RDN values ending in a backslash, in a space (both escaped)


class RecordingConnection:
    bound, closed = True, False

    def __init__(self) -> None:
        self.modify_dn_calls: list[tuple[str, str, str | None]] = []

    def modify_dn(self, dn, relative_dn, delete_old_dn=True, new_superior=None, controls=None):
        self.modify_dn_calls.append((dn, relative_dn, new_superior))
        return True


@pytest.mark.parametrize("cn", ENDINGS)
def test_the_hook_renames_to_an_rdn_ending_in_an_escaped_character_under_the_right_parent(cn):
    hook = ActiveDirectoryHook(
        settings=ADConnectionSettings(
            host="127.0.0.1", port=1, bind_dn="CN=x", password="p", base_dn="DC=x", tls="none"
        )
    )
    conn = hook._conn = RecordingConnection()
    hook.move_object("0f0e0000-0000-4000-8000-000000000001", f"CN={cn},{OU}")
    ((_target, rdn, superior),) = conn.modify_dn_calls
    assert (rdn, superior) == (f"CN={cn}", OU)


@pytest.fixture
def store(tmp_path):
    with fresh_store(tmp_path) as opened:
        yield opened


@pytest.mark.parametrize("cn", ENDINGS)
def test_deprovisioning_moves_a_group_whose_cn_ends_in_an_escaped_character_into_the_holding_ou(store, cn):
    ldap = FakeLdapWriter()
    dn = f"CN={cn},{OU}"
    group = ldap.add_entry(dn)
    cs_row(store, "ad", group, dn, attrs={"objectGUID": [group]})
    plan_row(store, "ad", group, dn, operation="delete")
    result = run_ad_export(
        store, ldap, settings=ADExportSettings(deprovision="move", holding_ou=HOLDING), lock_holder="t"
    )
    assert result.result == "success", store.run_errors(result.run_id)
    moved = ldap.entries[group]["dn"]
    assert same_dn(moved, f"CN={cn},{HOLDING}"), moved
