"""Directory extensions end to end (issues 15 and 17): a seeded Samba DC and a Graph emulator tenant that already
holds two of the DC's groups, one a security group stamped with its anchor in the sync app's extension, the other a
mail-enabled security group with the same SMTP address. After the setup step (register-extensions) and a full cycle
through the engine's steps, no group is duplicated and the pre-existing object ids are kept; the security group gets
the AD members, and every exported group and user carries its anchor. The mail-enabled group is joined but read-only
in Graph (the emulator refuses every write to it, as Graph does): nothing is sent to it, neither the stamp nor the
name nor the members, one run notice counts it, and its plan rows are settled. The AD attribute the admin chose
(employeeNumber) lands on users as extension_<appId>_employeeNumber, read back by the confirming import with nothing
left to write."""

from __future__ import annotations

import base64

import httpx
import ldap3
import pytest
import sqlalchemy as sa

from aadsync_devkit.world.samba import SambaDC
from aadsync_devkit.world.seed import MAIL_DOMAIN
from airflow_provider_aadsync.engine.connectors.entra.extensions import register_extensions
from airflow_provider_aadsync.engine.connectors.entra.planning import MAIL_GROUP_WRITE
from airflow_provider_aadsync.engine.runs.preflight import HARD, READ_ONLY_IN_GRAPH, SOFT, group_preflight
from airflow_provider_aadsync.engine.store import OPEN_STATES, READ_ONLY, pending_export
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from airflow_provider_aadsync.steps import (
    entra_export_settings,
    export_to_entra,
    needed_extensions_of,
    run_ad_import,
    run_entra_import,
)
from tests.support.servers import entra_hook_for, hook_for, trust

pytestmark = pytest.mark.integration

USERS, GROUPS = 60, 2  # the seed test_user_attributes_entra.py uses: its cached DC data is restored, not rebuilt


@pytest.fixture(scope="module")
def dc(start_dc) -> SambaDC:
    return start_dc(users=USERS, groups=GROUPS)


def first(value):
    return value[0] if isinstance(value, list) else value


def ad_groups_and_numbered_users(dc: SambaDC) -> tuple[dict[str, dict], dict[str, str]]:
    """The seeded groups (name → anchor, mail, member DNs) and, after giving five users an employeeNumber,
    userPrincipalName → employeeNumber."""
    conn = dc.connect()
    try:
        root = f"OU=AADSync,{dc.base_dn}"
        conn.search(f"OU=Users,{root}", "(objectClass=user)", ldap3.SUBTREE, attributes=["userPrincipalName"])
        users = sorted(
            (e["dn"], first(e["attributes"]["userPrincipalName"]))
            for e in conn.response
            if e["type"] == "searchResEntry"
        )
        numbers = {}
        for n, (dn, upn) in enumerate(users[:5]):
            assert conn.modify(dn, {"employeeNumber": [(ldap3.MODIFY_REPLACE, [f"E-{n:05d}"])]}), conn.result
            numbers[upn] = f"E-{n:05d}"
        conn.search(f"OU=Groups,{root}", "(objectClass=group)", ldap3.SUBTREE, attributes=["cn"])
        names = sorted((first(e["attributes"]["cn"]), e["dn"]) for e in conn.response if e["type"] == "searchResEntry")
        # the second group gets mail, so it is mail-enabled and soft matched on its SMTP address (the seeded security
        # groups carry none)
        smtp_cn, smtp_dn = names[1]
        assert conn.modify(smtp_dn, {"mail": [(ldap3.MODIFY_REPLACE, [f"{smtp_cn.lower()}@{MAIL_DOMAIN}"])]}), (
            conn.result
        )
        conn.search(
            f"OU=Groups,{root}", "(objectClass=group)", ldap3.SUBTREE, attributes=["cn", "mail", "objectGUID", "member"]
        )
        groups = {
            first(e["attributes"]["cn"]): {
                "anchor": base64.b64encode(e["raw_attributes"]["objectGUID"][0]).decode(),
                "mail": first(e["attributes"].get("mail") or [None]),
                "members": {dn.lower() for dn in e["attributes"]["member"]},
            }
            for e in conn.response
            if e["type"] == "searchResEntry"
        }
        return groups, numbers
    finally:
        conn.unbind()


def graph_groups(hook, anchor: str) -> dict[str, dict]:
    select = f"id,displayName,mail,{anchor}"
    return {g["id"]: g for page in hook.paginate("/groups", params={"$select": select}) for g in page["value"]}


def member_upns(hook, group_id: str) -> set[str]:
    pages = hook.paginate(f"/groups/{group_id}/members", params={"$select": "id,userPrincipalName", "$top": "999"})
    return {m["userPrincipalName"].lower() for page in pages for m in page["value"] if m.get("userPrincipalName")}


def test_existing_groups_are_adopted_by_anchor_and_smtp_and_chosen_attributes_land(
    dc, graph_server, tenant_verifying, store
):
    tenant = tenant_verifying(MAIL_DOMAIN)
    hook = entra_hook_for(graph_server, tenant)
    key = hook.application_id.replace("-", "")
    anchor_name, number_name = f"extension_{key}_aadsyncSourceAnchor", f"extension_{key}_employeeNumber"
    rules = load_sync_rules(directory_extensions="employeeNumber")

    # the setup step (what `aadsync register-extensions --directory-extension employeeNumber` runs), twice
    registration = register_extensions(hook, hook.application_id, needed_extensions_of(rules))
    assert sorted(registration.created) == sorted([anchor_name, number_name]) and not registration.problems
    assert register_extensions(hook, hook.application_id, needed_extensions_of(rules)).created == []

    groups, numbers = ad_groups_and_numbered_users(dc)
    (stamped_cn, stamped), (smtp_cn, smtp) = sorted(groups.items())
    seeded = httpx.post(
        f"{graph_server.base_url}/_emulator/tenants/{tenant['id']}/objects",
        json=[
            {
                "@odata.type": "#microsoft.graph.group",
                "displayName": "Created by the lost store",
                "mailEnabled": False,
                "mailNickname": "lost",
                "securityEnabled": True,
                anchor_name: stamped["anchor"],
            },
            {
                "@odata.type": "#microsoft.graph.group",
                "displayName": "Mail group made by hand",
                "mailEnabled": True,
                "mailNickname": "byhand",
                "securityEnabled": True,
                "mail": smtp["mail"].upper(),
                "proxyAddresses": [f"SMTP:{smtp['mail']}"],
            },
        ],  # fmt: skip
        verify=trust(graph_server),
    )
    assert seeded.status_code == 201, seeded.text
    stamped_id, smtp_id = (item["id"] for item in seeded.json()["value"])

    assert run_ad_import(hook_for(dc), store, mode="full", rules=rules)["result"] == "success"
    imported = run_entra_import(hook, store, mode="full", rules=rules)
    assert imported["result"] == "success" and imported["directory_extensions"]["registered"]
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    preflight = {row.ad_dn.split(",")[0][3:]: row for row in group_preflight(store)}
    assert (preflight[stamped_cn].outcome, preflight[stamped_cn].cloud_id) == (HARD, stamped_id)
    assert (preflight[smtp_cn].outcome, preflight[smtp_cn].cloud_id) == (SOFT, smtp_id)
    assert preflight[smtp_cn].note == READ_ONLY_IN_GRAPH and not preflight[stamped_cn].note
    synced = run_sync(store, rules, connector="entra", mode="full")
    assert synced.result == "success", [(e["code"], e["message"]) for e in store.run_errors(synced.run_id)][:5]
    exported = export_to_entra(hook, store, settings=entra_export_settings())
    assert exported["result"] == "success" and exported["counters"]["errors"] == 0, exported
    notices = {n["subject"]: n for n in store.run_notices(exported["run_id"])}
    assert notices[MAIL_GROUP_WRITE]["count"] == 1  # one notice, not one Graph error per write
    assert notices[MAIL_GROUP_WRITE]["examples"][0]["dn"].split(",")[0] == f"CN={smtp_cn}"

    in_graph = graph_groups(hook, anchor_name)
    assert len(in_graph) == GROUPS  # adopted, not duplicated
    assert in_graph[stamped_id][anchor_name] == stamped["anchor"]
    # joined, never written: Graph keeps mail-enabled groups read-only (managed in Exchange Online)
    assert in_graph[smtp_id].get(anchor_name) is None and in_graph[smtp_id]["displayName"] == "Mail group made by hand"
    assert member_upns(hook, smtp_id) == set() and smtp["members"]
    conn = dc.connect()
    try:
        for group_id, group in ((stamped_id, stamped),):
            wanted = set()
            for dn in group["members"]:
                conn.search(dn, "(objectClass=user)", ldap3.BASE, attributes=["userPrincipalName"])
                wanted |= {
                    first(e["attributes"]["userPrincipalName"]).lower()
                    for e in conn.response
                    if e["type"] == "searchResEntry"
                }
            assert wanted and member_upns(hook, group_id) == wanted
    finally:
        conn.unbind()
    users = {
        u["userPrincipalName"]: u
        for page in hook.paginate(
            "/users", params={"$select": f"userPrincipalName,{anchor_name},{number_name}", "$top": "999"}
        )
        for u in page["value"]
    }
    assert len(users) == USERS and all(u[anchor_name] for u in users.values())
    assert {upn: u[number_name] for upn, u in users.items() if u.get(number_name)} == numbers

    # the confirming import reads the extensions back: nothing is left to write
    assert run_entra_import(hook, store, mode="delta", rules=rules)["result"] == "success"
    assert run_sync(store, rules, connector="entra", mode="delta").result == "success"
    with store.engine.connect() as connection:
        entra_plan = sa.select(pending_export.c.anchor, pending_export.c.state).where(
            pending_export.c.connector == "entra"
        )
        plan = dict(connection.execute(entra_plan).all())  # (AD holds the ConsistencyGuid writeback's updates)
    assert plan == {smtp_id: READ_ONLY} and READ_ONLY not in OPEN_STATES  # settled, never resent
