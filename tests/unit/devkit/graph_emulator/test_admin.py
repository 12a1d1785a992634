"""Contacts (read-only in Graph), the admin API (tenants, seeding, counters, reset) and state persistence."""

from __future__ import annotations

import json
import sqlite3
import warnings

import pytest

from aadsync_devkit.graph_emulator.app import create_app
from aadsync_devkit.graph_emulator.state import EmulatorState
from aadsync_devkit.graph_emulator.tenant import Tenant

from .conftest import assert_graph_error, get_token, new_user

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient


def test_contacts_are_read_only(client, auth, tenant):
    seeded = client.post(
        f"/_emulator/tenants/{tenant['id']}/objects",
        json={
            "@odata.type": "#microsoft.graph.orgContact",
            "displayName": "Ext",
            "mail": "ext@partner.example",
            "onPremisesSyncEnabled": True,
        },
    )
    assert seeded.status_code == 201, seeded.text
    body = client.get("/v1.0/contacts", headers=auth).json()
    assert body["@odata.context"] == "https://testserver/v1.0/$metadata#contacts"
    assert body["value"][0]["proxyAddresses"] == ["SMTP:ext@partner.example"]
    response = client.post("/v1.0/contacts", headers=auth, json={"displayName": "New"})
    assert_graph_error(response, 405, "Request_BadRequest")


def test_unknown_segment(client, auth):
    assert_graph_error(
        client.get("/v1.0/nothing", headers=auth), 400, "BadRequest", "Resource not found for the segment 'nothing'."
    )


def test_tenant_conflicts_and_listing(client, tenant):
    again = client.post("/_emulator/tenants", json={"name": "contoso"})
    assert again.status_code == 409
    listed = client.get("/_emulator/tenants").json()["value"]
    assert [t["id"] for t in listed] == [tenant["id"]]
    generated = client.post("/_emulator/tenants", json={"name": "fabrikam"}).json()
    assert generated["apps"][0]["clientId"] and generated["apps"][0]["clientSecret"]


def test_counters_and_reset(client, auth, tenant):
    client.delete("/_emulator/counters")
    client.get("/v1.0/users", headers=auth)
    client.get("/v1.0/users/nope", headers=auth)
    client.get("/v1.0/users/nope2", headers=auth)
    counters = client.get("/_emulator/counters").json()
    assert counters["requests"] == {"GET /v1.0/users": 1, "GET /v1.0/users/{id}": 2}
    assert counters["4xx"] == 2 and counters["5xx"] == 0 and counters["status"]["404"] == 2
    assert client.post("/_emulator/reset").status_code == 204
    assert client.get("/_emulator/tenants").json()["value"] == []
    assert_graph_error(client.get("/v1.0/users", headers=auth), 401, "InvalidAuthenticationToken")


def test_state_file_round_trip(tmp_path):
    state_file = tmp_path / "state.sqlite"
    with TestClient(create_app(EmulatorState(state_file=state_file)), base_url="https://testserver") as first:
        tenant = first.post(
            "/_emulator/tenants",
            json={
                "name": "contoso",
                "verifiedDomains": ["contoso.com"],
                "apps": [{"clientId": "c1", "clientSecret": "s1"}],
            },
        ).json()
        token = get_token(first, tenant["id"], client_id="c1", client_secret="s1").json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        user = first.post("/v1.0/users", headers=auth, json=new_user(1)).json()
        group = first.post(
            "/v1.0/groups",
            headers=auth,
            json={
                "displayName": "g",
                "mailEnabled": False,
                "mailNickname": "g",
                "securityEnabled": True,
                "members@odata.bind": [f"https://graph.microsoft.com/v1.0/directoryObjects/{user['id']}"],
            },
        ).json()
    assert state_file.stat().st_mode & 0o777 == 0o600
    assert b"P@ssw0rd" not in state_file.read_bytes()
    with TestClient(create_app(EmulatorState(state_file=state_file)), base_url="https://testserver") as second:
        token = get_token(second, tenant["id"], client_id="c1", client_secret="s1").json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        assert second.get(f"/v1.0/users/{user['id']}", headers=auth).json()["userPrincipalName"] == "user1@contoso.com"
        members = second.get(f"/v1.0/groups/{group['id']}/members", headers=auth).json()["value"]
        assert [m["id"] for m in members] == [user["id"]]


def saved_upns(state_file):
    with sqlite3.connect(state_file) as db:
        rows = db.execute("SELECT props FROM objects WHERE kind = 'user' AND deleted = 0").fetchall()
    return {json.loads(props)["userPrincipalName"] for (props,) in rows}


def test_state_file_is_a_sqlite_database_with_a_row_per_object_and_mode_0600(tmp_path):
    state_file = tmp_path / "state.sqlite"
    state = EmulatorState(state_file=state_file)
    tenant = state.create_tenant({"name": "rows", "verifiedDomains": ["contoso.com"]})
    users = [tenant.seed({"@odata.type": "#microsoft.graph.user", **new_user(n)}) for n in range(3)]
    group = tenant.create_group(
        {"displayName": "g", "mailEnabled": False, "mailNickname": "g", "securityEnabled": True,
         "members@odata.bind": [f"https://graph.microsoft.com/v1.0/users/{u['id']}" for u in users[:2]]}
    )  # fmt: skip
    state.save()
    assert state_file.read_bytes().startswith(b"SQLite format 3\x00")
    assert state_file.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(state_file) as db:
        rows = db.execute("SELECT tenant, id, kind, deleted, props FROM objects ORDER BY seq").fetchall()
        links = db.execute("SELECT group_id, member_id, rel FROM links ORDER BY seq").fetchall()
        (tenants,) = db.execute("SELECT count(*) FROM tenants").fetchone()
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        *[(tenant.id, u["id"], "user", 0) for u in users],
        (tenant.id, group["id"], "group", 0),
    ]
    assert json.loads(rows[0][4])["userPrincipalName"] == "user0@contoso.com"
    assert links == [(group["id"], users[0]["id"], "members"), (group["id"], users[1]["id"], "members")]
    assert tenants == 1

    tenant.update_user(users[0]["id"], {"displayName": "Renamed"})  # a later save rewrites only what changed
    tenant.remove_member(group["id"], users[1]["id"])
    tenant.delete("user", users[2]["id"])
    state.save()
    assert state_file.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(state_file) as db:
        props = {i: (deleted, json.loads(p)) for i, deleted, p in db.execute("SELECT id, deleted, props FROM objects")}
        links = db.execute("SELECT group_id, member_id FROM links").fetchall()
    assert props[users[0]["id"]][1]["displayName"] == "Renamed"
    assert props[users[2]["id"]][0] == 1 and props[users[2]["id"]][1]["deletedDateTime"]
    assert links == [(group["id"], users[0]["id"])]


def comparable(tenant):
    """A tenant's whole state, with the orders a reload may change (dict insertion orders) normalised."""
    data = tenant.to_dict()
    data["objects"] = sorted(data["objects"], key=lambda o: o["props"]["id"])
    data["deleted"] = sorted(data["deleted"], key=lambda o: o["props"]["id"])
    for links in (data["members"], data["owners"]):
        for group_id in links:
            links[group_id] = sorted(links[group_id].items())
    return data


def test_incremental_saves_keep_the_file_equal_to_the_state(tmp_path):
    state_file = tmp_path / "state.sqlite"
    state = EmulatorState(state_file=state_file)

    def reloaded():
        state.save()
        copy = EmulatorState(state_file=state_file)
        assert [t.id for t in copy.tenants.values()] == [t.id for t in state.tenants.values()]
        for tenant_id, tenant in state.tenants.items():
            assert comparable(copy.tenants[tenant_id]) == comparable(tenant)
        return copy

    one = state.create_tenant({"name": "one", "verifiedDomains": ["contoso.com"]})
    users = [one.seed({"@odata.type": "#microsoft.graph.user", **new_user(n)}) for n in range(6)]
    bind = [f"https://graph.microsoft.com/v1.0/users/{u['id']}" for u in users]
    team = one.create_group(
        {"displayName": "Team", "mailEnabled": True, "mailNickname": "team", "securityEnabled": False,
         "groupTypes": ["Unified"], "members@odata.bind": bind[:4], "owners@odata.bind": bind[4:5]}
    )  # fmt: skip
    empty = one.create_group({"displayName": "E", "mailEnabled": False, "mailNickname": "e", "securityEnabled": True})
    reloaded()
    generation = state._file_generation  # the file is updated in place from now on
    one.update_user(users[0]["id"], {"displayName": "Zero", "mail": "zero@contoso.com"})
    one.add_member(empty["id"], bind[5])
    one.remove_member(team["id"], users[1]["id"])
    one.delete("user", users[4]["id"])  # the team's owner
    one.delete("user", users[2]["id"])
    one.purge(users[2]["id"])
    one.delete("group", team["id"])  # a Microsoft 365 group: to deleted items with its members
    two = state.create_tenant({"name": "two", "apps": [{"clientId": "c2", "clientSecret": "s2"}]})
    state.update_settings({"deltaPageSize": 7})
    copy = reloaded()
    assert copy.settings["deltaPageSize"] == 7 and copy.delta_key == state.delta_key
    assert copy.tenants[two.id].app("c2").secret == "s2"
    one.restore(team["id"])
    one.restore(users[4]["id"])
    state.expire_delta_tokens(one, gone=True)
    state.delete_tenant(two.id)
    reloaded()
    again = state.create_tenant({"id": two.id, "name": "two"})  # the same id again: none of the old rows remain
    again.seed(
        {"@odata.type": "#microsoft.graph.user", **new_user("again", userPrincipalName="again@two.onmicrosoft.com")}
    )
    reloaded()
    assert state._file_generation == generation
    state.reset()
    assert reloaded().tenants == {}


def test_a_failed_save_leaves_the_file_as_it_was_and_the_next_save_writes_everything(tmp_path, monkeypatch):
    state_file = tmp_path / "state.sqlite"
    state = EmulatorState(state_file=state_file)
    tenant = state.create_tenant({"name": "crash", "verifiedDomains": ["contoso.com"]})
    user = tenant.seed({"@odata.type": "#microsoft.graph.user", **new_user(1)})
    state.save()
    tenant.update_user(user["id"], {"displayName": "Changed"})
    tenant.seed({"@odata.type": "#microsoft.graph.user", **new_user(2)})
    written = Tenant._write_rows

    def fail_midway(self, db, *, full):
        written(self, db, full=full)
        raise OSError("disk full")

    monkeypatch.setattr(Tenant, "_write_rows", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        state.save()
    on_disk = EmulatorState(state_file=state_file).find_tenant(tenant.id)
    assert on_disk is not None and on_disk.user_count() == 1
    assert on_disk.get("user", user["id"])[1]["displayName"] == "User 1"
    monkeypatch.setattr(Tenant, "_write_rows", written)
    state.save()
    on_disk = EmulatorState(state_file=state_file).find_tenant(tenant.id)
    assert on_disk is not None and on_disk.user_count() == 2
    assert on_disk.get("user", user["id"])[1]["displayName"] == "Changed"


def test_a_state_file_that_is_not_sqlite_is_refused(tmp_path):
    state_file = tmp_path / "state.sqlite"
    state_file.write_text('{"version": 1, "tenants": []}')
    with pytest.raises(ValueError, match="not an emulator state file"):
        EmulatorState(state_file=state_file)


def test_drop_ratio_is_a_setting_with_bounds():
    from starlette.testclient import TestClient

    from aadsync_devkit.graph_emulator.app import create_app
    from aadsync_devkit.graph_emulator.state import EmulatorState

    client = TestClient(create_app(EmulatorState()))
    assert client.get("/_emulator/settings").json()["faultDropRatio"] == 0.0
    assert client.put("/_emulator/settings", json={"faultDropRatio": 0.25}).json() == {"faultDropRatio": 0.25}
    assert client.put("/_emulator/settings", json={"faultDropRatio": 2}).status_code == 400


def test_flush_writes_pending_state_and_counter_resets_schedule_no_save(tmp_path):
    state_file = tmp_path / "state.sqlite"
    state = EmulatorState(state_file=state_file)
    with TestClient(create_app(state), base_url="https://testserver") as client:
        tenant = client.post(
            "/_emulator/tenants", json={"name": "flush", "displayName": "Flush", "verifiedDomains": ["contoso.com"]}
        ).json()
        seeded = client.post(
            f"/_emulator/tenants/{tenant['id']}/objects",
            json={"@odata.type": "#microsoft.graph.user", **new_user("flushed")},
        )
        assert seeded.status_code == 201, seeded.text  # the tenant was saved just before: this save is deferred
        assert state._save_timer is not None
        assert client.post("/_emulator/flush").status_code == 204
        assert "userflushed@contoso.com" in saved_upns(state_file) and state._save_timer is None
        assert client.delete("/_emulator/counters").status_code == 204
        assert state._save_timer is None  # counters are not part of the saved state


def test_admin_seeding_binds_any_number_of_members_graph_only_twenty(client, auth, tenant):
    seeded = client.post(
        f"/_emulator/tenants/{tenant['id']}/objects",
        json=[{"@odata.type": "#microsoft.graph.user", **new_user(n)} for n in range(25)],
    ).json()["value"]
    binds = [f"https://graph.microsoft.com/v1.0/directoryObjects/{user['id']}" for user in seeded]
    group = {"displayName": "Big", "mailNickname": "big", "mailEnabled": False, "securityEnabled": True,
             "members@odata.bind": binds}  # fmt: skip
    assert_graph_error(client.post("/v1.0/groups", headers=auth, json=group), 400, "Request_BadRequest")
    created = client.post(
        f"/_emulator/tenants/{tenant['id']}/objects", json={"@odata.type": "#microsoft.graph.group", **group}
    )
    assert created.status_code == 201, created.text
    members = client.get(f"/v1.0/groups/{created.json()['id']}/members?$select=id&$top=999", headers=auth).json()
    assert {member["id"] for member in members["value"]} == {user["id"] for user in seeded}
