"""The README's main job (``aadsync-dev demo``): the local world up, then the sync cycle DAGs run by Airflow itself;
and the changes it makes in the local AD between its full and its delta cycle, one of each kind."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

import ldap3

from aadsync_devkit.world.samba import SambaDC
from aadsync_devkit.world.seed import dev_writeback_variables, ensure_writeback_ou

if TYPE_CHECKING:
    from aadsync_devkit.world.graph import LocalGraphEmulator

#: The sync instance (store) of the demo: started empty on every run.
DEMO_INSTANCE = "demo"


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
        upns = []
        for dn in users:  # read before the changes: the deleted one is gone after them
            conn.search(dn, "(objectClass=user)", ldap3.BASE, attributes=["userPrincipalName"])
            upns += [str(value) for value in conn.response[0]["attributes"].get("userPrincipalName") or []]
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
        "changed_upns": ", ".join(upns),
    }


def make_demo_cloud_group(
    graph: LocalGraphEmulator, *, members: int = 3, avoid: Collection[str] = ()
) -> dict[str, str]:
    """Create a Microsoft 365 group with a few synced users in the dev tenant: the next cycle writes it back to AD.
    ``avoid``: UPNs of users the demo changes in AD (one is deleted: as a member it would not be written back, and
    which users Graph lists first depends on the order the export created them)."""
    hook = graph.entra_hook()
    try:
        listed = hook.request("GET", "/users", params={"$top": members + len(avoid), "$select": "id,userPrincipalName"})
        avoided = {upn.casefold() for upn in avoid}
        users = [user for user in listed["value"] if str(user.get("userPrincipalName")).casefold() not in avoided]
        users = users[:members]
        group = hook.request(
            "POST",
            "/groups",
            json={"displayName": "Demo Team", "mailNickname": "demoteam", "mailEnabled": True,
                  "securityEnabled": False, "groupTypes": ["Unified"], "description": "written back to AD"},
        )  # fmt: skip
        urls = [hook.directory_object_url(user["id"]) for user in users]
        hook.request("PATCH", f"/groups/{group['id']}", json={"members@odata.bind": urls})
    finally:
        hook.close()
    return {"cloud_group_added": f"Demo Team (Microsoft 365, {len(urls)} members) → group writeback"}


# --------------------------------------------------------------------------------------------------- the demo
@dataclass
class DemoResult:
    """What ``aadsync-dev demo`` prints: the reports of its two DAG runs, and whether both succeeded."""

    text: str
    succeeded: bool
    seconds: dict[str, float]


def run_demo(
    *,
    users: int,
    groups: int,
    group_size: int,
    keep_running: bool = False,
    progress: Callable[[str], None] = print,
) -> DemoResult:
    """The README's main job, through Airflow itself.

    Start the local AD DC (restored from the seeded fixture cache, built once) and the Graph emulator (its dev tenant
    reset to empty), migrate Airflow's embedded SQLite metadata DB under ``$AADSYNC_HOME/airflow``, run the
    ``aadsync_full`` DAG, make a few changes in AD and one Microsoft 365 group in the tenant, run ``aadsync_cycle``
    (a delta cycle, which writes the group back to AD: the demo turns group writeback on for itself), and return
    both cycle reports. The sync store is the ``demo`` instance, started empty each time. Both servers are stopped
    at the end unless ``keep_running``.
    """
    from aadsync_devkit.paths import aadsync_home, dev_dc_home, dev_graph_home
    from aadsync_devkit.processes import free_port, port_in_use
    from aadsync_devkit.world.airflow_runs import LocalAirflow
    from aadsync_devkit.world.fixtures import cached_seeded_dc
    from aadsync_devkit.world.graph import LocalGraphEmulator

    seconds: dict[str, float] = {}
    started = time.monotonic()
    dc = SambaDC(dev_dc_home())
    dc.stop()
    dc = cached_seeded_dc(dc.home, users=users, groups=groups, group_size=group_size)
    conn = dc.connect()
    try:
        ensure_writeback_ou(conn, dc.base_dn)  # the dev world turns group writeback on for itself
    finally:
        conn.unbind()
    graph = LocalGraphEmulator(dev_graph_home())
    try:
        if not graph.is_running() and port_in_use(graph.port):
            graph = LocalGraphEmulator(graph.home, port=free_port())
        graph.start()
        graph.reset_dev_tenant()
        seconds["servers"] = time.monotonic() - started
        progress(
            f"local AD at {dc.ldaps_url} ({users:,} users, {groups:,} groups, a {group_size:,}-member group) and the "
            f"Graph emulator at {graph.base_url} (empty dev tenant) up in {seconds['servers']:.1f} s"
        )
        home = aadsync_home()
        store = home / "store" / f"{DEMO_INSTANCE}.sqlite"
        for leftover in store.parent.glob(f"{store.name}*"):
            leftover.unlink()
        airflow = LocalAirflow(
            home / "airflow",
            connections={
                "aadsync_ad": {"conn_type": "aadsync_ad", **dc.connection_info()},
                "aadsync_entra": graph.connection_info(),
            },
            variables={"aadsync_instance": DEMO_INSTANCE, **dev_writeback_variables(dc.base_dn)},
            env={"AADSYNC_HOME": str(home)},
        )
        seconds["airflow db migrate"] = airflow.migrate()
        progress(f"Airflow metadata DB (SQLite) migrated in {seconds['airflow db migrate']:.1f} s at {airflow.home}")
        reports = []
        for dag_id in ("aadsync_full", "aadsync_cycle"):
            if dag_id == "aadsync_cycle":
                changes = make_demo_changes(dc)
                changes |= make_demo_cloud_group(graph, avoid=changes["changed_upns"].split(", "))
                progress("changed in AD since aadsync_full:\n" + "\n".join(f"  {k}: {v}" for k, v in changes.items()))
            progress(f"airflow dags test {dag_id} ...")
            run = airflow.dags_test(dag_id)
            seconds[dag_id] = run.seconds
            progress(f"{dag_id}: {run.state or 'did not finish'} in {run.seconds:.1f} s (run {run.run_id})")
            if run.run_id is not None:
                try:
                    reports.append(airflow.report(run))
                except FileNotFoundError:
                    pass
            if not run.succeeded:
                progress(f"{dag_id} failed; the end of its output:\n{run.tail()}")
                return DemoResult("\n".join(reports), False, seconds)
        return DemoResult("\n".join(reports), True, seconds)
    finally:
        if not keep_running:
            dc.stop()
            graph.stop()
