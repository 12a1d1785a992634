"""Group writeback against the real servers: the rules' opt-in settings, a Microsoft 365 group made in the
emulator, and the group and its members as written back to AD.
"""

from __future__ import annotations

import re
import uuid

from aadsync_devkit.world.seed import DEV_WRITEBACK_OU
from airflow_provider_aadsync.hooks.active_directory import ActiveDirectoryHook
from airflow_provider_aadsync.hooks.active_directory_values import value_guid

WRITEBACK_ON = {"writeback_enabled": True, "writeback_ou": DEV_WRITEBACK_OU}


#: The writeback OU and the cloud group of the unit tests that write a group back to a fake DC.
WRITEBACK_OU = "OU=Writeback,DC=corp,DC=example"
CLOUD_GROUP_ID = "5a1e5000-0000-4000-8000-00000000c0de"


def m365_group(graph, name: str, members: list[str]) -> str:
    body = {
        "displayName": name,
        "mailNickname": re.sub(r"[^a-z0-9]", "", name.lower())[:64],
        "mailEnabled": True,
        "securityEnabled": False,
        "groupTypes": ["Unified"],
        "description": f"{name} team",
    }
    group = graph.request("POST", "/groups", json=body)
    for start in range(0, len(members), 20):
        urls = [graph.directory_object_url(m) for m in members[start : start + 20]]
        graph.request("PATCH", f"/groups/{group['id']}", json={"members@odata.bind": urls})
    return group["id"]


def written_back(ad: ActiveDirectoryHook, group_id: str) -> tuple[str, dict[str, list[bytes]]]:
    conn = ad.get_conn()
    conn.search(
        DEV_WRITEBACK_OU,
        f"(adminDescription=Group_{group_id})",  # the writeback mark, whatever the naming
        attributes=["objectGUID", "groupType", "sAMAccountName", "description", "displayName"],
    )
    (entry,) = [e for e in conn.response if e["type"] == "searchResEntry"]
    return str(uuid.UUID(bytes_le=entry["raw_attributes"]["objectGUID"][0])), entry["raw_attributes"]


def members_in_ad(ad: ActiveDirectoryHook, guid: str) -> list[str]:
    """Every member value, read with explicit ranges (the import's code path)."""
    return [value_guid(value) for value in ad.read_values(guid, "member")]


def sync_a_written_back_group(store, *, ou: str, cloud_id: str) -> None:
    """Three AD users, their cloud twins and a Microsoft 365 group of the three, synced by the shipped rules with
    group writeback into ``ou`` (ConsistencyGuid writeback off): the plan of a first group writeback export."""
    from airflow_provider_aadsync.engine.runs.source import SourceObject
    from airflow_provider_aadsync.engine.sync import run_sync
    from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
    from tests.support.world import ad_user, entra_user, guid, immutable_id, import_full

    rules = load_sync_rules(writeback_enabled=True, writeback_ou=ou, consistency_guid_writeback=False)
    import_full(store, "ad", [ad_user(n) for n in (1, 2, 3)])
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    cloud: list[SourceObject] = [
        entra_user(f"cloud-{n}", f"user{n}@corp.example", immutable_id(guid(n))) for n in (1, 2, 3)
    ]
    group = {"id": [cloud_id], "displayName": ["Falcon"], "mailNickname": ["falcon"], "groupTypes": ["Unified"],
             "mailEnabled": [True], "securityEnabled": [False]}  # fmt: skip
    members = [(f"cloud-{n}", None) for n in (1, 2, 3)]
    cloud.append(SourceObject(cloud_id, f"groups/{cloud_id}", "group", group, references={"members": members}))
    import_full(store, "entra", cloud)
    assert run_sync(store, rules, connector="entra", mode="full").result == "success"
