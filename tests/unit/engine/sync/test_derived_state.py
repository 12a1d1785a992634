"""What the store derives from the directories follows them when an object leaves: a group's metaverse members when
a member or the group itself is disconnected, a target group's member adds when a member is provisioned, withdrawn or
joined in a pass that does not evaluate the group, a pending delete when its object is back, an apply-once value's
precedence, a sticky-joined object's values once no rule reads it. Each case, before it was fixed, left the derived
rows as they were, and the sync memo kept full syncs from correcting them."""

from __future__ import annotations

import sqlalchemy as sa

from airflow_provider_aadsync.engine.rules import load_rules_text
from airflow_provider_aadsync.engine.runs.source import SourceObject
from airflow_provider_aadsync.engine.store import Store, export_conflict, utcnow
from airflow_provider_aadsync.engine.sync import run_sync
from tests.support.world import (
    ad_user,
    deleted,
    export_for,
    exports,
    import_delta,
    import_full,
    links,
    metaverse,
    mv_by,
    mv_members,
    reference_exports,
    world_with_cloud_twins,
)


def user(anchor: str, name: str, **attrs: str) -> SourceObject:
    values = {"name": [name], **{k: [v] for k, v in attrs.items()}}
    return SourceObject(anchor=anchor, dn=f"CN={name}", object_type="user", attrs=values)


def group(anchor: str, name: str, members=()) -> SourceObject:
    return SourceObject(
        anchor=anchor,
        dn=f"CN={name}",
        object_type="group",
        attrs={"name": [name]},
        references={"member": [(m, f"CN={m}") for m in members]},
    )


def employee(anchor: str, name: str) -> SourceObject:
    return SourceObject(anchor=anchor, dn=f"emp/{name}", object_type="employee", attrs={"name": [name]})


# ------------------------------------------------------------------------------------- metaverse members
MEMBER_RULES = """
rules:
  - {name: hr people, direction: inbound, connector: hr, source_object_type: employee, target_object_type: person,
     link_type: Provision, precedence: 1, flows: [{type: Direct, source: name, target: name}]}
  - name: ad users
    direction: inbound
    connector: ad
    source_object_type: user
    target_object_type: person
    link_type: Join
    precedence: 2
    scoping: [[{attribute: kind, operator: EQUAL, value: staff}]]
    join: [[{source: name, target: name}]]
    flows: [{type: Direct, source: name, target: name}]
  - {name: ad groups, direction: inbound, connector: ad, source_object_type: group, target_object_type: group,
     link_type: Provision, precedence: 3,
     flows: [{type: Direct, source: name, target: name}, {type: Direct, source: member, target: member}]}
"""


def test_a_member_disconnected_leaves_its_groups_metaverse_members(store):
    """The AD user leaves its join rule's scope: disconnected, while its person stays (HR projects it). The group
    still lists the user in AD, but the user resolves to no metaverse object now: the person is no member any more,
    in the same delta sync."""
    rules = load_rules_text(MEMBER_RULES, name="members.yaml")
    import_full(store, "hr", [employee("e1", "U1")])
    run_sync(store, rules, connector="hr", mode="full")
    import_full(store, "ad", [user("u1", "U1", kind="staff"), group("g1", "G", ["u1"])])
    run_sync(store, rules, connector="ad", mode="full")
    person, group_id = mv_by(store, "name", "U1")[0], mv_by(store, "name", "G")[0]
    assert mv_members(store, group_id) == {person}
    import_delta(store, "ad", [user("u1", "U1", kind="contractor")])
    result = run_sync(store, rules, connector="ad", mode="delta")
    assert result.counters["disconnections"] == 1 and ("ad", "u1") not in links(store)
    assert person in metaverse(store)
    assert mv_members(store, group_id) == set()
    assert run_sync(store, rules, connector="ad", mode="full").counters["metaverse_reference_adds"] == 0


GROUP_RULES = """
rules:
  - {name: ad users, direction: inbound, connector: ad, source_object_type: user, target_object_type: person,
     link_type: Provision, precedence: 1, flows: [{type: Direct, source: name, target: name}]}
  - {name: ad groups, direction: inbound, connector: ad, source_object_type: group, target_object_type: group,
     link_type: Provision, precedence: 2,
     flows: [{type: Direct, source: name, target: name}, {type: Direct, source: member, target: member}]}
  - name: dir groups
    direction: inbound
    connector: dir
    source_object_type: group
    target_object_type: group
    link_type: Provision
    precedence: 3
    join: [[{source: name, target: name}]]
    flows: [{type: Direct, source: name, target: name}]
"""


def test_a_group_disconnected_from_the_connector_of_its_members_loses_them(store):
    """The metaverse group stays (another directory's group joined it), but the connector that contributed its
    members deleted its group: nobody contributes ``member`` any more, so it has no members."""
    rules = load_rules_text(GROUP_RULES, name="groups.yaml")
    import_full(store, "ad", [user("u1", "U1"), group("g1", "G", ["u1"])])
    run_sync(store, rules, connector="ad", mode="full")
    import_full(store, "dir", [SourceObject(anchor="d1", dn="G", object_type="group", attrs={"name": ["G"]})])
    run_sync(store, rules, connector="dir", mode="full")
    group_id = mv_by(store, "name", "G")[0]
    assert links(store, "dir")[("dir", "d1")] == (group_id, "join")
    assert mv_members(store, group_id) == {mv_by(store, "name", "U1")[0]}
    import_delta(store, "ad", [deleted("g1")])
    result = run_sync(store, rules, connector="ad", mode="delta")
    assert result.counters["disconnections"] == 1 and group_id in metaverse(store)
    assert mv_members(store, group_id) == set()


# ---------------------------------------------------------------------------------- target member changes
EXPORT_RULES = """
rules:
  - {name: ad users, direction: inbound, connector: ad, source_object_type: user, target_object_type: person,
     link_type: Provision, precedence: 1,
     flows: [{type: Direct, source: name, target: name}, {type: Direct, source: kind, target: kind}]}
  - {name: ad groups, direction: inbound, connector: ad, source_object_type: group, target_object_type: group,
     link_type: Provision, precedence: 2,
     flows: [{type: Direct, source: name, target: name}, {type: Direct, source: member, target: member}]}
  - name: out users
    direction: outbound
    connector: cloud
    source_object_type: person
    target_object_type: user
    link_type: Provision
    precedence: 10
    scoping: [[{attribute: kind, operator: EQUAL, value: staff}]]
    flows: [{type: Direct, source: name, target: displayName}]
  - name: out groups
    direction: outbound
    connector: cloud
    source_object_type: group
    target_object_type: group
    link_type: Provision
    precedence: 11
    flows: [{type: Direct, source: name, target: displayName}, {type: Direct, source: member, target: members}]
"""


def cloud_anchor(store: Store, name: str) -> str:
    return export_for(store, mv_by(store, "name", name)[0], "cloud")["anchor"]


def test_a_member_provisioned_alone_is_added_to_its_groups(store):
    """U2 comes into the outbound scope in a delta sync that changes nothing of its group: it is provisioned, and the
    group, already planned in the target, gets it as a member in the same pass."""
    rules = load_rules_text(EXPORT_RULES, name="exports.yaml")
    members = [user("u1", "U1", kind="staff"), user("u2", "U2", kind="contractor")]
    import_full(store, "ad", [*members, group("g1", "G", ["u1", "u2"])])
    run_sync(store, rules, connector="ad", mode="full")
    group_anchor, u1 = cloud_anchor(store, "G"), cloud_anchor(store, "U1")
    assert reference_exports(store, "cloud") == {(group_anchor, u1, "add")}
    import_delta(store, "ad", [user("u2", "U2", kind="staff")])
    run_sync(store, rules, connector="ad", mode="delta")
    wanted = {(group_anchor, u1, "add"), (group_anchor, cloud_anchor(store, "U2"), "add")}
    assert reference_exports(store, "cloud") == wanted
    run_sync(store, rules, connector="ad", mode="full")
    assert reference_exports(store, "cloud") == wanted


def test_a_member_whose_creation_is_withdrawn_is_no_member_add_of_its_groups(store):
    """U2 leaves the outbound scope before its planned creation was exported: the creation is withdrawn, and so is
    the group's member add naming the object that will never be made."""
    rules = load_rules_text(EXPORT_RULES, name="exports.yaml")
    members = [user("u1", "U1", kind="staff"), user("u2", "U2", kind="staff")]
    import_full(store, "ad", [*members, group("g1", "G", ["u1", "u2"])])
    run_sync(store, rules, connector="ad", mode="full")
    group_anchor, u1 = cloud_anchor(store, "G"), cloud_anchor(store, "U1")
    assert len(reference_exports(store, "cloud")) == 2
    import_delta(store, "ad", [user("u2", "U2", kind="contractor")])
    assert run_sync(store, rules, connector="ad", mode="delta").counters["export_adds_withdrawn"] == 1
    assert reference_exports(store, "cloud") == {(group_anchor, u1, "add")}
    run_sync(store, rules, connector="ad", mode="full")
    assert reference_exports(store, "cloud") == {(group_anchor, u1, "add")}


def test_a_conflict_recorded_for_a_withdrawn_creation_is_released_with_it(store):
    """An export recorded a UPN conflict for U2's planned creation and its retry failed, so the creation stayed
    pending. U2 then leaves the scope: the creation is withdrawn, and its conflict is released with it instead of
    staying open in the plan (and quarantining nothing) for good."""
    rules = load_rules_text(EXPORT_RULES, name="exports.yaml")
    import_full(store, "ad", [user("u1", "U1", kind="staff"), user("u2", "U2", kind="staff")])
    run_sync(store, rules, connector="ad", mode="full")
    u1, u2 = cloud_anchor(store, "U1"), cloud_anchor(store, "U2")
    with store.transaction() as connection:
        for anchor in (u1, u2):
            connection.execute(
                sa.insert(export_conflict).values(
                    connector="cloud",
                    anchor=anchor,
                    attribute="userPrincipalName",
                    wanted_value=f"{anchor}@contoso.com",
                    placeholder=None,
                    detected_at=utcnow(),
                )
            )
    import_delta(store, "ad", [user("u2", "U2", kind="contractor")])
    assert run_sync(store, rules, connector="ad", mode="delta").counters["export_adds_withdrawn"] == 1
    with store.engine.connect() as connection:
        open_conflicts = connection.execute(
            sa.select(export_conflict.c.anchor).where(export_conflict.c.released_at.is_(None))
        ).scalars()
        assert list(open_conflicts) == [u1]  # U1's creation is still planned: its conflict stays open
        assert (
            connection.execute(
                sa.select(export_conflict.c.released_at).where(export_conflict.c.anchor == u2)
            ).scalar_one()
            is not None
        )


# ------------------------------------------------------------------------------------------ contributions
APPLY_ONCE_RULES = """
rules:
  - name: hr
    direction: inbound
    connector: hr
    source_object_type: employee
    target_object_type: person
    link_type: Provision
    precedence: 10
    flows:
      - {type: Direct, source: employeeId, target: employeeId}
      - {type: Direct, source: hireCode, target: hireCode, apply_once: true}
  - name: dir
    direction: inbound
    connector: dir
    source_object_type: account
    target_object_type: person
    link_type: Join
    precedence: 20
    join: [[{source: empNo, target: employeeId}]]
    flows:
      - {type: Direct, source: hireCode, target: hireCode}
"""


def test_an_apply_once_value_takes_its_rules_new_precedence(store):
    """An apply-once flow keeps the value it first wrote, not the precedence its rule had then: once HR's rule comes
    after the directory's, the directory's value wins."""
    rules = load_rules_text(APPLY_ONCE_RULES, name="once.yaml")
    hr = SourceObject(
        anchor="hr-1", dn="e/1", object_type="employee", attrs={"employeeId": ["E1"], "hireCode": ["H-HR"]}
    )
    import_full(store, "hr", [hr])
    run_sync(store, rules, connector="hr", mode="full")
    account = SourceObject(
        anchor="dir-1", dn="a/1", object_type="account", attrs={"empNo": ["E1"], "hireCode": ["H-DIR"]}
    )
    import_full(store, "dir", [account])
    run_sync(store, rules, connector="dir", mode="full")
    assert mv_by(store, "employeeId", "E1")[1]["hireCode"] == ["H-HR"]  # HR (10) beats the directory (20)
    changed = load_rules_text(APPLY_ONCE_RULES.replace("precedence: 10", "precedence: 30"), name="once.yaml")
    run_sync(store, changed, connector="hr", mode="full")
    assert mv_by(store, "employeeId", "E1")[1]["hireCode"] == ["H-DIR"]


STICKY_RULES = """
rules:
  - {name: hr, direction: inbound, connector: hr, source_object_type: employee, target_object_type: person,
     link_type: Provision, precedence: 10, flows: [{type: Direct, source: employeeId, target: employeeId}]}
  - {name: dir contacts, direction: inbound, connector: dir, source_object_type: contact, target_object_type: person,
     link_type: Join, precedence: 30, join: [[{source: empNo, target: employeeId}]],
     flows: [{type: Direct, source: phone, target: phone}]}
"""
STICKY_ACCOUNTS = """
  - {name: dir accounts, direction: inbound, connector: dir, source_object_type: account, target_object_type: person,
     link_type: StickyJoin, precedence: 20, join: [[{source: empNo, target: employeeId}]],
     flows: [{type: Direct, source: office, target: office}]}
"""


def test_a_sticky_joined_object_no_rule_reads_any_more_stops_contributing(store):
    """The sticky join stays when the rule that made it is removed, as it stays out of that rule's scope; what the
    object contributed through the rule goes in both cases."""
    with_accounts = load_rules_text(STICKY_RULES + STICKY_ACCOUNTS, name="sticky.yaml")
    hr = SourceObject(anchor="hr-1", dn="e/1", object_type="employee", attrs={"employeeId": ["E1"]})
    import_full(store, "hr", [hr])
    run_sync(store, with_accounts, connector="hr", mode="full")
    account = SourceObject(anchor="dir-1", dn="a/1", object_type="account", attrs={"empNo": ["E1"], "office": ["B12"]})
    import_full(store, "dir", [account])
    run_sync(store, with_accounts, connector="dir", mode="full")
    assert mv_by(store, "employeeId", "E1")[1]["office"] == ["B12"]
    run_sync(store, load_rules_text(STICKY_RULES, name="sticky.yaml"), connector="dir", mode="full")
    assert links(store, "dir")[("dir", "dir-1")][1] == "sticky-join"
    assert "office" not in mv_by(store, "employeeId", "E1")[1]


JOIN_IN_TARGET_RULES = """
rules:
  - {name: ad users, direction: inbound, connector: ad, source_object_type: user, target_object_type: person,
     link_type: Provision, precedence: 1, flows: [{type: Direct, source: name, target: name}]}
  - {name: ad groups, direction: inbound, connector: ad, source_object_type: group, target_object_type: group,
     link_type: Provision, precedence: 2,
     flows: [{type: Direct, source: name, target: name}, {type: Direct, source: member, target: member}]}
  - {name: cloud users, direction: inbound, connector: cloud, source_object_type: user, target_object_type: person,
     link_type: Join, precedence: 3, join: [[{source: name, target: name}]], flows: []}
  - name: out groups
    direction: outbound
    connector: cloud
    source_object_type: group
    target_object_type: group
    link_type: Provision
    precedence: 11
    flows: [{type: Direct, source: name, target: displayName}, {type: Direct, source: member, target: members}]
"""


def test_a_member_joined_in_the_target_becomes_its_groups_member_there(store):
    """U1 has no cloud object, so its group's member row there waits. The cloud sync joins an existing cloud user to
    U1's person: the group's member add names it in that sync, not only once the group changes (a full sync of AD
    skips the unchanged group)."""
    rules = load_rules_text(JOIN_IN_TARGET_RULES, name="joins.yaml")
    import_full(store, "ad", [user("u1", "U1"), group("g1", "G", ["u1"])])
    run_sync(store, rules, connector="ad", mode="full")
    group_anchor = cloud_anchor(store, "G")
    assert reference_exports(store, "cloud") == set()  # U1 has no cloud object yet: unresolved
    cloud_user = SourceObject(anchor="c1", dn="users/c1", object_type="user", attrs={"name": ["U1"]})
    import_full(store, "cloud", [cloud_user])
    run_sync(store, rules, connector="cloud", mode="full")
    assert links(store, "cloud")[("cloud", "c1")][0] == mv_by(store, "name", "U1")[0]
    assert reference_exports(store, "cloud") == {(group_anchor, "c1", "add")}
    run_sync(store, rules, connector="ad", mode="full")
    assert reference_exports(store, "cloud") == {(group_anchor, "c1", "add")}


def test_a_pending_delete_is_withdrawn_when_its_object_is_back_in_scope(store):
    """A slip scopes user 1 out: its cloud twin's delete is staged (and held: staging mode, the deletion threshold).
    Fixed before any export, user 1 is back and its twin joined again with nothing to change: the delete goes, or the
    next export would delete a user in scope."""
    rules = world_with_cloud_twins(store, 2)
    import_delta(store, "ad", [ad_user(1, isCriticalSystemObject="TRUE")])
    run_sync(store, rules, connector="ad", mode="delta")
    run_sync(store, rules, connector="entra", mode="delta")
    assert exports(store)["cloud-1"]["operation"] == "delete"
    import_full(store, "ad", [ad_user(1), ad_user(2)])
    back = run_sync(store, rules, connector="ad", mode="delta")  # rejoins cloud-1 by its anchor already
    result = run_sync(store, rules, connector="entra", mode="full")
    assert links(store, "entra")[("entra", "cloud-1")][0] == mv_by(store, "accountName", "user1")[0]
    withdrawn = back.counters["export_deletes_withdrawn"] + result.counters.get("export_deletes_withdrawn", 0)
    assert withdrawn == 1 and back.counters.get("export_adds_staged", 0) == 0
    assert "cloud-1" not in exports(store)
