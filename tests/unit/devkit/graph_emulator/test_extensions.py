"""Directory extensions: definitions registered on an application and the values they add to users and groups, as
Graph documents them (extensionProperty resource; "Add custom data to users using directory extensions")."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from aadsync_devkit.graph_emulator.state import EmulatorState

from .conftest import CLIENT_ID, assert_graph_error, create_group, get_token, new_user

PREFIX = "extension_" + CLIENT_ID.replace("-", "")


def app_object_id(client: Any, auth: dict[str, str]) -> str:
    found = client.get(f"/v1.0/applications?$filter=appId eq '{CLIENT_ID}'", headers=auth)
    assert found.status_code == 200, found.text
    [app] = found.json()["value"]
    assert app["appId"] == CLIENT_ID
    return app["id"]


def register(client: Any, auth: dict[str, str], name: str, data_type: str = "String", **extra: Any) -> Any:
    body = {"name": name, "dataType": data_type, "targetObjects": ["User"], **extra}
    return client.post(f"/v1.0/applications/{app_object_id(client, auth)}/extensionProperties", headers=auth, json=body)


def create_user(client: Any, auth: dict[str, str], n: Any, **extra: Any) -> str:
    response = client.post("/v1.0/users", headers=auth, json=new_user(n, **extra))
    assert response.status_code == 201, response.text
    return response.json()["id"]


def selected(client: Any, auth: dict[str, str], path: str, *names: str) -> dict[str, Any]:
    response = client.get(f"{path}?$select=id,{','.join(names)}", headers=auth)
    assert response.status_code == 200, response.text
    return {k: v for k, v in response.json().items() if not k.startswith("@")}


def test_a_definition_is_named_after_the_owner_app_and_listed_read_and_deleted(client, auth):
    created = register(client, auth, "anchor", isMultiValued=False)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == f"{PREFIX}_anchor"
    assert body["dataType"] == "String" and body["targetObjects"] == ["User"]
    assert body["isMultiValued"] is False and body["isSyncedFromOnPremises"] is False
    assert body["@odata.context"].endswith("/extensionProperties/$entity")
    by_app_id = client.get(f"/v1.0/applications(appId='{CLIENT_ID}')/extensionProperties", headers=auth).json()
    assert [d["name"] for d in by_app_id["value"]] == [f"{PREFIX}_anchor"]
    path = f"/v1.0/applications/{app_object_id(client, auth)}/extensionProperties"
    filtered = client.get(f"{path}?$filter=name eq '{PREFIX}_anchor'&$select=name,dataType", headers=auth).json()
    assert filtered["value"] == [{"name": f"{PREFIX}_anchor", "dataType": "String", "id": body["id"]}]
    assert client.get(f"{path}/{body['id']}", headers=auth).json()["name"] == f"{PREFIX}_anchor"
    available = client.post("/v1.0/directoryObjects/getAvailableExtensionProperties", headers=auth, json={})
    assert [d["name"] for d in available.json()["value"]] == [f"{PREFIX}_anchor"]
    assert client.delete(f"{path}/{body['id']}", headers=auth).status_code == 204
    assert client.get(path, headers=auth).json()["value"] == []
    assert_graph_error(client.get(f"{path}/{body['id']}", headers=auth), 404, "Request_ResourceNotFound")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"dataType": "String", "targetObjects": ["User"]}, "Property name value is required but is empty or missing."),
        ({"name": "x", "targetObjects": ["User"]}, "Property dataType value is required but is empty or missing."),
        ({"name": "x", "dataType": "String"}, "Property targetObjects value is required but is empty or missing."),
        ({"name": "x", "dataType": "Text", "targetObjects": ["User"]},
         "Invalid value specified for property 'dataType' of resource 'ExtensionProperty'."),
        ({"name": "x", "dataType": "String", "targetObjects": ["user"]},
         "Invalid value specified for property 'targetObjects' of resource 'ExtensionProperty'."),
        ({"name": "bad-name", "dataType": "String", "targetObjects": ["User"]},
         "Invalid value specified for property 'name' of resource 'ExtensionProperty'."),
        ({"name": "x", "dataType": "String", "targetObjects": ["User"], "isMultiValued": "yes"},
         "Invalid value specified for property 'isMultiValued' of resource 'ExtensionProperty'."),
    ],
)  # fmt: skip
def test_a_bad_definition_is_refused_naming_what_is_wrong(client, auth, body, message):
    response = client.post(f"/v1.0/applications/{app_object_id(client, auth)}/extensionProperties", headers=auth,
                           json=body)  # fmt: skip
    assert_graph_error(response, 400, "Request_BadRequest", message)


def test_a_second_definition_of_a_name_conflicts_and_an_unknown_app_is_not_found(client, auth):
    assert register(client, auth, "anchor").status_code == 201
    assert_graph_error(register(client, auth, "anchor", "Integer"), 400, "Request_BadRequest")
    body = {"name": "x", "dataType": "String", "targetObjects": ["User"]}
    missing = client.post("/v1.0/applications/00000000-0000-4000-8000-000000000000/extensionProperties",
                          headers=auth, json=body)  # fmt: skip
    assert_graph_error(missing, 404, "Request_ResourceNotFound")


def test_values_are_written_on_create_and_update_read_only_when_selected_and_removed_by_null(client, auth):
    assert register(client, auth, "anchor").status_code == 201
    name = f"{PREFIX}_anchor"
    user = create_user(client, auth, 1, **{name: "AAECAwQ="})
    assert name not in client.get(f"/v1.0/users/{user}", headers=auth).json()  # not in the default set
    assert selected(client, auth, f"/v1.0/users/{user}", name)[name] == "AAECAwQ="
    assert client.patch(f"/v1.0/users/{user}", headers=auth, json={name: "changed"}).status_code == 204
    assert selected(client, auth, f"/v1.0/users/{user}", name)[name] == "changed"
    listed = client.get(f"/v1.0/users?$filter={name} eq 'CHANGED'&$select=displayName,{name}", headers=auth).json()
    assert [(u["id"], u[name]) for u in listed["value"]] == [(user, "changed")]
    assert client.patch(f"/v1.0/users/{user}", headers=auth, json={name: None}).status_code == 204
    assert name not in selected(client, auth, f"/v1.0/users/{user}", name)  # no value: left out
    assert client.get(f"/v1.0/users?$filter={name} eq 'changed'", headers=auth).json()["value"] == []


def test_typed_and_multi_valued_values_are_checked_per_value(client, auth):
    for ext, data_type, multi in (("tags", "String", True), ("level", "Integer", False), ("hired", "DateTime", False),
                                  ("big", "LargeInteger", False), ("flag", "Boolean", False)):  # fmt: skip
        assert register(client, auth, ext, data_type, isMultiValued=multi).status_code == 201
    user = create_user(client, auth, 2)
    values = {f"{PREFIX}_tags": ["a", "b"], f"{PREFIX}_level": 7, f"{PREFIX}_hired": "2024-03-01T10:00:00+02:00",
              f"{PREFIX}_big": 2**40, f"{PREFIX}_flag": True}  # fmt: skip
    assert client.patch(f"/v1.0/users/{user}", headers=auth, json=values).status_code == 204
    read = selected(client, auth, f"/v1.0/users/{user}", *values)
    assert read == {"id": user, **values, f"{PREFIX}_hired": "2024-03-01T08:00:00Z"}  # DateTime stored in UTC
    bad_values = [("tags", "a"), ("tags", ["x" * 257]), ("level", "7"), ("level", 2**31), ("hired", "yesterday"),
                  ("flag", "true")]  # fmt: skip
    for name, bad in ((f"{PREFIX}_{ext}", value) for ext, value in bad_values):
        response = client.patch(f"/v1.0/users/{user}", headers=auth, json={name: bad})
        assert_graph_error(response, 400, "Request_BadRequest",
                           f"Invalid value specified for property '{name}' of resource 'User'.")  # fmt: skip


def test_an_extension_is_only_available_on_its_target_objects_and_while_registered(client, auth):
    assert register(client, auth, "anchor").status_code == 201
    name = f"{PREFIX}_anchor"
    group = create_group(client, auth, "g1")
    refused = client.patch(f"/v1.0/groups/{group}", headers=auth, json={name: "x"})
    assert_graph_error(
        refused, 400, "Request_BadRequest", f"The following extension properties are not available: {name}."
    )
    unknown = client.post("/v1.0/users", headers=auth, json=new_user(3, **{f"{PREFIX}_nope": "x"}))
    assert_graph_error(unknown, 400, "Request_BadRequest",
                       f"The following extension properties are not available: {PREFIX}_nope.")  # fmt: skip
    assert_graph_error(client.get(f"/v1.0/groups/{group}?$select={name}", headers=auth), 400, "BadRequest")


def test_group_extensions_and_a_deleted_definition_hides_values_until_registered_again(client, auth):
    app = app_object_id(client, auth)
    body = {"name": "groupAnchor", "dataType": "String", "targetObjects": ["Group", "User"]}
    definition = client.post(f"/v1.0/applications/{app}/extensionProperties", headers=auth, json=body).json()
    name = definition["name"]
    group = create_group(client, auth, "g2", **{name: "AD-GUID-1"})
    found = client.get(f"/v1.0/groups?$filter={name} eq 'AD-GUID-1'&$select=id,{name}", headers=auth).json()
    assert found["value"] == [{"id": group, name: "AD-GUID-1"}]
    path = f"/v1.0/applications/{app}/extensionProperties"
    assert client.delete(f"{path}/{definition['id']}", headers=auth).status_code == 204
    assert_graph_error(client.get(f"/v1.0/groups/{group}?$select={name}", headers=auth), 400, "BadRequest")
    assert client.post(path, headers=auth, json=body).status_code == 201
    assert selected(client, auth, f"/v1.0/groups/{group}", name)[name] == "AD-GUID-1"


def test_definitions_and_values_survive_a_restart(tmp_path):
    state = EmulatorState(state_file=tmp_path / "state.sqlite")
    tenant = state.create_tenant({"name": "ext", "verifiedDomains": ["ext.example"]})
    app = next(iter(tenant.apps.values()))
    name = tenant.add_extension(app.object_id, {"name": "anchor", "dataType": "String", "targetObjects": ["User"]})[
        "name"
    ]
    created = tenant.create_user(new_user(1, userPrincipalName="u1@ext.example", **{name: "kept"}))
    state.save()
    loaded = EmulatorState(state_file=tmp_path / "state.sqlite").tenants[tenant.id]
    assert loaded.app_extensions(f"appId='{app.client_id}'")[0]["name"] == name
    assert loaded.get("user", created["id"])[1][name] == "kept"
    assert loaded.application(app.object_id).client_id == app.client_id


def test_writing_definitions_needs_an_application_permission(client, auth, tenant):
    """Create extensionProperty, application permissions: Application.ReadWrite.OwnedBy (least privileged) or
    Application.ReadWrite.All / Directory.ReadWrite.All; the default app holds Directory.ReadWrite.All."""
    admin = f"/_emulator/tenants/{tenant['id']}/apps/{CLIENT_ID}"
    other = client.post(f"/_emulator/tenants/{tenant['id']}/apps", json={"displayName": "other"}).json()
    other_path = f"/v1.0/applications(appId='{other['clientId']}')/extensionProperties"
    body = {"name": "x", "dataType": "String", "targetObjects": ["User"]}

    def token_roles() -> list[str]:
        token = get_token(client, tenant["id"]).json()["access_token"]
        return jwt.decode(token, options={"verify_signature": False})["roles"]

    assert client.patch(admin, json={"roles": ["User.ReadWrite.All", "Group.ReadWrite.All"]}).status_code == 204
    assert token_roles() == ["User.ReadWrite.All", "Group.ReadWrite.All"]
    denied = register(client, auth, "anchor")
    assert_graph_error(denied, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
    assert client.get(f"/v1.0/applications(appId='{CLIENT_ID}')/extensionProperties", headers=auth).status_code == 200
    assert client.patch(admin, json={"roles": ["Application.ReadWrite.OwnedBy"]}).status_code == 204
    assert register(client, auth, "anchor").status_code == 201  # on its own application
    assert_graph_error(client.post(other_path, headers=auth, json=body), 403, "Authorization_RequestDenied")
    assert client.patch(admin, json={"roles": None}).status_code == 204  # the defaults again
    assert "Directory.ReadWrite.All" in token_roles()
    assert client.post(other_path, headers=auth, json=body).status_code == 201


def test_user_delta_tracks_selected_extensions(client, auth):
    """A delta round may select directory extensions (not documented either way; the emulator allows it): their
    values come with the objects, a change shows, and a removed value comes back as null."""
    assert register(client, auth, "anchor").status_code == 201
    name = f"{PREFIX}_anchor"
    user = create_user(client, auth, 1, **{name: "first"})
    plain = create_user(client, auth, 2)
    first = client.get(f"/v1.0/users/delta?$select=displayName,{name}", headers=auth).json()
    rows = {item["id"]: item for item in first["value"]}
    assert rows[user][name] == "first" and name not in rows[plain]
    assert client.patch(f"/v1.0/users/{user}", headers=auth, json={name: "second"}).status_code == 204
    second = client.get(first["@odata.deltaLink"], headers=auth).json()
    assert [(i["id"], i[name]) for i in second["value"]] == [(user, "second")]
    assert client.patch(f"/v1.0/users/{user}", headers=auth, json={name: None}).status_code == 204
    third = client.get(second["@odata.deltaLink"], headers=auth).json()
    assert [(i["id"], i[name]) for i in third["value"]] == [(user, None)]


def test_group_delta_tracks_selected_extensions_beside_members(client, auth):
    """Groups as users: a selected extension comes with each group in a delta round, and its change shows."""
    app = app_object_id(client, auth)
    body = {"name": "anchor", "dataType": "String", "targetObjects": ["Group"]}
    assert client.post(f"/v1.0/applications/{app}/extensionProperties", headers=auth, json=body).status_code == 201
    name = f"{PREFIX}_anchor"
    member = create_user(client, auth, 1)
    group = create_group(client, auth, "g1", members=[member], **{name: "QUJD"})
    first = client.get(f"/v1.0/groups/delta?$select=displayName,members,{name}", headers=auth).json()
    [row] = [item for item in first["value"] if item["id"] == group]
    assert row[name] == "QUJD" and [m["id"] for m in row["members@delta"]] == [member]
    assert client.patch(f"/v1.0/groups/{group}", headers=auth, json={name: "REVG"}).status_code == 204
    second = client.get(first["@odata.deltaLink"], headers=auth).json()
    assert [(i["id"], i[name]) for i in second["value"]] == [(group, "REVG")]
