"""The ONE Graph property catalog of the Entra ID connector, and everything derived from it.

One list serves the import (the ``$select`` of users and of groups: the ``imported`` properties of each type, in
catalog order), the export (which properties Graph takes as collections) and the rules (the schema sync reads the
``entra`` connector space by: references, DNs of provisioned objects). Export one more Graph property: add it here
(and a flow in ``rules/default/out-to-entra.yaml``), nowhere else. The Graph emulator keeps its own model of Graph
(the dev kit's graph_emulator/catalog.py): it stands for the server, not for this client.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Mapping
from typing import Any

from airflow_provider_aadsync.engine.connectors.entra.extensions import (
    PREFIX,
    TARGET_OBJECTS,
    ExtensionNameError,
    extension_name,
    is_extension,
)
from airflow_provider_aadsync.engine.connectors.schema import Attribute, ConnectorSchema, Limit, kinds

_USER = kinds("user")
_GROUP = kinds("group")
_OBJECTS = kinds("user", "group")
_MAIL = kinds("user", "group", "contact")
_PEOPLE = kinds("user", "contact")


def _most(characters: int) -> Limit:
    """Graph's documented maximum length of a string property (the user resource)."""
    return Limit(max_length=characters)


#: AD's generalized time as Microsoft documents it for the AD string attribute feeding employeeHireDate: "Must be in
#: the format "yyyyMMddHHmmss.fZ"" (how-to-lifecycle-workflow-sync-attributes.md), e.g. 20240115080000.0Z.
_GENERALIZED_TIME = re.compile(r"(\d{14})(?:[.,](\d+))?Z")


#: ISO 8601 as Graph's DateTimeOffset takes it: a date-time with its offset (2024-01-15T08:00:00Z).
_ISO_DATE_TIME = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})"


def _graph_date_time(text: str) -> str | None:
    """A hire date as the ISO 8601 UTC date-time Graph's DateTimeOffset takes and returns ("always in UTC time", the
    user resource's Timestamp), or None when it is neither form below or no real date: AD's generalized time
    (``yyyyMMddHHmmss.fZ``, UTC: ``20240115080000.0Z`` → ``2024-01-15T08:00:00Z``) and ISO 8601 with its offset
    (``2024-01-15T08:00:00+02:00`` → ``2024-01-15T06:00:00Z``: as written, every delta would find Graph's UTC value
    different and write it again; one in UTC stays as it is)."""
    text = text.strip()
    match = _GENERALIZED_TIME.fullmatch(text)
    try:
        if match is not None:
            stamp = dt.datetime.strptime(match.group(1), "%Y%m%d%H%M%S")
            fraction = (match.group(2) or "").rstrip("0")
        elif re.fullmatch(_ISO_DATE_TIME, text):
            stamp = dt.datetime.fromisoformat(text).astimezone(dt.UTC)
            fraction = f"{stamp.microsecond:06d}".rstrip("0")
        else:
            return None
    except ValueError:  # February 30th, hour 25
        return None
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


#: Graph's documented formats: usageLocation is an ISO 3166 two-letter code, preferredLanguage an ISO 639-1 code
#: (with an optional region: en-US), employeeHireDate a DateTimeOffset, otherMails plain ASCII addresses.
_COUNTRY_CODE = Limit(pattern=r"[A-Z]{2}", shape="a two-letter ISO 3166 country code in capitals (US, DE)")
_LANGUAGE = Limit(pattern=r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*", shape="an ISO 639-1 language code (en, en-US)")
#: employeeHireDate (a DateTimeOffset) from an AD string attribute: Microsoft's format, generalized time, and ISO 8601
#: are written in UTC (_graph_date_time). Any other value, or no real date, costs only this attribute, never the
#: user's other changes.
_DATE_TIME = Limit(
    pattern=_ISO_DATE_TIME,
    shape="a date-time: AD's generalized time yyyyMMddHHmmss.fZ (20240115080000.0Z, Microsoft's documented format) "
    "or ISO 8601 with its offset (2024-01-15T08:00:00Z)",
    convert=_graph_date_time,
    drop_invalid=True,
)
_ASCII_MAIL = Limit(pattern=r"[\x21-\x7e]+@[\x21-\x7e]+", shape="an e-mail address in ASCII characters")

#: The connector-space name of the directory extension that holds an object's sourceAnchor.
ANCHOR_ATTRIBUTE = "extension_aadsyncSourceAnchor"
#: The Graph object property holding the 15 Exchange custom attributes (``extensionAttribute1`` .. ``15``).
EXTENSION_ATTRIBUTES = "onPremisesExtensionAttributes"
#: Graph properties whose value is an object: the connector space holds each member as ``parent.member``.
NESTED_PROPERTIES: frozenset[str] = frozenset({EXTENSION_ATTRIBUTES})

#: The connector-space attribute that holds group members (reference rows).
MEMBERS = "members"
#: The connector-space attribute that holds a user's manager (one reference row at most).
MANAGER = "manager"

#: A Microsoft 365 group's per-group writeback switch (Graph's ``writebackConfiguration.isEnabled``: beta only, so not
#: in the v1.0 ``$select``; read from ``GET /beta/groups`` when the rules read it). Absent: Graph's default (enabled).
WRITEBACK_ENABLED = "writebackConfiguration.isEnabled"

#: The connector-space mark of a soft-deleted group (Graph's delta ``@removed`` reason ``changed``: in deletedItems,
#: restorable), set by the import, not a Graph property: group writeback keeps such a group's AD copy.
SOFT_DELETED = "softDeleted"

#: The connector-space attribute listing the directory roles a user or group holds (directly, or for a user through
#: a role-assignable group), set by the import from ``GET /directoryRoles``, not a Graph property: the join rules
#: never match an object holding one (Entra ID's protection of cloud administrators).
DIRECTORY_ROLES = "directoryRoles"

#: Connector-space attributes the import makes beside the v1.0 delta rounds: not v1.0 properties, so not in the
#: catalog and never in a ``$select``; rules may read them.
BESIDE_DELTA: frozenset[str] = frozenset({WRITEBACK_ENABLED, SOFT_DELETED, DIRECTORY_ROLES})

#: Every Graph property the connector reads or writes. Catalog order is ``$select`` order, for each object type.
GRAPH_ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("id", _OBJECTS),
    Attribute("userPrincipalName", _USER),
    Attribute("displayName", _MAIL, limit=_most(256)),
    Attribute("givenName", _PEOPLE, limit=_most(64)),
    Attribute("surname", _PEOPLE, limit=_most(64)),
    Attribute("description", _GROUP),
    Attribute("mail", _MAIL),
    Attribute("mailEnabled", _GROUP),
    Attribute("mailNickname", _MAIL, limit=Limit(64, r"[^\s@()<>\[\]\\;:,\"]+", 'without spaces or @()<>[]\\;:,"')),
    Attribute("securityEnabled", _GROUP),
    Attribute("otherMails", _USER, multi_valued=True, limit=_ASCII_MAIL),
    Attribute("groupTypes", _GROUP, multi_valued=True),
    Attribute("proxyAddresses", _OBJECTS, multi_valued=True),
    Attribute("jobTitle", _USER, limit=_most(128)),
    Attribute("department", _USER, limit=_most(64)),
    Attribute("companyName", _USER, limit=_most(64)),
    Attribute("employeeId", _USER, limit=_most(16)),
    Attribute("accountEnabled", _USER),
    Attribute("usageLocation", _USER, limit=_COUNTRY_CODE),
    Attribute("onPremisesImmutableId", _USER),
    Attribute("onPremisesSyncEnabled", _OBJECTS),
    Attribute(MEMBERS, _GROUP, multi_valued=True, reference=True),
    # Read-only in Graph (UNWRITABLE below: a flow to it is left out at export and counted); not read by default.
    Attribute("imAddresses", _USER, multi_valued=True, imported=False),
    # Selected like a group's members: Graph tracks a navigation property a delta query names in $select (answered as
    # manager@delta) and ignores $expand there.
    Attribute(MANAGER, _USER, reference=True),
    # Issue 17's user properties: the shipped rules write them and the import reads them back (a cloud-side edit is
    # corrected by the next sync). Graph's businessPhones holds one number ("only one number can be set").
    Attribute("businessPhones", _USER, multi_valued=True, limit=Limit(max_values=1)),
    Attribute("employeeType", _USER),
    Attribute("employeeHireDate", _USER, limit=_DATE_TIME),
    Attribute("officeLocation", _USER),
    Attribute("mobilePhone", _USER, limit=_most(64)),
    Attribute("faxNumber", _USER),
    Attribute("streetAddress", _USER, limit=_most(1024)),
    Attribute("city", _USER, limit=_most(128)),
    Attribute("state", _USER, limit=_most(128)),
    Attribute("postalCode", _USER, limit=_most(40)),
    Attribute("country", _USER, limit=_most(128)),
    Attribute("preferredLanguage", _USER, limit=_LANGUAGE),
    Attribute("preferredDataLocation", _USER),
    # Exchange's custom attributes, members of one Graph object: written and read as "parent.member" (graph.py nests
    # them, the reader flattens them). Graph lets an app write them on cloud users only (onPremisesSyncEnabled not
    # true), which the users this product creates are.
    *(Attribute(f"{EXTENSION_ATTRIBUTES}.extensionAttribute{n}", _USER, limit=_most(1024)) for n in range(1, 16)),
    # The sync app's directory extension holding the sourceAnchor (extension_<appId>_aadsyncSourceAnchor in Graph;
    # connectors/entra/extensions.py): groups are hard matched on it. Selected only once registered.
    Attribute(ANCHOR_ATTRIBUTE, _OBJECTS, limit=_most(256)),
)


def select_of(object_type: str) -> tuple[str, ...]:
    """The default ``$select`` of one object type: its imported properties, in catalog order."""
    names = (a.name.partition(".")[0] for a in GRAPH_ATTRIBUTES if a.imported and object_type in a.object_types)
    return tuple(dict.fromkeys(names))  # a nested object's members are selected by their parent, once


DEFAULT_USER_PROPERTIES: tuple[str, ...] = select_of("user")
DEFAULT_GROUP_PROPERTIES: tuple[str, ...] = select_of("group")

#: Graph properties that are collections (everything else is sent as a single value); references go as links.
COLLECTION_PROPERTIES: frozenset[str] = frozenset(
    a.name for a in GRAPH_ATTRIBUTES if a.multi_valued and not a.reference
)

#: Targets a rule may flow to the ``entra`` connector that Microsoft Graph cannot write, and why. The export leaves
#: them out of every request and reports them once per run (a grouped notice), instead of an error per object.
UNWRITABLE: dict[str, str] = {
    "proxyAddresses": "read-only in Graph: Exchange Online derives the addresses from mail",
    "targetAddress": "no Graph property: the product writes Exchange hybrid attributes through its private sync API",
    "passwordHash": "password hash sync uses the product's private API; Graph sets only a plain-text passwordProfile",
    "unicodePwd": "password hash sync uses the product's private API; Graph sets only a plain-text passwordProfile",
    "imAddresses": "read-only in Graph (the user resource: instant message addresses, read-only)",
}

#: User properties Graph refuses to set to null in an update ("Update user"), and why. A clear sync stages for one
#: (its source emptied in AD) is left out of the update and reported once per run: sent, Graph would refuse the user's
#: whole update, and with it every other change staged for the user, at every cycle.
UNCLEARABLE: dict[str, str] = {
    "displayName": "it is required, and can't be cleared during updates",
    "usageLocation": "not nullable",
    "mail": "it can't be updated to null",
    "mailNickname": "it is required",
    "userPrincipalName": "it is required",
    "accountEnabled": "it is required",
}

#: Object type → Graph resource (collection path).
RESOURCES: dict[str, str] = {"user": "users", "group": "groups", "contact": "contacts"}

#: How sync reads the ``entra`` connector space: references, and the DN of an object it provisions (its path).
SCHEMA = ConnectorSchema.from_attributes(
    GRAPH_ATTRIBUTES, dn_templates={kind: f"{resource}/{{anchor}}" for kind, resource in RESOURCES.items()}
)


def target_problem(object_type: str, target: str) -> str | None:
    """Why an outbound rule cannot flow to ``target`` of an Entra ``object_type``, or None when it can: a property
    of the catalog above for that object type, one Graph cannot write (``UNWRITABLE``: left out and counted at
    export), or a directory extension ``extension_<name>`` of a user or group (the admin's choice; registered on the
    sync app by ``aadsync register-extensions``). Anything else Graph would refuse for every object."""
    known = {a.name.casefold(): a.name for a in GRAPH_ATTRIBUTES if object_type in a.object_types}
    if target.casefold() in known or target.casefold() in {name.casefold() for name in UNWRITABLE}:
        return None
    if is_extension(target):
        if object_type not in TARGET_OBJECTS:
            return f"directory extensions are on users and groups, not on {object_type} objects"
        try:
            extension_name(target[len(PREFIX) :])
        except ExtensionNameError as error:
            return str(error)
        return None
    elsewhere = sorted(
        {kind for a in GRAPH_ATTRIBUTES if a.name.casefold() == target.casefold() for kind in a.object_types}
    )
    close = difflib.get_close_matches(target.casefold(), list(known), n=1)
    if elsewhere:
        hint = f" (a property of {' and '.join(elsewhere)} objects)"
    else:
        hint = f" (did you mean {known[close[0]]!r}?)" if close else ""
    return (
        f"{target!r} is not a Graph property the entra connector writes on {object_type} objects{hint}: not in its "
        "attribute list (engine/connectors/entra/schema.py) nor among what Graph cannot write; a directory "
        "extension is named extension_<name>"
    )


def read_only_in_graph(attrs: Mapping[str, Any]) -> bool:
    """Whether a cloud group's connector-space attributes make it a mail-enabled security group or a distribution
    group (mail-enabled, groupTypes without Unified): "Mail-enabled and distribution groups are read-only through
    Microsoft Graph" (groups overview), so every write to one is refused ("Cannot Update a mail-enabled security
    groups and or distribution list."): they are managed in Exchange Online."""
    enabled = attrs.get("mailEnabled")
    value = enabled[0] if isinstance(enabled, list) and enabled else enabled
    if str(value).casefold() != "true":
        return False
    return not any(str(kind).casefold() == "unified" for kind in attrs.get("groupTypes") or [])
