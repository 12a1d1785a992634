"""Adopting a tenant that already holds the users (issue 15): with the shipped rules, a cloud user joins the AD
user's metaverse person by hard match (onPremisesImmutableId = sourceAnchor), else soft match on userPrincipalName,
else on the primary SMTP address (the SMTP: proxy address, else mail); no second user is created; another anchor or
another engine's object is a per-object error and gets no write; BlockSoftMatch leaves only the hard match."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.runs.preflight import SOFT, preflight
from airflow_provider_aadsync.engine.store import Store, run_error
from airflow_provider_aadsync.engine.sync import PROVISIONAL_PREFIX, run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.world import (
    ad_user,
    cloud_twin,
    entra_user,
    exports,
    guid,
    immutable_id,
    import_delta,
    import_full,
    links,
    mv_by,
    sync_errors,
)

AD_USERS = [
    ad_user(1),  # hard match
    ad_user(2),  # soft match on userPrincipalName
    ad_user(3, mail="three@corp.example"),  # soft match on mail (the cloud UPN differs)
    ad_user(4),  # the cloud user holds another ImmutableId
    ad_user(5),  # the cloud user is still synchronized by another engine
    ad_user(6),  # nothing in the cloud: created
]

CLOUD_USERS = [
    entra_user("c1", "someone-else@corp.example", immutable_id(guid(1))),
    entra_user("c2", "USER2@corp.example"),
    entra_user("c3", "three@corp.onmicrosoft.com", mail="Three@corp.example"),
    entra_user("c4", "user4@corp.example", immutable_id(guid(444))),
    entra_user("c5", "user5@corp.example", immutable_id(guid(5)), onPremisesSyncEnabled=True),
    entra_user("c9", "cloud-only@corp.example"),
]


def sync_world(store: Store, **settings) -> dict[str, tuple[str, str]]:
    return sync_errors(store, AD_USERS, CLOUD_USERS, **settings)


def entra_anchor_of(store: Store, n: int) -> str:
    mv_id, _ = mv_by(store, "accountName", f"user{n}")
    (anchor,) = [a for (_c, a), (m, _t) in links(store, "entra").items() if m == mv_id] or [None]
    return anchor


def test_hard_then_soft_match_join_and_refusals_stage_no_write(store):
    errors = sync_world(store)
    assert entra_anchor_of(store, 1) == "c1"
    assert entra_anchor_of(store, 2) == "c2"
    assert entra_anchor_of(store, 3) == "c3"
    assert entra_anchor_of(store, 6).startswith(PROVISIONAL_PREFIX)  # the only create
    staged = exports(store)
    adds = [a for a, export in staged.items() if export["operation"] == "add" and export["state"] == "pending"]
    assert len(adds) == 1 and adds[0] == entra_anchor_of(store, 6)
    # a soft-matched user is updated, its ImmutableId set to the AD user's anchor
    assert staged["c2"]["operation"] == "update"
    assert staged["c2"]["changes"]["onPremisesImmutableId"] == [immutable_id(guid(2))]
    assert staged["c3"]["changes"]["onPremisesImmutableId"] == [immutable_id(guid(3))]
    # refused: per-object errors, no link, no write for the cloud object nor a create beside it
    assert set(errors) == {"c4", "c5"}
    assert errors["c4"][0] == "anchor-mismatch" and immutable_id(guid(444)) in errors["c4"][1]
    assert errors["c5"][0] == "held-by-other-engine" and "turn off the other engine" in errors["c5"][1]
    for n, anchor in ((4, "c4"), (5, "c5")):
        # the AD user's planned create is held (state refused): no export sends it, no later sync provisions again
        held = entra_anchor_of(store, n)
        assert held.startswith(PROVISIONAL_PREFIX) and anchor not in staged
        assert staged[held]["state"] == "refused" and staged[held]["operation"] == "add"
    assert ("entra", "c9") not in links(store)


def test_block_soft_match_joins_by_hard_match_only(store):
    errors = sync_world(store, block_soft_match=True)
    assert entra_anchor_of(store, 1) == "c1"
    for n in (2, 3, 4, 6):
        assert entra_anchor_of(store, n).startswith(PROVISIONAL_PREFIX)
    assert set(errors) == {"c5"}  # the hard match still meets the other engine's object


def test_block_soft_match_changes_the_rule_fingerprint():
    assert load_sync_rules().fingerprint != load_sync_rules(block_soft_match=True).fingerprint


def test_a_changed_source_anchor_is_a_per_object_error_and_nothing_is_exported(store):
    """Once exported, the anchor is immutable: a new ms-DS-ConsistencyGuid stops the object's outbound sync."""
    from tests.support.world import import_delta

    rules = load_sync_rules()
    import_full(store, "ad", [ad_user(1, department="Sales"), ad_user(2)])
    import_full(store, "entra", [entra_user("c1", "user1@corp.example", immutable_id(guid(1)), department="Sales")])
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    assert run_sync(store, rules, connector="entra", mode="full").result == "success"
    assert entra_anchor_of(store, 1) == "c1"
    import_delta(store, "ad", [ad_user(1, department="Legal", **{"mS-DS-ConsistencyGuid": guid(900)})])
    result = run_sync(store, rules, connector="ad", mode="delta")
    assert result.result == "completed-sync-errors"
    with store.engine.connect() as connection:
        (error,) = connection.execute(sa.select(run_error).where(run_error.c.run_id == result.run_id)).all()
    assert (error.anchor, error.code) == ("c1", "source-anchor-changed")
    assert "sourceAnchor attribute has changed for metaverse person" in error.message
    assert immutable_id(guid(900)) in error.message
    # the update staged when it joined stays as it was: neither the new ImmutableId nor the department is staged
    changes = exports(store)["c1"]["changes"]
    assert "onPremisesImmutableId" not in changes and changes.get("department") != ["Legal"]
    assert entra_anchor_of(store, 1) == "c1"


def test_the_soft_match_compares_the_primary_smtp_proxy_address_not_ad_mail(store):
    """Entra Connect soft matches "only the value with SMTP:, that is the primary email address" of proxyAddresses:
    an AD user whose mail is another address is matched on its SMTP: proxy address, and never joins the cloud user
    holding that other address (a shared mailbox, say); without an SMTP: proxy address its mail is primary."""
    ad = [
        ad_user(7, mail="seven@corp.example", proxyAddresses=["smtp:seven@corp.example", "SMTP:s.even@corp.example"]),
        ad_user(8, mail="eight@corp.example", proxyAddresses=["smtp:eight@corp.example", "X500:/o=Corp/cn=eight"]),
    ]
    cloud = [
        entra_user("c7-other", "shared@corp.onmicrosoft.com", mail="seven@corp.example"),
        entra_user("c7", "s.even@corp.onmicrosoft.com", mail="S.Even@corp.example"),
        entra_user("c8", "eight@corp.onmicrosoft.com", mail="eight@corp.example"),
    ]
    assert sync_errors(store, ad, cloud) == {}
    assert entra_anchor_of(store, 7) == "c7" and entra_anchor_of(store, 8) == "c8"
    assert ("entra", "c7-other") not in links(store)
    assert mv_by(store, "accountName", "user7")[1]["primarySmtpAddress"] == ["s.even@corp.example"]
    assert exports(store)["c7"]["changes"]["onPremisesImmutableId"] == [immutable_id(guid(7))]
    rows = {row.user_principal_name: (row.outcome, row.matched_on, row.cloud_id) for row in preflight(store)}
    assert rows["user7@corp.example"] == (SOFT, "mail", "c7")


def test_the_primary_smtp_address_is_tried_before_the_upn(store):
    """The product's order: "soft match will first be attempted using the standard logic, based on the primary SMTP
    address. If a match isn't found based on primary SMTP, then a match will be attempted based on UserPrincipalName"
    (Set-MsolDirSyncFeature, EnableSoftMatchOnUpn)."""
    ad = [ad_user(9, mail="nine@corp.example")]
    cloud = [
        entra_user("c9-upn", "USER9@corp.example"),
        entra_user("c9-mail", "nine@corp.onmicrosoft.com", mail="nine@corp.example"),
    ]
    errors = sync_errors(store, ad, cloud)
    assert entra_anchor_of(store, 9) == "c9-mail" and ("entra", "c9-upn") not in links(store)
    # the cloud user holding the same UPN is reported, not joined (the export's UPN conflict follows, as in Entra ID)
    assert errors["c9-upn"][0] == "join-conflict" and "already joined to entra object c9-mail" in errors["c9-upn"][1]
    (row,) = preflight(store)
    assert (row.outcome, row.matched_on, row.cloud_id) == (SOFT, "mail", "c9-mail")


def test_block_cloud_object_takeover_refuses_the_hard_match_of_a_cloud_created_user(store):
    """BlockCloudObjectTakeover (Entra ID's BlockCloudObjectTakeoverThroughHardMatch): a cloud-created user someone
    gave the AD user's ImmutableId is not taken over (invalid-hard-match, no write, no second user); one a sync
    engine mastered (onPremisesSyncEnabled false) or one this engine exported (its anchor stamp) still hard matches;
    the soft match is not concerned."""
    ad = [ad_user(n) for n in (1, 2, 3, 4)]
    cloud = [
        entra_user("c1", "taken@corp.example", immutable_id(guid(1))),  # made in the cloud, anchor set by hand
        entra_user("c2", "formerly@corp.example", immutable_id(guid(2)), onPremisesSyncEnabled=False),
        entra_user(
            "c3", "ours@corp.example", immutable_id(guid(3)), extension_aadsyncSourceAnchor=immutable_id(guid(3))
        ),
        entra_user("c4", "user4@corp.example"),  # soft match on the UPN
    ]
    errors = sync_errors(store, ad, cloud, block_cloud_object_takeover=True)
    assert set(errors) == {"c1"} and errors["c1"][0] == "invalid-hard-match"
    assert "Another cloud created object with the same source anchor" in errors["c1"][1]
    assert [entra_anchor_of(store, n) for n in (2, 3, 4)] == ["c2", "c3", "c4"]
    held = entra_anchor_of(store, 1)
    staged = exports(store)
    assert held.startswith(PROVISIONAL_PREFIX) and staged[held]["state"] == "refused" and "c1" not in staged


def test_cloud_object_takeover_is_allowed_by_default_as_in_entra_id(store):
    cloud = [entra_user("c1", "taken@corp.example", immutable_id(guid(1)))]
    assert sync_errors(store, [ad_user(1)], cloud) == {}
    assert entra_anchor_of(store, 1) == "c1"
    assert load_sync_rules().fingerprint != load_sync_rules(block_cloud_object_takeover=True).fingerprint


@pytest.mark.parametrize(
    "cloud_only",
    [
        entra_user("c7", "USER7@corp.example"),  # its UPN
        entra_user("c7", "seven@corp.onmicrosoft.com", mail="Seven@corp.example"),  # its primary SMTP address
    ],
    ids=["upn", "mail"],
)
def test_a_cloud_only_user_read_earlier_is_soft_matched_by_a_delta_cycle_never_duplicated(store, cloud_only):
    """A cloud-only user read while no AD user had its UPN (or mail), and an AD user given it later: the delta sync of
    AD stages the create and makes the cloud user's join due (a pending import), so the same cycle's delta sync of
    Entra soft-matches it and withdraws the create. Before, no delta sync read the cloud user again: the export made a
    second user beside it, with a placeholder UPN."""
    rules = load_sync_rules()
    import_full(store, "ad", [ad_user(1)])
    import_full(store, "entra", [cloud_twin(1), cloud_only])
    for connector in ("ad", "entra"):
        assert run_sync(store, rules, connector=connector, mode="full").result == "success"
    assert ("entra", "c7") not in links(store) and exports(store) == {}

    import_delta(store, "ad", [ad_user(7, mail="seven@corp.example")])
    import_delta(store, "entra", [])
    ad_pass = run_sync(store, rules, connector="ad", mode="delta")
    assert ad_pass.counters["joins_due"] == 1
    assert run_sync(store, rules, connector="entra", mode="delta").result == "success"

    assert entra_anchor_of(store, 7) == "c7"
    staged = exports(store)
    assert [a for a in staged if a.startswith(PROVISIONAL_PREFIX)] == []  # the create is withdrawn
    assert staged["c7"]["operation"] == "update"
    assert staged["c7"]["changes"]["onPremisesImmutableId"] == [immutable_id(guid(7))]


def test_a_cloud_only_user_holding_another_anchor_holds_the_create_of_a_delta_cycle(store):
    """The join made due refuses (the cloud user holds another ImmutableId): the create is held, never sent, as when a
    full sync meets it."""
    rules = load_sync_rules()
    import_full(store, "ad", [ad_user(1)])
    import_full(store, "entra", [entra_user("c7", "user7@corp.example", immutable_id(guid(777)))])
    for connector in ("ad", "entra"):
        run_sync(store, rules, connector=connector, mode="full")
    import_delta(store, "ad", [ad_user(7)])
    import_delta(store, "entra", [])
    run_sync(store, rules, connector="ad", mode="delta")
    entra_pass = run_sync(store, rules, connector="entra", mode="delta")
    assert entra_pass.counters["joins_refused"] == 1
    held = entra_anchor_of(store, 7)
    assert held.startswith(PROVISIONAL_PREFIX)
    assert exports(store)[held]["state"] == "refused"


def test_block_soft_match_makes_no_join_due_for_a_cloud_user_of_the_same_upn(store):
    rules = load_sync_rules(block_soft_match=True)
    import_full(store, "ad", [ad_user(1)])
    import_full(store, "entra", [entra_user("c7", "user7@corp.example")])
    for connector in ("ad", "entra"):
        run_sync(store, rules, connector=connector, mode="full")
    import_delta(store, "ad", [ad_user(7)])
    assert run_sync(store, rules, connector="ad", mode="delta").counters.get("joins_due", 0) == 0
