"""The ONE list of Active Directory attributes the AD connector knows, and everything derived from it.

The list holds what the shipped rules read and write (``imported``: asked for by default, in this order) and the
attributes an import never asks for by default but must decode right when a connection's ``attributes`` extra names
them (octet strings kept as base64, SIDs). Derived: the default LDAP attribute list, the reference and binary
attributes of the entry decoder, the GUID- and SID-valued attributes it gives their text forms, and the schema sync
reads the ``ad`` connector space by (references, typed values). Add an attribute here, nowhere else.
"""

from __future__ import annotations

import re

from airflow_provider_aadsync.engine.connectors.converters import boolean, guid_bytes, integer, sid_bytes
from airflow_provider_aadsync.engine.connectors.schema import Attribute, ConnectorSchema, kinds

_ALL = kinds("user", "group", "contact", "organizationalUnit", "foreignSecurityPrincipal")
_PEOPLE = kinds("user", "contact")
_PRINCIPALS = kinds("user", "group")
_MAIL = kinds("user", "group", "contact")

#: Every AD attribute the connector knows, the imported ones in the order of the default attribute list.
AD_ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("objectGUID", _ALL, typed=guid_bytes, syntax="guid"),
    # A foreign security principal holds the objectSid of its object in the other forest (its join key).
    Attribute("objectSid", _PRINCIPALS | kinds("foreignSecurityPrincipal"), typed=sid_bytes, syntax="sid"),
    Attribute("objectClass", _ALL, multi_valued=True),
    Attribute("sAMAccountName", _PRINCIPALS),
    Attribute("userPrincipalName", kinds("user")),
    Attribute("cn", _MAIL),
    Attribute("name", _ALL),
    Attribute("displayName", _MAIL),
    Attribute("givenName", _PEOPLE),
    Attribute("sn", _PEOPLE),
    Attribute("initials", _PEOPLE),
    Attribute("description", _ALL, multi_valued=True),
    Attribute("department", _PEOPLE),
    Attribute("title", _PEOPLE),
    Attribute("company", _PEOPLE),
    Attribute("employeeID", kinds("user")),
    Attribute("telephoneNumber", _PEOPLE),
    Attribute("mobile", _PEOPLE),
    Attribute("physicalDeliveryOfficeName", _PEOPLE),
    Attribute("streetAddress", _PEOPLE),
    Attribute("l", _PEOPLE),
    Attribute("st", _PEOPLE),
    Attribute("postalCode", _PEOPLE),
    Attribute("c", _PEOPLE),
    # Issue 17: the rest of the user attributes the product synchronizes to Entra ID that Graph can write.
    Attribute("co", _PEOPLE),
    Attribute("facsimileTelephoneNumber", _PEOPLE),
    Attribute("employeeType", kinds("user")),
    Attribute("preferredLanguage", kinds("user")),
    Attribute("otherMailbox", _PEOPLE, multi_valued=True),
    # AD has no hire date: Microsoft's guidance keeps it in msDS-cloudExtensionAttribute1 (ISO 8601 text).
    Attribute("msDS-cloudExtensionAttribute1", kinds("user")),
    # The Multi-Geo data location (Windows Server 2019 schema; absent from Samba's, so never set in the dev world).
    Attribute("msDS-preferredDataLocation", kinds("user")),
    # Exchange's custom attributes (Exchange schema; the dev world adds them to Samba's, see world/forests.py).
    *(Attribute(f"extensionAttribute{n}", _MAIL) for n in range(1, 16)),
    Attribute("mail", _MAIL),
    Attribute("mailNickname", _MAIL),
    Attribute("proxyAddresses", _MAIL, multi_valued=True),
    Attribute("userAccountControl", kinds("user"), typed=integer),
    Attribute("isCriticalSystemObject", _ALL, typed=boolean),
    # Exchange's recipient type (the default configuration's exclusions read it; Samba gets it from the dev world).
    Attribute("msExchRecipientTypeDetails", _MAIL, typed=integer),
    # A linked mailbox's owner in the account forest (its objectSid): the resource forest's join key.
    Attribute("msExchMasterAccountSid", kinds("user"), typed=sid_bytes, syntax="sid"),
    Attribute("mS-DS-ConsistencyGuid", _MAIL, typed=guid_bytes, syntax="guid"),
    Attribute("groupType", kinds("group"), typed=integer),
    # The mark group writeback leaves on the groups it creates (connectors/ad/writer.py MARK_ATTRIBUTE).
    Attribute("adminDescription", _ALL),
    Attribute("info", _MAIL),
    Attribute("member", kinds("group"), multi_valued=True, reference=True),
    Attribute("manager", _PEOPLE, reference=True),
    Attribute("managedBy", kinds("group"), reference=True),
    # Not asked for by default; decoded by their syntax when a connection's attributes extra names them.
    Attribute("thumbnailPhoto", _PEOPLE, imported=False, syntax="binary"),
    Attribute("userCertificate", _PEOPLE, multi_valued=True, imported=False, syntax="binary"),
    Attribute("jpegPhoto", _PEOPLE, multi_valued=True, imported=False, syntax="binary"),
    Attribute("msExchMailboxGuid", kinds("user"), imported=False, syntax="binary"),
    Attribute("msDS-GenerationId", kinds("computer"), imported=False, syntax="binary"),
    Attribute("securityIdentifier", kinds("trustedDomain"), imported=False, syntax="sid"),
    Attribute("sIDHistory", _PRINCIPALS, multi_valued=True, imported=False, syntax="sid"),
)

#: What the shipped rules read; a connection's ``attributes`` extra replaces it.
DEFAULT_AD_ATTRIBUTES: tuple[str, ...] = tuple(a.name for a in AD_ATTRIBUTES if a.imported)

#: Attributes whose values are DNs of other objects; stored as reference rows, never inside ``attrs``.
DEFAULT_REFERENCE_ATTRIBUTES: frozenset[str] = frozenset(a.name for a in AD_ATTRIBUTES if a.reference)

#: Octet-string attributes kept as base64 (GUID- and SID-typed ones get their canonical text form instead), lower-cased.
DEFAULT_BINARY_ATTRIBUTES: frozenset[str] = frozenset(a.name.lower() for a in AD_ATTRIBUTES if a.binary)

#: Attributes whose octets are a GUID (given its text form) or a SID (``S-1-5-...``), lower-cased.
GUID_ATTRIBUTES: frozenset[str] = frozenset(a.name.lower() for a in AD_ATTRIBUTES if a.syntax == "guid")
SID_ATTRIBUTES: frozenset[str] = frozenset(a.name.lower() for a in AD_ATTRIBUTES if a.syntax == "sid")

#: How sync reads the ``ad`` connector space: references and typed values.
SCHEMA = ConnectorSchema.from_attributes(AD_ATTRIBUTES)

#: An LDAP attribute name (RFC 4512 ``descr``: a letter, then letters, digits and hyphens).
_LDAP_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*")


def target_problem(object_type: str, target: str) -> str | None:
    """Why an outbound rule cannot flow to ``target`` in AD, or None. Any attribute of the forest's schema is a
    legitimate target (an admin's rule may write one this list does not name: a schema extension, an Exchange
    attribute), and the schema is the DC's, not known when rules load; so only a name that can never be an LDAP
    attribute is refused here. An attribute the DC's schema lacks is the DC's per-object error at export."""
    if _LDAP_NAME.fullmatch(target):
        return None
    return (
        f"{target!r} cannot be an AD attribute name (a letter, then letters, digits and hyphens): the DC would refuse "
        f"it for every {object_type} object"
    )
