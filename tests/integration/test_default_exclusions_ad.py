"""The default configuration's exclusions on a real AD: system-looking users and groups (Exchange system and
arbitration mailboxes, SUPPORT_388945a0, CAS_ accounts, the sync engine's own accounts, a role group, the rich
coexistence group, a distribution group without mail, the DC's critical system objects) imported from Samba,
synchronized with the shipped rules and exported to the Graph emulator: none of them ever reaches Entra ID."""

from __future__ import annotations

import ldap3
import pytest

from aadsync_devkit.world.forests import ensure_exchange_schema
from aadsync_devkit.world.samba import SambaDC
from aadsync_devkit.world.seed import MAIL_DOMAIN, USER_CLASSES
from airflow_provider_aadsync.engine.connectors.entra.writer import run_entra_export
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from airflow_provider_aadsync.steps import run_ad_import
from tests.support.servers import entra_hook_for, hook_for

pytestmark = pytest.mark.integration

EXCLUDED_USERS = {
    "SUPPORT_388945a0": {},
    "SM_0a1b2c3d": {"mailNickname": "SystemMailbox{1f05a927-3be2-4fb9-aa03-b59fe3b56f4c}"},
    "CAS_{f00dfeed}": {},
    "casmbx": {"mailNickname": "CAS_{b16b00b5}"},
    "AAD_0123abcd": {},
    "MSOL_0123abcd": {},
    "arbitration": {"msExchRecipientTypeDetails": 0x800000},
    "discovery": {"msExchRecipientTypeDetails": 0x20000000},
    "publicfolder": {"msExchRecipientTypeDetails": 0x1000},
}
KEPT_USERS = {"alice": {"mail": f"alice@{MAIL_DOMAIN}"}, "shared": {"msExchRecipientTypeDetails": 4}}
EXCLUDED_GROUPS = {
    "MSOL_AD_Sync_RichCoexistence": {"groupType": -2147483646},
    "Org Management": {"groupType": -2147483640, "msExchRecipientTypeDetails": 0x40000000},
    "Plain Distribution": {"groupType": 2},
}
# (A mail-enabled distribution group is in scope too, but Graph creates no distribution groups: see the unit tests.)
KEPT_GROUPS = {"Staff": {"groupType": -2147483646}}


@pytest.fixture(scope="module")
def dc(start_dc) -> SambaDC:
    dc = start_dc(users=0, groups=0)
    conn = dc.connect()
    try:
        assert ensure_exchange_schema(conn, dc.base_dn)
        ou = f"OU=System,OU=AADSync,{dc.base_dn}"
        assert conn.add(ou, ["top", "organizationalUnit"]), conn.result
        for sam, extra in {**EXCLUDED_USERS, **KEPT_USERS}.items():
            attrs = {"sAMAccountName": sam, "userPrincipalName": f"{sam.lower()}@{MAIL_DOMAIN}", **extra}
            assert conn.add(f"CN={sam},{ou}", USER_CLASSES, attrs), conn.result
        for name, extra in {**EXCLUDED_GROUPS, **KEPT_GROUPS}.items():
            assert conn.add(f"CN={name},{ou}", ["top", "group"], {"sAMAccountName": name, **extra}), conn.result
        assert conn.modify(
            f"CN=Staff,{ou}", {"member": [(ldap3.MODIFY_ADD, [f"CN=alice,{ou}", f"CN=arbitration,{ou}"])]}
        )
    finally:
        conn.unbind()
    return dc


def test_system_objects_never_reach_entra(dc, graph_server, tenant_verifying, store):
    hook = entra_hook_for(graph_server, tenant_verifying(MAIL_DOMAIN))
    rules = load_sync_rules()
    assert run_ad_import(hook_for(dc), store, mode="full")["result"] == "success"
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    result = run_entra_export(store, hook)
    assert result.result == "success", [(e["code"], e["message"]) for e in store.run_errors(result.run_id)][:5]

    users = {u["userPrincipalName"].split("@")[0] for page in hook.paginate("/users") for u in page["value"]}
    groups = {g["displayName"]: g["id"] for page in hook.paginate("/groups") for g in page["value"]}
    # Only the two ordinary users: the built-in Administrator, Guest and krbtgt are critical system objects.
    assert users == {"alice", "shared"}
    assert set(KEPT_GROUPS) <= set(groups)
    assert not set(groups) & {*EXCLUDED_GROUPS, "Domain Admins", "Domain Users", "Administrators"}
    members = {
        m["userPrincipalName"].split("@")[0]
        for page in hook.paginate(f"/groups/{groups['Staff']}/members", params={"$select": "id,userPrincipalName"})
        for m in page["value"]
    }
    assert members == {"alice"}  # the arbitration mailbox in Staff is left out with it
