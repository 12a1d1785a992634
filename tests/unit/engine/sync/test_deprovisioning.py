"""Deprovisioning and withdrawal in the sync: what happens to a target object, its pending update and its groups'
member adds when its metaverse object leaves the outbound rules' scope or is deleted; and the objects a connector no
longer contributes to are withdrawn once, not rewritten every pass."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.rules import load_rules_text
from airflow_provider_aadsync.engine.runs.export_run import adopt_anchor
from airflow_provider_aadsync.engine.runs.source import SourceObject
from airflow_provider_aadsync.engine.store import (
    Store,
    cs_reference,
    export_conflict,
    mv_object,
    pending_export,
    pending_export_reference,
    utcnow,
)
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.world import (
    ad_user,
    cloud_twin,
    deleted,
    entra_user,
    exports,
    guid,
    import_delta,
    import_full,
    links,
    mv_by,
    reference_exports,
    world_with_cloud_twins,
)

# ------------------------------------------------------------------------------------ a joined cloud user filtered out
# A cloud object joined (hard/soft match: link type "join", as after a store rebuild or an adoption) whose
# metaverse object leaves the scope of the provisioning rule "Out to AAD - User Join" (cloudFiltered becomes True)
# must be deprovisioned like one sync created: its delete is staged, and a pending update staged before for it is not
# left to be exported. (The engine deleted such joined objects when their metaverse object was deleted, but left them
# joined and untouched when only the outbound scope changed.)


def test_a_joined_cloud_user_filtered_out_is_deleted_and_its_pending_update_withdrawn(store):
    rules = world_with_cloud_twins(store, 2)
    bob_id, _ = mv_by(store, "accountName", "user2")
    assert links(store, "entra")[("entra", "cloud-2")] == (bob_id, "join")

    # A change is staged for the joined cloud user ...
    import_delta(store, "ad", [ad_user(2, department="Sales")])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    assert exports(store)["cloud-2"]["operation"] == "update"
    assert exports(store)["cloud-2"]["changes"] == {"department": ["Sales"]}

    # ... then, before any export, the user becomes an arbitration mailbox: cloudFiltered, out of every Entra rule.
    import_delta(store, "ad", [ad_user(2, department="Sales", msExchRecipientTypeDetails=str(0x800000))])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    assert mv_by(store, "accountName", "user2")[1]["cloudFiltered"] == [True]
    staged = exports(store).get("cloud-2")
    # The export must not write the department of a user the rules no longer sync; it must delete it.
    assert staged is not None and staged["operation"] == "delete", staged


# -------------------------------------------------------------------------------------------- join-type outbound rules
# Outbound rules of link type Join (they update a joined object, never create one) to a directory "dir" whose
# accounts join HR's persons:
#
# * a person that leaves the Join rule's scope keeps no pending update staged while it was in scope (the export would
#   write values the rules no longer want written);
# * a person deleted from the metaverse (HR removed it) disconnects its joined account: sync never made that account,
#   no Provision rule writes to "dir", so sync must not delete it (``_delete_metaverse`` deprovisioned every linked
#   object of a connector named by any outbound rule, Join rules included).


RULES = """
rules:
  - {name: hr, direction: inbound, connector: hr, source_object_type: employee, target_object_type: person,
     link_type: Provision, precedence: 10, join: [[{source: empNo, target: employeeId}]],
     flows: [{type: Direct, source: empNo, target: employeeId}, {type: Direct, source: title, target: title},
             {type: Direct, source: dept, target: department}]}
  - {name: dir in, direction: inbound, connector: dir, source_object_type: account, target_object_type: person,
     link_type: Join, precedence: 20, join: [[{source: empNo, target: employeeId}]],
     flows: [{type: Direct, source: office, target: office}]}
  - name: dir out
    direction: outbound
    connector: dir
    source_object_type: person
    target_object_type: account
    link_type: Join
    precedence: 30
    scoping: [[{attribute: department, operator: EQUAL, value: RD}]]
    flows: [{type: Direct, source: title, target: title}]
"""


def employee(n: int, **attrs: str) -> SourceObject:
    return SourceObject(anchor=f"hr-{n}", dn=f"emp/{n}", object_type="employee",
                        attrs={"empNo": [f"E{n}"], **{k: [v] for k, v in attrs.items()}})  # fmt: skip


def account(n: int, **attrs: str) -> SourceObject:
    return SourceObject(anchor=f"dir-{n}", dn=f"acct/{n}", object_type="account",
                        attrs={"empNo": [f"E{n}"], **{k: [v] for k, v in attrs.items()}})  # fmt: skip


@pytest.fixture
def rules():
    return load_rules_text(RULES, name="join-outbound.yaml")


def joined_world(store, rules) -> int:
    import_full(store, "hr", [employee(1, title="Engineer", dept="RD")])
    assert run_sync(store, rules, connector="hr", mode="full").result == "success"
    import_full(store, "dir", [account(1, title="Engineer")])
    assert run_sync(store, rules, connector="dir", mode="full").result == "success"
    mv_id = mv_by(store, "employeeId", "E1")[0]
    assert links(store, "dir")[("dir", "dir-1")] == (mv_id, "join")
    assert exports(store, "dir") == {}
    return mv_id


def test_leaving_the_join_rules_scope_withdraws_its_pending_update(store, rules):
    joined_world(store, rules)
    import_delta(store, "hr", [employee(1, title="Manager", dept="RD")])
    run_sync(store, rules, connector="hr", mode="delta")
    assert exports(store, "dir")["dir-1"]["changes"] == {"title": ["Manager"]}
    import_delta(store, "hr", [employee(1, title="Manager", dept="Sales")])  # out of "dir out"'s scope
    run_sync(store, rules, connector="hr", mode="delta")
    assert "dir-1" not in exports(store, "dir"), exports(store, "dir")


def test_a_deleted_person_disconnects_a_joined_account_without_deleting_it(store, rules):
    joined_world(store, rules)
    import_delta(store, "hr", [deleted("hr-1")])
    result = run_sync(store, rules, connector="hr", mode="delta")
    assert result.counters["metaverse_deletes"] == 1
    assert ("dir", "dir-1") not in links(store)
    # "dir out" is a Join rule: it never provisioned dir-1, so sync must not delete it.
    assert "dir-1" not in exports(store, "dir"), exports(store, "dir")


# ---------------------------------------------------------------------------------------------- a deprovisioned member
# A member add staged for a group in the target names a user that a later pass deprovisions (it left the outbound
# scope: its delete is staged). The add must go with it, as it does when the user was only planned (provisional):
# otherwise the export adds a member it is deleting (or fails on a member already gone), and since the group itself
# did not change, no later sync (the memo skips it in a full sync) ever withdraws the row.


EXPORT_RULES = """
rules:
  - {name: ad users, direction: inbound, connector: ad, source_object_type: user, target_object_type: person,
     link_type: Provision, precedence: 1,
     flows: [{type: Direct, source: name, target: name}, {type: Direct, source: kind, target: kind}]}
  - {name: ad groups, direction: inbound, connector: ad, source_object_type: group, target_object_type: group,
     link_type: Provision, precedence: 2,
     flows: [{type: Direct, source: name, target: name}, {type: Direct, source: member, target: member}]}
  - {name: out users, direction: outbound, connector: cloud, source_object_type: person, target_object_type: user,
     link_type: Provision, precedence: 10, scoping: [[{attribute: kind, operator: EQUAL, value: staff}]],
     flows: [{type: Direct, source: name, target: displayName}]}
  - {name: out groups, direction: outbound, connector: cloud, source_object_type: group, target_object_type: group,
     link_type: Provision, precedence: 11,
     flows: [{type: Direct, source: name, target: displayName}, {type: Direct, source: member, target: members}]}
"""


def user(anchor: str, name: str, **attrs: str) -> SourceObject:
    values = {"name": [name], **{k: [v] for k, v in attrs.items()}}
    return SourceObject(anchor=anchor, dn=f"CN={name}", object_type="user", attrs=values)


def group(anchor: str, name: str, members=()) -> SourceObject:
    return SourceObject(anchor=anchor, dn=f"CN={name}", object_type="group", attrs={"name": [name]},
                        references={"member": [(m, f"CN={m}") for m in members]})  # fmt: skip


def cloud_anchor(store: Store, name: str) -> str:
    mv_id = mv_by(store, "name", name)[0]
    (anchor,) = [a for (_c, a), (m, _t) in links(store, "cloud").items() if m == mv_id]
    return anchor


def export_everything(store: Store) -> None:
    """Stand in for an export that created every planned object and wrote every member add."""
    with store.transaction() as connection:
        planned = connection.execute(
            sa.select(pending_export.c.anchor, pending_export.c.changes).where(pending_export.c.connector == "cloud")
        ).all()
        for provisional, changes in planned:
            adopt_anchor(connection, "cloud", provisional, "real-" + provisional[-8:], json.loads(changes), run_id=1)
        rows = connection.execute(sa.select(pending_export_reference)).all()
        for row in rows:
            values = {"anchor": row.anchor, "attribute": row.attribute, "target_anchor": row.target_anchor}
            connection.execute(sa.insert(cs_reference).values(connector="cloud", **values))
        connection.execute(sa.delete(pending_export_reference))
        connection.execute(sa.delete(pending_export))


def test_a_pending_member_add_goes_when_the_member_is_deprovisioned(store):
    rules = load_rules_text(EXPORT_RULES, name="exports.yaml")
    members = [user("u1", "U1", kind="staff"), user("u2", "U2", kind="staff")]
    import_full(store, "ad", [*members, group("g1", "G", ["u1"])])
    run_sync(store, rules, connector="ad", mode="full")
    export_everything(store)
    assert exports(store, "cloud") == {} and reference_exports(store, "cloud") == set()

    import_delta(store, "ad", [group("g1", "G", ["u1", "u2"])])  # U2 joins the group in AD
    run_sync(store, rules, connector="ad", mode="delta")
    g, u2 = cloud_anchor(store, "G"), cloud_anchor(store, "U2")
    assert reference_exports(store, "cloud") == {(g, u2, "add")}

    import_delta(store, "ad", [user("u2", "U2", kind="contractor")])  # before the export: U2 leaves the scope
    run_sync(store, rules, connector="ad", mode="delta")
    assert exports(store, "cloud")[u2]["operation"] == "delete"
    assert (g, u2, "add") not in reference_exports(store, "cloud"), reference_exports(store, "cloud")
    assert g not in exports(store, "cloud")  # its empty update row, made for the member add, goes as well
    run_sync(store, rules, connector="ad", mode="full")
    assert (g, u2, "add") not in reference_exports(store, "cloud"), reference_exports(store, "cloud")


def test_an_object_deleted_in_the_target_directory_takes_its_pending_exports_with_it(store):
    """A cloud user deleted in the tenant (the portal, another tool) while an update of it was pending and a member
    add naming it was sent: the sync of its connector forgets both, and the conflict recorded for it, and provisions
    its successor. Before, the update stayed beside the successor's create: the export sent it to an object gone (404),
    a per-object error every cycle."""
    cloud_in = """
  - {name: cloud users, direction: inbound, connector: cloud, source_object_type: user, target_object_type: person,
     link_type: Join, precedence: 20, join: [[{source: displayName, target: name}]]}
"""
    rules = load_rules_text(EXPORT_RULES + cloud_in, name="exports.yaml")
    import_full(store, "ad", [user("u1", "U1", kind="staff"), user("u2", "U2", kind="staff"), group("g1", "G", ["u1"])])
    run_sync(store, rules, connector="ad", mode="full")
    export_everything(store)
    g, u2 = cloud_anchor(store, "G"), cloud_anchor(store, "U2")
    import_delta(store, "ad", [user("u2", "U2 Renamed", kind="staff"), group("g1", "G", ["u1", "u2"])])
    run_sync(store, rules, connector="ad", mode="delta")
    assert exports(store, "cloud")[u2]["changes"] == {"displayName": ["U2 Renamed"]}
    assert reference_exports(store, "cloud") == {(g, u2, "add")}
    with store.transaction() as connection:
        # the member add went out in an export that was cut off before its answer was recorded
        connection.execute(sa.update(pending_export_reference).values(state="sent"))
        connection.execute(
            sa.insert(export_conflict).values(
                connector="cloud", anchor=u2, attribute="displayName", wanted_value="U2 Renamed", detected_at=utcnow()
            )  # fmt: skip
        )

    import_delta(store, "cloud", [deleted(u2)])  # deleted in the tenant before the export
    result = run_sync(store, rules, connector="cloud", mode="delta")
    assert result.result == "success" and result.counters["export_to_deleted_withdrawn"] == 1
    pending = exports(store, "cloud")
    assert u2 not in pending
    # The person is still in scope: the same pass plans its successor, and the group's member add names that one.
    (successor,) = [anchor for anchor, row in pending.items() if row["operation"] == "add"]
    assert pending[successor]["changes"] == {"displayName": ["U2 Renamed"]}
    assert reference_exports(store, "cloud") == {(g, successor, "add")}
    with store.engine.connect() as connection:
        assert connection.execute(sa.select(export_conflict.c.released_at)).scalar_one() is not None

    run_sync(store, rules, connector="ad", mode="full")
    assert exports(store, "cloud") == pending and reference_exports(store, "cloud") == {(g, successor, "add")}


# --------------------------------------------------------------------------------- sticky-joined objects no rule reads
# Sticky-joined objects that no rule reads any more (their StickyJoin rule was removed) keep their link and lose
# their contributions once. Every later pass of their connector must leave their metaverse objects alone: without the
# sync memo (``reevaluate``, or rules reading Now, GUID or RandomNum) it rewrote each one (``dirty`` though nothing
# was withdrawn), so its ``updated_at`` moved, the outbound half evaluated it again, and every other connector's sync
# memo saw it changed (its next full sync evaluated it anew).


N = 50
REEVALUATE = True
HR = """
rules:
  - {name: hr, direction: inbound, connector: hr, source_object_type: employee, target_object_type: person,
     link_type: Provision, precedence: 10, flows: [{type: Direct, source: empNo, target: employeeId}]}
  - {name: dir groups, direction: inbound, connector: dir, source_object_type: group, target_object_type: group,
     link_type: Provision, precedence: 30, flows: [{type: Direct, source: name, target: name}]}
"""
STICKY = """
  - {name: dir sticky, direction: inbound, connector: dir, source_object_type: account, target_object_type: person,
     link_type: StickyJoin, precedence: 20, join: [[{source: empNo, target: employeeId}]],
     flows: [{type: Direct, source: office, target: office}]}
"""


def objects(kind: str, prefix: str) -> list[SourceObject]:
    return [
        SourceObject(
            anchor=f"{prefix}-{n}",
            dn=f"{prefix}/{n}",
            object_type=kind,
            attrs={"empNo": [f"E{n}"], "office": [f"B{n}"]},
        )  # fmt: skip
        for n in range(N)
    ]


def stamps(store) -> dict[int, object]:
    with store.engine.connect() as connection:
        return dict(connection.execute(sa.select(mv_object.c.id, mv_object.c.updated_at)).all())


def test_full_syncs_leave_sticky_joined_objects_no_rule_reads_alone(store):
    with_sticky = load_rules_text(HR + STICKY, name="a.yaml")
    without = load_rules_text(HR, name="a.yaml")
    import_full(store, "hr", objects("employee", "hr"))
    run_sync(store, with_sticky, connector="hr", mode="full")
    import_full(store, "dir", objects("account", "dir"))
    run_sync(store, with_sticky, connector="dir", mode="full")
    assert sum(1 for (_c, _a), (_m, t) in links(store, "dir").items() if t == "sticky-join") == N
    run_sync(store, without, connector="dir", mode="full")  # the rule is gone: contributions withdrawn once
    run_sync(store, without, connector="hr", mode="full")
    before = stamps(store)
    again = run_sync(store, without, connector="dir", mode="full", reevaluate=REEVALUATE)
    rewritten = sum(1 for mv_id, stamp in stamps(store).items() if before[mv_id] != stamp)
    hr = run_sync(store, without, connector="hr", mode="full")
    skipped = hr.counters.get("objects_unchanged", 0)
    assert (rewritten, again.counters["metaverse_attribute_changes"], skipped) == (0, 0, N)


# --------------------------------------------------------------------- a cloud-only object soft-matched, never written
# A cloud-only user (no onPremisesImmutableId) soft-matched by UPN to a metaverse person that the outbound rules
# leave out (cloudFiltered: an arbitration mailbox, or a do-not-sync rule of the admin's) must never be deleted: sync
# never took it over, it was never in scope, and the product's soft match only happens when an in-scope object is
# provisioned. (A first version of the join-link deprovisioning deleted it.)


FILTERED = str(0x800000)  # arbitration mailbox: cloudFiltered True


def test_a_cloud_only_user_soft_matched_to_a_filtered_person_is_not_deleted(store):
    rules = load_sync_rules()
    import_full(store, "ad", [ad_user(1, "bob", msExchRecipientTypeDetails=FILTERED)])
    import_full(store, "entra", [entra_user("cloud-bob", "bob@corp.example", accountEnabled=True)])
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    assert mv_by(store, "accountName", "bob")[1]["cloudFiltered"] == [True]
    assert run_sync(store, rules, connector="entra", mode="full").result == "success"
    # The Entra pass that soft-matches it on its UPN must not stage its delete: a cloud-only account sync never
    # wrote, joined to a person no outbound rule has in scope.
    staged = exports(store).get("cloud-bob")
    assert staged is None or staged["operation"] != "delete", staged
    assert links(store, "entra")[("entra", "cloud-bob")][1] == "join"
    # Nor does a later change of the AD account (the person through the outbound rules again) delete it.
    import_delta(store, "ad", [ad_user(1, "bob", msExchRecipientTypeDetails=FILTERED, department="Ops")])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    staged = exports(store).get("cloud-bob")
    assert staged is None or staged["operation"] != "delete", staged


def test_deleting_the_filtered_person_does_not_delete_the_cloud_only_user_it_soft_matched(store):
    """The same cloud-only account, when the filtered AD account goes: the metaverse person is deleted, and the
    account it soft-matched (never written, never in scope) is disconnected, not deleted (``_delete_metaverse``)."""
    rules = load_sync_rules()
    import_full(store, "ad", [ad_user(1, "bob", msExchRecipientTypeDetails=FILTERED)])
    import_full(store, "entra", [entra_user("cloud-bob", "bob@corp.example", accountEnabled=True)])
    run_sync(store, rules, connector="ad", mode="full")
    run_sync(store, rules, connector="entra", mode="full")
    import_delta(store, "ad", [deleted(guid(1))])
    result = run_sync(store, rules, connector="ad", mode="delta")
    assert result.counters["metaverse_deletes"] == 1
    staged = exports(store).get("cloud-bob")
    assert staged is None or staged["operation"] != "delete", staged


# -------------------------------------------------------------------------------- a scope slip fixed before the export
# An outbound-scope slip fixed before the export must not delete the user, now that join-linked objects are
# deprovisioned: every object of an adopted tenant or a rebuilt store is one.
#
# User 1's cloud twin is joined (hard match). A slip makes user 1 cloudFiltered: the twin's delete is staged and the
# link dropped. The slip is fixed before any export and a normal (delta) cycle runs: the AD pass finds no link and
# planned a NEW user; the Entra delta pass does not look at the unchanged twin. The next export deleted the twin
# (deletes go first) and created a new account in its place: a new objectId, its licenses, mailbox and memberships
# gone, one user far below the deletion threshold (500). Now the twin is joined again and its delete withdrawn.


def test_an_outbound_slip_fixed_before_the_export_leaves_the_joined_user_alone(store):
    rules = world_with_cloud_twins(store, 2)
    import_delta(store, "ad", [ad_user(1, msExchRecipientTypeDetails=str(0x800000))])  # the slip: cloudFiltered
    run_sync(store, rules, connector="ad", mode="delta")
    run_sync(store, rules, connector="entra", mode="delta")
    import_delta(store, "ad", [ad_user(1, msExchRecipientTypeDetails="1")])  # fixed, before any export
    run_sync(store, rules, connector="ad", mode="delta")
    run_sync(store, rules, connector="entra", mode="delta")
    planned = {anchor: row["operation"] for anchor, row in exports(store).items()}
    assert planned == {}, planned  # current code: {'cloud-1': 'delete', 'provisional:…': 'add'}


# ---------------------------------------------------------------------------------------------- a disconnected account
# A deleted person disconnects (does not delete) an account only Join rules update. But an update staged
# for that account while the person was there stays in the plan: the next export writes HR's values into an account
# sync no longer holds (and no pass looks at it again, so the row stays until an export sends it).


DISCONNECT_RULES = """
rules:
  - {name: hr, direction: inbound, connector: hr, source_object_type: employee, target_object_type: person,
     link_type: Provision, precedence: 10,
     flows: [{type: Direct, source: empNo, target: employeeId}, {type: Direct, source: title, target: title}]}
  - {name: dir in, direction: inbound, connector: dir, source_object_type: account, target_object_type: person,
     link_type: Join, precedence: 20, join: [[{source: empNo, target: employeeId}]], flows: []}
  - {name: dir out, direction: outbound, connector: dir, source_object_type: person, target_object_type: account,
     link_type: Join, precedence: 30, flows: [{type: Direct, source: title, target: title}]}
"""


def obj(kind: str, anchor: str, **attrs: str) -> SourceObject:
    return SourceObject(anchor=anchor, dn=anchor, object_type=kind, attrs={k: [v] for k, v in attrs.items()})


def test_a_disconnected_accounts_unsent_update_goes_with_the_link(store):
    rules = load_rules_text(DISCONNECT_RULES, name="disconnect.yaml")
    import_full(store, "hr", [obj("employee", "hr-1", empNo="E1", title="Engineer")])
    run_sync(store, rules, connector="hr", mode="full")
    import_full(store, "dir", [obj("account", "dir-1", empNo="E1", title="Engineer")])
    run_sync(store, rules, connector="dir", mode="full")
    assert links(store, "dir")[("dir", "dir-1")][1] == "join"
    import_delta(store, "hr", [obj("employee", "hr-1", empNo="E1", title="Manager")])
    run_sync(store, rules, connector="hr", mode="delta")
    assert exports(store, "dir")["dir-1"]["changes"] == {"title": ["Manager"]}
    import_delta(store, "hr", [deleted("hr-1")])  # before the export: HR removes the person
    run_sync(store, rules, connector="hr", mode="delta")
    assert ("dir", "dir-1") not in links(store)
    assert "dir-1" not in exports(store, "dir"), exports(store, "dir")


# ------------------------------------------------------------------------------- a deprovisioned cloud user stays out
# A joined cloud user whose person becomes cloudFiltered is deprovisioned: its link goes and its delete is staged.
# Until that delete is exported, the cloud user is a disconnector with a pending delete, and it stays one: the
# product never joins it again. Here every sync of the Entra connector (full, or delta after a change of the cloud
# user) joined it to the person again, and the outbound half deprovisioned it again: a link made and removed per
# pass. And the link went without the Entra connector's contributions (attribute recall): the person kept the
# cloudAnchor of a cloud user no longer joined to it.


def entra_passes() -> list[tuple[str, list[SourceObject]]]:
    """The Entra syncs run while the delete is pending: two full ones, then a delta one after a change in the tenant."""
    return [("full", []), ("full", []), ("delta", [cloud_twin(2, displayName="User 2 (renamed in the tenant)")])]


def pending_rows(store: Store, connector: str = "entra") -> dict[str, tuple]:
    """Every column of the connector's pending exports, by anchor (a delete "exactly as it was")."""
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(pending_export).where(pending_export.c.connector == connector)).all()
    return {row.anchor: tuple(row) for row in rows}


def entra_contributions(store: Store, mv_id: int) -> dict[str, list[str]]:
    """The attributes of metaverse object ``mv_id`` the Entra connector contributes, with their contributor keys."""
    with store.engine.connect() as connection:
        stored = connection.execute(sa.select(mv_object.c.contributions).where(mv_object.c.id == mv_id)).scalar_one()
    return {name: [k for k in keys if k.startswith("entra|")] for name, keys in json.loads(stored).items()
            if any(k.startswith("entra|") for k in keys)}  # fmt: skip


def deprovisioned_cloud_user(store: Store):
    """Two users joined to their cloud twins; user 2 becomes cloudFiltered and an AD delta sync deprovisions its twin.
    Returns the rules and user 2's metaverse id."""
    rules = world_with_cloud_twins(store, 2)
    bob_id, bob = mv_by(store, "accountName", "user2")
    assert bob["cloudAnchor"] == ["cloud-2"]
    assert entra_contributions(store, bob_id) == {"cloudAnchor": ["entra|In from AAD - User Join"]}
    import_delta(store, "ad", [ad_user(2, msExchRecipientTypeDetails=FILTERED)])  # out of every Entra rule's scope
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    assert exports(store) == {
        "cloud-2": {"operation": "delete", "changes": {}, "state": "pending", "dn": "users/cloud-2"}
    }
    assert ("entra", "cloud-2") not in links(store)
    return rules, bob_id


def test_a_deprovisioned_cloud_user_stays_a_disconnector_until_its_delete_is_exported(store):
    rules, bob_id = deprovisioned_cloud_user(store)
    staged = pending_rows(store)
    for mode, changes in entra_passes():
        if changes:
            import_delta(store, "entra", changes)
        result = run_sync(store, rules, connector="entra", mode=mode)
        assert result.result == "success", (mode, result)
        made_and_removed = {k: result.counters[k] for k in ("joins", "disconnections", "export_deletes_staged")}
        assert made_and_removed == {"joins": 0, "disconnections": 0, "export_deletes_staged": 0}, (
            mode,
            result.counters,
        )
        assert result.counters["disconnectors"] == 1, (mode, result.counters)
        assert ("entra", "cloud-2") not in links(store), mode
        assert pending_rows(store) == staged, mode  # the delete exactly as it was

    # Back in scope before the export: the AD pass joins the cloud user again and withdraws its delete.
    import_delta(store, "ad", [ad_user(2, msExchRecipientTypeDetails="1")])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    assert links(store, "entra")[("entra", "cloud-2")] == (bob_id, "join")
    planned = {anchor: (row["operation"], row["changes"]) for anchor, row in exports(store).items()}
    assert planned == {"cloud-2": ("update", {"displayName": ["User 2"]})}  # the tenant's rename is corrected


def test_a_deprovisioned_cloud_users_contributions_are_recalled(store):
    rules, bob_id = deprovisioned_cloud_user(store)
    assert "cloudAnchor" not in mv_by(store, "accountName", "user2")[1]
    assert entra_contributions(store, bob_id) == {}
    for mode, changes in entra_passes():
        if changes:
            import_delta(store, "entra", changes)
        assert run_sync(store, rules, connector="entra", mode=mode).result == "success"
        assert "cloudAnchor" not in mv_by(store, "accountName", "user2")[1], mode
        assert entra_contributions(store, bob_id) == {}, mode

    # Joined again by the AD pass (back in scope before the export): the next sync of Entra, a delta one, brings its
    # values back.
    import_delta(store, "ad", [ad_user(2, msExchRecipientTypeDetails="1")])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    assert run_sync(store, rules, connector="entra", mode="delta").result == "success"
    assert mv_by(store, "accountName", "user2")[1]["cloudAnchor"] == ["cloud-2"]
    assert entra_contributions(store, bob_id) == {"cloudAnchor": ["entra|In from AAD - User Join"]}
