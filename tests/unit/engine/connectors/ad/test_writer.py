"""The AD exporter (group writeback) against an in-memory directory: the LDAP writes it makes and what the store keeps.

The first test takes its plan from the real sync (a Microsoft 365 group written back by the shipped rules); the rest
stage plans by hand on groups already in the directory. tests/integration runs the same exporter against Samba.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_aadsync.engine.connectors.ad.writer import MARK_ATTRIBUTE, ADExportSettings, run_ad_export
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync import PROVISIONAL_PREFIX
from tests.support.fakes import FakeLdapWriter
from tests.support.plans import cs_attrs, cs_references, cs_row, open_plan, plan_references, plan_row
from tests.support.stores import fresh_store
from tests.support.world import guid
from tests.support.writeback import sync_a_written_back_group

OU = "OU=Writeback,DC=corp,DC=example"
CLOUD_ID = "5a1e5000-0000-4000-8000-00000000c0de"
PROVISIONAL = f"{PROVISIONAL_PREFIX}00000000-0000-4000-8000-000000000001"


@pytest.fixture
def store(tmp_path):
    with fresh_store(tmp_path) as opened:
        yield opened


@pytest.fixture
def ldap() -> FakeLdapWriter:
    return FakeLdapWriter()


def export(store: Store, ldap: FakeLdapWriter, **settings: Any):
    return run_ad_export(store, ldap, settings=ADExportSettings(**settings), lock_holder="test-task")


def existing_group(store: Store, ldap: FakeLdapWriter, name: str = "Sales", members: tuple[str, ...] = ()) -> str:
    """A written-back group in AD and in the connector space (as a confirmed export left it)."""
    dn = f"CN={name},{OU}"
    anchor = ldap.add_entry(dn, displayName=[name], **{MARK_ATTRIBUTE: [f"Group_{name}"]})
    ldap.entries[anchor]["member"] = set(members)
    cs_row(store, "ad", anchor, dn, attrs={"objectGUID": [anchor], "displayName": [name]}, members=members)
    return anchor


def writes(ldap: FakeLdapWriter) -> list[str]:
    return [method for method, _target, _detail in ldap.calls]


# ------------------------------------------------------------------------------------------- a plan from sync
def test_a_written_back_group_is_added_with_our_mark_and_its_members_in_one_modify(store, ldap):
    sync_a_written_back_group(store, ou=OU, cloud_id=CLOUD_ID)

    result = export(store, ldap)
    assert result.result == "success", result
    assert writes(ldap) == ["add_object", "modify_references"]
    (anchor,) = ldap.entries
    entry = ldap.entries[anchor]
    assert entry["dn"] == f"CN=Group_{CLOUD_ID},{OU}" and entry["objectClass"] == "group"
    assert entry[MARK_ATTRIBUTE] == [f"Group_{CLOUD_ID}"] and entry["groupType"] == ["8"]
    assert entry["member"] == {guid(n) for n in (1, 2, 3)} == cs_references(store, "ad", anchor)
    assert cs_attrs(store, "ad", anchor)["objectGUID"] == [anchor]  # the provisional anchor is gone
    assert open_plan(store, "ad") == ({}, 0)
    counters = result.counters
    assert (counters["group_adds"], counters["member_modify_operations"]) == (1, 1)
    assert counters["ldap_writes"] == counters["ldap_writes_minimum"] == 2


# ---------------------------------------------------------------------------------------------------- members
def test_member_changes_go_in_chunks_removes_before_adds(store, ldap):
    old = [f"00000000-0000-0000-0000-00000000000{n}" for n in range(3)]
    new = [f"00000000-0000-0000-0000-00000000010{n}" for n in range(5)]
    group = existing_group(store, ldap, members=tuple(old))
    plan_row(store, "ad", group, f"CN=Sales,{OU}", operation="update")  # announces member changes only
    plan_references(store, "ad", group, "member", old, operation="remove")
    plan_references(store, "ad", group, "member", new, operation="add")
    result = export(store, ldap, member_chunk=2)
    assert result.result == "success", result
    chunks = [(len(detail[2]), len(detail[1])) for method, _t, detail in ldap.calls if method == "modify_references"]
    assert chunks == [(2, 0), (1, 0), (0, 2), (0, 2), (0, 1)]  # (removes, adds) per modify
    assert ldap.entries[group]["member"] == set(new) == cs_references(store, "ad", group)
    assert result.counters["ldap_writes"] == result.counters["ldap_writes_minimum"] == 5
    assert open_plan(store, "ad") == ({}, 0)  # the marker went with the last member change


def test_a_refused_member_chunk_fails_alone(store, ldap):
    group = existing_group(store, ldap)
    targets = [f"00000000-0000-0000-0000-00000000020{n}" for n in range(4)]
    plan_references(store, "ad", group, "member", targets)
    ldap.refuse("modify_references", "constraintViolation")
    result = export(store, ldap, member_chunk=2)
    assert result.result == "completed-export-errors", result
    (error,) = store.run_errors(result.run_id)
    assert error["code"] == "constraintViolation" and "member add of 2 values" in error["message"]
    assert ldap.entries[group]["member"] == set(targets[2:]) == cs_references(store, "ad", group)
    assert open_plan(store, "ad")[1] == 2  # failed rows stay in the plan for the next run


# ------------------------------------------------------------------------------------------- renames and moves
@pytest.mark.parametrize(
    ("new_dn", "moved"),
    [
        (f"CN=Sales EMEA,{OU}", True),  # a rename
        ("CN=Sales,OU=Archive,DC=corp,DC=example", True),  # a move
        (f"cn=sales, {OU.lower()}", False),  # the same DN spelled otherwise: nothing to move
    ],
)
def test_a_changed_dn_is_one_modify_dn_then_the_values_are_replaced(store, ldap, new_dn, moved):
    group = existing_group(store, ldap)
    changes = {"dn": [new_dn], "displayName": ["Sales EMEA"], "description": []}
    ldap.entries[group]["description"] = ["old"]
    plan_row(store, "ad", group, f"CN=Sales,{OU}", operation="update", changes=changes)
    result = export(store, ldap)
    assert result.result == "success", result
    assert writes(ldap) == (["move_object"] if moved else []) + ["modify_object"]
    entry = ldap.entries[group]
    assert entry["dn"] == (new_dn if moved else f"CN=Sales,{OU}")
    assert entry["displayName"] == ["Sales EMEA"] and "description" not in entry  # an empty list clears it
    attrs = cs_attrs(store, "ad", group)
    assert attrs["displayName"] == ["Sales EMEA"] and attrs["@dn"] == new_dn
    assert result.counters.get("group_renames", 0) == int(moved) and result.counters["group_updates"] == 1
    assert open_plan(store, "ad") == ({}, 0)


def test_a_refused_modify_fails_its_object_and_the_rest_goes_on(store, ldap):
    first, second = existing_group(store, ldap, "Alpha"), existing_group(store, ldap, "Beta")
    for anchor, name in ((first, "Alpha"), (second, "Beta")):
        plan_row(store, "ad", anchor, f"CN={name},{OU}", operation="update", changes={"info": [f"{name} info"]})
    ldap.refuse("modify_object", "insufficientAccessRights", match=first)
    result = export(store, ldap)
    assert result.result == "completed-export-errors", result
    (error,) = store.run_errors(result.run_id)
    assert error["anchor"] == first and error["code"] == "insufficientAccessRights"
    assert ldap.entries[second]["info"] == ["Beta info"] and "info" not in ldap.entries[first]
    objects, _ = open_plan(store, "ad")
    assert list(objects) == [first] and objects[first]["state"] == "failed"
    assert objects[first]["last_error"].startswith("insufficientAccessRights: update of CN=Alpha")


def test_a_refusal_quoting_a_secret_is_kept_scrubbed_in_the_plan_too(store, ldap, monkeypatch):
    """The DC's message went scrubbed into run_error but as it was into the plan row's last_error, which the sync
    manager's lineage and export plan pages show."""
    from airflow_provider_aadsync.engine import secrets
    from airflow_provider_aadsync.engine.connectors.ad.writer import ADWriteRefused

    secret = "B1nd-Passw0rd-of-the-DC"
    secrets.register_secret(secret)
    group = existing_group(store, ldap, "Alpha")
    plan_row(store, "ad", group, f"CN=Alpha,{OU}", operation="update", changes={"info": ["new"]})

    def refuse(guid, replace):
        raise ADWriteRefused(f"000020D6: SvcErr: DSID-031007DB, bind as {secret} refused", code="unwillingToPerform")

    monkeypatch.setattr(ldap, "modify_object", refuse)
    try:
        result = export(store, ldap)
    finally:
        secrets.forget_secrets()
    (error,) = store.run_errors(result.run_id)
    objects, _ = open_plan(store, "ad")
    assert secret not in error["message"] and "bind as *** refused" in error["message"]
    assert objects[group]["last_error"].startswith("unwillingToPerform: update of CN=Alpha")
    assert secret not in objects[group]["last_error"] and "bind as *** refused" in objects[group]["last_error"]


# ------------------------------------------------------------------------------------------------ deprovision
def test_deprovision_deletes_and_an_object_already_gone_counts_as_deleted(store, ldap):
    kept, gone = existing_group(store, ldap, "Alpha"), existing_group(store, ldap, "Beta")
    del ldap.entries[gone]  # someone deleted it in AD already
    for anchor, name in ((kept, "Alpha"), (gone, "Beta")):
        plan_row(store, "ad", anchor, f"CN={name},{OU}", operation="delete")
    result = export(store, ldap)
    assert result.result == "success" and result.counters["group_deletes"] == 2, result
    assert writes(ldap) == ["delete_object", "delete_object"] and ldap.entries == {}
    assert cs_attrs(store, "ad", kept) is None and cs_attrs(store, "ad", gone) is None
    assert open_plan(store, "ad") == ({}, 0)


def test_deprovision_can_move_to_a_holding_ou_instead(store, ldap):
    group = existing_group(store, ldap, "Sales\\, EMEA")  # an escaped comma in the RDN
    plan_row(store, "ad", group, f"CN=Sales\\, EMEA,{OU}", operation="delete")
    holding = "OU=Holding,DC=corp,DC=example"
    result = export(store, ldap, deprovision="move", holding_ou=holding)
    assert result.result == "success" and result.counters["group_moves_to_holding"] == 1, result
    assert writes(ldap) == ["move_object"] and ldap.entries[group]["dn"] == f"CN=Sales\\, EMEA,{holding}"
    assert cs_attrs(store, "ad", group) is None and open_plan(store, "ad") == ({}, 0)


# ---------------------------------------------------------------------------------- adds: adopt only what is ours
def plan_add(store: Store, *, state: str = "pending") -> str:
    dn = f"CN=Group_{CLOUD_ID},{OU}"
    cs_row(store, "ad", PROVISIONAL, dn)
    changes = {MARK_ATTRIBUTE: [f"Group_{CLOUD_ID}"], "displayName": ["Falcon"], "groupType": ["8"]}
    plan_row(store, "ad", PROVISIONAL, dn, operation="add", changes=changes, state=state)
    return dn


@pytest.mark.parametrize(
    ("mark", "adopted"),
    [
        ([f"group_{CLOUD_ID.upper()}"], True),  # our mark (AD compares it without case): a create whose answer was lost
        (["Group_someone-else"], False),  # another group's mark
        ([], False),  # no mark: nothing says it is ours
    ],
)
def test_an_add_refused_as_already_existing_adopts_the_object_only_when_it_carries_our_mark(store, ldap, mark, adopted):
    dn = plan_add(store)
    squatter = ldap.add_entry(dn, displayName=["In the way"], **({MARK_ATTRIBUTE: mark} if mark else {}))
    result = export(store, ldap)
    assert writes(ldap) == ["add_object"]  # refused entryAlreadyExists; nothing else is written
    assert list(ldap.entries) == [squatter]
    objects, _ = open_plan(store, "ad")
    if adopted:
        assert result.result == "success" and result.counters["adds_reconciled"] == 1, result
        assert cs_attrs(store, "ad", squatter)["objectGUID"] == [squatter] and objects == {}
        return
    assert result.result == "completed-export-errors", result
    (error,) = store.run_errors(result.run_id)
    assert error["code"] == "not-adopted" and squatter in error["message"]
    assert ldap.entries[squatter]["displayName"] == ["In the way"]  # neither adopted nor overwritten
    assert cs_attrs(store, "ad", squatter) is None and objects[PROVISIONAL]["state"] == "failed"


def test_an_add_a_killed_run_had_sent_is_adopted_without_a_second_add(store, ldap):
    dn = plan_add(store, state="sent")
    ours = ldap.add_entry(dn, **{MARK_ATTRIBUTE: [f"Group_{CLOUD_ID}"]})  # the add went through before the kill
    result = export(store, ldap)
    assert result.result == "success" and result.counters["adds_reconciled"] == 1, result
    assert writes(ldap) == [] and list(ldap.entries) == [ours]
    assert cs_attrs(store, "ad", ours)["@dn"] == dn and open_plan(store, "ad") == ({}, 0)


def test_a_sent_add_that_never_arrived_is_sent_again(store, ldap):
    dn = plan_add(store, state="sent")
    result = export(store, ldap)
    assert result.result == "success" and result.counters["group_adds"] == 1, result
    assert writes(ldap) == ["add_object"]
    (created,) = ldap.entries
    assert ldap.entries[created]["dn"] == dn and cs_attrs(store, "ad", created) is not None


def test_staging_writes_nothing_to_ad(store, ldap):
    plan_add(store)
    result = export(store, ldap, staging=True)
    assert result.result == "staged" and result.counters["planned_group_adds"] == 1
    assert ldap.calls == [] and ldap.counters["ldap_reconcile_reads"] == 0
    assert open_plan(store, "ad")[0][PROVISIONAL]["state"] == "pending"
