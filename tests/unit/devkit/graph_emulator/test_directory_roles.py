"""The tenant's activated directory roles and their members, as Graph's directoryRole resource documents them
(``GET /directoryRoles``, ``GET /directoryRoles/{id}/members``), the admin API that assigns them, and the
permission the list needs (RoleManagement.Read.Directory, or a Directory permission); and the roles principals are
eligible for in PIM (``GET /roleManagement/directory/roleEligibilityScheduleInstances``)."""

from __future__ import annotations

from aadsync_devkit.graph_emulator.state import EmulatorState

from .conftest import CLIENT_ID, SECRET, assert_graph_error, new_group, new_user
from .test_permissions import grant

GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"


def test_assigned_roles_are_listed_with_their_members_and_survive_a_restart(client, auth, tenant, tmp_path):
    admin = f"/_emulator/tenants/{tenant['id']}/roleAssignments"
    user = client.post("/v1.0/users", headers=auth, json=new_user(1)).json()
    group = client.post("/v1.0/groups", headers=auth, json=new_group("Tier0", isAssignableToRole=True)).json()
    plain = client.post("/v1.0/groups", headers=auth, json=new_group("Staff")).json()
    assert client.get("/v1.0/directoryRoles", headers=auth).json()["value"] == []  # none activated yet

    assert client.post(admin, json={"role": "Global Administrator", "principalId": user["id"]}).status_code == 201
    assert client.post(admin, json={"role": "user administrator", "principalId": group["id"]}).status_code == 201
    assert client.post(admin, json={"role": "Staff Admin", "principalId": user["id"]}).status_code == 400
    assert client.post(admin, json={"role": GLOBAL_ADMIN, "principalId": plain["id"]}).status_code == 400

    roles = client.get("/v1.0/directoryRoles?$select=id,displayName", headers=auth).json()["value"]
    assert [role["displayName"] for role in roles] == ["Global Administrator", "User Administrator"]
    members = client.get(f"/v1.0/directoryRoles/{roles[1]['id']}/members?$select=id", headers=auth).json()["value"]
    assert members == [{"@odata.type": "#microsoft.graph.group", "id": group["id"]}]
    by_template = client.get(f"/v1.0/directoryRoles/roleTemplateId={GLOBAL_ADMIN}/members", headers=auth).json()
    assert [(m["@odata.type"], m["id"]) for m in by_template["value"]] == [("#microsoft.graph.user", user["id"])]
    missing = client.get("/v1.0/directoryRoles/f2ef992c-3afb-46b9-b7cf-a126ee74c451/members", headers=auth)
    assert_graph_error(missing, 404, "Request_ResourceNotFound")

    # removed: the role stays activated, without members; a deleted member drops out of the listing
    assert client.delete(f"{admin}/{GLOBAL_ADMIN}/{user['id']}").status_code == 204
    assert client.get(f"/v1.0/directoryRoles/{GLOBAL_ADMIN}/members", headers=auth).json()["value"] == []
    assert client.delete(f"{admin}/{GLOBAL_ADMIN}/{user['id']}").status_code == 404
    assert client.delete(f"/v1.0/groups/{group['id']}", headers=auth).status_code == 204
    assert client.get(f"/v1.0/directoryRoles/{roles[1]['id']}/members", headers=auth).json()["value"] == []

    # kept in the state file
    path = tmp_path / "state.sqlite"
    saved = EmulatorState(state_file=path)
    loaded = saved.create_tenant({"name": "fabrikam"})
    loaded.add_app({"clientId": "0b1c2d3e-0000-4000-8000-00000000b001"})
    loaded.role_members = {GLOBAL_ADMIN: ["x"]}
    saved.save_soon()
    saved.flush()
    assert EmulatorState(state_file=path).find_tenant(loaded.id).role_members == {GLOBAL_ADMIN: ["x"]}


def test_listing_roles_needs_a_role_management_or_directory_permission(client, tenant):
    limited = grant(client, tenant["id"], ["User.ReadWrite.All", "Group.ReadWrite.All"])
    assert_graph_error(client.get("/v1.0/directoryRoles", headers=limited), 403, "Authorization_RequestDenied")
    allowed = grant(client, tenant["id"], ["User.ReadWrite.All", "RoleManagement.Read.Directory"])
    assert client.get("/v1.0/directoryRoles", headers=allowed).status_code == 200


ELIGIBILITIES = "/v1.0/roleManagement/directory/roleEligibilityScheduleInstances"


def test_pim_eligibilities_are_listed_with_their_principals_and_survive_a_restart(client, auth, tenant, tmp_path):
    """An eligible role is not active: ``directoryRoles`` does not list it; PIM's roleEligibilityScheduleInstances
    do, the principal with its @odata.type under ``$expand=principal``."""
    admin = f"/_emulator/tenants/{tenant['id']}/roleAssignments"
    user = client.post("/v1.0/users", headers=auth, json=new_user(1)).json()
    group = client.post("/v1.0/groups", headers=auth, json=new_group("Tier0", isAssignableToRole=True)).json()
    for principal in (user["id"], group["id"]):
        spec = {"role": "Global Administrator", "principalId": principal, "eligible": True}
        assert client.post(admin, json=spec).json()["eligible"] is True
    assert client.get("/v1.0/directoryRoles", headers=auth).json()["value"] == []
    listed = client.get(f"{ELIGIBILITIES}?$expand=principal", headers=auth).json()["value"]
    assert [(i["principalId"], i["roleDefinitionId"], i["directoryScopeId"]) for i in listed] == [
        (user["id"], GLOBAL_ADMIN, "/"),
        (group["id"], GLOBAL_ADMIN, "/"),
    ]
    assert listed[1]["principal"]["@odata.type"] == "#microsoft.graph.group"
    assert "principal" not in client.get(ELIGIBILITIES, headers=auth).json()["value"][0]
    assert_graph_error(client.get(f"{ELIGIBILITIES}?$expand=roleDefinition", headers=auth), 400, "Request_BadRequest")

    definitions = client.get("/v1.0/roleManagement/directory/roleDefinitions?$select=id,displayName", headers=auth)
    assert {"id": GLOBAL_ADMIN, "displayName": "Global Administrator"} in definitions.json()["value"]
    assert client.delete(f"{admin}/{GLOBAL_ADMIN}/{user['id']}").status_code == 404  # not active: eligible
    assert client.delete(f"{admin}/{GLOBAL_ADMIN}/{user['id']}?eligible=true").status_code == 204
    assert [i["principalId"] for i in client.get(ELIGIBILITIES, headers=auth).json()["value"]] == [group["id"]]

    path = tmp_path / "state.sqlite"
    saved = EmulatorState(state_file=path)
    loaded = saved.create_tenant({"name": "fabrikam", "pimLicensed": False})
    loaded.add_app({"clientId": "0b1c2d3e-0000-4000-8000-00000000b001"})
    loaded.role_eligible = {GLOBAL_ADMIN: ["x"]}
    saved.save_soon()
    saved.flush()
    restored = EmulatorState(state_file=path).find_tenant(loaded.id)
    assert restored.role_eligible == {GLOBAL_ADMIN: ["x"]} and restored.pim_licensed is False


def test_eligibilities_need_a_role_management_permission_and_microsoft_entra_id_p2(client, tenant):
    """Directory.ReadWrite.All does not list them (List roleEligibilityScheduleInstances); a tenant without P2
    answers 400 AadPremiumLicenseRequired, as Graph does."""
    directory = grant(client, tenant["id"], ["Directory.ReadWrite.All"])
    assert_graph_error(client.get(ELIGIBILITIES, headers=directory), 403, "Authorization_RequestDenied")
    allowed = grant(client, tenant["id"], ["RoleEligibilitySchedule.Read.Directory"])
    assert client.get(ELIGIBILITIES, headers=allowed).json()["value"] == []
    spec = {"name": "nopim", "pimLicensed": False, "apps": [{"clientId": CLIENT_ID, "clientSecret": SECRET}]}
    unlicensed = client.post("/_emulator/tenants", json=spec).json()
    answer = client.get(ELIGIBILITIES, headers=grant(client, unlicensed["id"], ["RoleManagement.Read.Directory"]))
    assert_graph_error(answer, 400, "AadPremiumLicenseRequired")


ASSIGNMENTS = "/v1.0/roleManagement/directory/roleAssignments"
USER_ADMIN = "fe930be7-5e62-47db-91af-98c3a49a38b1"


def test_the_unified_rbac_api_lists_every_active_assignment_scoped_and_custom_too(client, auth, tenant, tmp_path):
    """``roleAssignments`` lists tenant-wide and scoped assignments of built-in and custom roles, each principal under
    ``$expand=principal``; ``directoryRoles`` holds only built-in roles and their tenant-wide members, as in Graph."""
    admin = f"/_emulator/tenants/{tenant['id']}"
    users = [client.post("/v1.0/users", headers=auth, json=new_user(n)).json()["id"] for n in (1, 2, 3)]
    unit = "/administrativeUnits/5b7d2c1e-0000-4000-8000-00000000a001"
    custom = client.post(f"{admin}/roleDefinitions", json={"displayName": "Password Helper"}).json()
    assert custom["isBuiltIn"] is False
    assert client.post(f"{admin}/roleDefinitions", json={"displayName": "password helper"}).status_code == 400
    for spec in (
        {"role": "Global Administrator", "principalId": users[0]},
        {"role": "User Administrator", "principalId": users[1], "directoryScopeId": unit},
        {"role": "Password Helper", "principalId": users[2]},
    ):
        assert client.post(f"{admin}/roleAssignments", json=spec).status_code == 201

    listed = client.get(f"{ASSIGNMENTS}?$expand=principal", headers=auth).json()["value"]
    assert [(a["principalId"], a["roleDefinitionId"], a["directoryScopeId"]) for a in listed] == [
        (users[0], GLOBAL_ADMIN, "/"),
        (users[2], custom["id"], "/"),
        (users[1], USER_ADMIN, unit),
    ]
    assert {a["principal"]["@odata.type"] for a in listed} == {"#microsoft.graph.user"}
    definitions = client.get("/v1.0/roleManagement/directory/roleDefinitions", headers=auth).json()["value"]
    assert {"Password Helper", "User Administrator"} <= {d["displayName"] for d in definitions}
    # directoryRoles: built-in roles, tenant-wide members only
    assert [r["displayName"] for r in client.get("/v1.0/directoryRoles", headers=auth).json()["value"]] == [
        "Global Administrator"
    ]
    assert client.get(f"/v1.0/directoryRoles/{USER_ADMIN}/members", headers=auth).status_code == 404

    assert client.delete(f"{admin}/roleAssignments/{USER_ADMIN}/{users[1]}").status_code == 404  # not tenant-wide
    assert client.delete(f"{admin}/roleAssignments/{USER_ADMIN}/{users[1]}?directoryScopeId={unit}").status_code == 204
    assert [a["principalId"] for a in client.get(ASSIGNMENTS, headers=auth).json()["value"]] == users[::2]

    path = tmp_path / "state.sqlite"
    saved = EmulatorState(state_file=path)
    loaded = saved.create_tenant({"name": "fabrikam"})
    loaded.add_app({"clientId": "0b1c2d3e-0000-4000-8000-00000000b001"})
    loaded.custom_roles = {"r1": "Password Helper"}
    loaded.role_scoped = {unit: {USER_ADMIN: ["x"]}}
    saved.save_soon()
    saved.flush()
    restored = EmulatorState(state_file=path).find_tenant(loaded.id)
    assert restored.custom_roles == {"r1": "Password Helper"} and restored.role_scoped == {unit: {USER_ADMIN: ["x"]}}


def test_an_eligibility_scoped_to_an_administrative_unit_is_listed_with_its_scope(client, auth, tenant, tmp_path):
    """PIM makes a principal eligible for a role at a scope too (a User Administrator of one administrative unit):
    roleEligibilityScheduleInstances lists it with that directoryScopeId; it is no active assignment, and it is
    removed by its scope."""
    admin = f"/_emulator/tenants/{tenant['id']}/roleAssignments"
    user = client.post("/v1.0/users", headers=auth, json=new_user(1)).json()["id"]
    unit = "/administrativeUnits/5b7d2c1e-0000-4000-8000-00000000a001"
    spec = {"role": "User Administrator", "principalId": user, "directoryScopeId": unit, "eligible": True}
    made = client.post(admin, json=spec)
    assert made.status_code == 201 and (made.json()["eligible"], made.json()["directoryScopeId"]) == (True, unit)
    assert client.post(admin, json={**spec, "directoryScopeId": "administrativeUnits/x"}).status_code == 400
    listed = client.get(ELIGIBILITIES, headers=auth).json()["value"]
    assert [(i["principalId"], i["roleDefinitionId"], i["directoryScopeId"]) for i in listed] == [
        (user, USER_ADMIN, unit)
    ]
    assert client.get(ASSIGNMENTS, headers=auth).json()["value"] == []
    assert client.delete(f"{admin}/{USER_ADMIN}/{user}?eligible=true").status_code == 404  # not tenant-wide
    assert client.delete(f"{admin}/{USER_ADMIN}/{user}?eligible=true&directoryScopeId={unit}").status_code == 204
    assert client.get(ELIGIBILITIES, headers=auth).json()["value"] == []

    path = tmp_path / "state.sqlite"
    saved = EmulatorState(state_file=path)
    loaded = saved.create_tenant({"name": "fabrikam"})
    loaded.add_app({"clientId": "0b1c2d3e-0000-4000-8000-00000000b001"})
    loaded.eligible_scoped = {unit: {USER_ADMIN: ["x"]}}
    saved.save_soon()
    saved.flush()
    assert EmulatorState(state_file=path).find_tenant(loaded.id).eligible_scoped == {unit: {USER_ADMIN: ["x"]}}


def test_listing_role_assignments_needs_a_role_management_or_directory_permission(client, tenant):
    limited = grant(client, tenant["id"], ["User.ReadWrite.All", "Group.ReadWrite.All"])
    assert_graph_error(client.get(ASSIGNMENTS, headers=limited), 403, "Authorization_RequestDenied")
    for permission in ("RoleManagement.Read.Directory", "RoleManagement.Read.All", "Directory.Read.All"):
        assert client.get(ASSIGNMENTS, headers=grant(client, tenant["id"], [permission])).status_code == 200
