"""The shipped rules end to end on a hand-built AD/Entra world: projection, exports, deltas, hard match, deletes."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.rules import load_default_rules
from airflow_provider_aadsync.engine.store import run_error
from airflow_provider_aadsync.engine.sync import PROVISIONAL_PREFIX, run_sync
from tests.support.world import (
    ad_group,
    ad_user,
    cloud_twin_of_user1,
    confirm_group,
    deleted,
    entra_user,
    export_for,
    exports,
    guid,
    immutable_id,
    import_delta,
    import_full,
    links,
    metaverse,
    mv_by,
    mv_members,
    reference_exports,
    seed,
)


def test_full_sync_projects_in_scope_objects_and_stages_entra_adds(store, rules):
    seed(store)
    result = run_sync(store, rules, connector="ad", mode="full")
    assert result.result == "success", result
    persons = {mv_id: attrs for mv_id, attrs in metaverse(store).items() if attrs["type"] == "person"}
    # critical system object, AAD_/MSOL_ accounts, the conflict victim and the account without sAMAccountName: out
    assert sorted(attrs["accountName"][0] for attrs in persons.values()) == ["user1", "user2", "user8"]
    assert result.counters["projections"] == 5 and result.counters["disconnectors"] == 5

    mv_id, user1 = mv_by(store, "accountName", "user1")
    assert user1["sourceAnchor"] == [immutable_id(guid(1))]
    assert user1["accountEnabled"] == [True] and user1["department"] == ["Sales"]
    export = export_for(store, mv_id)
    assert export["anchor"].startswith(PROVISIONAL_PREFIX) and export["operation"] == "add"
    assert export["changes"]["onPremisesImmutableId"] == [immutable_id(guid(1))]
    assert export["changes"]["userPrincipalName"] == ["user1@corp.example"]
    assert export["changes"]["surname"] == ["Surname1"] and export["changes"]["accountEnabled"] == [True]
    assert "proxyAddresses" not in export["changes"]  # read-only in Graph
    assert mv_by(store, "accountName", "user2")[1]["accountEnabled"] == [False]
    # ms-DS-ConsistencyGuid wins over objectGUID
    assert mv_by(store, "accountName", "user8")[1]["sourceAnchor"] == [immutable_id(guid(800))]
    assert mv_by(store, "accountName", "user1")[1]["sourceAnchor"] == [immutable_id(guid(1))]
    # groups anchor on objectGUID only, whatever their ms-DS-ConsistencyGuid holds
    assert mv_by(store, "accountName", "Nested")[1]["sourceAnchor"] == [immutable_id(guid(21))]

    staff_id, staff = mv_by(store, "accountName", "Staff")
    assert staff["securityEnabled"] == [True] and staff["mailEnabled"] == [False]
    member_ids = {mv_by(store, "accountName", name)[0] for name in ("user1", "user2", "Nested")}
    assert mv_members(store, staff_id) == member_ids
    staff_anchor = export_for(store, staff_id)["anchor"]
    entra = links(store, "entra")
    anchors_of = {mv: anchor for (_c, anchor), (mv, _t) in entra.items()}
    assert {(a, t, op) for a, t, op in reference_exports(store) if a == staff_anchor} == {
        (staff_anchor, anchors_of[m], "add") for m in member_ids
    }
    assert result.counters["export_adds_staged"] == 5
    assert result.counters["export_reference_adds_staged"] == 4


def test_second_full_sync_stages_nothing(store, rules):
    seed(store)
    run_sync(store, rules, connector="ad", mode="full")
    before = exports(store), reference_exports(store)
    again = run_sync(store, rules, connector="ad", mode="full")
    assert again.result == "success"
    staged = {name: value for name, value in again.counters.items() if "staged" in name and value}
    assert staged == {}
    assert (exports(store), reference_exports(store)) == before


def test_delta_sync_touches_only_changed_objects(store, rules):
    seed(store)
    run_sync(store, rules, connector="ad", mode="full")
    import_delta(store, "ad", [ad_user(1, department="Finance")])
    result = run_sync(store, rules, connector="ad", mode="delta")
    assert result.mode == "delta" and result.counters["objects_evaluated"] == 1
    mv_id, attrs = mv_by(store, "accountName", "user1")
    assert attrs["department"] == ["Finance"]
    assert export_for(store, mv_id)["changes"]["department"] == ["Finance"]
    assert result.counters["export_adds_staged"] == 1  # the still-pending add now carries the new value
    quiet = run_sync(store, rules, connector="ad", mode="delta")
    assert quiet.counters["objects_evaluated"] == 0


def test_membership_delta_stages_member_add_and_remove(store, rules):
    seed(store)
    run_sync(store, rules, connector="ad", mode="full")
    staff_id = mv_by(store, "accountName", "Staff")[0]
    staff_anchor = export_for(store, staff_id)["anchor"]
    anchors_of = {mv: anchor for (_c, anchor), (mv, _t) in links(store, "entra").items()}
    user1, user2, user8, nested = (mv_by(store, "accountName", n)[0] for n in ("user1", "user2", "user8", "Nested"))
    # the group was exported: the Entra connector space now holds it with its three members
    confirm_group(store, staff_anchor, [anchors_of[user1], anchors_of[user2], anchors_of[nested]])

    import_delta(store, "ad", [ad_group(20, "Staff", members=[1, 8])])  # user2 and Nested out, user8 in
    result = run_sync(store, rules, connector="ad", mode="delta")
    assert result.counters["objects_evaluated"] == 1
    assert mv_members(store, staff_id) == {user1, user8}
    staged = {(t, op) for a, t, op in reference_exports(store) if a == staff_anchor}
    assert staged == {(anchors_of[user8], "add"), (anchors_of[user2], "remove"), (anchors_of[nested], "remove")}
    assert result.counters["export_reference_adds_staged"] == 1
    assert result.counters["export_reference_removes_staged"] == 2


def test_entra_hard_match_joins_existing_cloud_user_instead_of_creating_one(store, rules):
    seed(store)
    run_sync(store, rules, connector="ad", mode="full")
    mv_id, _ = mv_by(store, "accountName", "user1")
    provisional = export_for(store, mv_id)["anchor"]
    import_full(
        store,
        "entra",
        [cloud_twin_of_user1("Old department"), entra_user("cloud-only", "someone@corp.onmicrosoft.com")],
    )
    result = run_sync(store, rules, connector="entra", mode="full")
    assert result.result == "success", result
    assert links(store, "entra")[("entra", "cloud-1")] == (mv_id, "join")
    assert ("entra", provisional) not in links(store, "entra") and provisional not in exports(store)
    update = exports(store)["cloud-1"]
    assert update["operation"] == "update"
    # only what differs: the cloud user already had every other value
    assert update["changes"] == {"department": ["Sales"]}
    assert mv_by(store, "cloudAnchor", "cloud-1")[0] == mv_id
    assert ("entra", "cloud-only") not in links(store)  # cloud-only users stay disconnectors


def test_deleting_the_ad_user_deprovisions_its_cloud_user(store, rules):
    seed(store)
    run_sync(store, rules, connector="ad", mode="full")
    mv_id, _ = mv_by(store, "accountName", "user1")
    import_full(store, "entra", [entra_user("cloud-1", "user1@corp.example", immutable_id(guid(1)))])
    run_sync(store, rules, connector="entra", mode="full")
    user2_id, _ = mv_by(store, "accountName", "user2")
    user2_provisional = export_for(store, user2_id)["anchor"]

    import_delta(store, "ad", [deleted(guid(1)), deleted(guid(2))])
    result = run_sync(store, rules, connector="ad", mode="delta")
    assert result.result == "success", result
    assert mv_id not in metaverse(store) and user2_id not in metaverse(store)
    assert exports(store)["cloud-1"]["operation"] == "delete"
    assert user2_provisional not in exports(store)  # never created: the planned add is withdrawn, nothing deleted
    assert result.counters["metaverse_deletes"] == 2
    staff_id = mv_by(store, "accountName", "Staff")[0]
    assert mv_members(store, staff_id) == {mv_by(store, "accountName", "Nested")[0]}


def test_moving_out_of_scope_disconnects_and_deprovisions(store, rules):
    seed(store)
    run_sync(store, rules, connector="ad", mode="full")
    mv_id, _ = mv_by(store, "accountName", "user8")
    import_delta(store, "ad", [ad_user(8, "user8", isCriticalSystemObject="TRUE")])
    result = run_sync(store, rules, connector="ad", mode="delta")
    assert result.counters["disconnections"] == 1
    assert mv_id not in metaverse(store)
    assert ("ad", guid(8)) not in links(store)


def test_member_limit_is_a_per_object_error_and_the_rest_goes_on(store):
    from airflow_provider_aadsync.engine.sync.settings import rule_parameters

    rules = load_default_rules({**rule_parameters(), "MemberLimit": 2})
    seed(store)
    result = run_sync(store, rules, connector="ad", mode="full")
    assert result.result == "completed-sync-errors"
    with store.engine.connect() as connection:
        errors = connection.execute(sa.select(run_error).where(run_error.c.run_id == result.run_id)).all()
    assert len(errors) == 1 and "Maximum member count exceeded: more than 2 members" in errors[0].message
    staff_id = mv_by(store, "accountName", "Staff")[0]
    nested_id = mv_by(store, "accountName", "Nested")[0]
    assert not any(m == staff_id for (_c, _a), (m, _t) in links(store, "entra").items())
    assert export_for(store, nested_id)["operation"] == "add"
    assert result.counters["export_adds_staged"] == 4


def test_a_group_over_the_member_limit_gets_no_member_added_when_a_member_is_provisioned_alone(store):
    """A group over the limit is refused in the pass that sees it grow. A later pass that only provisions one of its
    members (come into the outbound scope on its own) must not stage that member's add to the group, as a group the
    pass did not evaluate would get it: the group is evaluated again, and refused again."""
    from airflow_provider_aadsync.engine.sync.settings import rule_parameters

    rules = load_default_rules({**rule_parameters(), "MemberLimit": 3})
    seed(store)
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    staff_id = mv_by(store, "accountName", "Staff")[0]
    staff_anchor = export_for(store, staff_id)["anchor"]
    anchors_of = {mv: anchor for (_c, anchor), (mv, _t) in links(store, "entra").items()}
    members = [anchors_of[mv_by(store, "accountName", name)[0]] for name in ("user1", "user2", "Nested")]
    confirm_group(store, staff_anchor, members)  # exported with its three members

    # user9 joins Staff (four members, over the limit) while it is an Exchange system mailbox: in the metaverse,
    # cloud filtered, so not provisioned; the group is refused
    system_mailbox = {"msExchRecipientTypeDetails": "8388608"}
    import_delta(store, "ad", [ad_user(9, **system_mailbox), ad_group(20, "Staff", members=[1, 2, 21, 9])])
    grown = run_sync(store, rules, connector="ad", mode="delta")
    assert grown.result == "completed-sync-errors"
    user9 = mv_by(store, "accountName", "user9")[0]
    assert user9 in mv_members(store, staff_id) and user9 not in anchors_of
    assert [row for row in reference_exports(store) if row[0] == staff_anchor] == []

    # user9 is an ordinary mailbox now: provisioned in a pass that does not touch Staff
    import_delta(store, "ad", [ad_user(9, msExchRecipientTypeDetails=[])])
    provisioned = run_sync(store, rules, connector="ad", mode="delta")
    assert provisioned.counters["provisioned"] == 1
    assert export_for(store, user9)["operation"] == "add"
    assert [row for row in reference_exports(store) if row[0] == staff_anchor] == []
    assert provisioned.counters["export_reference_adds_staged"] == 0
    with store.engine.connect() as connection:
        errors = connection.execute(sa.select(run_error).where(run_error.c.run_id == provisioned.run_id)).all()
    assert ["Maximum member count exceeded" in error.message for error in errors] == [True]


def test_v1_and_v2_member_limits():
    from airflow_provider_aadsync.engine.sync.settings import member_limit

    assert member_limit("v2") == 250_000 and member_limit("v1") == 50_000
    with pytest.raises(ValueError, match="v2"):
        member_limit("v3")


def test_a_cloud_side_edit_is_corrected_by_the_next_delta_sync(store, rules):
    seed(store)
    run_sync(store, rules, connector="ad", mode="full")
    import_full(store, "entra", [cloud_twin_of_user1("Sales")])
    run_sync(store, rules, connector="entra", mode="full")
    assert "cloud-1" not in exports(store)  # in step: nothing to write
    import_delta(store, "entra", [entra_user("cloud-1", "user1@corp.example", department="Edited in the portal")])
    result = run_sync(store, rules, connector="entra", mode="delta")
    assert result.counters["objects_evaluated"] == 1
    assert exports(store)["cloud-1"]["changes"] == {"department": ["Sales"]}
