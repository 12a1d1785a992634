"""Which cloud users and groups hold a directory role, as the Entra import records it for the join rules.

"To protect from untrusted on-premises users, Microsoft Entra ID won't match on-premises users with cloud users that
have an admin role. This behavior is by default." (Microsoft Entra Connect: When you have an existing tenant.) Entra
ID enforces that in its own sync service; this engine matches by itself, so it has to know who the administrators
are: whoever may set a userPrincipalName or mail in AD could otherwise have a Global Administrator joined to an AD
user (a soft match), then written to and deleted with it.

Role assignments are not in a users or groups delta, so every import reads them whole (``GET /directoryRoles`` and
each role's members: a tenant has tens of activated roles, not thousands) and records each holder's roles in the
connector-space attribute :data:`DIRECTORY_ROLES`. A full import puts them in the objects it reads; a delta import
writes only the holders that changed since the last import, known from the list the last import saved beside its
delta links (the watermark row :data:`HOLDERS_ROW`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.entra.schema import DIRECTORY_ROLES
from airflow_provider_aadsync.engine.runs.read_again import saved_row
from airflow_provider_aadsync.engine.runs.source import SourceObject

if TYPE_CHECKING:
    from airflow_provider_aadsync.engine.runs.cs_writer import ConnectorSpaceWriter

#: The watermark row (a pseudo-partition of the import) holding the role holders the last import saw.
HOLDERS_ROW = "directory roles"
#: Graph's kinds of role holders the connector space holds, and their delta resource (the DN's first part).
_RESOURCES = {"user": "users", "group": "groups"}

#: ``{object id: (kind, sorted role names)}``, as the Entra hook's ``directory_role_holders`` returns it.
Holders = Mapping[str, tuple[str, list[str]]]


def read_holders(source: Any) -> dict[str, tuple[str, list[str]]] | None:
    """The role holders of the tenant, or None from a source that cannot list them (a test's fake)."""
    reader = getattr(source, "directory_role_holders", None)
    if reader is None:
        return None
    return {str(object_id): (str(kind), sorted(roles)) for object_id, (kind, roles) in reader().items()}


def with_roles(item: dict[str, Any], holders: Holders | None) -> dict[str, Any]:
    """A full round's item with its roles, when it holds any (the full import's compare then sees them)."""
    if not holders:
        return item
    held = holders.get(item.get("id"))  # type: ignore[arg-type]
    return {**item, DIRECTORY_ROLES: held[1]} if held else item


def holders_row(holders: Holders) -> bytes:
    """The watermark value saving ``holders``, for the next delta to compare with."""
    return json.dumps({object_id: [kind, roles] for object_id, (kind, roles) in sorted(holders.items())}).encode()


def saved_holders(connection: sa.Connection, connector: str) -> dict[str, tuple[str, list[str]]]:
    """The holders the last import saved (none before the first one that read them)."""
    cookie = saved_row(connection, connector, HOLDERS_ROW)
    saved = json.loads(cookie) if cookie else {}
    return {object_id: (kind, list(roles)) for object_id, (kind, roles) in saved.items()}


def apply_changes(writer: ConnectorSpaceWriter, holders: Holders) -> int:
    """Write the roles of each user and group whose roles changed since the saved list (an empty list for one that
    holds none any more) to the objects the connector space holds; return how many changed."""
    before = saved_holders(writer.connection, writer.connector)
    changed = []
    for object_id in sorted(set(before) | set(holders)):
        kind, roles = holders.get(object_id) or (before[object_id][0], [])
        if kind in _RESOURCES and (before.get(object_id) or (kind, []))[1] != roles:
            dn = f"{_RESOURCES[kind]}/{object_id}"
            changed.append(SourceObject(object_id, dn, kind, attrs={DIRECTORY_ROLES: roles}, partial=True))
    writer.update_known(changed)
    return len(changed)
