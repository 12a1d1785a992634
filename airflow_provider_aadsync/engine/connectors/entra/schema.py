"""The ONE Graph property catalog of the Entra ID connector, and everything derived from it.

One list serves the import (the ``$select`` of users and of groups: the ``imported`` properties of each type, in
catalog order), the export (which properties Graph takes as collections) and the rules (the schema sync reads the
``entra`` connector space by: references, DNs of provisioned objects). Export one more Graph property: add it here
(and a flow in ``rules/default/out-to-entra.yaml``), nowhere else. The Graph emulator keeps its own model of Graph
(the dev kit's graph_emulator/catalog.py): it stands for the server, not for this client.
"""

from __future__ import annotations

from airflow_provider_aadsync.engine.connectors.schema import Attribute, ConnectorSchema, kinds

_USER = kinds("user")
_GROUP = kinds("group")
_OBJECTS = kinds("user", "group")
_MAIL = kinds("user", "group", "contact")
_PEOPLE = kinds("user", "contact")

#: The connector-space attribute that holds group members (reference rows).
MEMBERS = "members"

#: Every Graph property the connector reads or writes. Catalog order is ``$select`` order, for each object type.
GRAPH_ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("id", _OBJECTS),
    Attribute("userPrincipalName", _USER),
    Attribute("displayName", _MAIL),
    Attribute("givenName", _PEOPLE),
    Attribute("surname", _PEOPLE),
    Attribute("description", _GROUP),
    Attribute("mail", _MAIL),
    Attribute("mailEnabled", _GROUP),
    Attribute("mailNickname", _MAIL),
    Attribute("securityEnabled", _GROUP),
    Attribute("otherMails", _USER, multi_valued=True),
    Attribute("groupTypes", _GROUP, multi_valued=True),
    Attribute("proxyAddresses", _OBJECTS, multi_valued=True),
    Attribute("jobTitle", _USER),
    Attribute("department", _USER),
    Attribute("companyName", _USER),
    Attribute("employeeId", _USER),
    Attribute("accountEnabled", _USER),
    Attribute("usageLocation", _USER),
    Attribute("onPremisesImmutableId", _USER),
    Attribute("onPremisesSyncEnabled", _OBJECTS),
    Attribute(MEMBERS, _GROUP, multi_valued=True, reference=True),
    # Written as collections when a rule flows them; not read by default.
    Attribute("businessPhones", _USER, multi_valued=True, imported=False),
    Attribute("imAddresses", _USER, multi_valued=True, imported=False),
    Attribute("manager", _USER, reference=True, imported=False),
)


def select_of(object_type: str) -> tuple[str, ...]:
    """The default ``$select`` of one object type: its imported properties, in catalog order."""
    return tuple(a.name for a in GRAPH_ATTRIBUTES if a.imported and object_type in a.object_types)


DEFAULT_USER_PROPERTIES: tuple[str, ...] = select_of("user")
DEFAULT_GROUP_PROPERTIES: tuple[str, ...] = select_of("group")

#: Graph properties that are collections (everything else is sent as a single value); references go as links.
COLLECTION_PROPERTIES: frozenset[str] = frozenset(
    a.name for a in GRAPH_ATTRIBUTES if a.multi_valued and not a.reference
)

#: Object type → Graph resource (collection path).
RESOURCES: dict[str, str] = {"user": "users", "group": "groups", "contact": "contacts"}

#: How sync reads the ``entra`` connector space: references, and the DN of an object it provisions (its path).
SCHEMA = ConnectorSchema.from_attributes(
    GRAPH_ATTRIBUTES, dn_templates={kind: f"{resource}/{{anchor}}" for kind, resource in RESOURCES.items()}
)
