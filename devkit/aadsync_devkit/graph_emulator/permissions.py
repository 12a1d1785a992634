"""Which application permission each Graph route needs, as Microsoft's API reference lists it (v1.0, application
permissions: the least privileged one and the higher privileged ones that also allow the call).

A call whose token's ``roles`` claim holds none of them is refused with Graph's 403 ``Authorization_RequestDenied``
("Insufficient privileges to complete the operation."). Routes not listed here are not checked: the emulator checks
what the sync app calls, not every permission of Graph.
"""

from __future__ import annotations

from aadsync_devkit.graph_emulator import exceptions as err

_READ_DIRECTORY = ("Directory.Read.All", "Directory.ReadWrite.All")
_USERS_READ = ("User.Read.All", "User.ReadWrite.All", *_READ_DIRECTORY)
_USERS_WRITE = ("User.ReadWrite.All", "Directory.ReadWrite.All")
_GROUPS_READ = ("GroupMember.Read.All", "Group.Read.All", "Group.ReadWrite.All", "GroupMember.ReadWrite.All")
_GROUPS_READ = (*_GROUPS_READ, *_READ_DIRECTORY)
_GROUPS_WRITE = ("Group.ReadWrite.All", "Directory.ReadWrite.All")
_MEMBERS_WRITE = ("GroupMember.ReadWrite.All", *_GROUPS_WRITE)
_ROLES_READ = ("RoleManagement.Read.Directory", *_READ_DIRECTORY, "RoleManagement.ReadWrite.Directory")
_APPLICATIONS_READ = ("Application.Read.All", "Application.ReadWrite.OwnedBy", "Application.ReadWrite.All")
_APPLICATIONS_READ = (*_APPLICATIONS_READ, *_READ_DIRECTORY)

#: (method, route template) -> the application permissions any one of which allows the call.
ROUTE_PERMISSIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "/v1.0/organization"): ("Organization.Read.All", "Organization.ReadWrite.All", *_READ_DIRECTORY),
    ("GET", "/v1.0/organization/{id}"): ("Organization.Read.All", "Organization.ReadWrite.All", *_READ_DIRECTORY),
    ("GET", "/v1.0/domains"): ("Domain.Read.All", "Domain.ReadWrite.All", *_READ_DIRECTORY),
    ("GET", "/v1.0/domains/{name}"): ("Domain.Read.All", "Domain.ReadWrite.All", *_READ_DIRECTORY),
    ("GET", "/v1.0/users"): _USERS_READ,
    ("GET", "/v1.0/users/{id}"): _USERS_READ,
    ("POST", "/v1.0/users"): _USERS_WRITE,
    ("PATCH", "/v1.0/users/{id}"): _USERS_WRITE,
    ("DELETE", "/v1.0/users/{id}"): _USERS_WRITE,
    ("GET", "/v1.0/users/{id}/manager"): _USERS_READ,
    ("PUT", "/v1.0/users/{id}/manager/$ref"): _USERS_WRITE,
    ("DELETE", "/v1.0/users/{id}/manager/$ref"): _USERS_WRITE,
    ("GET", "/v1.0/groups"): _GROUPS_READ,
    ("GET", "/v1.0/groups/{id}"): _GROUPS_READ,
    ("GET", "/v1.0/groups/{id}/members"): _GROUPS_READ,
    ("POST", "/v1.0/groups"): ("Group.Create", *_GROUPS_WRITE),
    ("PATCH", "/v1.0/groups/{id}"): _GROUPS_WRITE,
    ("DELETE", "/v1.0/groups/{id}"): _GROUPS_WRITE,
    ("POST", "/v1.0/groups/{id}/members/$ref"): _MEMBERS_WRITE,
    ("DELETE", "/v1.0/groups/{id}/members/{member}/$ref"): _MEMBERS_WRITE,
    ("GET", "/v1.0/directoryRoles"): _ROLES_READ,
    ("GET", "/v1.0/directoryRoles/{role}/members"): _ROLES_READ,
    ("GET", "/v1.0/roleManagement/directory/roleDefinitions"): _ROLES_READ,
    # List unifiedRoleAssignments (directory provider)
    ("GET", "/v1.0/roleManagement/directory/roleAssignments"): (*_ROLES_READ, "RoleManagement.Read.All"),
    # List roleEligibilityScheduleInstances: not Directory.Read.All
    ("GET", "/v1.0/roleManagement/directory/roleEligibilityScheduleInstances"): (
        "RoleEligibilitySchedule.Read.Directory",
        "RoleEligibilitySchedule.ReadWrite.Directory",
        "RoleManagement.Read.All",
        "RoleManagement.Read.Directory",
        "RoleManagement.ReadWrite.Directory",
    ),  # fmt: skip
    ("GET", "/beta/groups"): _GROUPS_READ,
    ("PATCH", "/beta/groups/{id}"): _GROUPS_WRITE,
}
_EXTENSIONS_WRITE = ("Application.ReadWrite.OwnedBy", "Application.ReadWrite.All", "Directory.ReadWrite.All")
for _suffix in ("delta", "delta()", "microsoft.graph.delta", "microsoft.graph.delta()"):  # graph.DELTA_SUFFIXES
    ROUTE_PERMISSIONS[("GET", f"/v1.0/users/{_suffix}")] = _USERS_READ
    ROUTE_PERMISSIONS[("GET", f"/v1.0/groups/{_suffix}")] = _GROUPS_READ
for _key in ("/v1.0/applications/{app}", "/v1.0/applications({app})"):  # graph_directory's application keys
    ROUTE_PERMISSIONS[("GET", f"{_key}/extensionProperties")] = _APPLICATIONS_READ
    ROUTE_PERMISSIONS[("POST", f"{_key}/extensionProperties")] = _EXTENSIONS_WRITE


class AuthorizationRequestDenied(err.GraphError):
    """What Graph answers a call the app holds no permission for."""

    def __init__(self) -> None:
        super().__init__(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")


def require(method: str, path: str, roles: frozenset[str]) -> None:
    """Refuse (403) a call to the route template *path* unless *roles* holds one permission that allows it."""
    allowed = ROUTE_PERMISSIONS.get((method.upper(), path))
    if allowed is not None and roles.isdisjoint(allowed):
        raise AuthorizationRequestDenied()
