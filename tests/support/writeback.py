"""Group writeback against the real servers: the rules' opt-in settings, a Microsoft 365 group made in the
emulator, and the group and its members as written back to AD.
"""

from __future__ import annotations

import re
import uuid

from aadsync_devkit.world.seed import DEV_WRITEBACK_OU
from airflow_provider_aadsync.hooks.active_directory import ActiveDirectoryHook, _value_guid

WRITEBACK_ON = {"writeback_enabled": True, "writeback_ou": DEV_WRITEBACK_OU}


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
    return [_value_guid(value) for value in ad.read_values(guid, "member")]
