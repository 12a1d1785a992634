"""Kill: each step of the cycle runs in its own OS process, is SIGKILLed at N evenly spaced points of its progress
and is then run again to completion (as an Airflow retry of the same task instance would).

After each kill and rerun the end state equals that of an uninterrupted run on an identical world: no duplicate
create, no lost write, no pending export left open, and watermarks moved only with their data (right after the kill
the store still holds the old watermark and the old rows). Points are counted in Graph requests, LDAP operations
and store statements (see ``kill_points``), never timed. Short profile: 3 points per step; ``--soak``: 8.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from ldap3.core.exceptions import LDAPEntryAlreadyExistsResult

from aadsync_devkit.world.samba import SambaDC
from aadsync_devkit.world.seed import DEV_WRITEBACK_OU
from tests.support.kill_points import run_step
from tests.support.reliability import (
    baseline,
    copy_store,
    entra_spec,
    every,
    graph_for,
    kill,
    open_exports,
    points,
    snapshot,
    store_path,
    tenant_factory,
    tenant_state,
    watermarks,
)
from tests.support.servers import hook_for

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------------------------------- the world
@pytest.fixture(scope="module")
def dc(start_dc) -> SambaDC:
    dc = start_dc(users=200, groups=10, group_size=150)
    hook_for(dc).get_conn().add(DEV_WRITEBACK_OU, "organizationalUnit")
    return dc


@pytest.fixture(scope="module")
def tenants(graph_server):
    yield from tenant_factory(graph_server)


# ---------------------------------------------------------------------------------------- AD writeback state
def writeback_state(dc: SambaDC) -> list[tuple]:
    """The groups under the writeback OU: (mark, name, description, members' DNs); GUIDs and USNs left out."""
    conn = hook_for(dc).get_conn()
    conn.search(
        DEV_WRITEBACK_OU,
        "(objectClass=group)",
        search_scope="LEVEL",
        attributes=["adminDescription", "cn", "description", "groupType", "sAMAccountName", "displayName", "member"],
    )
    groups = []
    for entry in conn.response:
        if entry["type"] != "searchResEntry":
            continue
        attrs = entry["attributes"]
        members = sorted(m.lower() for m in attrs.get("member", []))
        names = [
            str(attrs.get(name)) for name in ("adminDescription", "cn", "description", "groupType", "sAMAccountName")
        ]
        groups.append((*names, members))
    return sorted(groups)


def clear_writeback(dc: SambaDC) -> None:
    conn = hook_for(dc).get_conn()
    conn.search(DEV_WRITEBACK_OU, "(objectClass=group)", search_scope="LEVEL", attributes=["cn"])
    for dn in [e["dn"] for e in conn.response if e["type"] == "searchResEntry"]:
        assert conn.delete(dn), conn.result


# ---------------------------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def world(dc, graph_server, tenants, tmp_path_factory) -> dict[str, Any]:
    """The stores every test starts from, built once: AD imported, then synchronized; exported to a tenant."""
    home = tmp_path_factory.mktemp("kill-world")
    ad_info = dc.connection_info()
    imported = f"sqlite:///{home / 'imported.sqlite'}"
    assert run_step({"step": "import-ad", "store": imported, "ad": ad_info, "mode": "full"})["result"] == "success"
    synced = copy_store(store_path(imported), home / "synced.sqlite")
    sync = {"step": "sync", "store": synced, "connector": "ad", "mode": "full", "writeback_ou": DEV_WRITEBACK_OU}
    assert run_step(sync)["result"] == "success"
    exported = copy_store(store_path(synced), home / "exported.sqlite")
    tenant = tenants()
    spec = {"step": "export-entra", "store": exported, "entra": entra_spec(graph_server, tenant)}
    assert run_step(spec)["result"] == "success"
    return {"home": home, "ad": ad_info, "imported": imported, "synced": synced, "exported": exported,
            "tenant": tenant}  # fmt: skip


@pytest.mark.parametrize("mode", ["delta", "full"])
def test_killed_ad_import_keeps_the_old_watermark_and_reruns_to_the_same_state(world, dc, soak, tmp_path, mode):
    base = copy_store(store_path(world["imported"]), tmp_path / "base.sqlite")
    conn = hook_for(dc).get_conn()
    # changes since the watermark: attribute edits and a new user
    conn.search(dc.base_dn, "(&(objectClass=user)(department=*))", attributes=["cn"], size_limit=5)
    edited = [e["dn"] for e in conn.response if e["type"] == "searchResEntry"]
    for dn in edited:
        assert conn.modify(dn, {"department": [("MODIFY_REPLACE", ["Killed And Retried"])]}), conn.result
    parent = edited[0].split(",", 1)[1]
    with contextlib.suppress(LDAPEntryAlreadyExistsResult):  # the other mode's case added it already
        assert conn.add(f"CN=Kill Test,{parent}", "user", {"sAMAccountName": "killtest", "department": "Kill"})

    spec = {"step": "import-ad", "ad": world["ad"], "mode": mode}
    before, marks_before = snapshot(base), watermarks(base)
    reference = copy_store(store_path(base), tmp_path / "reference.sqlite")
    total, summary = baseline({**spec, "store": reference})
    assert summary["result"] == "success" and summary["mode"] == mode and summary["counters"]["updates"] >= 5
    expected = snapshot(reference)
    assert expected != before and watermarks(reference) != marks_before
    for at in points(total, soak):
        url = copy_store(store_path(base), tmp_path / f"killed-{at}.sqlite")
        kill({**spec, "store": url}, at)
        assert watermarks(url) == marks_before and snapshot(url) == before, f"killed at {at}: half-applied"
        assert run_step({**spec, "store": url})["result"] == "success"
        assert snapshot(url) == expected, f"killed at {at} of {total}"


def test_killed_ad_sync_reruns_to_the_same_metaverse_and_exports(world, soak, tmp_path):
    spec = {"step": "sync", "connector": "ad", "mode": "full", "writeback_ou": DEV_WRITEBACK_OU}
    base = store_path(world["imported"])
    before = snapshot(world["imported"])
    total, summary = baseline({**spec, "store": copy_store(base, tmp_path / "reference.sqlite")})
    assert summary["result"] == "success"
    expected = snapshot(world["synced"])
    for at in points(total, soak):
        url = copy_store(base, tmp_path / f"killed-{at}.sqlite")
        kill({**spec, "store": url}, at)
        assert snapshot(url) == before, f"killed at {at}: half-applied"
        assert run_step({**spec, "store": url})["result"] == "success"
        assert snapshot(url) == expected, f"killed at {at} of {total}"


def test_killed_entra_export_reruns_without_duplicates_or_lost_writes(world, graph_server, tenants, soak, tmp_path):
    base = store_path(world["synced"])
    spec = {"step": "export-entra"}
    reference = {**spec, "store": copy_store(base, tmp_path / "reference.sqlite"),
                 "entra": entra_spec(graph_server, tenants())}  # fmt: skip
    total, summary = baseline(reference)
    assert summary["result"] == "success"
    expected = tenant_state(graph_for(reference))
    assert len(expected["users"]) == 200 and expected["groups"]
    partial: list[int] = []
    for at in points(total, soak):
        url = copy_store(base, tmp_path / f"killed-{at}.sqlite")
        killed = {**spec, "store": url, "entra": entra_spec(graph_server, tenants())}
        kill(killed, at)
        partial.append(len(every(graph_for(killed), "/users", "id")))
        result = run_step(killed)
        assert result["result"] == "success", (at, result)
        assert open_exports(url, "entra") == [], f"killed at {at}: operations left unconfirmed"
        assert tenant_state(graph_for(killed)) == expected, f"killed at {at} of {total}: tenant differs"
    assert any(0 < users < 200 for users in partial), f"no kill landed between the first and the last create: {partial}"


@pytest.mark.parametrize("mode", ["delta", "full"])
def test_killed_entra_import_keeps_the_old_delta_links(world, graph_server, soak, tmp_path, mode):
    spec = {"step": "import-entra", "entra": entra_spec(graph_server, world["tenant"]), "mode": mode}
    base = copy_store(store_path(world["exported"]), tmp_path / "base.sqlite")
    assert run_step({**spec, "store": base, "mode": "full"})["result"] == "success"
    graph = graph_for(spec)
    users = [u["id"] for u in graph.request("GET", "/users", params={"$select": "id", "$top": "30"})["value"]]
    for user in users[:4]:
        graph.request("PATCH", f"/users/{user}", json={"displayName": f"Renamed {user[:8]}"})
    team = {"displayName": f"Kill Team {mode}", "mailNickname": f"killteam{mode}", "mailEnabled": True,
            "securityEnabled": False, "groupTypes": ["Unified"]}  # fmt: skip
    team = graph.request("POST", "/groups", json=team)
    urls = [graph.directory_object_url(u) for u in users[4:24]]
    graph.request("PATCH", f"/groups/{team['id']}", json={"members@odata.bind": urls})

    before, marks_before = snapshot(base), watermarks(base)
    reference = copy_store(store_path(base), tmp_path / "reference.sqlite")
    total, summary = baseline({**spec, "store": reference})
    assert summary["result"] == "success" and summary["mode"] == mode
    expected = snapshot(reference)
    assert expected != before
    for at in points(total, soak):
        url = copy_store(store_path(base), tmp_path / f"killed-{at}.sqlite")
        kill({**spec, "store": url}, at)
        assert watermarks(url) == marks_before and snapshot(url) == before, f"killed at {at}: half-applied"
        assert run_step({**spec, "store": url})["result"] == "success"
        assert snapshot(url) == expected, f"killed at {at} of {total}"
        assert watermarks(url) != marks_before


def test_killed_group_writeback_reruns_without_duplicates_or_lost_members(world, dc, graph_server, soak, tmp_path):
    entra = entra_spec(graph_server, world["tenant"])
    graph = graph_for({"entra": entra})
    users = sorted(u["id"] for u in every(graph, "/users", "id"))
    for number, size in enumerate((3, 45, 120)):
        body = {"displayName": f"Writeback {number}", "mailNickname": f"writeback{number}", "mailEnabled": True,
                "securityEnabled": False, "groupTypes": ["Unified"]}  # fmt: skip
        group = graph.request("POST", "/groups", json=body)
        for start in range(0, size, 20):
            urls = [graph.directory_object_url(u) for u in users[number + start : number + min(start + 20, size)]]
            graph.request("PATCH", f"/groups/{group['id']}", json={"members@odata.bind": urls})
    base = copy_store(store_path(world["exported"]), tmp_path / "base.sqlite")
    assert run_step({"step": "import-entra", "store": base, "entra": entra, "mode": "full"})["result"] == "success"
    sync = {"step": "sync", "store": base, "mode": "delta", "writeback_ou": DEV_WRITEBACK_OU}
    assert run_step({**sync, "connector": "ad"})["result"] == "success"
    assert run_step({**sync, "connector": "entra"})["result"] == "success"

    spec = {"step": "export-ad", "ad": world["ad"]}
    clear_writeback(dc)
    total, summary = baseline({**spec, "store": copy_store(store_path(base), tmp_path / "reference.sqlite")})
    assert summary["result"] == "success" and summary["counters"]["group_adds"] >= 3, summary
    expected = writeback_state(dc)
    unified = [g for g in every(graph, "/groups", "id,groupTypes") if "Unified" in g["groupTypes"]]
    assert len(expected) == len(unified) and {3, 45, 120} <= {len(group[-1]) for group in expected}
    partial: list[int] = []
    for at in points(total, soak):
        clear_writeback(dc)
        url = copy_store(store_path(base), tmp_path / f"killed-{at}.sqlite")
        kill({**spec, "store": url}, at)
        partial.append(len(writeback_state(dc)))
        result = run_step({**spec, "store": url})
        assert result["result"] == "success", (at, result)
        assert open_exports(url, "ad") == [], f"killed at {at}: operations left unconfirmed"
        assert writeback_state(dc) == expected, f"killed at {at} of {total}"
    clear_writeback(dc)
    assert any(0 < groups for groups in partial), f"no kill landed after the first group was written: {partial}"
