"""Export guards against the real servers: a mass delete, a mass disable, a mass member removal (in total, or more
than half of one group), a mass manager clear and a mass sign-in name change stop the export before its first write,
with the emulator's write counters and the AD contents as proof that nothing was written; a confirmed run then applies
them, and a confirmation by exact count lets through no larger plan.
A user whose userAccountControl is missing keeps its cloud account as it is. Group writeback's member removals are
guarded the same way against Samba."""

from __future__ import annotations

import json

import httpx
import pytest
import sqlalchemy as sa

from aadsync_devkit.world.seed import MAIL_DOMAIN
from airflow_provider_aadsync.engine.connectors.ad.writer import ADExportSettings, run_ad_export
from airflow_provider_aadsync.engine.connectors.entra.reader import import_entra
from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings, run_entra_export
from airflow_provider_aadsync.engine.report import render_runs
from airflow_provider_aadsync.engine.runs.export_guards import (
    STOPPED_DELETES,
    STOPPED_DISABLES,
    STOPPED_IDENTITY_CHANGES,
    STOPPED_MEMBER_REMOVALS,
    count_mass_changes,
)
from airflow_provider_aadsync.engine.store import cs_object
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from airflow_provider_aadsync.steps import run_ad_import
from tests.support.graph import graph_groups, graph_managers, graph_members, graph_users
from tests.support.servers import entra_hook_for, hook_for, trust
from tests.support.world import ad_group, ad_user, deleted, guid, immutable_id, import_delta, import_full
from tests.support.writeback import WRITEBACK_ON, m365_group, members_in_ad, written_back

pytestmark = pytest.mark.integration

DOMAIN = "corp.example"


@pytest.fixture(scope="module")
def rules():
    return load_sync_rules()


def graph_writes(server) -> int:
    """Write requests the emulator has answered (every tenant; a ``$batch`` counts once plus once per item)."""
    counters = httpx.get(f"{server.base_url}/_emulator/counters", verify=trust(server)).json()
    return sum(
        count
        for route, count in counters["requests"].items()
        if route.split(" ", 1)[0] in ("POST", "PATCH", "PUT", "DELETE") and not route.endswith("/token")
    )


def exported_world(store, hook, rules, objects) -> None:
    """AD objects exported to the tenant and confirmed by the next import and sync, as after a first cycle."""
    import_full(store, "ad", objects)
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    first = run_entra_export(store, hook)
    assert first.result == "success", store.run_errors(first.run_id)
    confirm(store, hook, rules)


def confirm(store, hook, rules) -> None:
    assert import_entra(hook, store, connector="entra", mode="delta").result == "success"
    assert run_sync(store, rules, connector="entra", mode="delta").result == "success"


def test_mass_disable_stops_before_any_write_then_a_confirmed_run_applies_it(graph_server, tenant_verifying, store,
                                                                              rules):  # fmt: skip
    hook = entra_hook_for(graph_server, tenant_verifying(DOMAIN))
    exported_world(store, hook, rules, [ad_user(n) for n in range(1, 13)])
    assert all(user["accountEnabled"] for user in graph_users(hook).values())

    import_delta(store, "ad", [ad_user(n, disabled=True) for n in range(1, 9)])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    writes = graph_writes(graph_server)
    stopped = run_entra_export(store, hook, settings=ExportSettings(disable_threshold=7))
    assert stopped.result == STOPPED_DISABLES
    assert stopped.detail.startswith("8 accounts would be disabled") and "disable threshold of 7" in stopped.detail
    assert f"`aadsync export-entra --instance test --store {store.url} --disable-threshold 8`" in stopped.detail
    assert graph_writes(graph_server) == writes, "a guard stop wrote to the tenant"
    assert all(user["accountEnabled"] for user in graph_users(hook).values())
    assert "disables 8 of 7 (exceeded)" in render_runs(store, [stopped.run_id])

    confirmed = run_entra_export(store, hook, settings=ExportSettings(disable_threshold=8))
    assert confirmed.result == "success" and confirmed.counters["user_updates"] == 8
    enabled = {anchor: user["accountEnabled"] for anchor, user in graph_users(hook).items()}
    assert enabled == {immutable_id(guid(n)): n > 8 for n in range(1, 13)}


def test_a_mass_delete_goes_through_only_with_its_exact_count_confirmed(graph_server, tenant_verifying, store, rules):
    """The DAG run that confirmed 8 deletes, cleared after one more user left: its confirmation lets nothing through
    (a raised threshold of 8 would have let any 8 or fewer through; this one, once more, stops)."""
    hook = entra_hook_for(graph_server, tenant_verifying(DOMAIN))
    exported_world(store, hook, rules, [ad_user(n) for n in range(1, 21)])
    everyone = set(graph_users(hook))
    assert everyone == {immutable_id(guid(n)) for n in range(1, 21)}

    def delete(users: range) -> None:
        import_delta(store, "ad", [deleted(guid(n)) for n in users])
        assert run_sync(store, rules, connector="ad", mode="delta").result == "success"

    delete(range(1, 9))
    writes = graph_writes(graph_server)
    stopped = run_entra_export(store, hook, settings=ExportSettings(deletion_threshold=5))
    assert stopped.result == STOPPED_DELETES and stopped.detail.startswith("8 deletes are pending"), stopped.detail
    assert "`confirm_mass_change` = `deletes=8`" in stopped.detail
    assert (
        f"`aadsync export-entra --instance test --store {store.url} --confirm-mass-change deletes=8`" in stopped.detail
    )
    assert graph_writes(graph_server) == writes, "a guard stop wrote to the tenant"

    delete(range(9, 10))  # the plan grows by one: the confirmation of 8 no longer fits it
    stale = run_entra_export(
        store, hook, settings=ExportSettings(deletion_threshold=5, confirm_mass_change="deletes=8")
    )
    assert stale.result == STOPPED_DELETES, stale.detail
    assert "This run confirmed deletes=8, but 9 are pending now" in stale.detail
    assert graph_writes(graph_server) == writes, "a stale confirmation wrote to the tenant"
    assert set(graph_users(hook)) == everyone
    assert "deletes 9 of 5 (exceeded; confirmed 8)" in render_runs(store, [stale.run_id])

    confirmed = run_entra_export(
        store, hook, settings=ExportSettings(deletion_threshold=5, confirm_mass_change="deletes=9")
    )
    assert confirmed.result == "success" and confirmed.counters["user_deletes"] == 9, store.run_errors(confirmed.run_id)
    assert confirmed.detail == "mass change confirmed for this run: deletes=9 (over its threshold)"
    assert set(graph_users(hook)) == {immutable_id(guid(n)) for n in range(10, 21)}


def test_mass_sign_in_name_change_stops_before_any_write_then_a_confirmed_run_applies_it(graph_server,
                                                                                         tenant_verifying, store,
                                                                                         rules):  # fmt: skip
    hook = entra_hook_for(graph_server, tenant_verifying(DOMAIN))
    exported_world(store, hook, rules, [ad_user(n) for n in range(1, 13)])

    import_delta(store, "ad", [ad_user(n, userPrincipalName=f"renamed{n}@{DOMAIN}") for n in range(1, 10)])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    writes = graph_writes(graph_server)
    stopped = run_entra_export(store, hook, settings=ExportSettings(identity_change_threshold=8))
    assert stopped.result == STOPPED_IDENTITY_CHANGES, stopped.detail
    assert stopped.detail.startswith("9 accounts would get another sign-in name or mail address")
    assert f"`aadsync export-entra --instance test --store {store.url} --identity-change-threshold 9`" in stopped.detail
    assert graph_writes(graph_server) == writes, "a guard stop wrote to the tenant"
    assert not any(user["userPrincipalName"].startswith("renamed") for user in graph_users(hook).values())

    confirmed = run_entra_export(store, hook, settings=ExportSettings(identity_change_threshold=9))
    assert confirmed.result == "success" and confirmed.counters["user_updates"] == 9
    upns = {anchor: user["userPrincipalName"] for anchor, user in graph_users(hook).items()}
    assert upns == {immutable_id(guid(n)): f"{'renamed' if n < 10 else 'user'}{n}@{DOMAIN}" for n in range(1, 13)}


def test_mass_member_removal_stops_per_group_and_in_total_then_a_confirmed_run_applies_it(
    graph_server, tenant_verifying, store, rules
):
    hook = entra_hook_for(graph_server, tenant_verifying(DOMAIN))
    objects = [ad_user(n) for n in range(1, 31)]
    exported_world(store, hook, rules, [*objects, ad_group(1001, "Everyone", members=range(1, 31))])
    group_id = graph_groups(hook)["Everyone"]["id"]
    before = graph_members(hook, group_id)
    assert len(before) == 30

    # 20 of the group's 30 members go (67 %): within 500 in total, but more than half of a group of 20 or more
    import_delta(store, "ad", [ad_group(1001, "Everyone", members=range(21, 31))])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    writes = graph_writes(graph_server)
    stopped = run_entra_export(store, hook)
    assert stopped.result == STOPPED_MEMBER_REMOVALS
    assert stopped.detail.startswith('group "Everyone"') and "20 of its 30 members (67 %)" in stopped.detail
    assert (
        f"`aadsync export-entra --instance test --store {store.url} --member-removal-group-percent 67`"
        in stopped.detail
    )

    # the share confirmed, but the run's total is over a lowered threshold: still nothing written
    total = run_entra_export(store, hook, settings=ExportSettings(member_removal_group_percent=67,
                                                                  member_removal_threshold=19))  # fmt: skip
    assert total.result == STOPPED_MEMBER_REMOVALS
    assert total.detail.startswith("20 group member removals are pending, more than the member removal threshold")
    assert f"`aadsync export-entra --instance test --store {store.url} --member-removal-threshold 20`" in total.detail
    assert graph_writes(graph_server) == writes, "a guard stop wrote to the tenant"
    assert graph_members(hook, group_id) == before

    confirmed = run_entra_export(store, hook, settings=ExportSettings(member_removal_group_percent=67))
    assert confirmed.result == "success" and confirmed.counters["member_removes"] == 20
    users = graph_users(hook)
    assert graph_members(hook, group_id) == {users[immutable_id(guid(n))]["id"] for n in range(21, 31)}


def reporting(n: int, to: int | None):
    """AD user ``n`` whose manager is AD user ``to`` (None: AD holds no manager for it)."""
    user = ad_user(n)
    user.references = {"manager": [(guid(to), f"CN=user{to},OU=Users,DC=corp,DC=example")] if to else []}
    return user


def test_mass_manager_clear_stops_before_any_write_then_a_confirmed_run_applies_it(graph_server, tenant_verifying,
                                                                                   store, rules):  # fmt: skip
    hook = entra_hook_for(graph_server, tenant_verifying(DOMAIN))
    exported_world(store, hook, rules, [ad_user(1), *(reporting(n, to=1) for n in range(2, 13))])
    boss = immutable_id(guid(1))
    managers = graph_managers(hook)
    assert managers == {immutable_id(guid(n)): boss for n in range(2, 13)}

    # a slip in the manager flow: every user's manager cleared (no group loses a member, nothing is deleted)
    import_delta(store, "ad", [reporting(n, to=None) for n in range(2, 13)])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    writes = graph_writes(graph_server)
    stopped = run_entra_export(store, hook, settings=ExportSettings(member_removal_threshold=10))
    assert stopped.result == STOPPED_MEMBER_REMOVALS, stopped.detail
    assert stopped.detail.startswith(
        "11 member and manager removals are pending (0 group member removals, 11 users whose manager would be cleared)"
    )
    assert f"`aadsync export-entra --instance test --store {store.url} --member-removal-threshold 11`" in stopped.detail
    assert graph_writes(graph_server) == writes, "a guard stop wrote to the tenant"
    assert graph_managers(hook) == managers
    assert "member and manager removals 11 of 10 (exceeded)" in render_runs(store, [stopped.run_id])

    confirmed = run_entra_export(store, hook, settings=ExportSettings(member_removal_threshold=11))
    assert confirmed.result == "success" and confirmed.counters["manager_removes"] == 11
    assert graph_managers(hook) == {}


def test_missing_user_account_control_leaves_the_cloud_account_enabled(graph_server, tenant_verifying, store, rules):
    hook = entra_hook_for(graph_server, tenant_verifying(DOMAIN))
    exported_world(store, hook, rules, [ad_user(1), ad_user(2)])
    # a full import that does not see userAccountControl (not readable by the sync account, say), and a new user
    import_full(store, "ad", [ad_user(1, userAccountControl=None), ad_user(2), ad_user(3, userAccountControl=None)])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    writes = graph_writes(graph_server)
    result = run_entra_export(store, hook)
    assert result.counters["planned_disables"] == 0 and result.counters.get("user_updates", 0) == 0
    users = graph_users(hook)
    assert users[immutable_id(guid(1))]["accountEnabled"] is True
    # a new account whose state is unknown is not guessed: Graph needs accountEnabled, the create is refused per object
    assert immutable_id(guid(3)) not in users and result.result == "completed-export-errors"
    (error,) = store.run_errors(result.run_id)
    assert "accountEnabled" in error["message"]
    assert graph_writes(graph_server) - writes == 2  # the one refused create ($batch + its item), nothing else


# ------------------------------------------------------------------------------------------ group writeback (AD)
@pytest.fixture(scope="module")
def dc(start_dc):
    dc = start_dc(users=200, groups=10, group_size=150)  # the group writeback tests' cached directory
    hook_for(dc).get_conn().add(WRITEBACK_ON["writeback_ou"], "organizationalUnit")
    return dc


def test_writeback_member_removals_stop_before_any_ldap_write_then_apply_when_confirmed(
    dc, graph_server, tenant_verifying, store
):
    rules = load_sync_rules(**WRITEBACK_ON)  # group writeback is opt-in
    graph = entra_hook_for(graph_server, tenant_verifying(MAIL_DOMAIN))
    ad = hook_for(dc)
    assert run_ad_import(ad, store, mode="full")["result"] == "success"
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    assert run_entra_export(store, graph).result == "success"
    confirm(store, graph, rules)
    cloud_users = sorted(graph_users(graph).values(), key=lambda user: user["userPrincipalName"])[:24]
    group_id = m365_group(graph, "Guarded Team", [user["id"] for user in cloud_users])

    def cycle(settings: ADExportSettings | None = None):
        assert run_ad_import(ad, store, mode="delta")["result"] == "success"
        assert import_entra(graph, store, connector="entra", mode="delta").result == "success"
        assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
        assert run_sync(store, rules, connector="entra", mode="delta").result == "success"
        return run_ad_export(store, ad, settings=settings)

    written = cycle()
    assert written.result == "success" and written.counters["member_adds"] == 24, store.run_errors(written.run_id)
    guid_in_ad, _attrs = written_back(ad, group_id)
    members = sorted(members_in_ad(ad, guid_in_ad))
    assert len(members) == 24

    for user in cloud_users[:16]:  # 16 of 24 (67 %) leave the cloud group
        graph.request("DELETE", f"/groups/{group_id}/members/{user['id']}/$ref")
    ldap_writes = ad.counters.get("ldap_writes", 0)
    stopped = cycle()
    assert stopped.result == STOPPED_MEMBER_REMOVALS, stopped.detail
    assert "16 of its 24 members (67 %)" in stopped.detail
    assert (
        f"`aadsync export-ad --instance test --store {store.url} --member-removal-group-percent 67`" in stopped.detail
    )
    assert ad.counters.get("ldap_writes", 0) == ldap_writes and sorted(members_in_ad(ad, guid_in_ad)) == members

    confirmed = run_ad_export(store, ad, settings=ADExportSettings(member_removal_group_percent=67))
    assert confirmed.result == "success" and confirmed.counters["member_removes"] == 16
    assert len(members_in_ad(ad, guid_in_ad)) == 8


def test_the_ad_import_reads_every_attribute_the_rules_need_whatever_the_connection_lists(dc, store):
    narrow = ["objectGUID", "objectClass", "sAMAccountName", "cn", "member"]  # leaves out userAccountControl
    summary = run_ad_import(hook_for(dc, attributes=narrow), store, mode="full")
    assert summary["result"] == "success" and "userAccountControl" in summary["attributes_added_for_rules"]
    with store.engine.connect() as connection:
        users = [
            json.loads(attrs)
            for attrs in connection.execute(
                sa.select(cs_object.c.attrs).where(cs_object.c.connector == "ad", cs_object.c.object_type == "user")
            ).scalars()
        ]
    assert len(users) >= 200 and all(user.get("userAccountControl") for user in users)

    # the shipped list is another list: the delta becomes a full import, so every object gets the new values
    wider = run_ad_import(hook_for(dc), store, mode="delta")
    assert wider["mode"] == "full" and "attribute list" in wider["fallback_reason"], wider
    assert run_ad_import(hook_for(dc), store, mode="delta")["mode"] == "delta"


def test_the_guards_count_the_same_on_postgresql(pg_store):
    """The counting is SQL over the plan: the same answers on PostgreSQL (case-sensitive LIKE, integer division)."""
    from tests.support.plans import add_group, cs_row, plan_references, stage_removes
    from tests.support.world import world_with_cloud_twins

    rules = world_with_cloud_twins(pg_store, 3)
    import_delta(pg_store, "ad", [ad_user(1, disabled=True), ad_user(2, disabled=True)])
    assert run_sync(pg_store, rules, connector="ad", mode="delta").result == "success"
    add_group(pg_store, "entra", "sales", "Sales", 24, "members")
    stage_removes(pg_store, "entra", "sales", 13, "members")
    add_group(pg_store, "entra", "half", "Half", 40, "members")
    stage_removes(pg_store, "entra", "half", 20, "members")
    for anchor in ("cleared", "changed"):  # one manager removed, one replaced (a change is no removal)
        cs_row(pg_store, "entra", anchor, f"users/{anchor}", object_type="user", members=["boss"], attribute="manager")
        plan_references(pg_store, "entra", anchor, "manager", ["boss"], operation="remove")
    plan_references(pg_store, "entra", "changed", "manager", ["new-boss"], operation="add")
    changes = count_mass_changes(pg_store, "entra", ExportSettings())
    assert (changes.disables, changes.member_removes, changes.manager_removes) == (2, 33, 1)
    assert [(g.anchor, g.removes, g.members, g.percent) for g in changes.groups_over_share] == [("sales", 13, 24, 55)]
