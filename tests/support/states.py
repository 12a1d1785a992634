"""The directory and the tenant in one comparable shape: users by ImmutableId, groups by name with their members
(users by ImmutableId, groups as ``group:<name>``), read independently from the DC and through Graph, so a test
asserts that a cycle left Entra ID matching AD; and the Graph ``$batch`` calls and writes the emulator counted."""

from __future__ import annotations

import base64
from collections import Counter

import httpx
import ldap3

from aadsync_devkit.world.samba import SambaDC
from tests.support.servers import trust


def immutable_id(guid_bytes: bytes) -> str:
    return base64.b64encode(guid_bytes).decode()


def first(value):
    return value[0] if isinstance(value, list) else value


def ad_state(dc: SambaDC, root: str | None = None) -> tuple[set[str], dict[str, set[str]]]:
    """The AD side: the users' ImmutableIds, and each group's members (users by ImmutableId, groups by name), under
    ``root`` (default: the seeded OU=AADSync)."""
    conn = dc.connect()
    try:
        root = root or f"OU=AADSync,{dc.base_dn}"
        conn.search(root, "(&(objectCategory=person)(objectClass=user))", ldap3.SUBTREE, attributes=["objectGUID"])
        users = {entry["dn"].lower(): immutable_id(entry["raw_attributes"]["objectGUID"][0]) for entry in conn.response}
        conn.search(root, "(objectClass=group)", ldap3.SUBTREE, attributes=["cn", "member"])
        names = {entry["dn"].lower(): first(entry["attributes"]["cn"]) for entry in conn.response}
        groups = {
            first(entry["attributes"]["cn"]): {
                users.get(member.lower()) or f"group:{names[member.lower()]}"
                for member in entry["attributes"]["member"]
            }
            for entry in conn.response
        }
    finally:
        conn.unbind()
    return set(users.values()), groups


def graph_state(hook) -> tuple[set[str], dict[str, set[str]]]:
    """The Entra side, read independently through Graph, in the same shape as :func:`ad_state`."""
    users = [
        user
        for page in hook.paginate("/users", params={"$select": "id,onPremisesImmutableId", "$top": "999"})
        for user in page["value"]
    ]
    immutable_ids = [user["onPremisesImmutableId"] for user in users]
    assert len(immutable_ids) == len(set(immutable_ids)), "a user was created twice"
    groups: dict[str, set[str]] = {}
    for page in hook.paginate("/groups", params={"$select": "id,displayName", "$top": "999"}):
        for group in page["value"]:
            assert group["displayName"] not in groups, f"group {group['displayName']} was created twice"
            members = [
                member
                for members_page in hook.paginate(
                    f"/groups/{group['id']}/members",
                    params={"$select": "id,displayName,onPremisesImmutableId", "$top": "999"},
                )
                for member in members_page["value"]
            ]
            groups[group["displayName"]] = {
                member["onPremisesImmutableId"]
                if member["@odata.type"] == "#microsoft.graph.user"
                else f"group:{member['displayName']}"
                for member in members
            }
    return set(immutable_ids), groups


def batch_calls(graph_server) -> int:
    counters = httpx.get(f"{graph_server.base_url}/_emulator/counters", verify=trust(graph_server)).json()
    return sum(n for key, n in counters["requests"].items() if key.startswith("POST") and key.endswith("/$batch"))


#: The HTTP methods that change something in Graph.
WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")


def graph_writes(graph_server) -> Counter[str]:
    """The emulator's write requests so far by ``METHOD route`` (``POST /v1.0/users``; a ``$batch`` item counts under
    its own route, the ``$batch`` call too), token requests left out: they write nothing."""
    counters = httpx.get(f"{graph_server.base_url}/_emulator/counters", verify=trust(graph_server)).json()
    return Counter(
        {
            key: n
            for key, n in counters["requests"].items()
            if key.split(" ", 1)[0] in WRITE_METHODS and "/oauth2/" not in key
        }
    )
