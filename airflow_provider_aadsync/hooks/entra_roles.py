"""Who holds a directory role in the tenant, active or eligible, read through an Entra hook for the Entra import.

Entra ID "won't match on-premises users with cloud users that have an admin role"; this engine matches by itself,
so the import marks the administrators (engine/connectors/entra/roles.py). Every active assignment is read from the
unified RBAC API, ``GET /roleManagement/directory/roleAssignments``: tenant-wide ones, and those scoped to an
administrative unit or another directory object (a User Administrator of one unit resets the passwords of its users),
and custom roles, none of which ``GET /directoryRoles/{id}/members`` lists. A role a principal is only eligible for
in Privileged Identity Management is read from ``GET /roleManagement/directory/roleEligibilityScheduleInstances``: an
eligible Global Administrator activates the role at will, so the account is an administrator's whether or not the
role is active now: a soft match on a UPN set in AD must not write to it, nor delete it with the AD object. A tenant
without Microsoft Entra ID P2 has no PIM and answers ``400 AadPremiumLicenseRequired``: nobody there is eligible for
anything. Roles are named from ``GET /roleManagement/directory/roleDefinitions``.

A role-assignable group holding a role (active or eligible) passes it to its members; such a group holds no groups.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import quote

from airflow_provider_aadsync.hooks.entra_settings import GraphError

log = logging.getLogger(__name__)

#: Every active role assignment (Graph's unifiedRoleAssignment), each with its principal.
ASSIGNMENTS_URL = "/roleManagement/directory/roleAssignments"
#: PIM's eligibility instances (Graph's unifiedRoleEligibilityScheduleInstance), each with its principal.
ELIGIBILITIES_URL = "/roleManagement/directory/roleEligibilityScheduleInstances"
#: The role definitions, built-in and custom, for the roles' names.
DEFINITIONS_URL = "/roleManagement/directory/roleDefinitions"
#: Graph's answer in a tenant without Microsoft Entra ID P2 or Governance: no PIM, so no eligibility.
NO_PIM_LICENSE = "AadPremiumLicenseRequired"
#: How an eligible role is named (in ``directoryRoles`` and in the ``admin-role`` error).
ELIGIBLE_SUFFIX = " (eligible)"
#: The directory scope of a tenant-wide assignment.
TENANT_SCOPE = "/"


class GraphPages(Protocol):
    """What is read through: the Entra hook's pages of a Graph collection (``EntraHook.paginate``)."""

    def paginate(self, url: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]: ...


#: ``{object id: (kind, role names)}`` while they are gathered.
_Holders = dict[str, tuple[str, set[str]]]


def directory_role_holders(hook: GraphPages) -> dict[str, tuple[str, list[str]]]:
    """Each directory object holding a directory role, active or PIM-eligible, at any scope, as ``{id: (kind, sorted
    role names)}`` (kind: user, group, servicePrincipal, ...; a role held at a scope other than the tenant is named
    with it, "User Administrator (scope /administrativeUnits/<id>)"; an eligible role's name ends in " (eligible)").

    :raise GraphError: Graph refuses a list; a 403 says which permission the app lacks."""
    holders: _Holders = {}
    try:
        names = _role_names(hook)
        _add_assignments(hook, holders, names, _listed(hook, ASSIGNMENTS_URL), "")
        _add_assignments(hook, holders, names, _eligibilities(hook), ELIGIBLE_SUFFIX)
    except GraphError as error:
        if error.status != 403:
            raise
        raise GraphError(
            error.status,
            error.code,
            f"{error.graph_message} Reading who holds a directory role, active or eligible in PIM, needs the "
            "application permission RoleManagement.Read.Directory: the Entra import marks administrators, whom no "
            "match may join",
            request_id=error.request_id,
            method=error.method,
            url=error.url,
        ) from None
    return {object_id: (kind, sorted(roles)) for object_id, (kind, roles) in holders.items()}


def _add(holders: _Holders, object_id: str, kind: str, role: str) -> None:
    holders.setdefault(object_id, (kind, set()))[1].add(role)


def _group_members(hook: GraphPages, holders: _Holders, group_id: str, role: str) -> None:
    """Add the members of a role-assignable group as holders of its ``role``."""
    for page in hook.paginate(f"/groups/{quote(group_id, safe='')}/members", params={"$select": "id"}):
        for member in page["value"]:
            if member.get("id"):  # the import refuses an item without an id where it reads one
                _add(holders, member["id"], str(member.get("@odata.type", "")).removeprefix("#microsoft.graph."), role)


def _role_names(hook: GraphPages) -> dict[str, str]:
    """The role definitions' names by id (a built-in role's definition id is its template id)."""
    names: dict[str, str] = {}
    for page in hook.paginate(DEFINITIONS_URL, params={"$select": "id,displayName"}):
        names.update({str(d["id"]): str(d.get("displayName") or d["id"]) for d in page["value"] if d.get("id")})
    return names


def _listed(hook: GraphPages, url: str) -> list[dict[str, Any]]:
    return [item for page in hook.paginate(url, params={"$expand": "principal"}) for item in page["value"]]


def _eligibilities(hook: GraphPages) -> list[dict[str, Any]]:
    """PIM's eligibility instances; none in a tenant without PIM."""
    try:
        return _listed(hook, ELIGIBILITIES_URL)
    except GraphError as error:
        if error.status != 400 or error.code != NO_PIM_LICENSE:
            raise
        log.info("no PIM in this tenant (%s): no role eligibility to read", error.code)
        return []


def _add_assignments(
    hook: GraphPages, holders: _Holders, names: dict[str, str], items: list[dict[str, Any]], suffix: str
) -> None:
    """Add the principals of role assignments or eligibilities (and the members of a role-assignable group among
    them), each role named with its scope when that is not the tenant and with ``suffix``."""
    for item in items:
        principal = item.get("principal") or {}
        object_id = str(item.get("principalId") or principal.get("id") or "")
        if not object_id:
            continue
        definition = str(item.get("roleDefinitionId") or "")
        scope = str(item.get("directoryScopeId") or TENANT_SCOPE)
        role = names.get(definition, definition) + ("" if scope == TENANT_SCOPE else f" (scope {scope})") + suffix
        kind = str(principal.get("@odata.type", "")).removeprefix("#microsoft.graph.") or "user"
        _add(holders, object_id, kind, role)
        if kind == "group":
            _group_members(hook, holders, object_id, role)
