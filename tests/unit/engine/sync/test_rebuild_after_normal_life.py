"""A lost store rebuilt from two directories after a normal life stages no write; a match the rebuilt store refuses
writes nothing to the cloud object it refused."""

from __future__ import annotations

import pytest

from aadsync_devkit.world.seed import DEV_WRITEBACK_OU
from airflow_provider_aadsync.engine.runs.export_run import still_refused
from airflow_provider_aadsync.engine.runs.source import SourceObject
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.world import (
    BASE,
    ad_group,
    ad_user,
    cloud_twin,
    entra_group,
    exports,
    guid,
    immutable_id,
    import_delta,
    import_full,
    links,
    reference_exports,
)

M365 = "5a1e5000-0000-4000-8000-00000000c0de"


def ad_side():
    users = []
    cguid = {1: guid(1), 2: guid(2), 3: guid(3), 4: guid(400), 5: guid(5)}  # 4: admin-set ConsistencyGuid
    for n in range(1, 6):
        sam = "renamed3" if n == 3 else f"user{n}"
        u = ad_user(n, sam, **{"mS-DS-ConsistencyGuid": cguid[n]})
        if n == 5:
            u.dn = f"CN=user5,OU=Moved,{BASE}"
        if n in (2, 3):
            u.references = {"manager": [(guid(1), f"CN=user1,OU=Users,{BASE}")]}
        users.append(u)
    groups = [
        ad_group(20, "Staff", members=[1, 2, 21]),
        ad_group(21, "Nested", members=[3, 4]),
        # the M365 group written back earlier
        ad_group(
            30,
            f"Group_{M365}",
            members=[1, 2],
            security=False,
            adminDescription=f"Group_{M365}",
            displayName="Falcon",
            mail="falcon@corp.example",
            proxyAddresses=["SMTP:falcon@corp.example"],
        ),
    ]
    groups[2].attrs["sAMAccountName"] = ["Group_00000000c0de"]
    groups[2].attrs["groupType"] = ["8"]
    groups[2].dn = f"CN=Group_{M365},{DEV_WRITEBACK_OU}"
    return users + groups, cguid


def entra_side(cguid):
    out = []
    for n in range(1, 6):
        sam = "renamed3" if n == 3 else f"user{n}"
        u = cloud_twin(n, sam, anchor=immutable_id(cguid[n]))
        if n in (2, 3):
            u.references = {"manager": [("cloud-1", None)]}
        out.append(u)

    for gid, n, name, members in (
        ("g-staff", 20, "Staff", ["cloud-1", "cloud-2", "g-nested"]),
        ("g-nested", 21, "Nested", ["cloud-3", "cloud-4"]),
    ):
        out.append(entra_group(gid, name, members, extension_aadsyncSourceAnchor=immutable_id(guid(n))))
    out.append(
        SourceObject(
            anchor=M365,
            dn=f"groups/{M365}",
            object_type="group",
            attrs={
                "id": [M365],
                "displayName": ["Falcon"],
                "mailNickname": ["falcon"],
                "groupTypes": ["Unified"],
                "mailEnabled": [True],
                "securityEnabled": [False],
                "mail": ["falcon@corp.example"],
                "proxyAddresses": ["SMTP:falcon@corp.example"],
            },
            references={"members": [("cloud-1", None), ("cloud-2", None)]},
        )
    )
    return out


@pytest.mark.parametrize("order", [("ad", "entra"), ("entra", "ad")])
def test_rebuild_after_a_normal_life_stages_nothing(store, order):
    rules = load_sync_rules(writeback_enabled=True, writeback_ou=DEV_WRITEBACK_OU)
    ad, cguid = ad_side()
    import_full(store, "ad", ad)
    import_full(store, "entra", entra_side(cguid))
    for connector in order:
        assert run_sync(store, rules, connector=connector, mode="full").result == "success"
    for connector in order:
        assert run_sync(store, rules, connector=connector, mode="full").result == "success"
    print(links(store))
    assert exports(store, "entra") == {}
    assert exports(store, "ad") == {}
    assert reference_exports(store, "entra") == set()
    assert reference_exports(store, "ad") == set()


def rebuild_with_a_changed_anchor(store, order=("ad", "entra")):
    """The world above rebuilt after an admin changed user 1's mS-DS-ConsistencyGuid in AD by mistake: its cloud twin
    cloud-1 (a member of Staff and of Falcon, the manager of cloud-2 and cloud-3) holds the old ImmutableId, so its
    soft match is refused (anchor-mismatch) and user 1's create is held."""
    rules = load_sync_rules(writeback_enabled=True, writeback_ou=DEV_WRITEBACK_OU)
    ad, cguid = ad_side()
    ad[0].attrs["mS-DS-ConsistencyGuid"] = [guid(999)]
    import_full(store, "ad", ad)
    import_full(store, "entra", entra_side(cguid))
    for _ in range(2):
        for connector in order:
            run_sync(store, rules, connector=connector, mode="full")
    return rules


@pytest.mark.parametrize("order", [("ad", "entra"), ("entra", "ad")])
def test_a_refused_match_keeps_the_cloud_users_groups_and_reports_until_resolved(store, order):
    """Unjoined, cloud-1 is no member the AD groups resolve to: the rebuild alone removed it from Staff, cleared the
    manager of its reports and took user 1 out of the written-back Falcon in AD. Nothing names it or the held create.
    Once the admin restores user 1's mS-DS-ConsistencyGuid, cloud-1 joins by hard match, the held create goes, and
    the groups and reports that kept cloud-1 need no change."""
    rules = rebuild_with_a_changed_anchor(store, order)
    assert ("entra", "cloud-1") not in links(store)
    (held,) = exports(store, "entra")
    assert exports(store, "entra")[held]["operation"] == "add" and exports(store, "entra")[held]["state"] == "refused"
    assert reference_exports(store, "entra") == set()
    assert exports(store, "ad") == {}
    assert reference_exports(store, "ad") == set()
    # every export reports it, saying what is kept and how to resolve it
    (report,) = still_refused(store, "entra")
    assert (report["anchor"], report["code"]) == ("cloud-1", "anchor-mismatch")
    assert "keeps its group memberships" in report["message"] and "clear it in the tenant" in report["message"]

    ad, _ = ad_side()
    import_full(store, "ad", ad)
    for connector in ("ad", "entra"):
        assert run_sync(store, rules, connector=connector, mode="full").result == "success"
    assert links(store, "entra")[("entra", "cloud-1")][0] == links(store, "ad")[("ad", guid(1))][0]
    for connector in ("entra", "ad"):
        assert exports(store, connector) == {}
        assert reference_exports(store, connector) == set()


def test_changes_while_a_match_is_refused_leave_the_refused_user_alone(store):
    rules = rebuild_with_a_changed_anchor(store)
    import_delta(store, "ad", [ad_group(20, "Staff", members=[1, 21]), ad_group(21, "Nested", members=[1, 3, 4])])
    result = run_sync(store, rules, connector="ad", mode="delta")
    # user 2 leaves Staff as usual; user 1 joins Nested only once its match is resolved, and stays in Staff
    assert reference_exports(store, "entra") == {("g-staff", "cloud-2", "remove")}
    # left as they are: Staff's removal of cloud-1 and its add of the held create, Nested's add of the held create
    assert result.counters["export_references_held"] == 3
