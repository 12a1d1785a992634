"""Who holds a directory role in the tenant, active or eligible, read through an Entra hook for the Entra import.

Entra ID "won't match on-premises users with cloud users that have an admin role"; this engine matches by itself,
so the import marks the administrators (engine/connectors/entra/roles.py). An active role is read from
``GET /directoryRoles`` and each role's members. A role a principal is only eligible for in Privileged Identity
Management is read from ``GET /roleManagement/directory/roleEligibilityScheduleInstances``: an eligible Global
Administrator activates the role at will, so the account is an administrator's whether or not the role is active
now: a soft match on a UPN set in AD must not write to it, nor delete it with the AD object. A tenant without
Microsoft Entra ID P2 has no PIM and answers ``400 AadPremiumLicenseRequired``: nobody there is eligible for anything.

A role-assignable group holding a role (active or eligible) passes it to its members; such a group holds no groups.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import quote

from airflow_provider_aadsync.hooks.entra_settings import GraphError

log = logging.getLogger(__name__)

#: PIM's eligibility instances (Graph's unifiedRoleEligibilityScheduleInstance), each with its principal.
ELIGIBILITIES_URL = "/roleManagement/directory/roleEligibilityScheduleInstances"
#: The role definitions, for the names of roles eligible but never activated (not in ``directoryRoles``).
DEFINITIONS_URL = "/roleManagement/directory/roleDefinitions"
#: Graph's answer in a tenant without Microsoft Entra ID P2 or Governance: no PIM, so no eligibility.
NO_PIM_LICENSE = "AadPremiumLicenseRequired"
#: How an eligible role is named beside the active ones in ``directoryRoles`` (and in the ``admin-role`` error).
ELIGIBLE_SUFFIX = " (eligible)"


class GraphPages(Protocol):
    """What is read through: the Entra hook's pages of a Graph collection (``EntraHook.paginate``)."""

    def paginate(self, url: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]: ...


#: ``{object id: (kind, role names)}`` while they are gathered.
_Holders = dict[str, tuple[str, set[str]]]


def directory_role_holders(hook: GraphPages) -> dict[str, tuple[str, list[str]]]:
    """Each directory object holding a directory role, active or PIM-eligible, as ``{id: (kind, sorted role names)}``
    (kind: user, group, servicePrincipal, ...; an eligible role's name ends in " (eligible)").

    :raise GraphError: Graph refuses a list; a 403 says which permission the app lacks."""
    holders: _Holders = {}
    try:
        names = _active_roles(hook, holders)
        _eligible_roles(hook, holders, names)
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


def _add_members(hook: GraphPages, holders: _Holders, members_url: str, role: str) -> list[str]:
    """Add the members listed at ``members_url`` as holders of ``role``; return the groups among them."""
    groups = []
    for page in hook.paginate(members_url, params={"$select": "id"}):
        for member in page["value"]:
            if not member.get("id"):
                continue  # the import refuses an item without an id where it reads one
            kind = str(member.get("@odata.type", "")).removeprefix("#microsoft.graph.")
            _add(holders, member["id"], kind, role)
            if kind == "group":
                groups.append(member["id"])
    return groups


def _group_members(group_id: str) -> str:
    return f"/groups/{quote(group_id, safe='')}/members"


def _active_roles(hook: GraphPages, holders: _Holders) -> dict[str, str]:
    """The activated roles' members (and their role-assignable groups' members); returns role names by template id."""
    names: dict[str, str] = {}
    for page in hook.paginate("/directoryRoles", params={"$select": "id,displayName,roleTemplateId"}):
        for role in page["value"]:
            name = str(role.get("displayName") or role.get("id"))
            if role.get("roleTemplateId"):
                names[str(role["roleTemplateId"])] = name
            members = f"/directoryRoles/{quote(str(role.get('id')), safe='')}/members"
            for group_id in _add_members(hook, holders, members, name):
                _add_members(hook, holders, _group_members(group_id), name)
    return names


def _eligible_roles(hook: GraphPages, holders: _Holders, names: dict[str, str]) -> None:
    """The principals eligible for a role in PIM (and the members of an eligible role-assignable group). A built-in
    role's definition id is its template id; a role never activated is named from the role definitions."""
    try:
        instances = [
            item for page in hook.paginate(ELIGIBILITIES_URL, params={"$expand": "principal"}) for item in page["value"]
        ]
    except GraphError as error:
        if error.status != 400 or error.code != NO_PIM_LICENSE:
            raise
        log.info("no PIM in this tenant (%s): no role eligibility to read", error.code)
        return
    if any(str(instance.get("roleDefinitionId")) not in names for instance in instances):
        for page in hook.paginate(DEFINITIONS_URL, params={"$select": "id,displayName"}):
            names.update({str(d["id"]): str(d.get("displayName") or d["id"]) for d in page["value"] if d.get("id")})
    for instance in instances:
        principal = instance.get("principal") or {}
        object_id = str(instance.get("principalId") or principal.get("id") or "")
        if not object_id:
            continue
        definition = str(instance.get("roleDefinitionId") or "")
        role = names.get(definition, definition) + ELIGIBLE_SUFFIX
        kind = str(principal.get("@odata.type", "")).removeprefix("#microsoft.graph.") or "user"
        _add(holders, object_id, kind, role)
        if kind == "group":
            _add_members(hook, holders, _group_members(object_id), role)
