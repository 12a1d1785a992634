"""Adopting a populated tenant (issue 15) against the Graph emulator over TLS: cloud users that already exist (same
ImmutableId, same UPN, same mail) are joined and updated through the engine's steps (Entra import, sync, export),
never created twice, their object ids kept; another ImmutableId and another engine's user are per-object errors
and are left untouched."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.entra.reader import import_entra
from airflow_provider_aadsync.engine.connectors.entra.writer import run_entra_export
from airflow_provider_aadsync.engine.store import run_error
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.adoption import cloud_group, cloud_user, seed_tenant
from tests.support.servers import emulator_admin, entra_hook_for
from tests.support.world import ad_user, guid, immutable_id, import_delta, import_full

pytestmark = pytest.mark.integration

DOMAIN = "corp.example"


def cloud(upn: str, **values) -> dict:
    return cloud_user(upn.split("@")[0].replace(".", ""), upn, **values)


def all_users(hook) -> dict[str, dict]:
    select = "id,userPrincipalName,mail,onPremisesImmutableId,onPremisesSyncEnabled"
    return {
        user["id"]: user
        for page in hook.paginate("/users", params={"$select": select, "$top": "999"})
        for user in page["value"]
    }


def seeded(graph_server, tenant: str, *users: dict) -> tuple:
    """The tenant's hook, and the ids of ``users`` made in it as an admin made them."""
    return entra_hook_for(graph_server, tenant), [user["id"] for user in seed_tenant(graph_server, tenant, list(users))]


def cycle(hook, store, rules, ad_objects) -> tuple:
    """``ad_objects`` and the tenant imported in full, AD then Entra synced, the export run: (Entra sync, export)."""
    import_full(store, "ad", ad_objects)
    assert import_entra(hook, store, connector="entra", mode="full").result == "success"
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    return run_sync(store, rules, connector="entra", mode="full"), run_entra_export(store, hook)


def test_existing_cloud_users_are_matched_not_duplicated(graph_server, tenant_verifying, store):
    tenant = tenant_verifying(DOMAIN)
    hook = entra_hook_for(graph_server, tenant)
    seeded = seed_tenant(
        graph_server,
        tenant,
        [
            cloud(f"someone.else@{DOMAIN}", onPremisesImmutableId=immutable_id(guid(1))),  # hard match
            cloud(f"USER2@{DOMAIN}"),  # soft match: userPrincipalName
            cloud(f"three.cloud@{DOMAIN}", mail=f"three@{DOMAIN}"),  # soft match: mail
            cloud(f"user4@{DOMAIN}", onPremisesImmutableId=immutable_id(guid(444))),  # another anchor
            cloud(f"user5@{DOMAIN}", onPremisesImmutableId=immutable_id(guid(5)), onPremisesSyncEnabled=True),
            cloud(f"cloud.only@{DOMAIN}"),
        ],
    )
    ids = [user["id"] for user in seeded]
    before = all_users(hook)

    rules = load_sync_rules()
    import_full(store, "ad", [ad_user(n, mail=f"three@{DOMAIN}" if n == 3 else None) for n in range(1, 7)])
    assert import_entra(hook, store, connector="entra", mode="full").result == "success"
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    synced = run_sync(store, rules, connector="entra", mode="full")
    assert synced.result == "completed-sync-errors"
    with store.engine.connect() as connection:
        errors = {
            row.anchor: row.code
            for row in connection.execute(sa.select(run_error).where(run_error.c.run_id == synced.run_id))
        }
    assert errors == {ids[3]: "anchor-mismatch", ids[4]: "held-by-other-engine"}

    exported = run_entra_export(store, hook)
    assert exported.result == "completed-export-errors", (exported, store.run_errors(exported.run_id))
    assert {e["anchor"]: e["code"] for e in store.run_errors(exported.run_id)} == errors  # reported, still refused
    assert exported.counters["user_creates"] == 1 and exported.counters["adds_held_refused"] == 2

    after = all_users(hook)
    assert set(before) <= set(after) and len(after) == len(before) + 1  # only user6 was created
    (created,) = set(after) - set(before)
    assert after[created]["userPrincipalName"] == f"user6@{DOMAIN}"
    # matched users keep their object ids and now carry the AD user's anchor
    for n, object_id in ((1, ids[0]), (2, ids[1]), (3, ids[2])):
        assert after[object_id]["onPremisesImmutableId"] == immutable_id(guid(n))
    assert after[ids[0]]["userPrincipalName"] == f"user1@{DOMAIN}"
    # refused users are untouched
    for object_id in (ids[3], ids[4], ids[5]):
        assert after[object_id] == before[object_id]

    # the confirming import and sync: everything joined stays joined, nothing more to write
    assert import_entra(hook, store, connector="entra", mode="delta").result == "success"
    assert run_sync(store, rules, connector="entra", mode="delta").result in ("success", "completed-sync-errors")
    again = run_entra_export(store, hook)
    assert again.counters.get("user_creates", 0) == 0 and len(all_users(hook)) == len(after)


def test_the_soft_match_is_on_the_primary_smtp_address_not_ad_mail(graph_server, tenant_verifying, store):
    """An AD user whose mail is not its primary SMTP address (proxyAddresses' SMTP: value) adopts the cloud mailbox
    holding the primary address, through Graph's mail; the cloud user holding its AD mail (a shared mailbox) gets
    no write, and no user is created."""
    hook, (shared, mailbox) = seeded(
        graph_server,
        tenant_verifying(DOMAIN),
        cloud(f"shared@{DOMAIN}", mail=f"seven@{DOMAIN}", proxyAddresses=[f"SMTP:seven@{DOMAIN}"]),
        cloud(f"s.even.cloud@{DOMAIN}", mail=f"s.even@{DOMAIN}", proxyAddresses=[f"SMTP:s.even@{DOMAIN}"]),
    )
    before = all_users(hook)
    proxies = [f"smtp:seven@{DOMAIN}", f"SMTP:S.Even@{DOMAIN}"]
    synced, exported = cycle(
        hook, store, load_sync_rules(), [ad_user(7, mail=f"seven@{DOMAIN}", proxyAddresses=proxies)]
    )
    assert synced.result == "success"
    assert exported.result == "success" and exported.counters.get("user_creates", 0) == 0, exported
    after = all_users(hook)
    assert set(after) == set(before) and after[shared] == before[shared]
    assert after[mailbox]["onPremisesImmutableId"] == immutable_id(guid(7))


def test_block_cloud_object_takeover_leaves_a_cloud_created_user_alone(graph_server, tenant_verifying, store):
    """With BlockCloudObjectTakeover, a user made in the cloud and given the AD user's ImmutableId by hand is not taken
    over (invalid-hard-match, reported by the export, no write, no second user); a user another engine synchronized
    (onPremisesSyncEnabled false once it was turned off) still hard matches and is updated."""
    hook, (created, formerly_synced) = seeded(
        graph_server,
        tenant_verifying(DOMAIN),
        cloud(f"someone@{DOMAIN}", onPremisesImmutableId=immutable_id(guid(1))),
        cloud(f"formerly@{DOMAIN}", onPremisesImmutableId=immutable_id(guid(2)), onPremisesSyncEnabled=False),
    )
    before = all_users(hook)
    rules = load_sync_rules(block_cloud_object_takeover=True)
    synced, exported = cycle(hook, store, rules, [ad_user(1), ad_user(2)])
    assert synced.result == "completed-sync-errors"
    assert {e["anchor"]: e["code"] for e in store.run_errors(exported.run_id)} == {created: "invalid-hard-match"}
    assert exported.counters.get("user_creates", 0) == 0 and exported.counters["adds_held_refused"] == 1
    after = all_users(hook)
    assert set(after) == set(before) and after[created] == before[created]
    assert after[formerly_synced]["userPrincipalName"] == f"user2@{DOMAIN}"


def test_a_refused_match_stays_refused_across_delta_cycles(graph_server, tenant_verifying, store):
    """A cloud user refused (another anchor; another engine's) is reported by every cycle's export as still refused,
    gets no write and is never created beside the cloud user, even when its AD user changes in a later delta cycle;
    once the admin clears the cloud user's ImmutableId, the next cycle soft matches and joins it."""
    tenant = tenant_verifying(DOMAIN)
    hook = entra_hook_for(graph_server, tenant)
    seeded = seed_tenant(
        graph_server,
        tenant,
        [
            cloud(f"user4@{DOMAIN}", onPremisesImmutableId=immutable_id(guid(444))),  # another anchor
            cloud(f"user5@{DOMAIN}", onPremisesImmutableId=immutable_id(guid(5)), onPremisesSyncEnabled=True),
        ],
    )
    ids = [user["id"] for user in seeded]
    rules = load_sync_rules()
    import_full(store, "ad", [ad_user(n) for n in (4, 5)])
    assert import_entra(hook, store, connector="entra", mode="full").result == "success"
    run_sync(store, rules, connector="ad", mode="full")
    run_sync(store, rules, connector="entra", mode="full")
    before = all_users(hook)

    for cycle in range(2):  # the AD users change: their delta sync evaluates them again
        import_delta(store, "ad", [ad_user(n, title=f"Title {cycle}") for n in (4, 5)])
        assert import_entra(hook, store, connector="entra", mode="delta").result == "success"
        assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
        run_sync(store, rules, connector="entra", mode="delta")
        exported = run_entra_export(store, hook)
        assert exported.result == "completed-export-errors", exported
        assert exported.counters.get("user_creates", 0) == 0 and exported.counters["batch_calls"] == 0
        errors = store.run_errors(exported.run_id)
        assert {e["anchor"]: e["code"] for e in errors} == {ids[0]: "anchor-mismatch", ids[1]: "held-by-other-engine"}
        assert all(e["message"].startswith("still refused, not created") for e in errors), errors
        assert all_users(hook) == before

    hook.request("PATCH", f"/users/{ids[0]}", json={"onPremisesImmutableId": None})  # the admin resolves one
    assert import_entra(hook, store, connector="entra", mode="delta").result == "success"
    run_sync(store, rules, connector="entra", mode="delta")
    exported = run_entra_export(store, hook)
    assert exported.counters.get("user_creates", 0) == 0 and exported.counters["user_updates"] == 1
    after = all_users(hook)
    assert set(after) == set(before) and after[ids[0]]["onPremisesImmutableId"] == immutable_id(guid(4))
    assert [error["code"] for error in store.run_errors(exported.run_id)] == ["held-by-other-engine"]


def test_cloud_administrators_are_never_matched_until_their_roles_go(graph_server, tenant_verifying, store):
    """A cloud user holding a directory role (directly, or through a role-assignable group) is refused by the soft
    match and the hard match: reported as admin-role, never written, no second user created. Once its role
    assignment is removed, the next delta cycle reads that (the roles are read by every Entra import), matches and
    joins it."""
    tenant = tenant_verifying(DOMAIN)
    hook = entra_hook_for(graph_server, tenant)
    seeded = seed_tenant(
        graph_server,
        tenant,
        [
            cloud(f"user1@{DOMAIN}"),  # soft match on its UPN; a Global Administrator
            cloud(f"admin2@{DOMAIN}", onPremisesImmutableId=immutable_id(guid(2))),  # hard match; in a role group
            cloud(f"user3@{DOMAIN}"),  # no role: matched
        ],
    )
    ids = [user["id"] for user in seeded]
    (tier0,) = seed_tenant(graph_server, tenant, [cloud_group("Tier 0", members=(ids[1],), isAssignableToRole=True)])
    roles = f"/tenants/{tenant['id']}/roleAssignments"
    for principal, role in ((ids[0], "Global Administrator"), (tier0["id"], "Privileged Role Administrator")):
        emulator_admin(graph_server, "POST", roles, json={"role": role, "principalId": principal})
    assert hook.directory_role_holders() == {
        ids[0]: ("user", ["Global Administrator"]),
        tier0["id"]: ("group", ["Privileged Role Administrator"]),
        ids[1]: ("user", ["Privileged Role Administrator"]),
    }
    before = all_users(hook)

    rules = load_sync_rules()
    import_full(store, "ad", [ad_user(n) for n in (1, 2, 3)])
    assert import_entra(hook, store, connector="entra", mode="full").result == "success"
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    synced = run_sync(store, rules, connector="entra", mode="full")
    with store.engine.connect() as connection:
        errors = {
            row.anchor: (row.code, row.message)
            for row in connection.execute(sa.select(run_error).where(run_error.c.run_id == synced.run_id))
        }
    assert {anchor: code for anchor, (code, _) in errors.items()} == {ids[0]: "admin-role", ids[1]: "admin-role"}
    assert "Global Administrator" in errors[ids[0]][1] and "Privileged Role Administrator" in errors[ids[1]][1]

    exported = run_entra_export(store, hook)
    assert exported.counters.get("user_creates", 0) == 0 and exported.counters["adds_held_refused"] == 2
    after = all_users(hook)
    assert after[ids[0]] == before[ids[0]] and after[ids[1]] == before[ids[1]]  # the administrators are untouched
    assert after[ids[2]]["onPremisesImmutableId"] == immutable_id(guid(3)) and len(after) == len(before)

    # the Global Administrator's role is removed: the next delta cycle matches and joins it, nothing created
    emulator_admin(graph_server, "DELETE", f"{roles}/62e90394-69f5-4237-9190-012177145e10/{ids[0]}")
    delta = import_entra(hook, store, connector="entra", mode="delta")
    assert delta.result == "success" and delta.counters["role_holders_changed"] == 1
    run_sync(store, rules, connector="entra", mode="delta")
    run_entra_export(store, hook)
    final = all_users(hook)
    assert final[ids[0]]["onPremisesImmutableId"] == immutable_id(guid(1))  # adopted now
    assert final[ids[1]] == before[ids[1]] and len(final) == len(before)  # the other administrator: still refused


def three_cloud_users(graph_server, tenant):
    """The tenant's hook and three cloud users, user1..3 in the test domain, as the AD users 1..3 would soft match."""
    return seeded(graph_server, tenant, *(cloud(f"user{n}@{DOMAIN}") for n in (1, 2, 3)))


def test_pim_eligible_administrators_are_never_matched(graph_server, tenant_verifying, store):
    """A cloud user only eligible for a role in PIM (for one administrative unit, or tenant-wide as a member of an
    eligible role-assignable group) activates it at will: it is refused like an active administrator (admin-role,
    "(eligible)", with the scope), never written, no second user. A tenant without Microsoft Entra ID P2 has no PIM:
    its import reads the active roles and goes on."""
    tenant = tenant_verifying(DOMAIN)
    hook, (eligible, in_group, plain) = three_cloud_users(graph_server, tenant)
    (tier0,) = seed_tenant(graph_server, tenant, [cloud_group("Tier 0", members=(in_group,), isAssignableToRole=True)])
    roles = f"/tenants/{tenant['id']}/roleAssignments"
    unit = "/administrativeUnits/5b7d2c1e-0000-4000-8000-00000000a002"
    for spec in (
        {"role": "User Administrator", "principalId": eligible, "eligible": True, "directoryScopeId": unit},
        {"role": "Global Administrator", "principalId": tier0["id"], "eligible": True},
    ):
        emulator_admin(graph_server, "POST", roles, json=spec)
    scoped, label = f"User Administrator (scope {unit}) (eligible)", "Global Administrator (eligible)"
    assert hook.directory_role_holders() == {
        eligible: ("user", [scoped]),
        tier0["id"]: ("group", [label]),
        in_group: ("user", [label]),
    }
    before = all_users(hook)
    synced, exported = cycle(hook, store, load_sync_rules(), [ad_user(n) for n in (1, 2, 3)])
    errors = {e["anchor"]: (e["code"], e["message"]) for e in store.run_errors(synced.run_id)}
    assert {anchor: code for anchor, (code, _) in errors.items()} == {eligible: "admin-role", in_group: "admin-role"}
    assert scoped in errors[eligible][1] and label in errors[in_group][1]
    after = all_users(hook)
    assert exported.counters.get("user_creates", 0) == 0 and set(after) == set(before)
    assert after[eligible] == before[eligible] and after[in_group] == before[in_group]
    assert after[plain]["onPremisesImmutableId"] == immutable_id(guid(3))

    without_p2 = entra_hook_for(graph_server, tenant_verifying("fabrikam.example", pimLicensed=False))
    assert without_p2.directory_role_holders() == {}


def test_administrators_of_an_administrative_unit_or_a_custom_role_are_never_matched(
    graph_server, tenant_verifying, store
):
    """``directoryRoles`` lists built-in roles assigned tenant-wide only: a User Administrator of one administrative
    unit (who resets its users' passwords) and the holder of a custom role are read from the unified RBAC API's role
    assignments and refused like any administrator (admin-role, named with the scope), never written, no second
    user."""
    tenant = tenant_verifying(DOMAIN)
    hook, (unit_admin, custom_holder, plain) = three_cloud_users(graph_server, tenant)
    admin = f"/tenants/{tenant['id']}"
    unit = "/administrativeUnits/5b7d2c1e-0000-4000-8000-00000000a001"
    emulator_admin(graph_server, "POST", f"{admin}/roleDefinitions", json={"displayName": "Password Helper"})
    for spec in (
        {"role": "User Administrator", "principalId": unit_admin, "directoryScopeId": unit},
        {"role": "Password Helper", "principalId": custom_holder},
    ):
        emulator_admin(graph_server, "POST", f"{admin}/roleAssignments", json=spec)
    scoped = f"User Administrator (scope {unit})"
    assert hook.directory_role_holders() == {
        unit_admin: ("user", [scoped]),
        custom_holder: ("user", ["Password Helper"]),
    }
    before = all_users(hook)
    synced, exported = cycle(hook, store, load_sync_rules(), [ad_user(n) for n in (1, 2, 3)])
    errors = {e["anchor"]: (e["code"], e["message"]) for e in store.run_errors(synced.run_id)}
    assert {anchor: code for anchor, (code, _) in errors.items()} == {
        unit_admin: "admin-role",
        custom_holder: "admin-role",
    }
    assert scoped in errors[unit_admin][1] and "Password Helper" in errors[custom_holder][1]
    after = all_users(hook)
    assert exported.counters.get("user_creates", 0) == 0 and set(after) == set(before)
    assert after[unit_admin] == before[unit_admin] and after[custom_holder] == before[custom_holder]
    assert after[plain]["onPremisesImmutableId"] == immutable_id(guid(3))
