"""The shipped group writeback rules on a hand-built world: Microsoft 365 groups → pending AD exports."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from aadsync_devkit.world.seed import DEV_WRITEBACK_OU
from airflow_provider_aadsync.engine.rules import DEFAULT_RULES_DIR
from airflow_provider_aadsync.engine.rules.errors import RuleLoadError
from airflow_provider_aadsync.engine.runs.export_run import adopt_anchor
from airflow_provider_aadsync.engine.runs.source import SourceObject
from airflow_provider_aadsync.engine.store import pending_export_reference
from airflow_provider_aadsync.engine.sync import PROVISIONAL_PREFIX, run_sync
from airflow_provider_aadsync.engine.sync.settings import (
    WRITEBACK_LIMIT_DEFAULT,
    WritebackSettingsError,
    load_sync_rules,
    writeback_limit,
)
from tests.support.world import (
    ad_group,
    ad_user,
    deleted,
    entra_user,
    exports,
    guid,
    immutable_id,
    import_delta,
    import_full,
    links,
    metaverse,
    reference_exports,
)

#: Group writeback is opt-in: these tests turn it on, into the dev DC's writeback OU.
# ConsistencyGuid writeback off: these tests look at what group writeback alone stages for AD.
WRITEBACK_ON = {"writeback_enabled": True, "writeback_ou": DEV_WRITEBACK_OU, "consistency_guid_writeback": False}

GROUP_ID = "5a1e5000-0000-4000-8000-00000000c0de"


def cloud_group(object_id: str, name: str, members: list[str], *, unified: bool = True, **attrs) -> SourceObject:
    values = {
        "id": [object_id],
        "displayName": [name],
        "mailNickname": [name.lower().replace(" ", "")],
        "groupTypes": ["Unified"] if unified else [],
        "mailEnabled": [unified],
        "securityEnabled": [not unified],
        **{key: value if isinstance(value, list) else [value] for key, value in attrs.items()},
    }
    return SourceObject(
        anchor=object_id,
        dn=f"groups/{object_id}",
        object_type="group",
        attrs={k: v for k, v in values.items() if v},
        references={"members": [(m, None) for m in members]},
    )


def world(store, rules, *, members=("cloud-1", "cloud-2", "cloud-3", "cloud-9")):
    import_full(store, "ad", [ad_user(1), ad_user(2), ad_user(3), ad_group(20, "Staff", members=[1])])
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    cloud = [entra_user(f"cloud-{n}", f"user{n}@corp.example", immutable_id(guid(n))) for n in (1, 2, 3)]
    cloud.append(entra_user("cloud-9", "cloudonly@corp.example"))  # only in the cloud
    cloud.append(
        cloud_group(
            GROUP_ID,
            "Project Falcon",
            list(members),
            description="M365",
            mail="falcon@corp.example",
            proxyAddresses=["SMTP:falcon@corp.example", "smtp:falcon@corp.onmicrosoft.com"],
        )
    )
    cloud.append(cloud_group("5ec00000-0000-4000-8000-000000000001", "Sec", ["cloud-1"], unified=False))
    import_full(store, "entra", cloud)
    return run_sync(store, rules, connector="entra", mode="full")


def test_m365_group_is_staged_as_universal_distribution_group_with_joined_members(store):
    result = world(store, load_sync_rules(**WRITEBACK_ON))
    assert result.result == "success", result
    cloud_groups = [attrs for attrs in metaverse(store).values() if attrs["type"] == "cloudGroup"]
    assert [g["cloudAnchor"] for g in cloud_groups] == [[GROUP_ID]]  # the security group is not written back
    (anchor, export), *others = exports(store, "ad").items()
    assert not others and anchor.startswith(PROVISIONAL_PREFIX) and export["operation"] == "add"
    assert export["dn"] == f"CN=Group_{GROUP_ID},{DEV_WRITEBACK_OU}"
    changes = export["changes"]
    assert changes["groupType"] == ["8"] and changes["sAMAccountName"] == ["Group_00000000c0de"]
    assert changes["displayName"] == ["Project Falcon"] and changes["description"] == ["M365"]
    assert changes["mail"] == ["falcon@corp.example"]
    assert sorted(changes["proxyAddresses"]) == ["SMTP:falcon@corp.example", "smtp:falcon@corp.onmicrosoft.com"]
    # members are the AD users the cloud members are joined to; the cloud-only member is skipped and counted
    assert reference_exports(store, "ad") == {(anchor, guid(n), "add") for n in (1, 2, 3)}
    assert result.counters["references_pending"] == 1
    # the AD group "Staff" is not joined to the cloud group, and nothing of the cloud group goes back to Entra
    names = {tuple(e["changes"].get("displayName", [])) for e in exports(store, "entra").values()}
    assert ("Project Falcon",) not in names and ("Staff",) in names
    assert len([1 for (_c, _a), (mv, _t) in links(store).items() if mv == links(store, "ad")[("ad", anchor)][0]]) == 2


def test_display_name_naming_keeps_cn_within_64_characters(store):
    rules = load_sync_rules(**WRITEBACK_ON, writeback_naming="displayName")
    import_full(store, "entra", [cloud_group(GROUP_ID, "x" * 80 + ", Sales", [])])
    assert run_sync(store, rules, connector="entra", mode="full").result == "success"
    (export,) = exports(store, "ad").values()
    cn = export["dn"].split(",OU=")[0]
    assert cn == "CN=" + "x" * 51 + "_00000000c0de" and len(cn) - 3 == 64


def test_group_over_the_writeback_limit_is_an_object_error_until_the_limit_is_raised(store):
    result = world(store, load_sync_rules(**WRITEBACK_ON, writeback_size_limit=2))
    assert result.result == "completed-sync-errors"
    (error,) = store.run_errors(result.run_id)
    assert "Group writeback size limit exceeded: more than 2 members" in error["message"]
    assert exports(store, "ad") == {}
    raised = run_sync(store, load_sync_rules(**WRITEBACK_ON, writeback_size_limit=3), connector="entra", mode="delta")
    assert raised.result == "success" and raised.mode == "full"  # a changed limit re-evaluates everything
    assert len(reference_exports(store, "ad")) == 3


def test_writeback_limit_defaults_to_50000_and_is_refused_above_250000():
    assert writeback_limit() == WRITEBACK_LIMIT_DEFAULT == 50_000
    assert writeback_limit("100,000") == 100_000 and writeback_limit(250_000) == 250_000
    with pytest.raises(ValueError, match="cannot be raised above 250,000 members"):
        writeback_limit(250_001)
    with pytest.raises(ValueError, match="whole number"):
        writeback_limit("lots")


# ------------------------------------------------------------------------------------------ writeback is opt-in
def test_writeback_is_off_by_default_no_writeback_rule_runs_and_nothing_is_staged_for_ad(store):
    outbound_ad = [r.name for r in load_sync_rules() if r.connector == "ad" and r.direction.value == "outbound"]
    assert outbound_ad == ["Out to AD - User ImmutableId"]  # ConsistencyGuid writeback, a setting of its own
    rules = load_sync_rules(consistency_guid_writeback=False)
    assert not [rule.name for rule in rules if rule.connector == "ad" and rule.direction.value == "outbound"]
    assert not [rule.name for rule in rules if rule.target_object_type == "cloudGroup"]  # nothing feeds writeback
    result = world(store, rules)
    assert result.result == "success", result
    assert exports(store, "ad") == {} and reference_exports(store, "ad") == set()
    assert [attrs for attrs in metaverse(store).values() if attrs["type"] == "cloudGroup"] == []
    # the rest of the rule set is whole: AD objects still go to Entra ID
    assert ("Staff",) in {tuple(e["changes"].get("displayName", [])) for e in exports(store, "entra").values()}


def test_writeback_on_without_an_ou_is_refused_naming_the_variable():
    for ou in (None, "", "  "):  # Airflow's "None" rendering is read by the operators (test_ad_export_operator.py)
        with pytest.raises(WritebackSettingsError, match="aadsync_writeback_ou") as raised:
            load_sync_rules(writeback_enabled=True, writeback_ou=ou)
        assert "aadsync_writeback_enabled" in str(raised.value) and "--writeback-ou" in str(raised.value)
    # off, the writeback settings are not even looked at (a leftover Variable cannot stop the sync)
    assert len(load_sync_rules(writeback_size_limit="lots", writeback_ou=""))


def test_writeback_rules_of_a_custom_rule_folder_are_left_out_while_writeback_is_off(tmp_path):
    for source in DEFAULT_RULES_DIR.glob("*.yaml"):
        (tmp_path / source.name).write_text(source.read_text())
    off, on = load_sync_rules([tmp_path]), load_sync_rules([tmp_path], **WRITEBACK_ON)
    dropped = {rule.name for rule in on} - {rule.name for rule in off}
    assert dropped == {"In from AAD - Group Writeback", "Out to AD - Group Writeback"}
    assert off.fingerprint != on.fingerprint  # turning writeback on or off is a rule change: the next sync is full
    assert off.fingerprint == load_sync_rules().fingerprint


# ------------------------------------------------------------------------- disabled for writeback: kept in AD
#: The AD group an export made of the Microsoft 365 group (its objectGUID).
WRITTEN = "0a0a0a0a-0000-4000-8000-00000000c0de"


def _written_back(store) -> None:
    """Stand in for the AD export that created the group: its real anchor replaces the provisional one."""
    ((anchor, export),) = exports(store, "ad").items()
    with store.transaction() as connection:
        connection.execute(sa.delete(pending_export_reference).where(pending_export_reference.c.anchor == anchor))
        adopt_anchor(connection, "ad", anchor, WRITTEN, export["changes"], run_id=0, dn=export["dn"])
    assert exports(store, "ad") == {}


def _writeback(store, rules, enabled: bool | None, **attrs):
    """The group's writeback switch (Graph beta's writebackConfiguration.isEnabled) as the Entra import stores it."""
    switch = {"writebackConfiguration.isEnabled": [] if enabled is None else [enabled]}
    import_delta(store, "entra", [cloud_group(GROUP_ID, "Project Falcon", [], **switch, **attrs)])
    result = run_sync(store, rules, connector="entra", mode="delta")
    assert result.result == "success", result
    return result


def test_a_written_back_group_disabled_for_writeback_stays_in_ad_until_hard_deleted(store):
    """Microsoft's default ("Plan for Microsoft Entra Connect group writeback"): "Groups that have been written back
    won't be deleted in Active Directory if they're disabled for writeback or soft deleted. They'll remain in Active
    Directory until they're hard deleted", and changes are not written back until they are enabled again."""
    rules = load_sync_rules(**WRITEBACK_ON)
    assert world(store, rules, members=()).result == "success"
    _written_back(store)

    _writeback(store, rules, False, description="changed while disabled")
    assert exports(store, "ad") == {}  # no delete, and the change is not written
    assert links(store, "ad")[("ad", WRITTEN)][1] == "provision"  # still linked: a hard delete finds it
    (group,) = [attrs for attrs in metaverse(store).values() if attrs["type"] == "cloudGroup"]
    assert group["reasonFiltered"] == ["WriteBackOutOfScope"]

    _writeback(store, rules, True, description="enabled again")
    ((anchor, update),) = exports(store, "ad").items()
    assert anchor == WRITTEN and update["operation"] == "update"
    assert update["changes"] == {"description": ["enabled again"]}
    _writeback(store, rules, False)
    assert exports(store, "ad") == {}  # the unsent update is withdrawn with the group out of scope

    import_delta(store, "entra", [deleted(GROUP_ID, f"groups/{GROUP_ID}")])  # hard deleted in Entra ID
    assert run_sync(store, rules, connector="entra", mode="delta").result == "success"
    assert {anchor: export["operation"] for anchor, export in exports(store, "ad").items()} == {WRITTEN: "delete"}


def _soft_deleted(store, rules, mark: bool):
    """The Entra import's mark of a soft-deleted group (delta @removed reason "changed"), or its removal (restored)."""
    group = cloud_group(GROUP_ID, "Project Falcon", [])
    group.attrs["softDeleted"] = [True] if mark else []  # restored: the import clears the mark (reader.py)
    import_delta(store, "entra", [group])
    result = run_sync(store, rules, connector="entra", mode="delta")
    assert result.result == "success", result


def test_a_soft_deleted_group_keeps_its_ad_copy_unchanged_until_restored_or_hard_deleted(store):
    """Microsoft's default keeps a soft-deleted group's AD copy as it is; restored, it gets the changes again."""
    rules = load_sync_rules(**WRITEBACK_ON)
    assert world(store, rules, members=()).result == "success"
    _written_back(store)

    _soft_deleted(store, rules, True)
    assert exports(store, "ad") == {} and links(store, "ad")[("ad", WRITTEN)][1] == "provision"
    (group,) = [attrs for attrs in metaverse(store).values() if attrs["type"] == "cloudGroup"]
    assert group["reasonFiltered"] == ["WriteBackOutOfScope"]
    _soft_deleted(store, rules, False)
    (group,) = [attrs for attrs in metaverse(store).values() if attrs["type"] == "cloudGroup"]
    assert "reasonFiltered" not in group and exports(store, "ad") == {}


def test_microsofts_opt_in_deletes_the_ad_copy_of_a_disabled_or_soft_deleted_group(store, tmp_path):
    """ "Groups that are written back will be deleted in Active Directory when they're disabled for group writeback,
    soft deleted, or hard deleted" (Modify group writeback in Microsoft Entra Connect): the shipped writeback rules
    loaded with keep_when_out_of_scope false."""
    folder = tmp_path / "rules"
    folder.mkdir()
    for source in DEFAULT_RULES_DIR.glob("*.yaml"):
        text = source.read_text()
        if source.name == "group-writeback.yaml":
            assert text.count("keep_when_out_of_scope: true") == 1
            text = text.replace("keep_when_out_of_scope: true", "keep_when_out_of_scope: false")
        (folder / source.name).write_text(text)
    rules = load_sync_rules([folder], **WRITEBACK_ON)
    assert world(store, rules, members=()).result == "success"
    _written_back(store)

    _soft_deleted(store, rules, True)
    assert {anchor: export["operation"] for anchor, export in exports(store, "ad").items()} == {WRITTEN: "delete"}
    _soft_deleted(store, rules, False)  # restored before the delete was exported: the delete is withdrawn
    assert exports(store, "ad") == {}
    _writeback(store, rules, False)
    assert {anchor: export["operation"] for anchor, export in exports(store, "ad").items()} == {WRITTEN: "delete"}


def test_a_group_disabled_before_its_first_export_is_never_created(store):
    """Nothing is in AD yet: the staged create is withdrawn, as before."""
    rules = load_sync_rules(**WRITEBACK_ON)
    assert world(store, rules, members=()).result == "success"
    assert [export["operation"] for export in exports(store, "ad").values()] == ["add"]
    _writeback(store, rules, False)
    assert exports(store, "ad") == {}
    assert "provision" not in {link_type for _mv_id, link_type in links(store, "ad").values()}


def test_keep_when_out_of_scope_is_refused_on_any_rule_but_an_outbound_provision_rule(tmp_path):
    rule_file = tmp_path / "rules.yaml"
    rule_file.write_text(
        "rules:\n"
        "  - name: In keeps\n"
        "    direction: inbound\n"
        "    connector: ad\n"
        "    source_object_type: user\n"
        "    target_object_type: person\n"
        "    link_type: Provision\n"
        "    precedence: 5\n"
        "    keep_when_out_of_scope: true\n"
    )
    with pytest.raises(RuleLoadError) as raised:
        load_sync_rules([rule_file])
    message = str(raised.value)
    assert "rules.yaml" in message and "In keeps" in message and "keep_when_out_of_scope" in message
    assert "is for outbound Provision rules" in message and ":9" in message
