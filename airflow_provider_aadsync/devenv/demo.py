"""Changes the demo makes in the local AD between its full and its delta import, one of each kind."""

from __future__ import annotations

import ldap3

from airflow_provider_aadsync.devenv.samba import SambaDC


def _first_dns(conn: ldap3.Connection, base: str, search_filter: str, count: int) -> list[str]:
    conn.search(base, search_filter, ldap3.SUBTREE, attributes=["1.1"], size_limit=count)
    return sorted(entry["dn"] for entry in conn.response if entry["type"] == "searchResEntry")[:count]


def _check(conn: ldap3.Connection, what: str) -> None:
    if conn.result["result"] != 0:
        raise RuntimeError(f"demo change failed ({what}): {conn.result['description']} {conn.result['message']}")


def make_demo_changes(dc: SambaDC) -> dict[str, str]:
    """Add, modify, rename and delete a user, and add and remove a group member; return what was done."""
    root = f"OU=AADSync,{dc.base_dn}"
    conn = dc.connect()
    try:
        users = _first_dns(conn, f"OU=Users,{root}", "(&(objectCategory=person)(objectClass=user))", 3)
        groups = _first_dns(conn, f"OU=Groups,{root}", "(&(objectClass=group)(member=*))", 1)
        if len(users) < 3 or not groups:
            raise RuntimeError("the demo needs a seeded directory with at least 3 users and 1 group with members")
        modified, renamed, deleted = users
        group = groups[0]
        added = f"CN=Demo New Hire,OU=Users,{root}"
        conn.add(
            added,
            ["top", "person", "organizationalPerson", "user"],
            {
                "sAMAccountName": "demo.newhire",
                "givenName": "Demo",
                "sn": "New Hire",
                "displayName": "Demo New Hire",
                "userPrincipalName": "demo.newhire@corp.example.test",
                "department": "Engineering",
                "title": "Engineer",
                "mail": "demo.newhire@corp.example.test",
            },
        )
        _check(conn, f"add {added}")
        conn.modify(modified, {"title": [(ldap3.MODIFY_REPLACE, ["Principal Engineer"])]})
        _check(conn, f"modify {modified}")
        conn.modify_dn(renamed, "CN=Renamed Demo User")
        _check(conn, f"rename {renamed}")
        conn.modify(group, {"member": [(ldap3.MODIFY_ADD, [added])]})
        _check(conn, f"member add to {group}")
        conn.search(group, "(objectClass=group)", ldap3.BASE, attributes=["member"])
        member = sorted(conn.response[0]["attributes"]["member"])[0]
        conn.modify(group, {"member": [(ldap3.MODIFY_DELETE, [member])]})
        _check(conn, f"member remove from {group}")
        conn.delete(deleted)
        _check(conn, f"delete {deleted}")
    finally:
        conn.unbind()
    return {
        "added": added,
        "modified": modified,
        "renamed": renamed,
        "deleted": deleted,
        "member_added": f"{added} → {group}",
        "member_removed": f"{member} ✗ {group}",
    }
