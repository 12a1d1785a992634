"""Group writeback end to end: Microsoft 365 groups created in the Graph emulator, imported and synchronized, written
to a real AD (Samba) by the AD export, read back from AD with ranged retrieval."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from aadsync_devkit.world.samba import SambaDC
from aadsync_devkit.world.seed import DEV_WRITEBACK_OU, MAIL_DOMAIN
from airflow_provider_aadsync.engine.connectors.ad.writer import ADExportSettings, run_ad_export
from airflow_provider_aadsync.engine.connectors.config import ADConnectorConfig
from airflow_provider_aadsync.engine.connectors.entra.reader import import_entra
from airflow_provider_aadsync.engine.connectors.entra.writer import run_entra_export
from airflow_provider_aadsync.engine.store import Store, cs_object, cs_reference, link, pending_export
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from airflow_provider_aadsync.hooks.active_directory import ActiveDirectoryHook
from airflow_provider_aadsync.steps import run_ad_import, run_entra_import
from tests.support.plans import cs_row, open_plan, plan_references, plan_row
from tests.support.servers import entra_hook_for, hook_for
from tests.support.stores import fresh_store
from tests.support.writeback import WRITEBACK_ON, m365_group, members_in_ad, written_back

#: Group writeback is opt-in: these tests turn it on, into the dev DC's writeback OU.

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dc(start_dc) -> SambaDC:
    dc = start_dc(users=200, groups=10, group_size=150)
    conn = hook_for(dc).get_conn()
    conn.add(DEV_WRITEBACK_OU, "organizationalUnit")
    return dc


@pytest.fixture
def world(dc, graph_server, tenant_verifying, store):
    """AD exported to a fresh tenant; returns (graph hook, AD hook, rules, the Entra ids of AD users)."""
    rules = load_sync_rules(**WRITEBACK_ON)
    graph = entra_hook_for(graph_server, tenant_verifying(MAIL_DOMAIN))
    ad = hook_for(dc)
    assert run_ad_import(ad, store, mode="full")["result"] == "success"
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    assert run_entra_export(store, graph).result == "success"
    with store.engine.connect() as connection:
        pairs = connection.execute(
            sa.select(link.c.anchor, sa.literal_column("ad_link.anchor"))
            .select_from(link.join(link.alias("ad_link"), sa.literal_column("ad_link.mv_id") == link.c.mv_id))
            .where(link.c.connector == "entra", sa.literal_column("ad_link.connector") == "ad")
        ).all()
    users = {entra: ad_guid for entra, ad_guid in pairs if _is_user(graph, entra)}
    return graph, ad, rules, users


def _is_user(graph, object_id: str) -> bool:
    return graph.request("GET", f"/directoryObjects/{object_id}").get("@odata.type") == "#microsoft.graph.user"


def cycle(
    store,
    graph,
    ad,
    rules,
    *,
    export: bool = True,
    settings: ADExportSettings | None = None,
    scope: ADConnectorConfig | None = None,
    ad_mode: str = "delta",
):
    """The product's cycle order: import AD (with the connector's ``scope``), import Entra, sync AD, sync Entra,
    (export Entra), export AD."""
    assert run_ad_import(ad, store, mode=ad_mode, scope=scope)["result"] == "success"
    assert run_entra_import(graph, store, mode="delta", rules=rules)["result"] == "success"  # the rules' properties
    ad_sync = run_sync(store, rules, connector="ad", mode="delta")
    entra_sync = run_sync(store, rules, connector="entra", mode="delta")
    if not export:
        return ad_sync, entra_sync, None
    return ad_sync, entra_sync, run_ad_export(store, ad, settings=settings)


def test_m365_group_written_back_with_members_then_delta_and_ad_edit_overwritten(store, world):
    graph, ad, rules, users = world
    entra_ids = sorted(users)
    cloud_only = graph.request(
        "POST",
        "/users",
        json={"accountEnabled": True, "displayName": "Cloud Only", "mailNickname": "cloudonly",
              "userPrincipalName": f"cloudonly@{MAIL_DOMAIN}",
              "passwordProfile": {"password": "Xy-12345678-aB!", "forceChangePasswordNextSignIn": True}},
    )["id"]  # fmt: skip
    group_id = m365_group(graph, "Project Falcon", [*entra_ids[:3], cloud_only])

    _ad_sync, entra_sync, export = cycle(store, graph, ad, rules)
    assert entra_sync.result == "success" and entra_sync.counters["references_pending"] == 1  # the cloud-only one
    assert export.result == "success", store.run_errors(export.run_id)
    assert export.counters["group_adds"] == 1 and export.counters["member_adds"] == 3
    guid, attrs = written_back(ad, group_id)
    assert attrs["groupType"] == [b"8"] and attrs["description"] == [b"Project Falcon team"]
    assert attrs["sAMAccountName"] == [f"Group_{group_id[-12:]}".encode()]
    assert sorted(members_in_ad(ad, guid)) == sorted(users[e] for e in entra_ids[:3])

    # the next cycle reads the group back from AD and has nothing to write
    _a, _e, again = cycle(store, graph, ad, rules)
    assert again.result == "success" and again.counters["ldap_writes"] == 0, again.counters

    # membership delta in the cloud: one removed, two added
    graph.request("DELETE", f"/groups/{group_id}/members/{entra_ids[0]}/$ref")
    urls = [graph.directory_object_url(m) for m in entra_ids[3:5]]
    graph.request("PATCH", f"/groups/{group_id}", json={"members@odata.bind": urls})
    _a, _e, delta = cycle(store, graph, ad, rules)
    assert delta.result == "success"
    assert (delta.counters["member_adds"], delta.counters["member_removes"]) == (2, 1)
    assert delta.counters["member_modify_operations"] == 2
    assert sorted(members_in_ad(ad, guid)) == sorted(users[e] for e in entra_ids[1:5])

    # an edit made in AD is overwritten by the next cycle: the cloud is the source of authority
    ad.modify_object(guid, {"description": ["edited in AD"]})
    ad.modify_references(guid, "member", add=[users[entra_ids[9]]])
    _a, _e, fixed = cycle(store, graph, ad, rules)
    assert fixed.result == "success" and fixed.counters["member_removes"] == 1
    _guid, attrs = written_back(ad, group_id)
    assert attrs["description"] == [b"Project Falcon team"]
    assert sorted(members_in_ad(ad, guid)) == sorted(users[e] for e in entra_ids[1:5])

    # a soft delete in the cloud (deletedItems, delta's @removed reason "changed") keeps the AD group, through a delta
    # and a full import (which reads deletedItems: the group is not in the delta round); a restore changes nothing
    graph.request("DELETE", f"/groups/{group_id}")
    _a, _e, kept = cycle(store, graph, ad, rules)
    assert kept.result == "success" and kept.counters["ldap_writes"] == 0, kept.counters
    assert import_entra(graph, store, connector="entra", mode="full").result == "success"
    run_sync(store, rules, connector="entra", mode="delta")
    assert run_ad_export(store, ad).counters["ldap_writes"] == 0
    assert sorted(members_in_ad(ad, guid)) == sorted(users[e] for e in entra_ids[1:5])
    graph.request("POST", f"/directory/deletedItems/{group_id}/restore")
    _a, _e, restored = cycle(store, graph, ad, rules)
    assert restored.counters["ldap_writes"] == 0, restored.counters

    # a hard delete (soft delete, then purged from deletedItems: reason "deleted") deletes it in AD
    graph.request("DELETE", f"/groups/{group_id}")
    cycle(store, graph, ad, rules)
    graph.request("DELETE", f"/directory/deletedItems/{group_id}")
    _a, _e, gone = cycle(store, graph, ad, rules)
    assert gone.result == "success" and gone.counters["group_deletes"] == 1
    assert ad.object_dn(guid) is None


def test_group_above_the_writeback_limit_is_an_error_until_the_limit_is_raised(store, world):
    graph, ad, _rules, users = world
    group_id = m365_group(graph, "Big Team", sorted(users)[:5])
    limited = load_sync_rules(**WRITEBACK_ON, writeback_size_limit=4)
    _a, entra_sync, export = cycle(store, graph, ad, limited)
    assert entra_sync.result == "completed-sync-errors"
    (error,) = store.run_errors(entra_sync.run_id)
    assert "Group writeback size limit exceeded: more than 4 members" in error["message"]
    assert export.counters.get("group_adds", 0) == 0
    with pytest.raises(ValueError, match="cannot be raised above 250,000"):
        load_sync_rules(**WRITEBACK_ON, writeback_size_limit=250_001)

    raised = load_sync_rules(**WRITEBACK_ON, writeback_size_limit=5)
    _a, entra_sync, export = cycle(store, graph, ad, raised)
    assert entra_sync.result == "success" and entra_sync.mode == "full"  # a changed limit re-evaluates every object
    assert export.counters["group_adds"] == 1 and export.counters["member_adds"] == 5
    guid, _attrs = written_back(ad, group_id)
    assert len(members_in_ad(ad, guid)) == 5


class Killed(BaseException):
    """Stands for the task being killed: not an Exception, so nothing in the export catches it."""


class KillAfter:
    """The real hook, killed right after the DC carried out the n-th write of a kind (its answer never recorded)."""

    def __init__(self, hook: ActiveDirectoryHook, kind: str, after: int):
        self.hook, self.kind, self.left = hook, kind, after
        self.counters = hook.counters

    def __getattr__(self, name):
        method = getattr(self.hook, name)
        if name != self.kind:
            return method

        def killed_after(*args, **kwargs):
            result = method(*args, **kwargs)
            self.left -= 1
            if self.left == 0:
                raise Killed
            return result

        return killed_after


@pytest.mark.parametrize("kind", ["add_object", "modify_references"])
def test_killed_and_retried_export_has_no_duplicates(store, world, kind):
    graph, ad, rules, users = world
    members = sorted(users)[:7]
    group_id = m365_group(graph, f"Resume {kind}", members)
    cycle(store, graph, ad, rules, export=False)
    settings = ADExportSettings(member_chunk=3)
    with pytest.raises(Killed):
        run_ad_export(store, KillAfter(ad, kind, 1 if kind == "add_object" else 2), settings=settings)
    with store.engine.connect() as connection:
        assert connection.execute(
            sa.select(sa.func.count()).where(pending_export.c.connector == "ad", pending_export.c.state == "sent")
        ).scalar() == (1 if kind == "add_object" else 0)
    retried = run_ad_export(store, ad, settings=settings)
    assert retried.result == "success", store.run_errors(retried.run_id)
    if kind == "add_object":
        assert retried.counters["adds_reconciled"] == 1
    guid, _attrs = written_back(ad, group_id)  # exactly one group
    in_ad = members_in_ad(ad, guid)
    assert len(in_ad) == len(set(in_ad)) == 7 and set(in_ad) == {users[m] for m in members}
    with store.engine.connect() as connection:
        recorded = connection.execute(
            sa.select(sa.func.count()).where(cs_reference.c.connector == "ad", cs_reference.c.anchor == guid)
        ).scalar()
    assert recorded == 7
    _a, _e, again = cycle(store, graph, ad, rules)
    assert again.counters["ldap_writes"] == 0, again.counters


def test_display_name_naming_fits_ad_limits_and_follows_a_cloud_rename(store, world):
    """Display-name naming: CN=<displayName (at most 51)>_<last 12 of the id>, escaped for the DN, renamed with it."""
    graph, ad, _rules, users = world
    rules = load_sync_rules(**WRITEBACK_ON, writeback_naming="displayName")
    name = '  R&D, Platform + Ops #1 = <Core> "Team"; with a display name longer than sixty-four characters  '
    group_id = m365_group(graph, name, sorted(users)[:2])
    _a, _e, export = cycle(store, graph, ad, rules)
    assert export.result == "success", store.run_errors(export.run_id)
    expected_cn = f"{name.strip()[:51]}_{group_id[-12:]}"
    assert len(expected_cn) == 64  # AD's CN limit, reached exactly
    conn = ad.get_conn()
    conn.search(DEV_WRITEBACK_OU, f"(adminDescription=Group_{group_id})",
                attributes=["cn", "sAMAccountName", "displayName", "member"])  # fmt: skip
    (entry,) = [e for e in conn.response if e["type"] == "searchResEntry"]
    assert _one(entry["attributes"]["cn"]) == expected_cn  # Samba took the escaped DN: the value reads back unescaped
    assert _one(entry["attributes"]["sAMAccountName"]) == f"Group_{group_id[-12:]}"  # 18 characters, under 20
    assert _one(entry["attributes"]["displayName"]) == name  # the attribute keeps the whole name
    assert len(entry["attributes"]["member"]) == 2

    graph.request("PATCH", f"/groups/{group_id}", json={"displayName": "Platform Ops"})
    _a, _e, renamed = cycle(store, graph, ad, rules)
    assert renamed.result == "success" and renamed.counters["group_renames"] == 1, renamed.counters
    conn = ad.get_conn()  # the cycle's import closed the hook's connection
    conn.search(DEV_WRITEBACK_OU, f"(adminDescription=Group_{group_id})", attributes=["cn", "member"])
    (entry,) = [e for e in conn.response if e["type"] == "searchResEntry"]
    assert _one(entry["attributes"]["cn"]) == f"Platform Ops_{group_id[-12:]}"
    assert len(entry["attributes"]["member"]) == 2
    _a, _e, again = cycle(store, graph, ad, rules)
    assert again.counters["ldap_writes"] == 0, again.counters


def _one(value):
    return value[0] if isinstance(value, list) else value


def test_deleted_cloud_group_moved_to_the_holding_ou_after_the_deletion_threshold_check(store, world):
    """deprovision="move": the written-back group (a CN with an escaped comma) goes to the holding OU with its members;
    the move counts against the deletion threshold like a delete."""
    graph, ad, _rules, users = world
    rules = load_sync_rules(**WRITEBACK_ON, writeback_naming="displayName")
    holding = DEV_WRITEBACK_OU.replace("OU=Writeback,", "OU=Holding,")
    conn = ad.get_conn()
    if not conn.add(holding, "organizationalUnit"):
        assert conn.result["description"] == "entryAlreadyExists", conn.result
    group_id = m365_group(graph, "Move, Me", sorted(users)[:2])
    assert cycle(store, graph, ad, rules)[2].result == "success"
    guid, _attrs = written_back(ad, group_id)

    graph.request("DELETE", f"/groups/{group_id}")
    graph.request("DELETE", f"/directory/deletedItems/{group_id}")  # a hard delete
    cycle(store, graph, ad, rules, export=False)
    move = {"deprovision": "move", "holding_ou": holding}
    stopped = run_ad_export(store, ad, settings=ADExportSettings(deletion_threshold=0, **move))
    assert stopped.result == "stopped-deletion-threshold-exceeded" and stopped.counters["planned_deletes"] == 1
    assert ad.object_dn(guid).endswith(DEV_WRITEBACK_OU)  # nothing was written

    moved = run_ad_export(store, ad, settings=ADExportSettings(deletion_threshold=1, **move))
    assert moved.result == "success" and moved.counters["group_moves_to_holding"] == 1, moved.counters
    assert ad.object_dn(guid) == f"CN=Move\\, Me_{group_id[-12:]},{holding}"
    assert len(members_in_ad(ad, guid)) == 2


def test_an_object_we_did_not_create_at_the_target_dn_is_never_adopted_nor_written(store, world):
    """Resume adopts only what carries our mark: a group someone else put at the writeback DN (unmarked, or marked for
    another cloud group) is a per-object error naming it, in the crash state ("sent") and on a plain retry; it keeps
    its attributes and gets no members, no second group is created, and the run goes on."""
    graph, ad, rules, users = world
    group_id = m365_group(graph, "Taken Name", sorted(users)[:2])
    other_id = m365_group(graph, "Goes Through", sorted(users)[2:4])
    cycle(store, graph, ad, rules, export=False)  # both adds staged
    dn = f"CN=Group_{group_id},{DEV_WRITEBACK_OU}"
    conn = ad.get_conn()
    assert conn.add(dn, "group", {"description": "made by hand", "sAMAccountName": "handmade-7"}), conn.result
    foreign = ad.object_guid(dn)
    with store.transaction() as connection:  # as an interrupted export leaves its adds
        connection.execute(
            sa.update(pending_export)
            .where(pending_export.c.connector == "ad", pending_export.c.operation == "add")
            .values(state="sent")
        )

    def refused(export) -> dict:
        assert export.result == "completed-export-errors", export
        (error,) = [e for e in store.run_errors(export.run_id) if e["code"] == "not-adopted"]
        assert "an object we did not create holds this name; not adopted" in error["message"], error
        assert dn in error["message"] and foreign in error["message"]
        assert export.counters["adds_not_adopted"] == 1
        conn = ad.get_conn()
        names = f"(|(cn=Group_{group_id})(cn=Group_{other_id})(displayName=Taken Name))"
        conn.search(DEV_WRITEBACK_OU, names, attributes=["cn", "description", "member", "adminDescription"])
        entries = [e for e in conn.response if e["type"] == "searchResEntry"]
        found = {_one(e["attributes"]["cn"]): e["raw_attributes"] for e in entries}
        assert len(entries) == 2 and set(found) == {f"Group_{group_id}", f"Group_{other_id}"}  # none beside it
        assert found[f"Group_{group_id}"]["description"] == [b"made by hand"]  # never overwritten
        assert not found[f"Group_{group_id}"].get("member")
        return found[f"Group_{group_id}"]

    first = run_ad_export(store, ad)
    assert first.counters["group_adds"] == 1  # the other group is written: the run goes on
    assert first.counters.get("adds_reconciled", 0) == 0
    assert not refused(first).get("adminDescription")
    ad.modify_object(foreign, {"adminDescription": [f"Group_{other_id}"]})  # a mark, but not this group's
    retried = run_ad_export(store, ad)  # the row is failed now: a plain add meets entryAlreadyExists
    assert refused(retried)["adminDescription"] == [f"Group_{other_id}".encode()]
    assert retried.counters["ldap_writes"] == 1, retried.counters  # the refused add, nothing else
    assert ad.object_guid(dn) == foreign


def test_a_rebuilt_store_rejoins_the_written_back_group_and_writes_nothing_to_ad(store, world, tmp_path):
    """The store lost (or a second instance): a full cycle on a new store finds the AD group an earlier export wrote
    by its writeback mark (adminDescription) and joins it instead of adding a second; AD gets no write, and a later
    cloud change reaches the same AD group."""
    graph, ad, rules, users = world
    members = sorted(users)[:3]
    group_id = m365_group(graph, "Rebuilt Team", members)
    assert cycle(store, graph, ad, rules)[2].counters["group_adds"] == 1
    guid, _attrs = written_back(ad, group_id)

    with Store.open(f"sqlite:///{tmp_path / 'rebuilt.sqlite'}", instance="rebuilt") as rebuilt:
        assert run_ad_import(ad, rebuilt, mode="full")["result"] == "success"
        assert import_entra(graph, rebuilt, connector="entra", mode="full").result == "success"
        assert run_sync(rebuilt, rules, connector="ad", mode="full").result == "success"
        entra_sync = run_sync(rebuilt, rules, connector="entra", mode="full")
        assert entra_sync.result == "success" and entra_sync.counters["rejoined"] == 1, entra_sync.counters
        export = run_ad_export(rebuilt, ad)
        assert export.result == "success" and export.counters["ldap_writes"] == 0, export.counters
        with rebuilt.engine.connect() as connection:
            assert (
                connection.execute(
                    sa.select(link.c.link_type).where(link.c.connector == "ad", link.c.anchor == guid)
                ).scalar()
                == "provision"
            )  # a provision link: a hard delete in the cloud still removes it

        graph.request("PATCH", f"/groups/{group_id}", json={"description": "after the rebuild"})
        _a, _e, changed = cycle(rebuilt, graph, ad, rules)
        assert changed.result == "success" and changed.counters["ldap_writes"] == 1, changed.counters
    assert written_back(ad, group_id) == (guid, {**_attrs, "description": [b"after the rebuild"]})
    assert sorted(members_in_ad(ad, guid)) == sorted(users[m] for m in members)


def test_a_group_whose_writeback_is_disabled_is_not_written_back_and_a_written_back_one_stays_until_hard_deleted(
    store, world
):
    """writebackConfiguration.isEnabled (Graph beta) false: the group is not written back; set to true it is. Set back
    to false, its AD group stays, unchanged by cloud edits, as Microsoft documents the default ("Groups that have been
    written back won't be deleted in Active Directory if they're disabled for writeback or soft deleted. They'll
    remain in Active Directory until they're hard deleted in Microsoft Entra ID"); enabled again, the same AD group
    gets the edits; disabled and hard deleted, it goes. Null (never configured) is Graph's default: enabled."""
    graph, ad, rules, users = world
    group_id = m365_group(graph, "Private Team", sorted(users)[:2])
    beta = f"{graph.settings.endpoints.graph_url}/beta/groups/{group_id}"
    graph.request("PATCH", beta, json={"writebackConfiguration": {"isEnabled": False}})
    _a, _e, export = cycle(store, graph, ad, rules)
    assert export.result == "success" and export.counters.get("group_adds", 0) == 0, export.counters
    conn = ad.get_conn()
    conn.search(DEV_WRITEBACK_OU, f"(adminDescription=Group_{group_id})", attributes=["cn"])
    assert not [e for e in conn.response if e["type"] == "searchResEntry"]

    graph.request("PATCH", beta, json={"writebackConfiguration": {"isEnabled": True}})
    _a, _e, enabled = cycle(store, graph, ad, rules)  # a delta: v1.0 delta does not report the switch
    assert enabled.counters["group_adds"] == 1, enabled.counters
    guid, _attrs = written_back(ad, group_id)
    graph.request("PATCH", beta, json={"writebackConfiguration": {"isEnabled": False}})
    graph.request("PATCH", f"/groups/{group_id}", json={"description": "edited while disabled"})
    _a, _e, disabled = cycle(store, graph, ad, rules)
    assert disabled.result == "success" and disabled.counters["ldap_writes"] == 0, disabled.counters
    assert written_back(ad, group_id) == (guid, _attrs)  # still in AD, as it was
    # a full cycle too (its import reads the switch as the DAGs' does: with the rules' properties)
    assert run_entra_import(graph, store, mode="full", rules=rules)["result"] == "success"
    assert run_sync(store, rules, connector="entra", mode="full").result == "success"
    assert run_ad_export(store, ad).counters["ldap_writes"] == 0
    assert written_back(ad, group_id) == (guid, _attrs)

    graph.request("PATCH", beta, json={"writebackConfiguration": {"isEnabled": True}})
    _a, _e, enabled_again = cycle(store, graph, ad, rules)
    assert enabled_again.counters["ldap_writes"] == 1 and enabled_again.counters.get("group_adds", 0) == 0
    assert written_back(ad, group_id) == (guid, {**_attrs, "description": [b"edited while disabled"]})

    graph.request("PATCH", beta, json={"writebackConfiguration": {"isEnabled": False}})
    cycle(store, graph, ad, rules)
    graph.request("DELETE", f"/groups/{group_id}")  # soft deleted: still kept
    _a, _e, soft = cycle(store, graph, ad, rules)
    assert soft.counters["ldap_writes"] == 0 and ad.object_dn(guid) is not None, soft.counters
    graph.request("DELETE", f"/directory/deletedItems/{group_id}")  # hard deleted
    _a, _e, gone = cycle(store, graph, ad, rules)
    assert gone.result == "success" and gone.counters["group_deletes"] == 1, gone.counters
    assert ad.object_dn(guid) is None


# ------------------------------------------------------------------------------- the DC's answers to edge cases


def test_a_writeback_group_is_renamed_to_a_cn_ending_in_an_escaped_character(dc):
    """ldap3's ``to_dn`` split such a DN wrongly and Samba refused the rename (namingViolation) on every run."""
    ad = hook_for(dc)
    for cn in ("Back\\\\", "Trail\\ "):
        group = ad.add_object(f"CN={cn},{DEV_WRITEBACK_OU}", "group", {"groupType": ["8"]})
        ad.move_object(group, f"CN=Moved{cn},{DEV_WRITEBACK_OU}")
        assert ad.object_dn(group).startswith(f"CN=Moved{cn},OU=Writeback")
        ad.delete_object(group)


def _members(ad: ActiveDirectoryHook, group: str) -> set[str]:
    """The group's members as GUIDs (the hook reads extended DNs: ``<GUID=...>;<SID=...>;CN=...``)."""
    return {value.decode().split(";")[0][6:-1].lower() for value in ad.read_values(group, "member")}


def test_a_member_deleted_since_the_import_fails_alone_and_its_removal_is_done(dc, tmp_path):
    """Samba refuses a whole member modify naming a missing object (an add: noSuchObject, a remove:
    invalidAttributeSyntax); the chunk is halved until only the missing member fails."""
    ad = hook_for(dc)
    dn = f"CN=Probe,{DEV_WRITEBACK_OU}"
    group = ad.add_object(dn, "group", {"groupType": ["8"]})
    users = [str(uuid.UUID(bytes_le=raw["objectGUID"][0])) for _dn, raw in ad.find_objects("objectClass", "user")][:6]
    missing = str(uuid.uuid4())
    (tmp_path / "add").mkdir()
    (tmp_path / "remove").mkdir()
    with fresh_store(tmp_path / "add") as store:
        cs_row(store, "ad", group, dn, attrs={"objectGUID": [group]})
        plan_row(store, "ad", group, dn, operation="update")
        plan_references(store, "ad", group, "member", [*users[:4], missing])
        result = run_ad_export(store, ad, settings=ADExportSettings(), lock_holder="t")
        (error,) = store.run_errors(result.run_id)
        assert error["code"] == "noSuchObject" and missing in error["message"]
        assert _members(ad, group) == set(users[:4])
        assert open_plan(store, "ad")[1] == 1
    with fresh_store(tmp_path / "remove") as store:
        cs_row(store, "ad", group, dn, attrs={"objectGUID": [group]}, members=users[:4])
        plan_row(store, "ad", group, dn, operation="update")
        plan_references(store, "ad", group, "member", [users[0], missing], operation="remove")
        result = run_ad_export(store, ad, settings=ADExportSettings(), lock_holder="t")
        assert result.result == "success", store.run_errors(result.run_id)
        assert _members(ad, group) == set(users[1:4])
    ad.delete_object(group)


def test_a_pilot_group_never_drops_the_groups_written_back(dc, graph_server, tenant_verifying, store):
    """Group-based filtering scopes what syncs in from AD, not what sync wrote: a group written back is no member of
    the pilot group, yet delta and full imports keep it in the connector space and the next cycles write nothing to
    AD (each import deleted it, and each export wrote it again)."""
    ad = hook_for(dc)
    pilot = f"CN=Writeback Pilot,OU=AADSync,{dc.base_dn}"
    account = dc.connect()
    try:
        account.search(f"OU=Users,OU=AADSync,{dc.base_dn}", "(objectClass=user)", attributes=["cn"])
        pilot_users = [entry["dn"] for entry in account.response if entry["type"] == "searchResEntry"][:3]
        attrs = {"sAMAccountName": "WritebackPilot", "groupType": -2147483646, "member": pilot_users}
        assert account.add(pilot, ["top", "group"], attrs), account.result
    finally:
        account.unbind()
    try:
        scope = ADConnectorConfig(name="ad", conn_id="aadsync_ad", pilot_group=pilot)
        rules = load_sync_rules(**WRITEBACK_ON)
        graph = entra_hook_for(graph_server, tenant_verifying(MAIL_DOMAIN))
        assert run_ad_import(ad, store, mode="full", scope=scope)["result"] == "success"
        assert run_sync(store, rules, connector="ad", mode="full").result == "success"
        assert run_entra_export(store, graph).result == "success"
        cloud_users = [user["id"] for page in graph.paginate("/users") for user in page["value"]]
        assert len(cloud_users) == len(pilot_users) == 3  # the pilot's users only
        group_id = m365_group(graph, "Pilot Falcon", cloud_users)
        export = cycle(store, graph, ad, rules, scope=scope)[2]
        assert export.result == "success" and export.counters["group_adds"] == 1, export.counters
        guid, _attrs = written_back(ad, group_id)
        for ad_mode in ("delta", "full", "delta"):
            again = cycle(store, graph, ad, rules, scope=scope, ad_mode=ad_mode)[2]
            assert again.result == "success" and again.counters["ldap_writes"] == 0, (ad_mode, again.counters)
            with store.engine.connect() as connection:
                deleted = connection.execute(
                    sa.select(cs_object.c.is_deleted).where(cs_object.c.connector == "ad", cs_object.c.anchor == guid)
                ).scalar_one()
            assert deleted is False, ad_mode  # alive in the connector space
        assert written_back(ad, group_id)[0] == guid  # the one group, never a second
    finally:  # the module's other tests import the whole DC: the pilot group goes
        account = dc.connect()
        try:
            assert account.delete(pilot), account.result
        finally:
            account.unbind()
