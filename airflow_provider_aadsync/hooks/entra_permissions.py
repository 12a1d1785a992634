"""The Microsoft Graph application permissions the sync app needs, and what an access token says it was granted.

An app-only token for Graph carries the application permissions granted (with admin consent) to the app's service
principal in its ``roles`` claim. The Entra hook's ``test_connection`` reads that claim and names every permission
that is missing, so an administrator learns it from the *Test* button instead of from a 403 in the middle of an
export. Each requirement is met by its least privileged permission or by a higher privileged one that Microsoft's
API reference lists for the same calls (e.g. ``Directory.ReadWrite.All``). The README's "App registration and
permissions" section is the same table for people.

The token's signature is not verified here: the token came straight from the token endpoint over TLS and is only
read to word a message; Graph verifies it on every call. Microsoft documents access tokens as opaque to clients, so
a token that cannot be read is reported as such, never as missing permissions.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class GraphPermission:
    """One application permission the sync app needs (or may use), why, and what else grants the same calls."""

    name: str
    why: str
    #: Higher privileged permissions that also allow every call this one is needed for.
    also_granted_by: tuple[str, ...] = ()
    optional: bool = False

    def granted(self, roles: frozenset[str]) -> bool:
        return self.name in roles or any(other in roles for other in self.also_granted_by)


#: What the sync app needs, least privileged first (Microsoft Graph API reference, v1.0, application permissions).
REQUIRED_PERMISSIONS: tuple[GraphPermission, ...] = (
    GraphPermission(
        "User.ReadWrite.All",
        "read users (GET /users/delta) and create, update and delete them; set and remove a user's manager "
        "(PUT/DELETE /users/{id}/manager/$ref)",
        ("Directory.ReadWrite.All",),
    ),
    GraphPermission(
        "Group.ReadWrite.All",
        "read groups and their members (GET /groups/delta) and create, update and delete groups",
        ("Directory.ReadWrite.All",),
    ),
    GraphPermission(
        "GroupMember.ReadWrite.All",
        "add and remove group members (POST /groups/{id}/members/$ref, DELETE .../members/{id}/$ref, "
        "members@odata.bind)",
        ("Group.ReadWrite.All", "Directory.ReadWrite.All"),
    ),
    GraphPermission(
        "Organization.Read.All",
        "read the tenant (GET /organization): the connection test and the export's check of the tenant",
        ("Directory.Read.All", "Organization.ReadWrite.All", "Directory.ReadWrite.All"),
    ),
    GraphPermission(
        "RoleManagement.Read.Directory",
        "read who holds a directory role, at any scope, active or eligible in PIM (GET /roleManagement/directory/"
        "roleAssignments, roleEligibilityScheduleInstances and roleDefinitions): a cloud user or group with an "
        "admin role is never matched to an on-premises object, as Entra ID does",
        ("RoleManagement.ReadWrite.Directory", "RoleManagement.Read.All"),
    ),
    GraphPermission(
        "Domain.Read.All",
        "read the tenant's verified domains (GET /domains), which a user principal name must end with",
        ("Domain.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"),
    ),
)
#: What only some configurations use: without it the rest of the sync works.
OPTIONAL_PERMISSIONS: tuple[GraphPermission, ...] = (
    GraphPermission(
        "Application.ReadWrite.OwnedBy",
        "directory extensions: register extension_<appId>_<name> properties on the sync app "
        "(POST /applications/{id}/extensionProperties; the app's service principal must own its application)",
        ("Application.ReadWrite.All", "Directory.ReadWrite.All"),
        optional=True,
    ),
)


class UnreadableTokenError(ValueError):
    """The access token is not a JWT whose payload can be read (Microsoft may change the format of its tokens)."""


def token_roles(token: str) -> frozenset[str]:
    """The application permissions (``roles`` claim) of a JWT access token; empty when the claim is absent (an app
    granted no application permission gets no ``roles`` claim).

    :raise UnreadableTokenError: the token is not three dot-separated parts with a base64url JSON object in the
        middle, or its ``roles`` is not a list of strings. The message never quotes the token.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise UnreadableTokenError(f"the access token is not a JWT ({len(parts)} parts instead of 3)")
    payload = parts[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        raise UnreadableTokenError("the access token's payload is not base64url JSON") from None
    if not isinstance(claims, dict):
        raise UnreadableTokenError("the access token's payload is not a JSON object")
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise UnreadableTokenError("the access token's roles claim is not a list of names")
    return frozenset(roles)


@dataclass(frozen=True)
class PermissionCheck:
    """Which required and optional permissions a set of granted roles lacks."""

    missing: tuple[GraphPermission, ...]
    missing_optional: tuple[GraphPermission, ...]

    @property
    def ok(self) -> bool:
        return not self.missing

    def message(self) -> str:
        """One paragraph for the *Test* button: every missing permission with why it is needed."""
        parts = []
        if self.missing:
            parts.append(
                "Missing Microsoft Graph application permissions (grant them to the app registration, then grant "
                "admin consent): " + "; ".join(_describe(p) for p in self.missing) + "."
            )
        else:
            parts.append("Every required Microsoft Graph application permission is granted.")
        if self.missing_optional:
            parts.append(
                "Note, optional permissions not granted (only needed for these features): "
                + "; ".join(_describe(p) for p in self.missing_optional)
                + "."
            )
        return " ".join(parts)


def _describe(permission: GraphPermission) -> str:
    alternatives = f" (or {' or '.join(permission.also_granted_by)})" if permission.also_granted_by else ""
    return f"{permission.name}{alternatives} to {permission.why}"


def check_permissions(roles: Iterable[str]) -> PermissionCheck:
    granted = frozenset(roles)
    return PermissionCheck(
        missing=tuple(p for p in REQUIRED_PERMISSIONS if not p.granted(granted)),
        missing_optional=tuple(p for p in OPTIONAL_PERMISSIONS if not p.granted(granted)),
    )
