"""Two AD forests through the shipped rules: the resource forest ``ad_fabrikam`` gets the ``ad`` rules and schema,
its linked mailbox joins its owner (mail attributes, no sourceAnchor, no projection), a foreign security principal
member resolves to the account forest's person, and the optional same-person rule joins users by mail."""

from __future__ import annotations

import json

import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.ad.schema import SCHEMA as ACTIVE_DIRECTORY
from airflow_provider_aadsync.engine.connectors.kinds import connector_kind, inbound_rule_applies
from airflow_provider_aadsync.engine.connectors.registry import schema_for
from airflow_provider_aadsync.engine.rules import DEFAULT_RULES_DIR
from airflow_provider_aadsync.engine.store import Store, mv_object
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.forests import SAME_PERSON, fsp, sid
from tests.support.world import (
    BASE,
    ad_group,
    ad_user,
    deleted,
    exports,
    guid,
    immutable_id,
    import_delta,
    import_full,
    links,
    metaverse,
    mv_by,
    mv_members,
)

CORP = [
    ad_user(1, "owner1", objectSid=sid(1101)),
    ad_user(2, "shared1", objectSid=sid(1102), mail="shared1@example.test"),
]
RESOURCE = [
    ad_user(
        11,
        "fab.mailbox1",
        disabled=True,
        userPrincipalName="fab.mailbox1@fabrikam.example",
        mail="owner1@example.test",
        proxyAddresses=["SMTP:owner1@example.test"],
        msExchRecipientTypeDetails="2",
        msExchMasterAccountSid=sid(1101),
        objectSid=sid(5001),
    ),
    ad_user(12, "fab.shared1", userPrincipalName="fab.shared1@fabrikam.example", mail="SHARED1@example.test"),
    ad_user(13, "fab.only1", userPrincipalName="fab.only1@fabrikam.example", objectSid=sid(5003)),
    fsp(14, sid(1102)),
    ad_group(15, "Fabrikam Staff", members=[13, 14]),
]


def sync_both(store: Store, rules) -> None:
    import_full(store, "ad", CORP)
    import_full(store, "ad_fabrikam", RESOURCE)
    for connector in ("ad", "ad_fabrikam"):  # the account forest first, as the rules' header says
        result = run_sync(store, rules, connector=connector, mode="full")
        assert result.result == "success", result


def test_every_ad_connector_gets_the_ad_rules_and_schema():
    rules = load_sync_rules()
    assert [r.name for r in rules.inbound("ad_fabrikam")] == [r.name for r in rules.inbound("ad")]
    assert rules.outbound("ad_fabrikam") == ()  # exports are never widened to another forest
    assert schema_for("ad_fabrikam") is ACTIVE_DIRECTORY
    assert schema_for("fabrikam").typed == {}  # not an AD name: no AD schema
    assert connector_kind("AD-emea") == "ad" and connector_kind("adfs") is None
    assert inbound_rule_applies("ad", "ad_fabrikam") and not inbound_rule_applies("ad_fabrikam", "ad")


def test_linked_mailbox_joins_its_owner_and_fsp_members_resolve(store):
    sync_both(store, load_sync_rules())
    owner_id, owner = mv_by(store, "accountName", "owner1")
    # The mailbox joined (not projected) and brought its mail attributes; the owner keeps its own sourceAnchor.
    assert links(store, "ad_fabrikam")[("ad_fabrikam", guid(11))] == (owner_id, "join")
    assert owner["mail"] == ["owner1@example.test"]
    assert owner["proxyAddresses"] == ["SMTP:owner1@example.test"]
    assert owner["sourceAnchor"] == [immutable_id(guid(1))]
    assert owner["userPrincipalName"] == ["owner1@corp.example"]
    assert not any("fab.mailbox1" in attrs.get("accountName", []) for attrs in metaverse(store).values())

    # The FSP joined the account forest's person; the resource group's members are that person and fab.only1.
    shared_id, _ = mv_by(store, "accountName", "shared1")
    assert links(store, "ad_fabrikam")[("ad_fabrikam", guid(14))] == (shared_id, "join")
    _group_id, group = mv_by(store, "accountName", "Fabrikam Staff")
    only_id, _ = mv_by(store, "accountName", "fab.only1")
    assert mv_members(store, _group_id) == {shared_id, only_id}
    # Without the optional rule, the two forests' "shared1" stay two people.
    assert sum(1 for a in metaverse(store).values() if a.get("givenName") == ["Given12"]) == 1
    assert len([a for a in metaverse(store).values() if a["type"] == "person"]) == 4
    assert group["displayName"] == ["Fabrikam Staff"]


def test_same_person_rule_joins_across_forests_by_mail(store):
    rules = load_sync_rules([str(DEFAULT_RULES_DIR), str(SAME_PERSON)])
    sync_both(store, rules)
    shared_id, shared = mv_by(store, "accountName", "shared1")  # the first forest's values win ties
    assert links(store, "ad_fabrikam")[("ad_fabrikam", guid(12))] == (shared_id, "join")
    assert shared["sourceAnchor"] == [immutable_id(guid(2))]
    assert len([a for a in metaverse(store).values() if a["type"] == "person"]) == 3
    # The FSP joins the same person as fab.shared1 (it stands for a member, it takes no slot): members still resolve.
    assert links(store, "ad_fabrikam")[("ad_fabrikam", guid(14))] == (shared_id, "join")
    group_id, _ = mv_by(store, "accountName", "Fabrikam Staff")
    assert mv_members(store, group_id) == {shared_id, mv_by(store, "accountName", "fab.only1")[0]}


def test_consistency_guid_writeback_reaches_each_forests_joined_users(store):
    """The ConsistencyGuid writeback rule names the kind ``ad``: each AD connector's joined users get the person's
    anchor in an empty mS-DS-ConsistencyGuid (staged for their own connector, exported by its own AD export); a set
    one is kept, and a joined foreign security principal (not a user) gets nothing."""
    preset = guid(9912)
    resource = [
        ad_user(12, "fab.shared1", userPrincipalName="fab.shared1@fabrikam.example", mail="SHARED1@example.test",
                **{"mS-DS-ConsistencyGuid": preset}),
        *[obj for obj in RESOURCE if obj.anchor != guid(12)],
    ]  # fmt: skip
    import_full(store, "ad", CORP)
    import_full(store, "ad_fabrikam", resource)
    rules = load_sync_rules([str(DEFAULT_RULES_DIR), str(SAME_PERSON)])
    for connector in ("ad", "ad_fabrikam"):
        assert run_sync(store, rules, connector=connector, mode="full").result == "success"
    staged = {anchor: row["changes"] for anchor, row in exports(store, "ad_fabrikam").items()}
    # fab.only1, anchored in FABRIKAM: its own objectGUID; the linked mailbox: its owner's anchor
    assert staged[guid(13)] == {"mS-DS-ConsistencyGuid": [guid(13)]}
    assert staged[guid(11)] == {"mS-DS-ConsistencyGuid": [guid(1)]}
    assert guid(12) not in staged and guid(14) not in staged  # a set ConsistencyGuid is kept; an FSP is no user
    assert {anchor for anchor in exports(store, "ad")} == {guid(1), guid(2)}  # CORP's users, in CORP


def contributors(store: Store, mv_id: int, connector: str) -> dict[str, set[str]]:
    """The rules of ``connector`` contributing to each attribute of a metaverse object."""
    with store.engine.connect() as connection:
        stored = connection.execute(sa.select(mv_object.c.contributions).where(mv_object.c.id == mv_id)).scalar_one()
    found: dict[str, set[str]] = {}
    for attribute, entries in json.loads(stored).items():
        for key in entries:
            if key.startswith(f"{connector}|"):
                found.setdefault(attribute, set()).add(key.split("|", 1)[1])
    return found


def test_a_foreign_security_principal_leaves_what_its_forests_user_contributes(store):
    """With the same-person rule, fab.shared1 and the FSP standing for CORP's shared1 both join one person. Each
    contributes only through its own rules: syncing the principal, with the user or alone, and its deletion, neither
    replace nor drop the user's contributions (they would otherwise vanish, and the next export would clear them)."""
    rules = load_sync_rules([str(DEFAULT_RULES_DIR), str(SAME_PERSON)])
    sync_both(store, rules)
    shared_id, _ = mv_by(store, "accountName", "shared1")
    user_rules = contributors(store, shared_id, "ad_fabrikam")
    assert user_rules["givenName"] == {"In from AD - User Join"}
    principal = fsp(14, sid(1102))
    principal.attrs["description"] = ["a member from CORP"]
    import_delta(store, "ad_fabrikam", [principal])  # the principal alone changed: a delta sync of it
    assert run_sync(store, rules, connector="ad_fabrikam", mode="delta").counters["objects_evaluated"] == 1
    assert contributors(store, shared_id, "ad_fabrikam") == user_rules
    import_delta(store, "ad_fabrikam", [deleted(guid(14))])  # the principal deleted: its link goes, not the user's
    assert run_sync(store, rules, connector="ad_fabrikam", mode="delta").counters["disconnections"] == 1
    assert contributors(store, shared_id, "ad_fabrikam") == user_rules
    assert links(store, "ad_fabrikam")[("ad_fabrikam", guid(12))] == (shared_id, "join")


def test_a_person_in_two_forests_takes_its_manager_from_the_forest_its_values_come_from(store):
    """One rule read by two forests contributes at equal precedence: the connector whose name sorts first wins, for
    the values and the references alike ("ad" before "ad_fabrikam"; as contributor keys "ad_fabrikam|..." sorts
    first, which the references used to follow: the values came from one forest, the manager from the other)."""
    rules = load_sync_rules([str(DEFAULT_RULES_DIR), str(SAME_PERSON)])
    corp_alice = ad_user(1, "alice", mail="alice@example.test")
    corp_alice.references = {"manager": [(guid(3), f"CN=boss.corp,OU=Users,{BASE}")]}
    fab_alice = ad_user(11, "alice.f", userPrincipalName="alice.f@fabrikam.example", mail="ALICE@example.test")
    fab_alice.references = {"manager": [(guid(13), f"CN=boss.fab,OU=Users,{BASE}")]}
    fab_boss = ad_user(13, "boss.fab", userPrincipalName="boss.fab@fabrikam.example")
    import_full(store, "ad", [ad_user(3, "boss.corp"), corp_alice])
    import_full(store, "ad_fabrikam", [fab_boss, fab_alice])
    for connector in ("ad", "ad_fabrikam"):
        assert run_sync(store, rules, connector=connector, mode="full").result == "success"
    alice_id, alice = mv_by(store, "accountName", "alice")
    assert alice["sourceAnchor"] == [immutable_id(guid(1))]  # the values: "ad"'s
    assert mv_members(store, alice_id, "manager") == {mv_by(store, "accountName", "boss.corp")[0]}
