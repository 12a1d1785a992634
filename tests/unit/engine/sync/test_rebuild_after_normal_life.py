"""A lost store rebuilt from two directories after a normal life stages no write."""

from __future__ import annotations

import pytest

from aadsync_devkit.world.seed import DEV_WRITEBACK_OU
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
