"""Contacts (read-only in Graph), the admin API (tenants, seeding, counters, reset) and state persistence."""

from __future__ import annotations

import warnings

from airflow_provider_aadsync.emulator.app import create_app
from airflow_provider_aadsync.emulator.models import EmulatorState

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
    state_file = tmp_path / "state.json"
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
    assert "P@ssw0rd" not in state_file.read_text()
    with TestClient(create_app(EmulatorState(state_file=state_file)), base_url="https://testserver") as second:
        token = get_token(second, tenant["id"], client_id="c1", client_secret="s1").json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        assert second.get(f"/v1.0/users/{user['id']}", headers=auth).json()["userPrincipalName"] == "user1@contoso.com"
        members = second.get(f"/v1.0/groups/{group['id']}/members", headers=auth).json()["value"]
        assert [m["id"] for m in members] == [user["id"]]


def test_drop_ratio_is_a_setting_with_bounds():
    from starlette.testclient import TestClient

    from airflow_provider_aadsync.emulator.app import create_app
    from airflow_provider_aadsync.emulator.models import EmulatorState

    client = TestClient(create_app(EmulatorState()))
    assert client.get("/_emulator/settings").json()["faultDropRatio"] == 0.0
    assert client.put("/_emulator/settings", json={"faultDropRatio": 0.25}).json() == {"faultDropRatio": 0.25}
    assert client.put("/_emulator/settings", json={"faultDropRatio": 2}).status_code == 400


def test_flush_writes_pending_state_and_counter_resets_schedule_no_save(tmp_path):
    state_file = tmp_path / "state.json"
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
        assert "flushed" in state_file.read_text() and state._save_timer is None
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
