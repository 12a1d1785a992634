"""The user anchor on a real AD (issue 15, points 4 and 5): ConsistencyGuid writeback stamps an empty
mS-DS-ConsistencyGuid with the objectGUID's bytes in the AD export that runs before the first Entra export, so the
sourceAnchor stays the same value (no changed anchor); a ConsistencyGuid an admin sets already is left alone and is
the anchor; and changing a user's ConsistencyGuid after the export is the per-object error "sourceAnchor attribute
has changed", the cloud user's onPremisesImmutableId unchanged, the error saying how to resolve it.

And adopting a populated tenant as an admin would (issue 15): cloud users with the same UPN, the same mail, the
ImmutableId Entra Connect wrote, one held by another engine and one with another ImmutableId; the preflight rows say
how each AD user meets them, then the full cycle creates no duplicate and keeps the pre-existing object ids."""

from __future__ import annotations

import uuid

import ldap3
import pytest

from aadsync_devkit.world.samba import SambaDC
from aadsync_devkit.world.seed import MAIL_DOMAIN, USER_CLASSES
from airflow_provider_aadsync.engine.connectors.ad.writer import run_ad_export
from airflow_provider_aadsync.engine.connectors.entra.reader import import_entra
from airflow_provider_aadsync.engine.connectors.entra.writer import run_entra_export
from airflow_provider_aadsync.engine.runs.preflight import preflight
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from airflow_provider_aadsync.steps import run_ad_import
from tests.support.adoption import ad_anchors, anchor_of, cloud_user, seed_tenant
from tests.support.servers import entra_hook_for, hook_for

pytestmark = pytest.mark.integration

PRESET = uuid.UUID("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
OU = "OU=Anchors,OU=AADSync"
ADOPT_OU = "OU=Adopt,OU=AADSync"
#: The AD users of the adoption test, and how the tenant's cloud users meet them.
ADOPTED = ("dora", "eli", "finn", "gus", "hal", "ivy")


@pytest.fixture(scope="module")
def dc(start_dc) -> SambaDC:
    dc = start_dc(users=0, groups=0)
    conn = dc.connect()
    try:
        ou = f"{OU},{dc.base_dn}"
        assert conn.add(ou, ["top", "organizationalUnit"]), conn.result
        for sam in ("anna", "ben", "cara"):
            attrs: dict[str, object] = {"sAMAccountName": sam, "userPrincipalName": f"{sam}@{MAIL_DOMAIN}"}
            if sam == "cara":  # an admin set it already (e.g. carried over from another forest)
                attrs["mS-DS-ConsistencyGuid"] = PRESET.bytes_le
            assert conn.add(f"CN={sam},{ou}", USER_CLASSES, attrs), conn.result
        adopt = f"{ADOPT_OU},{dc.base_dn}"
        assert conn.add(adopt, ["top", "organizationalUnit"]), conn.result
        for sam in ADOPTED:
            attrs = {"sAMAccountName": sam, "userPrincipalName": f"{sam}@{MAIL_DOMAIN}", "mail": f"{sam}@{MAIL_DOMAIN}"}
            assert conn.add(f"CN={sam},{adopt}", USER_CLASSES, attrs), conn.result
    finally:
        conn.unbind()
    return dc


def immutable_ids(hook) -> dict[str, str]:
    select = "userPrincipalName,onPremisesImmutableId"
    return {
        u["userPrincipalName"].split("@")[0]: u["onPremisesImmutableId"]
        for page in hook.paginate("/users", params={"$select": select})
        for u in page["value"]
    }


def cycle(dc, store, hook, rules, mode: str = "full", ou: str = OU) -> tuple:
    assert run_ad_import(hook_for(dc, base_dn=f"{ou},{dc.base_dn}"), store, mode=mode)["result"] == "success"
    synced = run_sync(store, rules, connector="ad", mode=mode)
    ad = run_ad_export(store, hook_for(dc))  # before the Entra export, as the cycle runs them
    entra = run_entra_export(store, hook)
    return synced, ad, entra


def test_consistency_guid_written_then_a_changed_anchor_is_refused(dc, graph_server, tenant_verifying, store):
    hook = entra_hook_for(graph_server, tenant_verifying(MAIL_DOMAIN))
    rules = load_sync_rules()
    before = ad_anchors(dc, OU)
    assert before["anna"][1] is None and before["cara"][1] == PRESET.bytes_le

    synced, ad, entra = cycle(dc, store, hook, rules)
    assert synced.result == "success" and ad.result == "success" and entra.result == "success", (
        store.run_errors(ad.run_id),
        store.run_errors(entra.run_id),
    )
    assert ad.counters["user_updates"] == 2  # anna and ben; cara's is set already
    after = ad_anchors(dc, OU)
    for sam in ("anna", "ben"):
        assert after[sam][1] == after[sam][0]  # the objectGUID's bytes
    assert after["cara"][1] == PRESET.bytes_le
    expected = {sam: anchor_of(after[sam][1]) for sam in after}
    assert {k: v for k, v in immutable_ids(hook).items() if k in expected} == expected

    # the stamped ConsistencyGuid is read back as the same anchor: nothing to write anywhere
    synced, ad, entra = cycle(dc, store, hook, rules, mode="delta")
    assert synced.result == "success", store.run_errors(synced.run_id)
    assert ad.counters.get("user_updates", 0) == 0 and entra.counters.get("user_updates", 0) == 0

    # an admin changes ben's ConsistencyGuid: a per-object error, the cloud anchor kept, ben no longer exported
    conn = dc.connect()
    try:
        changed = uuid.uuid4().bytes_le
        assert conn.modify(f"CN=ben,{OU},{dc.base_dn}", {"mS-DS-ConsistencyGuid": [(ldap3.MODIFY_REPLACE, [changed])],
                           "title": [(ldap3.MODIFY_REPLACE, ["Engineer"])]}), conn.result  # fmt: skip
    finally:
        conn.unbind()
    synced, ad, entra = cycle(dc, store, hook, rules, mode="delta")
    assert synced.result == "completed-sync-errors"
    (error,) = store.run_errors(synced.run_id)
    assert error["code"] == "source-anchor-changed"
    assert "sourceAnchor attribute has changed" in error["message"]
    assert "restore the AD object's previous anchor" in error["message"]  # how to resolve it
    assert ad.counters.get("user_updates", 0) == 0  # the changed value is not overwritten in AD either
    assert immutable_ids(hook) == expected
    assert ad_anchors(dc, OU)["ben"][1] == changed


def test_a_populated_tenant_is_adopted_as_the_preflight_says(dc, graph_server, tenant_verifying, store):
    tenant = tenant_verifying(MAIL_DOMAIN)
    hook = entra_hook_for(graph_server, tenant)
    anchors = {sam: anchor_of(guid) for sam, (guid, _) in ad_anchors(dc, ADOPT_OU).items()}
    seeded = seed_tenant(
        graph_server,
        tenant,
        [
            cloud_user("dora", f"dora@{MAIL_DOMAIN}"),  # the same UPN
            cloud_user("eli", f"eli.cloud@{MAIL_DOMAIN}", mail=f"eli@{MAIL_DOMAIN}"),  # the same mail
            cloud_user("finn", f"finn.old@{MAIL_DOMAIN}", onPremisesImmutableId=anchors["finn"]),  # Entra Connect's
            cloud_user("gus", f"gus@{MAIL_DOMAIN}", onPremisesImmutableId=anchors["gus"], onPremisesSyncEnabled=True),
            cloud_user("hal", f"hal@{MAIL_DOMAIN}", onPremisesImmutableId=anchor_of(uuid.uuid4().bytes)),
            cloud_user("only", f"cloud.only@{MAIL_DOMAIN}"),
        ],
    )
    ids = {user["displayName"].removeprefix("Cloud "): user["id"] for user in seeded}

    # the preflight, after the imports and the AD sync, before any write
    rules = load_sync_rules()
    assert run_ad_import(hook_for(dc, base_dn=f"{ADOPT_OU},{dc.base_dn}"), store, mode="full")["result"] == "success"
    assert import_entra(hook, store, connector="entra", mode="full").result == "success"
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    rows = {row.user_principal_name.split("@")[0]: row for row in preflight(store)}
    assert {sam: (row.outcome, row.matched_on, row.cloud_id) for sam, row in rows.items()} == {
        "dora": ("soft match", "userPrincipalName", ids["dora"]),
        "eli": ("soft match", "mail", ids["eli"]),
        "finn": ("hard match", "onPremisesImmutableId", ids["finn"]),
        "gus": ("conflict", "onPremisesImmutableId", ids["gus"]),
        "hal": ("conflict", "userPrincipalName", ids["hal"]),
        "ivy": ("create", "", ""),
    }
    assert "another engine" in rows["gus"].conflict and "another ImmutableId" in rows["hal"].conflict

    # the full cycle: matched users joined and updated, one create, the conflicts per-object errors
    synced = run_sync(store, rules, connector="entra", mode="full")
    assert synced.result == "completed-sync-errors"
    assert {e["code"] for e in store.run_errors(synced.run_id)} == {"anchor-mismatch", "held-by-other-engine"}
    assert run_ad_export(store, hook_for(dc)).result == "success"
    exported = run_entra_export(store, hook)
    assert exported.result in ("success", "completed-export-errors"), store.run_errors(exported.run_id)
    assert exported.counters["user_creates"] == 1
    select = "id,userPrincipalName,onPremisesImmutableId"
    after = {u["id"]: u for page in hook.paginate("/users", params={"$select": select}) for u in page["value"]}
    assert set(ids.values()) <= set(after) and len(after) == len(ids) + 1  # ivy alone was created
    for sam in ("dora", "eli", "finn"):  # pre-existing object ids kept, now holding the AD user's anchor
        assert after[ids[sam]]["onPremisesImmutableId"] == anchors[sam]
    assert after[ids["hal"]]["onPremisesImmutableId"] != anchors["hal"]  # never overwritten
    (created,) = set(after) - set(ids.values())
    assert after[created]["userPrincipalName"] == f"ivy@{MAIL_DOMAIN}"
    assert after[created]["onPremisesImmutableId"] == anchors["ivy"]
