"""A tenant's directory roles as Graph's ``directoryRole`` resource documents them: the built-in roles that have been
activated (assigned at least once) and their tenant-wide members, users and role-assignable groups; every active
assignment as the unified RBAC API lists it (``unifiedRoleAssignment``: tenant-wide, scoped to an administrative unit
or another directory object, custom roles too); and the roles principals are eligible for in Privileged Identity
Management (``unifiedRoleEligibilityScheduleInstance``), not active until they activate them.

Graph serves ``GET /directoryRoles`` and ``GET /directoryRoles/{id}/members`` (also by ``roleTemplateId={id}``; built-in
roles and tenant-wide members only), ``GET /roleManagement/directory/roleAssignments`` and
``GET /roleManagement/directory/roleEligibilityScheduleInstances`` (both with ``$expand=principal``; the second answers
``400 AadPremiumLicenseRequired`` in a tenant without Microsoft Entra ID P2, one created with ``"pimLicensed": false``),
and ``GET /roleManagement/directory/roleDefinitions``. The emulator's admin API, standing for the portal, creates
custom roles (``/_emulator/tenants/{id}/roleDefinitions``) and assigns and removes roles
(``/_emulator/tenants/{id}/roleAssignments``: ``"eligible": true`` for an eligibility, ``"directoryScopeId"`` for a
scoped assignment or eligibility). An activated role keeps its object id (its template id here) after its last
member leaves, as in Graph. Members that no longer exist drop out of the listings.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from aadsync_devkit.graph_emulator import exceptions as err
from aadsync_devkit.graph_emulator.catalog import GROUP, USER
from aadsync_devkit.graph_emulator.records import DirectoryObject

#: Some built-in roles by template id (Microsoft Entra built-in roles reference): the ones the tests assign.
BUILT_IN_ROLES: dict[str, str] = {
    "62e90394-69f5-4237-9190-012177145e10": "Global Administrator",
    "e8611ab8-c189-46e8-94e1-60213ab1f814": "Privileged Role Administrator",
    "fe930be7-5e62-47db-91af-98c3a49a38b1": "User Administrator",
    "729827e3-9c14-49f7-bb1b-9608f156bbb8": "Helpdesk Administrator",
    "29232cdf-9323-42fd-ade2-1d097af3e4de": "Exchange Administrator",
    "f2ef992c-3afb-46b9-b7cf-a126ee74c451": "Global Reader",
}


class TenantRoles:
    """The directory-role side of :class:`~aadsync_devkit.graph_emulator.tenant.Tenant`: ``role_members`` holds,
    per activated role's template id, its tenant-wide members' ids in the order they were assigned (a custom role's
    by its definition id); ``role_scoped``, per directory scope other than the tenant's (``/administrativeUnits/{id}``),
    the same for the assignments at that scope; ``role_eligible`` and ``eligible_scoped`` the same for PIM's
    eligibilities; ``custom_roles``, the custom role definitions' names by id."""

    _lock: threading.RLock
    _objects: dict[str, DirectoryObject]
    role_members: dict[str, list[str]]
    role_eligible: dict[str, list[str]]
    role_scoped: dict[str, dict[str, list[str]]]
    eligible_scoped: dict[str, dict[str, list[str]]]
    custom_roles: dict[str, str]
    pim_licensed: bool
    created: str

    def role_names(self) -> dict[str, str]:
        """Every role definition the tenant knows, by id: the built-in roles (by template id) and the custom ones."""
        with self._lock:
            return {**BUILT_IN_ROLES, **self.custom_roles}

    def role_template(self, name_or_id: Any) -> str:
        """The definition id of a role given by id or display name (case-insensitive): a built-in role's template id,
        or a custom role's id."""
        names = self.role_names()
        if isinstance(name_or_id, str):
            for template, name in names.items():
                if name_or_id.lower() in (template, name.lower()):
                    return template
        known = ", ".join(sorted(names.values()))
        raise err.BadRequest(f"'{name_or_id}' is not a role the emulator knows ({known}).")

    def add_custom_role(self, spec: Any) -> dict[str, Any]:
        """A custom role definition (``{"displayName": ...}``), as an administrator creates one in the portal."""
        if not isinstance(spec, dict) or not isinstance(spec.get("displayName"), str) or not spec["displayName"]:
            raise err.BadRequest("A JSON object with a non-empty 'displayName' is expected.")
        with self._lock:
            if any(spec["displayName"].lower() == name.lower() for name in self.role_names().values()):
                raise err.BadRequest(f"A role named '{spec['displayName']}' exists already.")
            role_id = str(uuid.uuid4())
            self.custom_roles[role_id] = spec["displayName"]
            return self._role_definition(role_id, spec["displayName"], built_in=False)

    def directory_roles(self) -> list[dict[str, Any]]:
        """The activated built-in roles as Graph renders a directoryRole (its object id is its template id here); a
        custom role is not a directoryRole."""
        with self._lock:
            return [
                {"id": role, "displayName": BUILT_IN_ROLES[role], "description": None, "roleTemplateId": role}
                for role in self.role_members
                if role in BUILT_IN_ROLES
            ]

    def role_member_objects(self, role: str) -> list[tuple[str, dict[str, Any]]]:
        """``(kind, properties with _seq)`` of the role's live members; 404 for a role not activated."""
        key = role.removeprefix("roleTemplateId=")
        with self._lock:
            if key not in self.role_members or key not in BUILT_IN_ROLES:
                raise err.ResourceNotFound(role)
            live = [self._objects[i] for i in self.role_members[key] if i in self._objects]
            return [(obj.kind, {**obj.props, "_seq": n}) for n, obj in enumerate(live, 1)]

    def role_definitions(self) -> list[dict[str, Any]]:
        """The role definitions: the built-in ones the emulator knows (a built-in role's definition id is its template
        id) and the tenant's custom roles."""
        with self._lock:
            return [
                self._role_definition(role_id, name, built_in=role_id in BUILT_IN_ROLES)
                for role_id, name in self.role_names().items()
            ]

    @staticmethod
    def _role_definition(role_id: str, name: str, *, built_in: bool) -> dict[str, Any]:
        return {"id": role_id, "displayName": name, "isBuiltIn": built_in, "isEnabled": True, "templateId": role_id}

    def role_assignments(self) -> list[tuple[dict[str, Any], str, dict[str, Any]]]:
        """``(assignment, principal kind, principal properties)`` of each live principal's active assignment, as
        Graph renders a unifiedRoleAssignment: the tenant-wide ones (``directoryScopeId`` "/") and the scoped ones."""
        with self._lock:
            return [
                ({"id": key, **common}, kind, props)
                for key, common, kind, props in self._held({"/": self.role_members, **self.role_scoped})
            ]

    def role_eligibilities(self) -> list[tuple[dict[str, Any], str, dict[str, Any]]]:
        """``(instance, principal kind, principal properties)`` of each live principal's eligibility, as Graph renders
        a unifiedRoleEligibilityScheduleInstance (tenant-wide or scoped, no end); Graph's 400 without Microsoft Entra
        ID P2."""
        with self._lock:
            if not self.pim_licensed:
                raise err.GraphError(
                    400,
                    "AadPremiumLicenseRequired",
                    "The tenant needs to have Microsoft Entra ID P2 or Microsoft Entra ID Governance license.",
                )
            return [
                (
                    {
                        "id": f"{key}-e",
                        **common,
                        "startDateTime": self.created,
                        "endDateTime": None,
                        "memberType": "Direct",
                        "roleEligibilityScheduleId": key,
                    },
                    kind,
                    props,
                )
                for key, common, kind, props in self._held({"/": self.role_eligible, **self.eligible_scoped})
            ]

    def _held(self, scopes: dict[str, dict[str, list[str]]]) -> list[tuple[str, dict[str, Any], str, dict[str, Any]]]:
        """``(key, common properties, principal kind, principal properties)`` of each live principal holding a role
        at a scope (an assignment's or eligibility's id is made from the key)."""
        found = []
        for scope, roles in scopes.items():
            for role, principals in roles.items():
                for principal in (self._objects[i] for i in principals if i in self._objects):
                    suffix = "" if scope == "/" else f"-{scope.rsplit('/', 1)[-1]}"
                    common = {
                        "principalId": principal.id, "roleDefinitionId": role, "directoryScopeId": scope,
                        "appScopeId": None,
                    }  # fmt: skip
                    found.append((f"{role}-{principal.id}{suffix}", common, principal.kind, principal.props))
        return found

    def assign_role(self, spec: Any) -> dict[str, Any]:
        """Assign a role (``{"role": name or id, "principalId": user or group id}``; ``"eligible": true`` makes the
        principal eligible for it in PIM instead; ``"directoryScopeId": "/administrativeUnits/{id}"`` assigns it, or
        makes it eligible, at that scope); idempotent. A group must be role-assignable (``isAssignableToRole`` true),
        as Graph requires."""
        if not isinstance(spec, dict) or not isinstance(spec.get("principalId"), str):
            raise err.BadRequest("A JSON object with 'role' and 'principalId' is expected.")
        template = self.role_template(spec.get("role"))
        scope = spec.get("directoryScopeId", "/")
        if not isinstance(scope, str) or not scope.startswith("/"):
            raise err.BadRequest("'directoryScopeId' is '/' or a directory object's path.")
        with self._lock:
            principal = self._objects.get(spec["principalId"])
            if principal is None or principal.kind not in (USER, GROUP):
                raise err.ResourceNotFound(spec["principalId"])
            if principal.kind == GROUP and principal.props.get("isAssignableToRole") is not True:
                raise err.BadRequest("Only a group with isAssignableToRole true can be assigned a directory role.")
            eligible = spec.get("eligible") is True
            if scope != "/":
                (self.eligible_scoped if eligible else self.role_scoped).setdefault(scope, {})
            members = self._assignments(eligible, scope).setdefault(template, [])
            if principal.id not in members:
                members.append(principal.id)
            return {
                "role": self.role_names()[template], "roleTemplateId": template, "principalId": principal.id,
                "eligible": eligible, "directoryScopeId": scope,
            }  # fmt: skip

    def _assignments(self, eligible: bool, scope: str) -> dict[str, list[str]]:
        """The assignments of a kind (eligible or active) at ``scope`` by role; a new scope's only once assigned."""
        if scope == "/":
            return self.role_eligible if eligible else self.role_members
        return (self.eligible_scoped if eligible else self.role_scoped).get(scope, {})

    def unassign_role(self, role: str, principal_id: str, *, eligible: bool = False, scope: str = "/") -> None:
        template = self.role_template(role)
        with self._lock:
            members = self._assignments(eligible, scope).get(template, [])
            if principal_id not in members:
                raise err.ResourceNotFound(principal_id)
            members.remove(principal_id)
