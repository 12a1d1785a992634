"""Graph's model as the emulator serves it: object kinds, their properties (writable, read-only, write-only), the
default ``$select`` of each, value shapes, name rules, and small helpers every part of the emulator shares.

The emulator keeps its own model of Graph (it stands for the server, not for the product's client).
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import uuid
from typing import Any

from aadsync_devkit.graph_emulator import exceptions as err

USER = "user"
GROUP = "group"
CONTACT = "orgContact"
ODATA_TYPES = {USER: "#microsoft.graph.user", GROUP: "#microsoft.graph.group", CONTACT: "#microsoft.graph.orgContact"}
RESOURCE_NAMES = {USER: "User", GROUP: "Group", CONTACT: "OrgContact"}
ENTITY_SETS = {USER: "users", GROUP: "groups", CONTACT: "contacts"}
MAX_LINK_CHANGES = 20
DELTA_KINDS = (USER, GROUP)
MEMBERS = "members"
OWNERS = "owners"

# Property name -> access: "rw" writable, "ro" read-only (only the admin API may seed it), "wo" write-only.
USER_PROPS = {
    "id": "ro",
    "accountEnabled": "rw",
    "ageGroup": "rw",
    "businessPhones": "rw",
    "city": "rw",
    "companyName": "rw",
    "country": "rw",
    "createdDateTime": "ro",
    "creationType": "ro",
    "deletedDateTime": "ro",
    "department": "rw",
    "displayName": "rw",
    "employeeHireDate": "rw",
    "employeeId": "rw",
    "employeeOrgData": "rw",
    "employeeType": "rw",
    "externalUserState": "ro",
    "faxNumber": "rw",
    "givenName": "rw",
    "imAddresses": "ro",
    "jobTitle": "rw",
    "mail": "rw",
    "mailNickname": "rw",
    "mobilePhone": "rw",
    "officeLocation": "rw",
    "onPremisesDistinguishedName": "ro",
    "onPremisesDomainName": "ro",
    "onPremisesExtensionAttributes": "rw",
    "onPremisesImmutableId": "rw",
    "onPremisesLastSyncDateTime": "ro",
    "onPremisesSamAccountName": "ro",
    "onPremisesSecurityIdentifier": "ro",
    "onPremisesSyncEnabled": "ro",
    "onPremisesUserPrincipalName": "ro",
    "otherMails": "rw",
    "passwordPolicies": "rw",
    "passwordProfile": "wo",
    "postalCode": "rw",
    "preferredDataLocation": "rw",
    "preferredLanguage": "rw",
    "proxyAddresses": "ro",
    "showInAddressList": "rw",
    "state": "rw",
    "streetAddress": "rw",
    "surname": "rw",
    "usageLocation": "rw",
    "userPrincipalName": "rw",
    "userType": "rw",
}
_USER_DEFAULT_SELECT = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
)
GROUP_PROPS = {
    "id": "ro",
    "classification": "rw",
    "createdDateTime": "ro",
    "deletedDateTime": "ro",
    "description": "rw",
    "displayName": "rw",
    "expirationDateTime": "ro",
    "groupTypes": "rw",
    "isAssignableToRole": "rw",
    "mail": "ro",
    "mailEnabled": "rw",
    "mailNickname": "rw",
    "membershipRule": "rw",
    "membershipRuleProcessingState": "rw",
    "onPremisesDomainName": "ro",
    "onPremisesLastSyncDateTime": "ro",
    "onPremisesNetBiosName": "ro",
    "onPremisesSamAccountName": "ro",
    "onPremisesSecurityIdentifier": "ro",
    "onPremisesSyncEnabled": "ro",
    "preferredLanguage": "rw",
    "proxyAddresses": "ro",
    "renewedDateTime": "ro",
    "securityEnabled": "rw",
    "securityIdentifier": "ro",
    "visibility": "rw",
}
_GROUP_DEFAULT_SELECT = tuple(GROUP_PROPS)
CONTACT_PROPS = {
    "id": "ro",
    "addresses": "ro",
    "companyName": "ro",
    "deletedDateTime": "ro",
    "department": "ro",
    "displayName": "ro",
    "givenName": "ro",
    "jobTitle": "ro",
    "mail": "ro",
    "mailNickname": "ro",
    "onPremisesLastSyncDateTime": "ro",
    "onPremisesSyncEnabled": "ro",
    "phones": "ro",
    "proxyAddresses": "ro",
    "surname": "ro",
}
PROPERTIES = {USER: USER_PROPS, GROUP: GROUP_PROPS, CONTACT: CONTACT_PROPS}
DEFAULT_SELECT = {USER: _USER_DEFAULT_SELECT, GROUP: _GROUP_DEFAULT_SELECT, CONTACT: tuple(CONTACT_PROPS)}
COLLECTIONS = {"businessPhones", "imAddresses", "otherMails", "proxyAddresses", "groupTypes", "addresses", "phones"}
BOOLEANS = {"accountEnabled", "mailEnabled", "securityEnabled", "isAssignableToRole", "showInAddressList"}
OBJECT_VALUED = {"passwordProfile", "onPremisesExtensionAttributes", "employeeOrgData"}
#: Graph's documented maximum lengths of user string properties (the user resource; employeeId: 16).
USER_MAX_LENGTHS = {
    "city": 128, "companyName": 64, "country": 128, "department": 64, "displayName": 256, "employeeId": 16,
    "givenName": 64, "jobTitle": 128, "mailNickname": 64, "mobilePhone": 64, "postalCode": 40, "state": 128,
    "streetAddress": 1024, "surname": 64,
}  # fmt: skip
#: The 15 members of ``onPremisesExtensionAttributes`` (Exchange custom attributes), each up to 1,024 characters.
EXTENSION_ATTRIBUTES = tuple(f"extensionAttribute{n}" for n in range(1, 16))
EXTENSION_ATTRIBUTE_MAX = 1024
EMPLOYEE_ORG_DATA = ("division", "costCenter")
# Attributes a directory-synchronised object keeps writable in the cloud.
CLOUD_WRITABLE_ON_SYNCED = {"usageLocation", "passwordProfile", "passwordPolicies", "preferredLanguage"}

MAIL_NICKNAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]{1,64}$")
UPN_LOCAL = re.compile(r"^[A-Za-z0-9'.\-_!#^~]{1,113}$")
_ODATA_ID = re.compile(r"/(?:v1\.0|beta)/(?:directoryObjects|users|groups|contacts)/([^/?#]+)/?(?:[?#].*)?$", re.I)
REQUIRED = {
    USER: ("accountEnabled", "displayName", "mailNickname", "userPrincipalName", "passwordProfile"),
    GROUP: ("displayName", "mailEnabled", "mailNickname", "securityEnabled"),
}


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def security_identifier(object_id: str) -> str:
    """The ``S-1-12-1-...`` SID Entra ID derives from a cloud object's GUID."""
    raw = uuid.UUID(object_id).bytes_le
    parts = [int.from_bytes(raw[i : i + 4], "little") for i in range(0, 16, 4)]
    return "S-1-12-1-" + "-".join(str(p) for p in parts)


def object_id_from_url(url: Any) -> str:
    """The object id in an ``@odata.bind`` / ``@odata.id`` URL, on Graph's host or the emulator's."""
    if not isinstance(url, str):
        raise err.BadRequest("Invalid object identifier in reference URL.")
    match = _ODATA_ID.search(url.strip())
    if not match:
        raise err.BadRequest(f"Invalid object identifier '{url}'.")
    return match.group(1)


def is_unified(props: dict[str, Any]) -> bool:
    """Whether a group's properties make it a Microsoft 365 group (``groupTypes`` holds ``Unified``)."""
    return any(str(t).lower() == "unified" for t in props.get("groupTypes") or [])


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
