"""A user's manager as Graph documents it ("Assign manager", "List manager", user delta's ``manager@delta``)."""

from __future__ import annotations

from typing import Any

from aadsync_devkit.graph_emulator.state import EmulatorState

from .conftest import assert_graph_error, new_user

GRAPH = "https://graph.microsoft.com/v1.0"


def create_user(client: Any, auth: dict[str, str], n: Any) -> str:
    response = client.post("/v1.0/users", headers=auth, json=new_user(n))
    assert response.status_code == 201, response.text
    return response.json()["id"]


def put_manager(client: Any, auth: dict[str, str], user: str, manager: str) -> Any:
    body = {"@odata.id": f"{GRAPH}/users/{manager}"}
    return client.put(f"/v1.0/users/{user}/manager/$ref", headers=auth, json=body)


def test_a_manager_is_assigned_read_replaced_and_removed(client, auth):
    user, boss, other = (create_user(client, auth, n) for n in ("u", "boss", "other"))
    assert_graph_error(client.get(f"/v1.0/users/{user}/manager", headers=auth), 404, "Request_ResourceNotFound")
    assert put_manager(client, auth, user, boss).status_code == 204
    manager = client.get(f"/v1.0/users/{user}/manager", headers=auth).json()
    assert manager["id"] == boss and manager["@odata.type"] == "#microsoft.graph.user"
    assert manager["userPrincipalName"] == "userboss@contoso.com"
    ref = client.get(f"/v1.0/users/{user}/manager/$ref", headers=auth).json()
    assert ref["@odata.id"].endswith(f"/directoryObjects/{boss}")
    assert put_manager(client, auth, user, boss).status_code == 204  # the same manager again: nothing changes
    assert put_manager(client, auth, user, other).status_code == 204  # a new one replaces it
    assert client.get(f"/v1.0/users/{user}/manager", headers=auth).json()["id"] == other
    assert client.delete(f"/v1.0/users/{user}/manager/$ref", headers=auth).status_code == 204
    assert_graph_error(client.get(f"/v1.0/users/{user}/manager", headers=auth), 404, "Request_ResourceNotFound")
    again = client.delete(f"/v1.0/users/{user}/manager/$ref", headers=auth)
    assert_graph_error(again, 404, "Request_ResourceNotFound")


def test_bad_manager_references_are_refused(client, auth):
    user = create_user(client, auth, "u")
    missing = put_manager(client, auth, user, "00000000-0000-4000-8000-000000000001")
    assert_graph_error(missing, 404, "Request_ResourceNotFound")
    assert_graph_error(put_manager(client, auth, user, user), 400, "Request_BadRequest")
    no_id = client.put(f"/v1.0/users/{user}/manager/$ref", headers=auth, json={})
    assert_graph_error(no_id, 400, "Request_BadRequest")
    nobody = put_manager(client, auth, "00000000-0000-4000-8000-000000000002", user)
    assert_graph_error(nobody, 404, "Request_ResourceNotFound")


def test_expand_manager_on_a_user_and_a_list(client, auth):
    user, boss = create_user(client, auth, "u"), create_user(client, auth, "boss")
    assert put_manager(client, auth, user, boss).status_code == 204
    one = client.get(f"/v1.0/users/{user}?$expand=manager", headers=auth).json()
    assert one["manager"]["id"] == boss
    listed = client.get("/v1.0/users?$expand=manager&$select=id,displayName", headers=auth).json()["value"]
    assert {u["id"]: u.get("manager", {}).get("id") for u in listed} == {user: boss, boss: None}


def test_manager_in_a_batch_and_a_deleted_manager_is_unlinked(client, auth):
    user, boss = create_user(client, auth, "u"), create_user(client, auth, "boss")
    batch = {"requests": [
        {"id": "1", "method": "PUT", "url": f"/users/{user}/manager/$ref",
         "body": {"@odata.id": f"{GRAPH}/users/{boss}"}, "headers": {"Content-Type": "application/json"}},
        {"id": "2", "method": "GET", "url": f"/users/{user}/manager", "dependsOn": ["1"]},
    ]}  # fmt: skip
    responses = {r["id"]: r for r in client.post("/v1.0/$batch", headers=auth, json=batch).json()["responses"]}
    assert responses["1"]["status"] == 204 and responses["2"]["body"]["id"] == boss
    assert client.delete(f"/v1.0/users/{boss}", headers=auth).status_code == 204
    assert_graph_error(client.get(f"/v1.0/users/{user}/manager", headers=auth), 404, "Request_ResourceNotFound")


def test_delta_reports_manager_changes_when_selected(client, auth):
    """``$select=manager`` tracks the manager (``manager@delta``); Graph ignores ``$expand`` on a delta query
    (microsoft-graph-docs issue 6194), and so does the emulator."""
    user, boss, other = (create_user(client, auth, n) for n in ("u", "boss", "other"))
    assert put_manager(client, auth, user, boss).status_code == 204
    expanded = client.get("/v1.0/users/delta?$select=displayName&$expand=manager", headers=auth)
    assert expanded.status_code == 200
    assert all("manager@delta" not in item for item in expanded.json()["value"])  # ignored, not refused
    first = client.get("/v1.0/users/delta?$select=displayName,manager", headers=auth).json()
    initial = {item["id"]: item.get("manager@delta") for item in first["value"]}
    assert initial[user] == [{"@odata.type": "#microsoft.graph.user", "id": boss}] and initial[boss] is None
    assert put_manager(client, auth, user, other).status_code == 204
    second = client.get(first["@odata.deltaLink"], headers=auth).json()
    assert [(i["id"], i["manager@delta"]) for i in second["value"]] == [
        (user, [{"@odata.type": "#microsoft.graph.user", "id": other}])
    ]
    assert client.delete(f"/v1.0/users/{user}/manager/$ref", headers=auth).status_code == 204
    third = client.get(second["@odata.deltaLink"], headers=auth).json()
    assert third["value"][0]["manager@delta"] == [
        {"@odata.type": "#microsoft.graph.user", "id": other, "@removed": {"reason": "deleted"}}
    ]
    untracked = client.get("/v1.0/users/delta?$deltatoken=latest&$select=displayName", headers=auth).json()
    assert put_manager(client, auth, user, boss).status_code == 204
    assert client.get(untracked["@odata.deltaLink"], headers=auth).json()["value"] == []  # manager not tracked


def test_the_manager_link_survives_a_restart(tmp_path):
    state = EmulatorState(state_file=tmp_path / "state.sqlite")
    tenant = state.create_tenant({"name": "mgr", "verifiedDomains": ["mgr.example"]})
    user = tenant.create_user(new_user(1, userPrincipalName="u1@mgr.example"))["id"]
    boss = tenant.create_user(new_user(2, userPrincipalName="u2@mgr.example"))["id"]
    tenant.set_manager(user, f"{GRAPH}/users/{boss}")
    state.save()
    assert EmulatorState(state_file=tmp_path / "state.sqlite").tenants[tenant.id].manager_of(user)[1]["id"] == boss
    tenant.remove_manager(user)
    state.save()  # in place: the link row leaves the file
    assert EmulatorState(state_file=tmp_path / "state.sqlite").tenants[tenant.id]._managers == {}
