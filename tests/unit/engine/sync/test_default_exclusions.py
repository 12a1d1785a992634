"""The default configuration's exclusions in the shipped rules, one by one, and attribute filtering through the
metaverse attribute cloudFiltered: what is excluded is never staged for Entra ID, and what becomes excluded after
its export is staged for deletion (which the export's deletion guards then meter)."""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine.rules.loader import DEFAULT_RULES_DIR
from airflow_provider_aadsync.engine.runs.source import SourceObject
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.world import (
    BASE,
    ad_group,
    ad_user,
    exports,
    guid,
    import_delta,
    import_full,
    links,
    metaverse,
    mv_by,
)

# msExchRecipientTypeDetails values the default configuration filters (bits of &H21C07000), by Exchange's names.
FILTERED_RECIPIENT_TYPES = {
    "PublicFolder": 0x1000,
    "SystemAttendantMailbox": 0x2000,
    "SystemMailbox": 0x4000,
    "MicrosoftExchange": 0x400000,
    "ArbitrationMailbox": 0x800000,
    "MailboxPlan": 0x1000000,
    "DiscoveryMailbox": 0x20000000,
}
# Recipient types that stay: user, shared, room and equipment mailboxes, mail user, remote user mailbox.
KEPT_RECIPIENT_TYPES = {"UserMailbox": 1, "SharedMailbox": 4, "RoomMailbox": 16, "MailUser": 128}
# A linked mailbox (2) is its owner's mailbox in another forest: never projected on its own, it only joins its owner
# (tests/unit/engine/sync/test_forests.py); without the owner in the metaverse it stays a disconnector.
LINKED_MAILBOX = 2
ROLE_GROUP = 0x40000000


def staged_for_entra(store: Store) -> set[str]:
    """accountName of every metaverse object with a pending export to Entra ID."""
    entra = {
        mv_id for (_connector, anchor), (mv_id, _type) in links(store, "entra").items() if anchor in exports(store)
    }
    return {attrs["accountName"][0] for mv_id, attrs in metaverse(store).items() if mv_id in entra}


def cloud_filtered(store: Store) -> set[str]:
    """accountName of every metaverse object whose cloudFiltered is True (a boolean from an expression, or the text
    "True" from a Constant flow: scoping compares both by their text, as the outbound rules do)."""
    return {
        attrs["accountName"][0]
        for attrs in metaverse(store).values()
        if [str(value) for value in attrs.get("cloudFiltered", [])] == ["True"]
    }


USERS = [
    ad_user(1, "alice", mail="alice@corp.example", mailNickname="alice"),
    ad_user(2, "SUPPORT_388945a0"),
    ad_user(3, "sm1", mailNickname="SystemMailbox{1f05a927-3be2-4fb9-aa03-b59fe3b56f4c}"),
    ad_user(4, "cas1", mailNickname="CAS_{0a1b2c3d}"),
    ad_user(5, "CAS_{9f8e7d6c}"),
    ad_user(6, "cas_plain", mailNickname="CAS_nobrace"),  # CAS_ without "}": a person's alias, kept
    ad_user(7, "AAD_0123abcd"),
    ad_user(8, "MSOL_0123abcd"),
    ad_user(9, "krbtgt", isCriticalSystemObject="TRUE"),
    *[
        ad_user(100 + n, f"type-{name}", msExchRecipientTypeDetails=str(value))
        for n, (name, value) in enumerate(FILTERED_RECIPIENT_TYPES.items())
    ],
    *[
        ad_user(200 + n, f"type-{name}", msExchRecipientTypeDetails=str(value))
        for n, (name, value) in enumerate(KEPT_RECIPIENT_TYPES.items())
    ],
    ad_user(300, "type-LinkedMailbox", msExchRecipientTypeDetails=str(LINKED_MAILBOX)),
]
GROUPS = [
    ad_group(50, "Staff", members=[1]),
    ad_group(51, "MSOL_AD_Sync_RichCoexistence"),
    ad_group(52, "Organization Management", msExchRecipientTypeDetails=str(ROLE_GROUP)),
    ad_group(53, "Plain Distribution", security=False),  # a distribution group with no mail: not mail-enabled
    ad_group(54, "Mail Distribution", security=False, mail="list@corp.example"),
    ad_group(55, "Domain Admins", isCriticalSystemObject="TRUE"),
]


def test_every_default_exclusion_keeps_its_objects_out_of_entra(store, rules):
    import_full(store, "ad", USERS + GROUPS)
    result = run_sync(store, rules, connector="ad", mode="full")
    assert result.result == "success", result

    kept = {"alice", "cas_plain", *(f"type-{name}" for name in KEPT_RECIPIENT_TYPES), "Staff", "Mail Distribution"}
    assert staged_for_entra(store) == kept
    # Filtered by cloudFiltered: in the metaverse, flagged, never staged.
    assert cloud_filtered(store) == {
        "SUPPORT_388945a0",
        "sm1",
        "cas1",
        "CAS_{9f8e7d6c}",
        *(f"type-{name}" for name in FILTERED_RECIPIENT_TYPES),
        "MSOL_AD_Sync_RichCoexistence",
        "Organization Management",
        "Plain Distribution",
    }
    # Filtered by the inbound scope: never in the metaverse at all.
    names = {attrs["accountName"][0] for attrs in metaverse(store).values()}
    assert not names & {"AAD_0123abcd", "MSOL_0123abcd", "krbtgt", "Domain Admins"}


@pytest.mark.parametrize("name", sorted(FILTERED_RECIPIENT_TYPES))
def test_each_filtered_recipient_type_alone(store, rules, name):
    import_full(
        store,
        "ad",
        [ad_user(1, "kept"), ad_user(2, "filtered", msExchRecipientTypeDetails=str(FILTERED_RECIPIENT_TYPES[name]))],
    )
    run_sync(store, rules, connector="ad", mode="full")
    assert staged_for_entra(store) == {"kept"}


def test_a_user_who_becomes_excluded_is_staged_for_deletion(store, rules):
    import_full(store, "ad", [ad_user(1, "alice"), ad_user(2, "bob")])
    run_sync(store, rules, connector="ad", mode="full")
    bob_id, _bob = mv_by(store, "accountName", "bob")
    bob_anchor = next(anchor for (_c, anchor), (mv_id, _t) in links(store, "entra").items() if mv_id == bob_id)
    assert exports(store)[bob_anchor]["operation"] == "add"

    import_delta(
        store, "ad", [ad_user(2, "bob", msExchRecipientTypeDetails=str(0x800000))]
    )  # now an arbitration mailbox
    result = run_sync(store, rules, connector="ad", mode="delta")
    assert result.result == "success", result
    assert mv_by(store, "accountName", "bob")[1]["cloudFiltered"] == [True]
    # The add was never sent, so it is simply withdrawn: nothing is staged for bob any more.
    assert bob_id not in {
        mv_id for (_c, anchor), (mv_id, _t) in links(store, "entra").items() if anchor in exports(store)
    }
    assert staged_for_entra(store) == {"alice"}


CUSTOM_FILTER = """
rules:
  - name: In from AD - User NoSync filter
    description: Attribute filtering as "Configure filtering" shows it - extensionAttribute15 = NoSync keeps a user out.
    direction: inbound
    connector: ad
    source_object_type: user
    target_object_type: person
    link_type: Join
    precedence: 50
    scoping:
      - - {attribute: extensionAttribute15, operator: EQUAL, value: NoSync}
    flows:
      - {type: Constant, value: "True", target: cloudFiltered}
"""


def test_a_rule_of_ones_own_that_sets_cloud_filtered_removes_the_object(store, tmp_path):
    custom = tmp_path / "filter.yaml"
    custom.write_text(CUSTOM_FILTER)
    rules = load_sync_rules([DEFAULT_RULES_DIR, custom])
    import_full(store, "ad", [ad_user(1, "alice"), ad_user(2, "bob", extensionAttribute15="NoSync")])
    result = run_sync(store, rules, connector="ad", mode="full")
    assert result.result == "success", result
    assert staged_for_entra(store) == {"alice"}
    assert cloud_filtered(store) == {"bob"}


def _contact(n: int, name: str, **attrs: str) -> SourceObject:
    values = {"objectGUID": [guid(n)], "cn": [name], "displayName": [name], "mail": [f"{name}@partner.example"]}
    values.update({attribute: [value] for attribute, value in attrs.items()})
    return SourceObject(anchor=guid(n), dn=f"CN={name},OU=Contacts,{BASE}", object_type="contact", attrs=values)


def test_any_is_critical_system_object_value_keeps_users_groups_and_contacts_out(store, rules):
    """The default configuration leaves out users, groups and contacts where ``IsPresent([isCriticalSystemObject])``
    ("Understanding the default configuration"): a value of FALSE is present too, so those never reach the
    metaverse; objects without the attribute do."""
    import_full(
        store,
        "ad",
        [
            ad_user(1, "alice"),
            ad_user(2, "flagged-false", isCriticalSystemObject="FALSE"),
            ad_user(3, "flagged-true", isCriticalSystemObject="TRUE"),
            ad_group(50, "Staff", members=[1]),
            ad_group(51, "Group False", isCriticalSystemObject="FALSE"),
            _contact(70, "partner"),
            _contact(71, "contact-false", isCriticalSystemObject="FALSE"),
        ],
    )
    result = run_sync(store, rules, connector="ad", mode="full")
    assert result.result == "success", result
    names = {attrs["displayName"][0] for attrs in metaverse(store).values()}
    assert names == {"User 1", "Staff", "partner"}
    entra = {mv_id for (_c, anchor), (mv_id, _t) in links(store, "entra").items() if anchor in exports(store)}
    staged = {attrs["displayName"][0] for mv_id, attrs in metaverse(store).items() if mv_id in entra}
    assert staged == {"User 1", "Staff", "partner"}


#: Microsoft's test of a mail-enabled group ("Understanding Users, Groups, and Contacts"): with proxyAddresses empty,
#: mail must have a value; with proxyAddresses set, one of them must be an SMTP address (SMTP: or smtp:).
MAIL_CASES = {
    "mail-only": ({"mail": "mail-only@corp.example"}, True),
    "smtp-only": ({"proxyAddresses": ["smtp:smtp-only@corp.example"]}, True),
    "x500-and-mail": ({"proxyAddresses": ["X500:/o=contoso/ou=users/cn=x500"], "mail": "x@corp.example"}, False),
    "x500-only": ({"proxyAddresses": ["X500:/o=contoso/ou=users/cn=x500-only"]}, False),
}


KINDS = (("dist", False), ("sec", True))


def test_a_group_is_mail_enabled_as_microsoft_documents_it(store, rules):
    """Distribution groups that are not mail-enabled are filtered (cloudFiltered); security groups stay, with
    mailEnabled saying what they are."""
    cases = [(name, attrs, kind, security) for name, (attrs, _e) in MAIL_CASES.items() for kind, security in KINDS]
    groups = [
        ad_group(60 + n, f"{kind} {name}", security=security, **attrs)
        for n, (name, attrs, kind, security) in enumerate(cases)
    ]
    import_full(store, "ad", groups)
    result = run_sync(store, rules, connector="ad", mode="full")
    assert result.result == "success", result
    mail_enabled = {attrs["accountName"][0]: attrs["mailEnabled"] for attrs in metaverse(store).values()}
    assert mail_enabled == {
        f"{kind} {name}": [enabled] for name, (_attrs, enabled) in MAIL_CASES.items() for kind, _s in KINDS
    }
    assert cloud_filtered(store) == {f"dist {name}" for name, (_a, enabled) in MAIL_CASES.items() if not enabled}
    assert staged_for_entra(store) == {
        *(f"sec {name}" for name in MAIL_CASES),
        *(f"dist {name}" for name, (_a, enabled) in MAIL_CASES.items() if enabled),
    }
