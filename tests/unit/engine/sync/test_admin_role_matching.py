"""Cloud administrators are never matched (Microsoft Entra Connect, "When you have an existing tenant": "Microsoft
Entra ID won't match on-premises users with cloud users that have an admin role"): with the shipped rules, a cloud
user or group whose ``directoryRoles`` (recorded by the Entra import) holds a role is refused by the soft match and
the hard match alike, a per-object error ``admin-role``; nothing is written to it and no second object is created
beside it. One joined before it was given a role stays joined."""

from __future__ import annotations

from airflow_provider_aadsync.engine.runs.preflight import preflight
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync import PROVISIONAL_PREFIX, run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.world import (
    ad_group,
    ad_user,
    cloud_twin,
    entra_group,
    entra_user,
    exports,
    guid,
    immutable_id,
    import_full,
    links,
    mv_by,
    sync_errors,
)

ADMIN = "Global Administrator"


def sync(store: Store, ad: list, cloud: list) -> dict[str, tuple[str, str]]:
    return sync_errors(store, ad, cloud)


def entra_anchor_of(store: Store, attribute: str, value: str) -> str | None:
    mv_id, _ = mv_by(store, attribute, value)
    return next((a for (_c, a), (m, _t) in links(store, "entra").items() if m == mv_id), None)


def test_soft_and_hard_matches_of_administrators_are_refused_and_nothing_is_written(store):
    ad = [ad_user(1), ad_user(2), ad_user(3), ad_group(20, "Tier0", mail="tier0@corp.example")]
    cloud = [
        entra_user("c1", "user1@corp.example", directoryRoles=[ADMIN]),  # soft match on userPrincipalName
        entra_user("c2", "x@corp.example", immutable_id(guid(2)), directoryRoles=["User Administrator", ADMIN]),
        entra_user("c3", "user3@corp.example"),  # no role: matched as before
        entra_group("cg", "Tier0", mail="tier0@corp.example", mailEnabled=False, directoryRoles=["Global Reader"]),
    ]
    errors = sync(store, ad, cloud)
    assert set(errors) == {"c1", "c2", "cg"}
    assert {code for code, _ in errors.values()} == {"admin-role"}
    assert ADMIN in errors["c1"][1] and "User Administrator" in errors["c2"][1]
    assert "remove its role assignments" in errors["c1"][1]
    assert entra_anchor_of(store, "accountName", "user3") == "c3"
    staged = exports(store)
    for cloud_id, (attribute, value) in {"c1": ("accountName", "user1"), "c2": ("accountName", "user2"),
                                         "cg": ("accountName", "Tier0")}.items():  # fmt: skip
        assert cloud_id not in staged  # no write to the administrator
        held = entra_anchor_of(store, attribute, value)
        # the create the sync planned is held (refused): no second account beside the administrator's
        assert held.startswith(PROVISIONAL_PREFIX)
        assert staged[held]["state"] == "refused" and staged[held]["operation"] == "add"


def test_a_user_joined_before_it_was_given_a_role_stays_joined(store):
    assert sync(store, [ad_user(5)], [cloud_twin(5)]) == {}
    assert entra_anchor_of(store, "accountName", "user5") == "cloud-5"
    # made an administrator later: the join stands (the protection is of the match), and the sync goes on
    assert sync(store, [ad_user(5)], [cloud_twin(5, directoryRoles=[ADMIN])]) == {}
    assert entra_anchor_of(store, "accountName", "user5") == "cloud-5"
    assert ("entra", "cloud-5") in links(store)


def test_the_preflight_lists_administrators_as_conflicts(store):
    import_full(store, "ad", [ad_user(1), ad_user(2), ad_user(3)])
    import_full(
        store,
        "entra",
        [
            entra_user("c1", "user1@corp.example", directoryRoles=[ADMIN]),
            entra_user("c2", "x@corp.example", immutable_id(guid(2)), directoryRoles=["Helpdesk Administrator"]),
            entra_user("c3", "user3@corp.example"),
        ],
    )
    assert run_sync(store, load_sync_rules(), connector="ad", mode="full").result == "success"
    rows = {row.user_principal_name.split("@")[0]: row for row in preflight(store)}
    assert (rows["user1"].outcome, rows["user1"].cloud_id) == ("conflict", "c1")
    assert rows["user1"].conflict.startswith(f"holds the administrator role {ADMIN}: never matched")
    assert (rows["user2"].outcome, rows["user2"].matched_on) == ("conflict", "onPremisesImmutableId")
    assert "Helpdesk Administrator" in rows["user2"].conflict
    assert (rows["user3"].outcome, rows["user3"].conflict) == ("soft match", "")
