"""A tenant's directory roles as Graph's ``directoryRole`` resource documents them: the built-in roles that have been
activated (assigned at least once) and their members, users and role-assignable groups; and the roles principals are
eligible for in Privileged Identity Management (``unifiedRoleEligibilityScheduleInstance``), not active until they
activate them.

Graph serves ``GET /directoryRoles`` and ``GET /directoryRoles/{id}/members`` (also by ``roleTemplateId={id}``), and
``GET /roleManagement/directory/roleEligibilityScheduleInstances`` (``$expand=principal``), which answers ``400
AadPremiumLicenseRequired`` in a tenant without Microsoft Entra ID P2 (a tenant created with ``"pimLicensed": false``).
The emulator's admin API assigns and removes roles (``/_emulator/tenants/{id}/roleAssignments``, ``"eligible": true``
for an eligibility), standing for the portal. An activated role keeps its object id (its template id here) after its
last member leaves, as in Graph. Members that no longer exist drop out of the listings.
"""

from __future__ import annotations

import threading
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
    per activated role's template id, its members' ids in the order they were assigned."""

    _lock: threading.RLock
    _objects: dict[str, DirectoryObject]
    role_members: dict[str, list[str]]
    role_eligible: dict[str, list[str]]
    pim_licensed: bool
    created: str

    @staticmethod
    def role_template(name_or_id: Any) -> str:
        """The template id of a built-in role given by template id or display name (case-insensitive)."""
        if isinstance(name_or_id, str):
            for template, name in BUILT_IN_ROLES.items():
                if name_or_id.lower() in (template, name.lower()):
                    return template
        known = ", ".join(sorted(BUILT_IN_ROLES.values()))
        raise err.BadRequest(f"'{name_or_id}' is not a built-in role the emulator knows ({known}).")

    def directory_roles(self) -> list[dict[str, Any]]:
        """The activated roles as Graph renders a directoryRole (its object id is its template id here)."""
        with self._lock:
            return [
                {"id": role, "displayName": BUILT_IN_ROLES[role], "description": None, "roleTemplateId": role}
                for role in self.role_members
            ]

    def role_member_objects(self, role: str) -> list[tuple[str, dict[str, Any]]]:
        """``(kind, properties with _seq)`` of the role's live members; 404 for a role not activated."""
        key = role.removeprefix("roleTemplateId=")
        with self._lock:
            if key not in self.role_members:
                raise err.ResourceNotFound(role)
            live = [self._objects[i] for i in self.role_members[key] if i in self._objects]
            return [(obj.kind, {**obj.props, "_seq": n}) for n, obj in enumerate(live, 1)]

    @staticmethod
    def role_definitions() -> list[dict[str, Any]]:
        """The built-in role definitions the emulator knows (a built-in role's definition id is its template id)."""
        return [
            {"id": template, "displayName": name, "isBuiltIn": True, "isEnabled": True, "templateId": template}
            for template, name in BUILT_IN_ROLES.items()
        ]

    def role_eligibilities(self) -> list[tuple[dict[str, Any], str, dict[str, Any]]]:
        """``(instance, principal kind, principal properties)`` of each live principal's eligibility, as Graph renders
        a unifiedRoleEligibilityScheduleInstance (tenant-wide, no end); Graph's 400 without Microsoft Entra ID P2."""
        with self._lock:
            if not self.pim_licensed:
                raise err.GraphError(
                    400,
                    "AadPremiumLicenseRequired",
                    "The tenant needs to have Microsoft Entra ID P2 or Microsoft Entra ID Governance license.",
                )
            found = []
            for template, principals in self.role_eligible.items():
                for principal in (self._objects[i] for i in principals if i in self._objects):
                    instance = {
                        "id": f"{template}-{principal.id}-e", "principalId": principal.id,
                        "roleDefinitionId": template, "directoryScopeId": "/", "appScopeId": None,
                        "startDateTime": self.created, "endDateTime": None, "memberType": "Direct",
                        "roleEligibilityScheduleId": f"{template}-{principal.id}",
                    }  # fmt: skip
                    found.append((instance, principal.kind, principal.props))
            return found

    def assign_role(self, spec: Any) -> dict[str, Any]:
        """Assign a role (``{"role": name or template id, "principalId": user or group id}``; ``"eligible": true``
        makes the principal eligible for it in PIM instead); idempotent. A group must be role-assignable
        (``isAssignableToRole`` true), as Graph requires."""
        if not isinstance(spec, dict) or not isinstance(spec.get("principalId"), str):
            raise err.BadRequest("A JSON object with 'role' and 'principalId' is expected.")
        template = self.role_template(spec.get("role"))
        with self._lock:
            principal = self._objects.get(spec["principalId"])
            if principal is None or principal.kind not in (USER, GROUP):
                raise err.ResourceNotFound(spec["principalId"])
            if principal.kind == GROUP and principal.props.get("isAssignableToRole") is not True:
                raise err.BadRequest("Only a group with isAssignableToRole true can be assigned a directory role.")
            eligible = spec.get("eligible") is True
            members = (self.role_eligible if eligible else self.role_members).setdefault(template, [])
            if principal.id not in members:
                members.append(principal.id)
            return {
                "role": BUILT_IN_ROLES[template], "roleTemplateId": template, "principalId": principal.id,
                "eligible": eligible,
            }  # fmt: skip

    def unassign_role(self, role: str, principal_id: str, *, eligible: bool = False) -> None:
        template = self.role_template(role)
        with self._lock:
            members = (self.role_eligible if eligible else self.role_members).get(template, [])
            if principal_id not in members:
                raise err.ResourceNotFound(principal_id)
            members.remove(principal_id)
