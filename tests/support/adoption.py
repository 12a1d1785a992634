"""A tenant that already holds the directory's users and groups (issue 15, adoption): cloud objects seeded into the
Graph emulator as an admin, another sync engine or a lost store left them, and the AD side's anchors read straight
from the DC, so a test can say how each AD object must meet them.
"""

from __future__ import annotations

import base64

import ldap3

from aadsync_devkit.world.samba import SambaDC
from tests.support.servers import emulator_admin

GRAPH_OBJECTS = "https://graph.microsoft.com/v1.0/directoryObjects"


def cloud_user(name: str, upn: str, **values) -> dict:
    """A cloud user as an admin made it (``Cloud <name>``), with any Graph property (``onPremisesImmutableId``,
    ``onPremisesSyncEnabled`` as another engine leaves it, ``mail``)."""
    return {"@odata.type": "#microsoft.graph.user", "accountEnabled": True, "displayName": f"Cloud {name}",
            "mailNickname": f"cloud{name.replace('.', '')}", "userPrincipalName": upn, **values}  # fmt: skip


def cloud_group(name: str, *, members: tuple[str, ...] = (), **values) -> dict:
    """A cloud group (a security group unless ``values`` say otherwise), with members by object id."""
    group = {"@odata.type": "#microsoft.graph.group", "displayName": name, "mailEnabled": False,
             "mailNickname": name.lower().replace(" ", ""), "securityEnabled": True, **values}  # fmt: skip
    if members:
        group["members@odata.bind"] = [f"{GRAPH_OBJECTS}/{member}" for member in members]
    return group


def seed_tenant(graph_server, tenant: dict, objects: list[dict]) -> list[dict]:
    """Seed ``objects`` into the tenant in order (the emulator's admin API: read-only properties allowed); return
    them as created, with their object ids."""
    seeded = emulator_admin(graph_server, "POST", f"/tenants/{tenant['id']}/objects", json=objects)
    assert seeded.status_code == 201, seeded.text
    return seeded.json()["value"]


def first(values) -> str | None:
    """The first value of an LDAP attribute (None when it has none)."""
    if isinstance(values, list):
        return values[0] if values else None
    return values


def anchor_of(guid_bytes: bytes) -> str:
    """The sourceAnchor (and onPremisesImmutableId) of an objectGUID or mS-DS-ConsistencyGuid: base64 of its bytes."""
    return base64.b64encode(guid_bytes).decode()


def ad_anchors(dc: SambaDC, ou: str) -> dict[str, tuple[bytes, bytes | None]]:
    """sAMAccountName → (objectGUID bytes, mS-DS-ConsistencyGuid bytes or None) of the users under ``ou`` (relative
    to the DC's base DN), read straight from the DC."""
    conn = dc.connect()
    try:
        conn.search(f"{ou},{dc.base_dn}", "(objectClass=user)", attributes=["sAMAccountName", "objectGUID",
                    "mS-DS-ConsistencyGuid"])  # fmt: skip
        return {
            str(entry.sAMAccountName): (
                entry.entry_raw_attributes["objectGUID"][0],
                (entry.entry_raw_attributes.get("mS-DS-ConsistencyGuid") or [None])[0],
            )
            for entry in conn.entries
        }
    finally:
        conn.unbind()


def ad_users(dc: SambaDC, ou: str = "OU=Users,OU=AADSync") -> dict[str, dict]:
    """userPrincipalName → DN, mail, sourceAnchor of the users under ``ou``, read straight from the DC."""
    return _by_name(dc, ou, "(&(objectCategory=person)(objectClass=user))", "userPrincipalName")


def ad_groups(dc: SambaDC, ou: str = "OU=Groups,OU=AADSync") -> dict[str, dict]:
    """cn → DN, mail, sourceAnchor of the groups under ``ou``, read straight from the DC."""
    return _by_name(dc, ou, "(objectClass=group)", "cn")


def _by_name(dc: SambaDC, ou: str, search_filter: str, name: str) -> dict[str, dict]:
    """``name`` → DN, mail, sourceAnchor of the objects under ``ou`` that ``search_filter`` selects."""
    conn = dc.connect()
    try:
        conn.search(f"{ou},{dc.base_dn}", search_filter, ldap3.SUBTREE, attributes=[name, "mail", "objectGUID"])
        return {
            first(entry["attributes"][name]): {
                "dn": entry["dn"],
                "mail": first(entry["attributes"]["mail"]),
                "anchor": anchor_of(entry["raw_attributes"]["objectGUID"][0]),
            }
            for entry in conn.response
            if entry["type"] == "searchResEntry"
        }
    finally:
        conn.unbind()


def ad_objects(dc: SambaDC, root: str = "OU=AADSync") -> dict[str, str]:
    """DN (lower case) → objectGUID of every object under ``root``: an add, a delete or a delete-and-add between two
    readings shows as a difference."""
    conn = dc.connect()
    try:
        conn.search(f"{root},{dc.base_dn}", "(objectClass=*)", ldap3.SUBTREE, attributes=["objectGUID"])
        return {
            entry["dn"].lower(): anchor_of(entry["raw_attributes"]["objectGUID"][0])
            for entry in conn.response
            if entry["type"] == "searchResEntry"
        }
    finally:
        conn.unbind()
