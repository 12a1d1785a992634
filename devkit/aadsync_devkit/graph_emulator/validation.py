"""Graph's rules for the values of a write: property names and access, value types, name formats, uniqueness."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from aadsync_devkit.graph_emulator import exceptions as err
from aadsync_devkit.graph_emulator.catalog import (
    BOOLEANS,
    CLOUD_WRITABLE_ON_SYNCED,
    COLLECTIONS,
    EMPLOYEE_ORG_DATA,
    EXTENSION_ATTRIBUTE_MAX,
    EXTENSION_ATTRIBUTES,
    MAIL_NICKNAME,
    MAX_LINK_CHANGES,
    OBJECT_VALUED,
    ODATA_TYPES,
    PROPERTIES,
    RESOURCE_NAMES,
    UPN_LOCAL,
    USER_MAX_LENGTHS,
    object_id_from_url,
)
from aadsync_devkit.graph_emulator.extensions import TenantExtensions, is_extension, utc_timestamp
from aadsync_devkit.graph_emulator.records import DirectoryObject

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


class TenantValidation(TenantExtensions):
    """The checks :class:`~aadsync_devkit.graph_emulator.objects.TenantObjects` runs before a write changes anything."""

    verified_domains: list[str]
    _objects: dict[str, DirectoryObject]
    _by_upn: dict[str, str]
    _by_immutable_id: dict[str, str]
    _by_proxy: dict[str, str]
    _by_nickname: dict[str, set[str]]

    def _check_body(self, kind: str, body: dict[str, Any], *, admin: bool) -> dict[str, Any]:
        """The plain properties of *body*, type-checked; ``@odata.*`` annotations and binds are dropped."""
        if not isinstance(body, dict):
            raise err.BadRequest("Empty Payload, JSON content expected.")
        odata_type = body.get("@odata.type")
        if odata_type is not None and str(odata_type).lstrip("#") != ODATA_TYPES[kind].lstrip("#"):
            raise err.BadRequest(
                f"A type named '{str(odata_type).lstrip('#')}' could not be resolved by the model. When a model is "
                "available, each type name must resolve to a valid type."
            )
        props = PROPERTIES[kind]
        out: dict[str, Any] = {}
        extensions: dict[str, Any] = {}
        for name, value in body.items():
            if "@" in name:
                continue  # annotations (@odata.type) and binds (members@odata.bind) are handled by the caller
            if is_extension(name):
                extensions[name] = value
                continue
            access = props.get(name)
            if access is None:
                raise err.UnknownProperty(name)
            if access == "ro" and not admin:
                raise err.ReadOnlyProperty(name)
            if value is not None:
                if name in COLLECTIONS and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                    raise err.InvalidPropertyValue(name, RESOURCE_NAMES[kind])
                if name in BOOLEANS and not isinstance(value, bool):
                    raise err.InvalidPropertyValue(name, RESOURCE_NAMES[kind])
                if name in OBJECT_VALUED and not isinstance(value, dict):
                    raise err.InvalidPropertyValue(name, RESOURCE_NAMES[kind])
                if (
                    name not in COLLECTIONS | BOOLEANS | OBJECT_VALUED
                    and name != "onPremisesSyncEnabled"
                    and not isinstance(value, str)
                ):
                    raise err.InvalidPropertyValue(name, RESOURCE_NAMES[kind])
            out[name] = value
        if extensions:
            out.update(self._check_extension_values(kind, extensions))
        return out

    def _check_user_values(self, values: dict[str, Any], *, exclude: str | None) -> None:
        if "mailNickname" in values and not MAIL_NICKNAME.match(values["mailNickname"] or ""):
            raise err.InvalidPropertyValue("mailNickname", "User")
        if "userPrincipalName" in values:
            upn = values["userPrincipalName"] or ""
            local, at, domain = upn.rpartition("@")
            if not at or not UPN_LOCAL.match(local) or not domain:
                raise err.InvalidPropertyValue("userPrincipalName", "User")
            if domain.lower() not in self.verified_domains:
                raise err.UnverifiedUpnDomain()
            if self._upn_taken(upn, exclude):
                raise err.ObjectConflict("userPrincipalName")
        if self._immutable_id_taken(values.get("onPremisesImmutableId"), exclude):
            raise err.ObjectConflict("onPremisesImmutableId")
        self._check_user_formats(values)
        if "passwordProfile" in values:
            profile = values["passwordProfile"]
            if not isinstance(profile, dict) or not isinstance(profile.get("password"), str) or not profile["password"]:
                raise err.InvalidPropertyValue("passwordProfile", "User")

    @staticmethod
    def _check_user_formats(values: dict[str, Any]) -> None:
        """Graph's documented shapes of user values: maximum lengths, one business phone, a two-letter
        usageLocation, an ISO 639-1 preferredLanguage, otherMails without accents, a date-time employeeHireDate
        (stored in UTC), and the members of onPremisesExtensionAttributes and employeeOrgData."""

        def bad(name: str) -> err.InvalidPropertyValue:
            return err.InvalidPropertyValue(name, "User")

        for name, limit in USER_MAX_LENGTHS.items():
            if isinstance(values.get(name), str) and len(values[name]) > limit:
                raise bad(name)
        if len(values.get("businessPhones") or []) > 1:
            raise bad("businessPhones")
        if values.get("usageLocation") is not None and not _COUNTRY.match(values["usageLocation"]):
            raise bad("usageLocation")
        if values.get("preferredLanguage") is not None and not _LANGUAGE.match(values["preferredLanguage"]):
            raise bad("preferredLanguage")
        if any(not (m.isascii() and "@" in m) for m in values.get("otherMails") or []):
            raise bad("otherMails")
        if values.get("employeeHireDate") is not None:
            try:
                values["employeeHireDate"] = utc_timestamp(values["employeeHireDate"])
            except ValueError:
                raise bad("employeeHireDate") from None
        for name, members, limit in (
            ("onPremisesExtensionAttributes", EXTENSION_ATTRIBUTES, EXTENSION_ATTRIBUTE_MAX),
            ("employeeOrgData", EMPLOYEE_ORG_DATA, None),
        ):
            value = values.get(name)
            if value is not None and any(
                key not in members or not (v is None or (isinstance(v, str) and (limit is None or len(v) <= limit)))
                for key, v in value.items()
            ):
                raise bad(name)

    def _upn_taken(self, upn: str, exclude: str | None) -> bool:
        return self._by_upn.get(upn.lower(), exclude) != exclude

    def _immutable_id_taken(self, immutable_id: str | None, exclude: str | None) -> bool:
        """Whether another live user holds *immutable_id*: Entra ID keeps it unique (a second user with it is refused
        "Another object with the same value for property onPremisesImmutableId already exists"; Entra Connect reports
        it as AttributeValueMustBeUnique). Compared as written: it is Base64, whose letter case matters."""
        return bool(immutable_id) and self._by_immutable_id.get(immutable_id, exclude) != exclude

    def _nickname_taken(self, nickname: str, exclude: str | None) -> bool:
        """Whether another live object (user, group or contact) holds *nickname*. Checked for Microsoft 365 groups
        only: their mailNickname must be unique in the tenant; users and security groups may share one."""
        return any(holder != exclude for holder in self._by_nickname.get(nickname.lower(), ()))

    def _check_proxies(self, proxies: Iterable[str], exclude: str | None) -> None:
        if any(self._by_proxy.get(p.lower(), exclude) != exclude for p in proxies):
            raise err.ObjectConflict("proxyAddresses")

    def _check_synced(self, obj: DirectoryObject, changed: Iterable[str]) -> None:
        if obj.props.get("onPremisesSyncEnabled") and any(n not in CLOUD_WRITABLE_ON_SYNCED for n in changed):
            raise err.DirSyncMastered()

    def _bind_ids(self, body: dict[str, Any], *, admin: bool = False) -> tuple[list[str], list[str]]:
        """The member and owner ids in ``members@odata.bind`` / ``owners@odata.bind``; at most 20 in all, as in
        Graph, except when seeding through the admin API (a 250,000-member group in one call)."""
        found: dict[str, list[str]] = {"members": [], "owners": []}
        for name, value in body.items():
            if not name.endswith("@odata.bind"):
                continue
            prop = name[: -len("@odata.bind")]
            if prop not in found:
                raise err.UnknownProperty(prop)
            if not isinstance(value, list):
                raise err.BadRequest(f"Invalid value for '{name}': an array of URLs is expected.")
            found[prop].extend(object_id_from_url(url) for url in value)
        if len(found["members"]) + len(found["owners"]) > MAX_LINK_CHANGES and not admin:
            raise err.TooManyLinkChanges()
        for prop, ids in found.items():
            if len({i.lower() for i in ids}) != len(ids):
                raise err.ReferenceAlreadyExists(prop)
            for object_id in ids:
                if object_id.lower() not in self._objects:
                    raise err.ResourceNotFound(object_id)
        return [i.lower() for i in found["members"]], [i.lower() for i in found["owners"]]
