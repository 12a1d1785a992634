"""The emulator's state: tenants with their directory objects, and every domain rule Graph enforces on them.

Routes stay thin: they parse the request, call one method here and render the result. All reads and writes take
the one lock of :class:`EmulatorState`, so the state is safe to use from uvicorn's thread and from tests at once.
Objects are plain property dicts (Graph's JSON names); relationships (group members, owners) live beside them.
With a state file, the state is persisted to SQLite (one row per object, link and change; see ``EmulatorState.save``).
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import math
import os
import random
import re
import secrets
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from aadsync_devkit.graph_emulator import exceptions as err

USER = "user"
GROUP = "group"
CONTACT = "orgContact"
ODATA_TYPES = {USER: "#microsoft.graph.user", GROUP: "#microsoft.graph.group", CONTACT: "#microsoft.graph.orgContact"}
RESOURCE_NAMES = {USER: "User", GROUP: "Group", CONTACT: "OrgContact"}
ENTITY_SETS = {USER: "users", GROUP: "groups", CONTACT: "contacts"}
MAX_LINK_CHANGES = 20
DEFAULT_TOKEN_LIFETIME = 3599
DELTA_KINDS = (USER, GROUP)
MEMBERS = "members"
_OWNERS = "owners"
#: Settings of ``PUT /_emulator/settings``: name -> (default, minimum, maximum or None, type).
SETTINGS: dict[str, tuple[Any, float, float | None, type]] = {
    "tokenLifetimeSeconds": (DEFAULT_TOKEN_LIFETIME, 0, None, int),
    "deltaTokenLifetimeSeconds": (7 * 24 * 3600, 0, None, int),
    "deltaPageSize": (200, 1, None, int),
    "deltaMembersPerItem": (100, 1, None, int),
    "throttlingEnabled": (False, 0, None, bool),
    "throttleResourceUnits": (None, 1, None, int),  # None: 3,500 / 5,000 / 8,000 by tenant size
    "throttleResourceWindowSeconds": (10, 0.001, None, float),
    "throttleAppWrites": (3000, 1, None, int),
    "throttleAppWriteWindowSeconds": (150, 0.001, None, float),
    "throttleTenantWrites": (18000, 1, None, int),
    "throttleTenantWriteWindowSeconds": (300, 0.001, None, float),
    "faultRatio5xx": (0.0, 0, 1, float),
    "faultRetryAfterSeconds": (1, 0, None, int),
    "faultDropRatio": (0.0, 0, 1, float),  # share of Graph requests whose connection drops after processing
    "faultRatio429": (0.0, 0, 1, float),  # share of Graph requests answered 429 with faultRetryAfterSeconds
    "faultNext429": (0, 0, None, int),  # the next N Graph requests are answered 429, whatever the dice or the clock
    "faultMalformed": (None, 0, None, str),  # one of MALFORMED_KINDS: every matching Graph answer is broken so
    "faultMalformedPath": (None, 0, None, str),  # only requests whose path contains this (null: every Graph request)
    "latencyMs": (0, 0, 60000, int),
    "randomSeed": (None, 0, None, int),
}

#: What ``faultMalformed`` does to an answer: JSON cut in half, properties of the wrong JSON type, objects without
#: ``id``, a collection page without ``value``, an HTML error page with status 200 or 502, a ``$batch`` answer that
#: leaves out half of its items.
MALFORMED_KINDS = (
    "truncated-json", "wrong-types", "missing-id", "no-value", "html-200", "html-502", "batch-missing-items",
)  # fmt: skip

# Property name -> access: "rw" writable, "ro" read-only (only the admin API may seed it), "wo" write-only.
_USER_PROPS = {
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
_GROUP_PROPS = {
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
_GROUP_DEFAULT_SELECT = tuple(_GROUP_PROPS)
_CONTACT_PROPS = {
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
PROPERTIES = {USER: _USER_PROPS, GROUP: _GROUP_PROPS, CONTACT: _CONTACT_PROPS}
DEFAULT_SELECT = {USER: _USER_DEFAULT_SELECT, GROUP: _GROUP_DEFAULT_SELECT, CONTACT: tuple(_CONTACT_PROPS)}
_COLLECTIONS = {"businessPhones", "imAddresses", "otherMails", "proxyAddresses", "groupTypes", "addresses", "phones"}
_BOOLEANS = {"accountEnabled", "mailEnabled", "securityEnabled", "isAssignableToRole", "showInAddressList"}
_OBJECTS = {"passwordProfile", "onPremisesExtensionAttributes"}
# Attributes a directory-synchronised object keeps writable in the cloud.
_CLOUD_WRITABLE_ON_SYNCED = {"usageLocation", "passwordProfile", "passwordPolicies", "preferredLanguage"}

_MAIL_NICKNAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]{1,64}$")
_UPN_LOCAL = re.compile(r"^[A-Za-z0-9'.\-_!#^~]{1,113}$")
_ODATA_ID = re.compile(r"/(?:v1\.0|beta)/(?:directoryObjects|users|groups|contacts)/([^/?#]+)/?(?:[?#].*)?$", re.I)
_REQUIRED = {
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


@dataclass(frozen=True)
class AppCertificate:
    """A certificate credential of an app registration (a ``keyCredential`` of type ``AsymmetricX509Cert``): the
    public certificate whose private key signs the app's client assertions."""

    pem: str
    cert: x509.Certificate

    @classmethod
    def parse(cls, value: Any) -> AppCertificate:
        """From a PEM certificate, or the base64 DER a Graph ``keyCredential.key`` carries; 400 otherwise."""
        if isinstance(value, dict):
            value = value.get("certificate") or value.get("key")
        if not isinstance(value, str) or not value.strip():
            raise err.BadRequest("A certificate is expected: a PEM string or base64 DER.")
        try:
            if "-----BEGIN" in value:
                cert = x509.load_pem_x509_certificate(value.strip().encode())
            else:
                cert = x509.load_der_x509_certificate(base64.b64decode("".join(value.split()), validate=True))
        except ValueError:
            raise err.BadRequest("The certificate could not be parsed (PEM or base64 DER X.509 expected).") from None
        if not isinstance(cert.public_key(), rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise err.BadRequest("Only RSA and EC certificates can sign client assertions.")
        return cls(cert.public_bytes(serialization.Encoding.PEM).decode(), cert)

    @property
    def thumbprint(self) -> str:
        """The SHA-1 thumbprint in upper-case hex, as the portal shows it (msal's ``thumbprint``)."""
        return self.cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - the x5t thumbprint is SHA-1

    @property
    def thumbprint_sha256(self) -> str:
        return self.cert.fingerprint(hashes.SHA256()).hex().upper()

    @property
    def x5t(self) -> str:
        """The JOSE ``x5t`` header value: base64url of the SHA-1 thumbprint's bytes."""
        return _b64(bytes.fromhex(self.thumbprint))

    @property
    def x5t_s256(self) -> str:
        """The JOSE ``x5t#S256`` header value: base64url of the SHA-256 thumbprint's bytes."""
        return _b64(bytes.fromhex(self.thumbprint_sha256))

    @property
    def start(self) -> dt.datetime:
        return self.cert.not_valid_before_utc

    @property
    def end(self) -> dt.datetime:
        return self.cert.not_valid_after_utc

    def summary(self) -> dict[str, str]:
        return {
            "thumbprint": self.thumbprint,
            "thumbprintSha256": self.thumbprint_sha256,
            "subject": self.cert.subject.rfc4514_string(),
            "startDateTime": self.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "endDateTime": self.end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


@dataclass
class App:
    client_id: str
    secret: str
    display_name: str = "aadsync"
    service_principal_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    certificates: list[AppCertificate] = field(default_factory=list)

    def add_certificate(self, value: Any) -> AppCertificate:
        """Register a certificate credential (idempotent by thumbprint)."""
        certificate = AppCertificate.parse(value)
        if all(c.thumbprint != certificate.thumbprint for c in self.certificates):
            self.certificates.append(certificate)
        return certificate

    def find_certificate(self, *, x5t: str | None = None, x5t_s256: str | None = None) -> AppCertificate | None:
        """The registered certificate a client assertion's ``x5t#S256`` or ``x5t`` header names."""
        for certificate in self.certificates:
            if (x5t_s256 and certificate.x5t_s256 == x5t_s256.rstrip("=")) or (
                x5t and not x5t_s256 and certificate.x5t == x5t.rstrip("=")
            ):
                return certificate
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "clientId": self.client_id,
            "clientSecret": self.secret,
            "displayName": self.display_name,
            "servicePrincipalId": self.service_principal_id,
            "certificates": [{**c.summary(), "certificate": c.pem} for c in self.certificates],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> App:
        if not isinstance(data, dict):
            raise err.BadRequest("Each app must be a JSON object.")
        certificates = data.get("certificates") or []
        if not isinstance(certificates, list):
            raise err.BadRequest("certificates must be an array of PEM certificates.")
        app = cls(
            client_id=str(data.get("clientId") or uuid.uuid4()),
            secret=str(data.get("clientSecret") or secrets.token_urlsafe(30)),
            display_name=str(data.get("displayName") or "aadsync"),
            service_principal_id=str(data.get("servicePrincipalId") or uuid.uuid4()),
        )
        for certificate in certificates:
            app.add_certificate(certificate)
        return app


@dataclass
class DirectoryObject:
    kind: str
    seq: int
    props: dict[str, Any]

    @property
    def id(self) -> str:
        return self.props["id"]


@dataclass
class Deleted:
    obj: DirectoryObject
    member_of: list[str]
    members: list[str]


# Change-log operations. A restore is logged as CREATED: the object comes back in its full representation.
CREATED, UPDATED, REMOVED, MEMBER_ADDED, MEMBER_REMOVED = "c", "u", "r", "m+", "m-"


@dataclass(slots=True)
class Change:
    """One entry of a tenant's change log: what happened to a user or group at sequence number ``seq``."""

    seq: int
    kind: str
    object_id: str
    op: str
    names: tuple[str, ...] = ()
    member_id: str = ""
    member_kind: str = ""

    def to_list(self) -> list[Any]:
        return [self.seq, self.kind, self.object_id, self.op, list(self.names), self.member_id, self.member_kind]


@dataclass
class DeltaCursor:
    """What a delta state token carries.

    A ``$deltatoken`` names where the next round starts (``since``); a ``$skiptoken`` names a page inside a round:
    the round's window ``(since, until]`` of change sequence numbers (``since`` None: the initial round, every live
    object as of ``until``), and the position: ``after`` is the order key of the last object returned whole, or of the
    object being returned in member chunks when ``member_after`` (the last member sequence number returned) is set.
    """

    tenant: str
    kind: str
    select: list[str] | None
    members: bool
    since: int | None
    until: int | None = None
    after: int = 0
    member_after: int | None = None
    issued: float = 0.0
    epoch: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": self.tenant,
            "k": self.kind,
            "sel": self.select,
            "m": self.members,
            "s": self.since,
            "u": self.until,
            "a": self.after,
            "ma": self.member_after,
            "i": self.issued,
            "e": self.epoch,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeltaCursor:
        return cls(
            tenant=str(data["t"]),
            kind=str(data["k"]),
            select=None if data["sel"] is None else [str(n) for n in data["sel"]],
            members=bool(data["m"]),
            since=None if data["s"] is None else int(data["s"]),
            until=None if data["u"] is None else int(data["u"]),
            after=int(data["a"]),
            member_after=None if data["ma"] is None else int(data["ma"]),
            issued=float(data["i"]),
            epoch=int(data["e"]),
        )


@dataclass
class DeltaPage:
    """One page of a delta round: the items and either the next page's skiptoken or the round's deltatoken."""

    items: list[dict[str, Any]]
    select: list[str] | None
    skiptoken: str | None = None
    deltatoken: str | None = None


class Tenant:
    """One Entra tenant: organization facts, app registrations, directory objects and their links."""

    def __init__(
        self,
        lock: threading.RLock,
        *,
        tenant_id: str,
        name: str,
        display_name: str | None = None,
        verified_domains: Iterable[str] = (),
        apps: Iterable[App] = (),
        created: str | None = None,
    ) -> None:
        self._lock = lock
        self.id = tenant_id
        self.name = name
        self.initial_domain = f"{name}.onmicrosoft.com".lower()
        self.display_name = display_name or name
        domains = [self.initial_domain] + [d.lower() for d in verified_domains]
        self.verified_domains = list(dict.fromkeys(domains))
        self.apps = {app.client_id: app for app in apps}
        self.created = created or now_iso()
        self._seq = 0
        #: Tokens issued before the last ``tokens/revoke`` carry a lower epoch and are refused (not persisted).
        self.token_epoch = 0
        self._objects: dict[str, DirectoryObject] = {}
        # Indexes of the live objects, lower-cased, kept by _index/_unindex wherever _objects changes: uniqueness
        # checks and UPN lookups are O(1) instead of a scan of every object.
        self._by_upn: dict[str, str] = {}  # userPrincipalName -> user id
        self._by_proxy: dict[str, str] = {}  # proxyAddresses entry -> object id
        self._by_nickname: dict[str, set[str]] = {}  # mailNickname -> object ids (not unique in Entra)
        self._kind_counts: dict[str, int] = {}
        self._deleted: dict[str, Deleted] = {}
        self._members: dict[str, dict[str, int]] = {}  # group id -> {member id: link sequence number}
        self._owners: dict[str, dict[str, int]] = {}
        self._changes: list[Change] = []  # append-only, in sequence order: what delta queries report
        self.delta_epoch = 0  # bumped to invalidate every delta token issued so far
        self.delta_gone_epochs: set[int] = set()  # epochs whose tokens answer 410 Gone (restart) rather than 400
        self._order_cache: dict[str, tuple[int, list[tuple[int, str]]]] = {}
        self._delta_cache: dict[str, tuple[tuple[Any, ...], list[Any]]] = {}  # (seq it was counted at, live users)
        # What the state file lacks (EmulatorState.save writes only that): the ids of objects created, changed,
        # deleted or purged, the links added or removed as (members|owners, group id, member or owner id), and how
        # many change-log entries it holds. _stored: whether it holds this tenant's rows at all (False: write all).
        self._dirty_objects: set[str] = set()
        self._dirty_links: set[tuple[str, str, str]] = set()
        self._saved_changes = 0
        self._stored = False

    # ------------------------------------------------------------------------------------------- organization

    def organization(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "displayName": self.display_name,
            "createdDateTime": self.created,
            "onPremisesSyncEnabled": None,
            "onPremisesLastSyncDateTime": None,
            "tenantType": "AAD",
            "verifiedDomains": [
                {
                    "capabilities": "Email, OfficeCommunicationsOnline",
                    "isDefault": name == self.initial_domain,
                    "isInitial": name == self.initial_domain,
                    "name": name,
                    "type": "Managed",
                }
                for name in self.verified_domains
            ],
        }

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "id": self.id,
                "name": self.name,
                "displayName": self.display_name,
                "initialDomain": self.initial_domain,
                "verifiedDomains": list(self.verified_domains),
                "apps": [app.to_dict() for app in self.apps.values()],
                "counts": {
                    "users": self._kind_counts.get(USER, 0),
                    "groups": self._kind_counts.get(GROUP, 0),
                    "contacts": self._kind_counts.get(CONTACT, 0),
                    "deletedItems": len(self._deleted),
                },
            }

    # ------------------------------------------------------------------------------------------- app registrations

    def add_app(self, spec: Any) -> App:
        """Register another app (``{"clientId"?, "clientSecret"?, "displayName"?, "certificates"?: [PEM]}``)."""
        app = App.from_dict(spec if spec is not None else {})
        with self._lock:
            if app.client_id in self.apps:
                raise err.GraphError(409, "Conflict", f"App '{app.client_id}' already exists in the tenant.")
            self.apps[app.client_id] = app
            return app

    def app(self, client_id: str) -> App:
        with self._lock:
            app = self.apps.get(client_id)
            if app is None:
                raise err.ResourceNotFound(client_id)
            return app

    def add_app_certificate(self, client_id: str, certificate: Any) -> AppCertificate:
        """Add a certificate credential (PEM, or ``{"certificate": PEM}``) to an app; idempotent by thumbprint."""
        with self._lock:
            return self.app(client_id).add_certificate(certificate)

    def remove_app_certificate(self, client_id: str, thumbprint: str) -> None:
        with self._lock:
            app = self.app(client_id)
            kept = [c for c in app.certificates if thumbprint.upper() not in (c.thumbprint, c.thumbprint_sha256)]
            if len(kept) == len(app.certificates):
                raise err.ResourceNotFound(thumbprint)
            app.certificates = kept

    # ------------------------------------------------------------------------------------------- lookups

    def _index(self, obj: DirectoryObject) -> None:
        """Add a live object to the indexes (after it joined ``_objects`` or its properties changed)."""
        self._dirty_objects.add(obj.id)
        if obj.kind == USER:
            self._by_upn[obj.props["userPrincipalName"].lower()] = obj.id
        for proxy in obj.props.get("proxyAddresses") or []:
            self._by_proxy[proxy.lower()] = obj.id
        if obj.props.get("mailNickname"):
            self._by_nickname.setdefault(obj.props["mailNickname"].lower(), set()).add(obj.id)
        self._kind_counts[obj.kind] = self._kind_counts.get(obj.kind, 0) + 1

    def _unindex(self, obj: DirectoryObject) -> None:
        """Remove a live object from the indexes (before it leaves ``_objects`` or its properties change)."""
        self._dirty_objects.add(obj.id)
        if obj.kind == USER and self._by_upn.get(obj.props["userPrincipalName"].lower()) == obj.id:
            del self._by_upn[obj.props["userPrincipalName"].lower()]
        for proxy in obj.props.get("proxyAddresses") or []:
            if self._by_proxy.get(proxy.lower()) == obj.id:
                del self._by_proxy[proxy.lower()]
        if obj.props.get("mailNickname"):
            holders = self._by_nickname.get(obj.props["mailNickname"].lower())
            if holders is not None:
                holders.discard(obj.id)
                if not holders:
                    del self._by_nickname[obj.props["mailNickname"].lower()]
        self._kind_counts[obj.kind] -= 1

    def with_mail_nickname(self, nickname: str) -> list[str]:
        """Ids of the live objects with this ``mailNickname`` (case-insensitive), from the index."""
        with self._lock:
            return sorted(self._by_nickname.get(nickname.lower(), ()))

    def _find(self, kind: str | None, key: str) -> DirectoryObject:
        obj = self._objects.get(key) or self._objects.get(key.lower())
        if obj is None and kind == USER and "@" in key:
            found = self._by_upn.get(key.lower())
            obj = self._objects.get(found) if found else None
        if obj is None or (kind is not None and obj.kind != kind):
            raise err.ResourceNotFound(key)
        return obj

    def get(self, kind: str | None, key: str) -> tuple[str, dict[str, Any]]:
        """``(kind, properties copy)`` of a live object by id (or UPN for users); 404 otherwise."""
        with self._lock:
            obj = self._find(kind, key)
            return obj.kind, dict(obj.props)

    def list(self, kind: str, predicate: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        """Live objects of *kind* in creation order, each a copy with ``_seq`` (the paging cursor) added."""
        with self._lock:
            return [
                {**o.props, "_seq": o.seq}
                for o in self._objects.values()
                if o.kind == kind and (predicate is None or predicate(o.props))
            ]

    def members(self, group_id: str) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            group = self._find(GROUP, group_id)
            out = []
            for member_id, seq in self._members.get(group.id, {}).items():
                obj = self._objects[member_id]
                out.append((obj.kind, {**obj.props, "_seq": seq}))
            return out

    def deleted_items(self, kind: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return [
                (d.obj.kind, {**d.obj.props, "_seq": d.obj.seq})
                for d in self._deleted.values()
                if kind is None or d.obj.kind == kind
            ]

    def get_deleted(self, object_id: str) -> tuple[str, dict[str, Any]]:
        with self._lock:
            deleted = self._deleted.get(object_id.lower())
            if deleted is None:
                raise err.ResourceNotFound(object_id)
            return deleted.obj.kind, dict(deleted.obj.props)

    # ------------------------------------------------------------------------------------------- validation

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
        for name, value in body.items():
            if "@" in name:
                continue  # annotations (@odata.type) and binds (members@odata.bind) are handled by the caller
            access = props.get(name)
            if access is None:
                raise err.UnknownProperty(name)
            if access == "ro" and not admin:
                raise err.ReadOnlyProperty(name)
            if value is not None:
                if name in _COLLECTIONS and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                    raise err.InvalidPropertyValue(name, RESOURCE_NAMES[kind])
                if name in _BOOLEANS and not isinstance(value, bool):
                    raise err.InvalidPropertyValue(name, RESOURCE_NAMES[kind])
                if name in _OBJECTS and not isinstance(value, dict):
                    raise err.InvalidPropertyValue(name, RESOURCE_NAMES[kind])
                if (
                    name not in _COLLECTIONS | _BOOLEANS | _OBJECTS
                    and name != "onPremisesSyncEnabled"
                    and not isinstance(value, str)
                ):
                    raise err.InvalidPropertyValue(name, RESOURCE_NAMES[kind])
            out[name] = value
        return out

    def _check_user_values(self, values: dict[str, Any], *, exclude: str | None) -> None:
        if "mailNickname" in values and not _MAIL_NICKNAME.match(values["mailNickname"] or ""):
            raise err.InvalidPropertyValue("mailNickname", "User")
        if "userPrincipalName" in values:
            upn = values["userPrincipalName"] or ""
            local, at, domain = upn.rpartition("@")
            if not at or not _UPN_LOCAL.match(local) or not domain:
                raise err.InvalidPropertyValue("userPrincipalName", "User")
            if domain.lower() not in self.verified_domains:
                raise err.UnverifiedUpnDomain()
            if self._upn_taken(upn, exclude):
                raise err.ObjectConflict("userPrincipalName")
        if "passwordProfile" in values:
            profile = values["passwordProfile"]
            if not isinstance(profile, dict) or not isinstance(profile.get("password"), str) or not profile["password"]:
                raise err.InvalidPropertyValue("passwordProfile", "User")

    def _upn_taken(self, upn: str, exclude: str | None) -> bool:
        return self._by_upn.get(upn.lower(), exclude) != exclude

    def _nickname_taken(self, nickname: str, exclude: str | None) -> bool:
        """Whether another live object (user, group or contact) holds *nickname*. Checked for Microsoft 365 groups
        only: their mailNickname must be unique in the tenant; users and security groups may share one."""
        return any(holder != exclude for holder in self._by_nickname.get(nickname.lower(), ()))

    def _check_proxies(self, proxies: Iterable[str], exclude: str | None) -> None:
        if any(self._by_proxy.get(p.lower(), exclude) != exclude for p in proxies):
            raise err.ObjectConflict("proxyAddresses")

    def _check_synced(self, obj: DirectoryObject, changed: Iterable[str]) -> None:
        if obj.props.get("onPremisesSyncEnabled") and any(n not in _CLOUD_WRITABLE_ON_SYNCED for n in changed):
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

    # ------------------------------------------------------------------------------------------- writes

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _new(self, kind: str, props: dict[str, Any]) -> DirectoryObject:
        obj = DirectoryObject(kind, self._next_seq(), props)
        self._objects[obj.id] = obj
        self._index(obj)
        self._log(kind, obj.id, CREATED, seq=obj.seq)
        return obj

    def _log(
        self,
        kind: str,
        object_id: str,
        op: str,
        *,
        names: Iterable[str] = (),
        member: str = "",
        seq: int | None = None,
    ) -> int:
        """Append a change of a user or group (other kinds have no delta) and return its sequence number."""
        seq = self._next_seq() if seq is None else seq
        if kind in DELTA_KINDS:
            member_kind = ""
            if member:
                found = self._objects.get(member) or (self._deleted[member].obj if member in self._deleted else None)
                member_kind = found.kind if found else USER
            self._changes.append(Change(seq, kind, object_id, op, tuple(names), member, member_kind))
        return seq

    def _new_id(self, requested: Any) -> str:
        object_id = str(uuid.UUID(str(requested))) if requested else str(uuid.uuid4())
        if object_id in self._objects or object_id in self._deleted:
            raise err.ObjectConflict("id")
        return object_id

    def create_user(self, body: dict[str, Any], *, admin: bool = False) -> dict[str, Any]:
        with self._lock:
            values = self._check_body(USER, body, admin=admin)
            for name in _REQUIRED[USER]:
                if values.get(name) in (None, ""):
                    raise err.PropertyRequired(name)
            self._check_user_values(values, exclude=None)
            values.pop("passwordProfile", None)  # never stored: the emulator keeps no passwords
            proxies = values.get("proxyAddresses")
            if proxies is None:
                proxies = [f"SMTP:{values['mail']}"] if values.get("mail") else []
            self._check_proxies(proxies, None)
            object_id = self._new_id(values.pop("id", None))
            props = {name: None for name in _USER_PROPS if name != "passwordProfile"}
            props.update(
                businessPhones=[],
                imAddresses=[],
                otherMails=[],
                userType="Member",
                creationType=None,
                createdDateTime=now_iso(),
            )
            props.update(values)
            props.update(id=object_id, proxyAddresses=list(proxies))
            return dict(self._new(USER, props).props)

    def update_user(self, key: str, body: dict[str, Any]) -> None:
        with self._lock:
            obj = self._find(USER, key)
            values = self._check_body(USER, body, admin=False)
            self._check_synced(obj, values)
            for name in ("accountEnabled", "displayName", "mailNickname", "userPrincipalName"):
                if name in values and values[name] in (None, ""):
                    raise err.InvalidPropertyValue(name, "User")
            self._check_user_values(values, exclude=obj.id)
            values.pop("passwordProfile", None)
            if values.get("mail") and values["mail"] != obj.props.get("mail"):
                proxies = [p for p in obj.props["proxyAddresses"] if not p.startswith("SMTP:")]
                proxies.insert(0, f"SMTP:{values['mail']}")
                self._check_proxies(proxies, obj.id)
                values["proxyAddresses"] = proxies
            changed = [n for n, v in values.items() if obj.props.get(n) != v]
            self._unindex(obj)
            obj.props.update(values)
            self._index(obj)
            if changed:
                self._log(USER, obj.id, UPDATED, names=changed)

    def create_group(self, body: dict[str, Any], *, admin: bool = False) -> dict[str, Any]:
        with self._lock:
            values = self._check_body(GROUP, body, admin=admin)
            for name in _REQUIRED[GROUP]:
                if values.get(name) in (None, ""):
                    raise err.PropertyRequired(name)
            if not _MAIL_NICKNAME.match(values["mailNickname"]):
                raise err.InvalidPropertyValue("mailNickname", "Group")
            group_types = values.get("groupTypes") or []
            unified = any(t.lower() == "unified" for t in group_types)
            if values["mailEnabled"] and not unified and not admin:
                raise err.BadRequest(
                    "Only Microsoft 365 groups (groupTypes ['Unified']) can be mail-enabled here; "
                    "mail-enabled security groups and distribution lists cannot be created."
                )
            if not values["mailEnabled"] and unified:
                raise err.InvalidPropertyValue("mailEnabled", "Group")
            if unified and self._nickname_taken(values["mailNickname"], None):
                raise err.ObjectConflict("mailNickname")  # before the derived SMTP address could clash
            members, owners = self._bind_ids(body, admin=admin)
            object_id = self._new_id(values.pop("id", None))
            mail = f"{values['mailNickname']}@{self.initial_domain}" if unified else None
            proxies = values.get("proxyAddresses")
            if proxies is None:
                proxies = [f"SMTP:{mail}"] if mail else []
            self._check_proxies(proxies, None)
            props = {name: None for name in _GROUP_PROPS}
            props.update(
                createdDateTime=now_iso(),
                renewedDateTime=now_iso(),
                groupTypes=list(group_types),
                mail=mail,
                visibility="Public" if unified else None,
                securityIdentifier=security_identifier(object_id),
            )
            props.update(values)
            props.update(id=object_id, proxyAddresses=list(proxies))
            obj = self._new(GROUP, props)
            self._add_links(obj.id, self._members, members, "members")
            self._add_links(obj.id, self._owners, owners, "owners")
            return dict(obj.props)

    def update_group(self, key: str, body: dict[str, Any]) -> None:
        with self._lock:
            obj = self._find(GROUP, key)
            values = self._check_body(GROUP, body, admin=False)
            members, owners = self._bind_ids(body)
            self._check_synced(obj, list(values) + (["members"] if members or owners else []))
            if "mailNickname" in values and not _MAIL_NICKNAME.match(values["mailNickname"] or ""):
                raise err.InvalidPropertyValue("mailNickname", "Group")
            if (
                ("mailNickname" in values or "groupTypes" in values)
                and _is_unified({**obj.props, **values})
                and self._nickname_taken(values.get("mailNickname") or obj.props["mailNickname"], obj.id)
            ):
                raise err.ObjectConflict("mailNickname")
            self._add_links(obj.id, self._members, members, "members")
            self._add_links(obj.id, self._owners, owners, "owners")
            changed = [n for n, v in values.items() if obj.props.get(n) != v]
            self._unindex(obj)
            obj.props.update(values)
            self._index(obj)
            if changed:
                self._log(GROUP, obj.id, UPDATED, names=changed)

    def _add_links(self, group_id: str, table: dict[str, dict[str, int]], ids: list[str], prop: str) -> None:
        existing = table.setdefault(group_id, {})
        if len(set(ids)) != len(ids) or any(i in existing for i in ids):
            raise err.ReferenceAlreadyExists(prop)
        for object_id in ids:
            if prop == MEMBERS:
                existing[object_id] = self._log(GROUP, group_id, MEMBER_ADDED, member=object_id)
            else:
                existing[object_id] = self._next_seq()
            self._dirty_links.add((prop, group_id, object_id))

    def add_member(self, group_id: str, member_url: Any) -> None:
        with self._lock:
            group = self._find(GROUP, group_id)
            member_id = object_id_from_url(member_url).lower()
            if member_id not in self._objects:
                raise err.ResourceNotFound(member_id)
            self._check_synced(group, ["members"])
            self._add_links(group.id, self._members, [member_id], "members")

    def remove_member(self, group_id: str, member_id: str) -> None:
        with self._lock:
            group = self._find(GROUP, group_id)
            members = self._members.setdefault(group.id, {})
            if member_id.lower() not in members:
                raise err.ResourceNotFound(member_id)
            self._check_synced(group, ["members"])
            del members[member_id.lower()]
            self._dirty_links.add((MEMBERS, group.id, member_id.lower()))
            self._log(GROUP, group.id, MEMBER_REMOVED, member=member_id.lower())

    def delete(self, kind: str, key: str) -> None:
        """Users and Microsoft 365 groups go to deleted items (30 days in Entra); other groups are gone at once."""
        with self._lock:
            obj = self._find(kind, key)
            self._check_synced(obj, ["deleted"])
            member_of = [g for g, members in self._members.items() if obj.id in members]
            for g in member_of:
                del self._members[g][obj.id]
                self._log(GROUP, g, MEMBER_REMOVED, member=obj.id)
            owner_of = [g for g, owners in self._owners.items() if owners.pop(obj.id, None) is not None]
            members = list(self._members.pop(obj.id, {}))
            owners = list(self._owners.pop(obj.id, {}))
            self._dirty_links.update((MEMBERS, g, obj.id) for g in member_of)
            self._dirty_links.update((_OWNERS, g, obj.id) for g in owner_of)
            self._dirty_links.update((MEMBERS, obj.id, m) for m in members)
            self._dirty_links.update((_OWNERS, obj.id, m) for m in owners)
            self._unindex(obj)
            del self._objects[obj.id]
            soft = kind == USER or _is_unified(obj.props)
            if soft:
                obj.props["deletedDateTime"] = now_iso()
                if kind == USER:
                    obj.props["userPrincipalName"] = obj.id.replace("-", "") + obj.props["userPrincipalName"]
                self._deleted[obj.id] = Deleted(obj, member_of, members)
            self._log(kind, obj.id, REMOVED)

    def restore(self, object_id: str) -> tuple[str, dict[str, Any]]:
        with self._lock:
            deleted = self._deleted.get(object_id.lower())
            if deleted is None:
                raise err.ResourceNotFound(object_id)
            obj = deleted.obj
            if obj.kind == USER:
                upn = obj.props["userPrincipalName"][len(obj.id.replace("-", "")) :]
                if self._upn_taken(upn, obj.id):
                    raise err.ObjectConflict("userPrincipalName")
                obj.props["userPrincipalName"] = upn
            elif _is_unified(obj.props) and self._nickname_taken(obj.props["mailNickname"], obj.id):
                raise err.ObjectConflict("mailNickname")
            self._check_proxies(obj.props.get("proxyAddresses") or [], obj.id)
            obj.props["deletedDateTime"] = None
            del self._deleted[obj.id]
            self._objects[obj.id] = obj
            self._index(obj)
            self._log(obj.kind, obj.id, CREATED)
            for g in deleted.member_of:
                if g in self._members:
                    self._members[g][obj.id] = self._log(GROUP, g, MEMBER_ADDED, member=obj.id)
                    self._dirty_links.add((MEMBERS, g, obj.id))
            if obj.kind == GROUP:
                self._members[obj.id] = {
                    m: self._log(GROUP, obj.id, MEMBER_ADDED, member=m) for m in deleted.members if m in self._objects
                }
                self._dirty_links.update((MEMBERS, obj.id, m) for m in self._members[obj.id])
                self._owners.setdefault(obj.id, {})
            return obj.kind, dict(obj.props)

    def purge(self, object_id: str) -> None:
        with self._lock:
            deleted = self._deleted.pop(object_id.lower(), None)
            if deleted is None:
                raise err.ResourceNotFound(object_id)
            self._dirty_objects.add(deleted.obj.id)
            self._log(deleted.obj.kind, deleted.obj.id, REMOVED)

    def seed(self, body: dict[str, Any]) -> dict[str, Any]:
        """Admin-only create that may set read-only properties (synced objects, proxyAddresses, contacts)."""
        if not isinstance(body, dict):
            raise err.BadRequest("Each object to seed must be a JSON object with an '@odata.type'.")
        kind = {v.lstrip("#"): k for k, v in ODATA_TYPES.items()}.get(str(body.get("@odata.type", "")).lstrip("#"))
        if kind == USER:
            return self.create_user({"passwordProfile": {"password": secrets.token_urlsafe(12)}, **body}, admin=True)
        if kind == GROUP:
            return self.create_group(body, admin=True)
        if kind == CONTACT:
            with self._lock:
                values = self._check_body(CONTACT, body, admin=True)
                if not values.get("displayName"):
                    raise err.PropertyRequired("displayName")
                proxies = values.get("proxyAddresses") or ([f"SMTP:{values['mail']}"] if values.get("mail") else [])
                self._check_proxies(proxies, None)
                object_id = self._new_id(values.pop("id", None))
                props = {name: None for name in _CONTACT_PROPS}
                props.update(addresses=[], phones=[])
                props.update(values)
                props.update(id=object_id, proxyAddresses=list(proxies))
                return dict(self._new(CONTACT, props).props)
        raise err.BadRequest(
            "@odata.type must be #microsoft.graph.user, #microsoft.graph.group or #microsoft.graph.orgContact."
        )

    # ------------------------------------------------------------------------------------------- delta

    @property
    def seq(self) -> int:
        return self._seq

    def user_count(self) -> int:
        """Live users (the throttling tier of the tenant)."""
        with self._lock:
            return self._kind_counts.get(USER, 0)

    def _live_order(self, kind: str) -> list[tuple[int, str]]:
        """``(creation seq, id)`` of the live objects of *kind*, sorted; cached until the next change."""
        cached = self._order_cache.get(kind)
        if cached is None or cached[0] != self._seq:
            order = sorted((o.seq, o.id) for o in self._objects.values() if o.kind == kind)
            cached = self._order_cache[kind] = (self._seq, order)
        return cached[1]

    def _render(self, obj: DirectoryObject, cur: DeltaCursor, names: Iterable[str] | None) -> dict[str, Any]:
        """The tracked properties of *obj* (only *names* of them when given) plus ``id``."""
        if names is None:
            wanted = [*cur.select, "id"] if cur.select else list(DEFAULT_SELECT[obj.kind])
        else:
            tracked = set(cur.select or PROPERTIES[obj.kind])
            wanted = [n for n in (cur.select or PROPERTIES[obj.kind]) if n in set(names) & tracked] + ["id"]
        out: dict[str, Any] = {}
        for name in wanted:
            if name not in out and name != "passwordProfile":
                out[name] = obj.props.get(name)
        return out

    def _current_members(self, group_id: str, until: int) -> list[tuple[int, str, str, bool]]:
        """``(link seq, kind, id, removed=False)`` of a group's members linked by *until*, in link order; cached."""
        cache_key = ("members", group_id, until, self._seq)
        cached = self._delta_cache.get("members")
        if cached is None or cached[0] != cache_key:
            links = self._members.get(group_id, {})
            rows = sorted((seq, self._objects[m].kind, m, False) for m, seq in links.items() if seq <= until)
            cached = self._delta_cache["members"] = (cache_key, rows)
        return cached[1]

    def _window(self, cur: DeltaCursor) -> list[tuple[int, str, dict[str, Any]]]:
        """``(order key, object id, summary)`` of the objects of the cursor's kind changed in ``(since, until]``.

        The log up to *until* never changes, so the last window of each kind is cached for the following pages.
        """
        assert cur.since is not None and cur.until is not None
        cache_key = ("window", cur.kind, cur.since, cur.until)
        cached = self._delta_cache.get(cur.kind)
        if cached is not None and cached[0] == cache_key:
            return cached[1]
        lo = bisect.bisect_right(self._changes, cur.since, key=lambda c: c.seq)
        hi = bisect.bisect_right(self._changes, cur.until, key=lambda c: c.seq)
        found: dict[str, dict[str, Any]] = {}
        for change in self._changes[lo:hi]:
            if change.kind != cur.kind:
                continue
            summary = found.setdefault(
                change.object_id, {"key": change.seq, "created": False, "names": set(), "members": {}}
            )
            if change.op == CREATED:
                summary["created"] = True
            elif change.op == UPDATED:
                summary["names"].update(change.names)
            elif change.op in (MEMBER_ADDED, MEMBER_REMOVED):
                summary["members"].pop(change.member_id, None)
                summary["members"][change.member_id] = (
                    change.seq,
                    change.member_kind,
                    change.member_id,
                    change.op == MEMBER_REMOVED,
                )
        for summary in found.values():
            summary["rows"] = sorted(summary.pop("members").values())
        entries = [(s["key"], object_id, s) for object_id, s in found.items()]
        self._delta_cache[cur.kind] = (cache_key, entries)
        return entries

    def delta_items(
        self, cur: DeltaCursor, *, page_size: int, per_item: int, minimal: bool
    ) -> tuple[list[dict[str, Any]], DeltaCursor | None]:
        """One page of the delta round *cur* and the cursor of the next page (None: the round is complete).

        A group whose ``members@delta`` exceed *per_item* is returned in chunks: the page ends after each partial
        chunk and the next page repeats the group with the following members, as Graph does.
        """
        with self._lock:
            assert cur.until is not None
            entries: list[tuple[int, str]] | list[tuple[int, str, dict[str, Any]]]
            entries = self._live_order(cur.kind) if cur.since is None else self._window(cur)
            end = len(entries)
            if cur.since is None:
                end = bisect.bisect_right(entries, cur.until, key=lambda e: e[0])
            find = bisect.bisect_right if cur.member_after is None else bisect.bisect_left
            index = find(entries, cur.after, 0, end, key=lambda e: e[0])
            items: list[dict[str, Any]] = []
            while index < end and len(items) < page_size:
                entry = entries[index]
                key, object_id = entry[0], entry[1]
                summary = entry[2] if len(entry) == 3 else None
                resume = cur.member_after if cur.member_after is not None and key == cur.after else None
                index += 1
                item, members = self._delta_item(cur, object_id, summary, minimal=minimal)
                if item is None:
                    continue
                if members is None:
                    items.append(item)
                    continue
                start = 0 if resume is None else bisect.bisect_right(members, resume, key=lambda m: m[0])
                chunk = members[start : start + per_item]
                if chunk:
                    item["members@delta"] = [
                        {
                            "@odata.type": ODATA_TYPES[mkind],
                            "id": mid,
                            **({"@removed": {"reason": "deleted"}} if gone else {}),
                        }
                        for _, mkind, mid, gone in chunk
                    ]
                if resume is not None and not chunk:
                    continue  # the rest of the members went away between pages
                items.append(item)
                if len(members) > start + per_item:
                    nxt = DeltaCursor(**{**cur.__dict__, "after": key, "member_after": chunk[-1][0]})
                    return items, nxt
            if index >= end:
                return items, None
            last_key = entries[index - 1][0]
            return items, DeltaCursor(**{**cur.__dict__, "after": last_key, "member_after": None})

    def _delta_item(
        self, cur: DeltaCursor, object_id: str, summary: dict[str, Any] | None, *, minimal: bool
    ) -> tuple[dict[str, Any] | None, list[tuple[int, str, str, bool]] | None]:
        """An object's delta representation and, for groups tracking members, its member rows (or None)."""
        assert cur.until is not None
        obj = self._objects.get(object_id)
        if obj is None:
            if summary is None:
                return None, None  # gone since the round began: the next round reports it
            reason = "changed" if object_id in self._deleted else "deleted"
            return {"id": object_id, "@removed": {"reason": reason}}, None
        tracks_members = cur.kind == GROUP and cur.members
        if summary is None or summary["created"]:
            item = self._render(obj, cur, None)
            return item, self._current_members(obj.id, cur.until) if tracks_members else None
        tracked = set(cur.select or PROPERTIES[obj.kind])
        changed = summary["names"] & tracked
        member_rows = summary["rows"] if tracks_members else []
        if not changed and not member_rows:
            return None, None  # only untracked properties changed
        item = self._render(obj, cur, changed if minimal else None)
        return item, member_rows if tracks_members else None

    # ------------------------------------------------------------------------------------------- persistence

    def _header(self) -> dict[str, Any]:
        """The tenant's own facts and app registrations (with their secrets), without its objects."""
        return {
            "id": self.id,
            "name": self.name,
            "displayName": self.display_name,
            "verifiedDomains": self.verified_domains[1:],
            "created": self.created,
            "apps": [a.to_dict() for a in self.apps.values()],
            "seq": self._seq,
            "deltaEpoch": self.delta_epoch,
            "deltaGoneEpochs": sorted(self.delta_gone_epochs),
        }

    @classmethod
    def _from_header(cls, lock: threading.RLock, data: dict[str, Any]) -> Tenant:
        tenant = cls(
            lock,
            tenant_id=data["id"],
            name=data["name"],
            display_name=data.get("displayName"),
            verified_domains=data.get("verifiedDomains", []),
            apps=[App.from_dict(a) for a in data.get("apps", [])],
            created=data.get("created"),
        )
        tenant._seq = data.get("seq", 0)
        tenant.delta_epoch = int(data.get("deltaEpoch", 0))
        tenant.delta_gone_epochs = {int(e) for e in data.get("deltaGoneEpochs", [])}
        return tenant

    def to_dict(self) -> dict[str, Any]:
        """The whole tenant as one JSON-able dict (a copy for tests and tools; the state file has rows)."""
        with self._lock:
            return {
                **self._header(),
                "objects": [{"kind": o.kind, "seq": o.seq, "props": o.props} for o in self._objects.values()],
                "deleted": [
                    {
                        "kind": d.obj.kind,
                        "seq": d.obj.seq,
                        "props": d.obj.props,
                        "memberOf": d.member_of,
                        "members": d.members,
                    }
                    for d in self._deleted.values()
                ],
                "members": {g: dict(m) for g, m in self._members.items()},
                "owners": {g: dict(m) for g, m in self._owners.items()},
                "changes": [c.to_list() for c in self._changes],
            }

    def _object_row(self, object_id: str) -> tuple[Any, ...] | None:
        """The ``objects`` row of a live or deleted object; None when it is gone (purged, or a hard-deleted group)."""
        obj = self._objects.get(object_id)
        if obj is not None:
            return (self.id, obj.id, obj.kind, obj.seq, 0, _dumps(obj.props), None, None)
        deleted = self._deleted.get(object_id)
        if deleted is None:
            return None
        obj = deleted.obj
        return (self.id, obj.id, obj.kind, obj.seq, 1, _dumps(obj.props), _dumps(deleted.member_of),
                _dumps(deleted.members))  # fmt: skip

    def _write_rows(self, db: sqlite3.Connection, *, full: bool) -> None:
        """Write the tenant's rows into *db* inside the caller's transaction: every row (*full*: the tables hold
        none of this tenant's), else only what changed since the last write. ``_saved`` after the commit."""
        if full:
            object_rows: Iterable[tuple[Any, ...] | None] = map(self._object_row, [*self._objects, *self._deleted])
            links: Iterable[tuple[Any, ...]] = (
                (self.id, g, m, rel, seq)
                for rel, table in ((MEMBERS, self._members), (_OWNERS, self._owners))
                for g, linked in table.items()
                for m, seq in linked.items()
            )
            changes = self._changes
        else:
            ids = list(self._dirty_objects)
            object_rows = [self._object_row(i) for i in ids]
            gone = [(self.id, i) for i, row in zip(ids, object_rows, strict=True) if row is None]
            db.executemany("DELETE FROM objects WHERE tenant = ? AND id = ?", gone)
            tables = {MEMBERS: self._members, _OWNERS: self._owners}
            links, unlinked = [], []
            for rel, g, m in self._dirty_links:
                seq = tables[rel].get(g, {}).get(m)
                if seq is None:
                    unlinked.append((self.id, g, m, rel))
                else:
                    links.append((self.id, g, m, rel, seq))
            db.executemany(
                "DELETE FROM links WHERE tenant = ? AND group_id = ? AND member_id = ? AND rel = ?", unlinked
            )
            changes = self._changes[self._saved_changes :]
        db.executemany(
            "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (r for r in object_rows if r is not None)
        )
        db.executemany("INSERT OR REPLACE INTO links VALUES (?, ?, ?, ?, ?)", links)
        db.executemany(
            "INSERT INTO changes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ((self.id, c.seq, c.kind, c.object_id, c.op, ",".join(c.names), c.member_id, c.member_kind)
             for c in changes),
        )  # fmt: skip

    def _saved(self) -> None:
        """The state file now holds every row of the tenant (its transaction committed)."""
        self._dirty_objects.clear()
        self._dirty_links.clear()
        self._saved_changes = len(self._changes)
        self._stored = True

    @classmethod
    def _load(cls, lock: threading.RLock, db: sqlite3.Connection, header: dict[str, Any]) -> Tenant:
        """A tenant from its header and its rows in the state file *db*."""
        tenant = cls._from_header(lock, header)
        rows = db.execute(
            "SELECT id, kind, seq, deleted, props, member_of, members FROM objects WHERE tenant = ? ORDER BY seq",
            (tenant.id,),
        ).fetchall()
        # One JSON text for all: decoded in one call, the objects share their property-name strings.
        every_props = json.loads("[" + ",".join(row[4] for row in rows) + "]")
        for (object_id, kind, seq, deleted, _, member_of, members), props in zip(rows, every_props, strict=True):
            obj = DirectoryObject(kind, seq, props)
            if deleted:
                tenant._deleted[object_id] = Deleted(obj, json.loads(member_of), json.loads(members))
            else:
                tenant._objects[object_id] = obj
                tenant._index(obj)
                if kind == GROUP:  # every live group has both link tables, empty or not
                    tenant._members[object_id] = {}
                    tenant._owners[object_id] = {}
        tables = {MEMBERS: tenant._members, _OWNERS: tenant._owners}
        links = db.execute(
            "SELECT rel, group_id, member_id, seq FROM links WHERE tenant = ? ORDER BY seq", (tenant.id,)
        )
        for rel, group_id, member_id, seq in links:
            tables[rel].setdefault(group_id, {})[member_id] = seq
        changes = db.execute(
            "SELECT seq, kind, object_id, op, names, member_id, member_kind FROM changes WHERE tenant = ? ORDER BY seq",
            (tenant.id,),
        )
        tenant._changes = [
            Change(seq, kind, object_id, op, tuple(names.split(",")) if names else (), member_id, member_kind)
            for seq, kind, object_id, op, names, member_id, member_kind in changes
        ]
        tenant._saved()
        return tenant


class _Window:
    """A sliding window of charged units: ``(time, units)`` entries and their running total."""

    def __init__(self) -> None:
        self.entries: deque[tuple[float, int]] = deque()
        self.used = 0

    def wait(self, now: float, window: float, cap: int, cost: int) -> float:
        """0.0 if *cost* more units fit under *cap* now, else the seconds until enough entries leave the window."""
        while self.entries and self.entries[0][0] <= now - window:
            self.used -= self.entries.popleft()[1]
        excess = self.used + cost - cap
        if excess <= 0:
            return 0.0
        for stamp, spent in self.entries:
            excess -= spent
            if excess <= 0:
                return max(stamp + window - now, 0.001)
        return window  # more than the cap in one request: it never fits; answer a full window

    def charge(self, now: float, cost: int) -> None:
        self.entries.append((now, cost))
        self.used += cost


def _is_unified(props: dict[str, Any]) -> bool:
    """Whether a group's properties make it a Microsoft 365 group (``groupTypes`` holds ``Unified``)."""
    return any(str(t).lower() == "unified" for t in props.get("groupTypes") or [])


_dumps = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def request_cost(method: str, path: str, params: dict[str, str]) -> tuple[int, int]:
    """``(resource units, write units)`` of a Graph request, after the identity-and-access cost table."""
    method = method.upper()
    parts = [p for p in path.split("/") if p][1:]  # without the version segment
    base = 1
    if method == "GET" and parts in (["users"], ["applications"], ["oauth2PermissionGrants"]):
        base = 2
    elif method == "GET" and len(parts) == 3 and parts[0] == "groups" and parts[2] == "members":
        base = 3
    cost = base
    if "$select" in params:
        cost -= 1
    if "$expand" in params:
        cost += 1
    top = params.get("$top", "")
    if top.isdigit() and int(top) < 20:
        cost -= 1
    return max(cost, 1), 1 if method in ("POST", "PATCH", "PUT", "DELETE") else 0


class EmulatorState:
    """Every tenant, the settings and the request counters, behind one re-entrant lock; in memory, or persisted to a
    SQLite file (``state_file``; see :meth:`save`).

    Also the service-wide behaviours: delta state tokens (signed, so clients cannot forge them), throttling and
    fault injection (both off by default). ``clock`` is the time source of all three; tests may replace it.
    """

    def __init__(self, *, state_file: Path | None = None, token_lifetime: int = DEFAULT_TOKEN_LIFETIME) -> None:
        self.lock = threading.RLock()
        self.state_file = Path(state_file) if state_file else None
        self.clock: Callable[[], float] = time.time
        self.settings: dict[str, Any] = {name: spec[0] for name, spec in SETTINGS.items()}
        self.token_lifetime = token_lifetime
        self.delta_key = secrets.token_bytes(32)
        self.random = random.Random()
        self._windows: dict[tuple[str, ...], _Window] = {}
        self.tenants: dict[str, Tenant] = {}
        self.counters: dict[str, Any] = {}
        self.reset_counters()
        self._last_save = 0.0
        self._save_cost = 0.0
        self._save_timer: threading.Timer | None = None
        self._file_generation: str | None = None  # the state file's generation that the tenants' dirty sets track
        self._dropped_tenants: set[str] = set()  # deleted since the last save: their rows leave the file
        if self.state_file and self.state_file.exists():
            self.load()

    @property
    def token_lifetime(self) -> int:
        return int(self.settings["tokenLifetimeSeconds"])

    @token_lifetime.setter
    def token_lifetime(self, value: int) -> None:
        self.settings["tokenLifetimeSeconds"] = int(value)

    # ------------------------------------------------------------------------------------------- settings

    def settings_snapshot(self) -> dict[str, Any]:
        with self.lock:
            return dict(self.settings)

    def update_settings(self, body: Any) -> dict[str, Any]:
        """Validate and apply a partial settings object (all or nothing; ``null`` restores a default); answer the
        new values of the settings it named."""
        if not isinstance(body, dict):
            raise err.BadRequest("A JSON object is expected.")
        updates: dict[str, Any] = {}
        for name, value in body.items():
            if name not in SETTINGS:
                raise err.BadRequest(f"Unknown setting '{name}'; known: {', '.join(SETTINGS)}.")
            default, low, high, kind = SETTINGS[name]
            if value is None:
                updates[name] = default
                continue
            if kind is str:
                if not isinstance(value, str) or not value:
                    raise err.BadRequest(f"{name} must be a non-empty string.")
                if name == "faultMalformed" and value not in MALFORMED_KINDS:
                    raise err.BadRequest(f"faultMalformed must be one of {', '.join(MALFORMED_KINDS)}.")
            elif kind is bool:
                if not isinstance(value, bool):
                    raise err.BadRequest(f"{name} must be true or false.")
            elif (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or (kind is int and not isinstance(value, int))
                or value < low
                or (high is not None and value > high)
            ):
                bounds = f"at least {low}" + (f" and at most {high}" if high is not None else "")
                raise err.BadRequest(f"{name} must be {'an integer' if kind is int else 'a number'} {bounds}.")
            updates[name] = value
        with self.lock:
            self.settings.update(updates)
            if "randomSeed" in updates:
                self.random = random.Random(updates["randomSeed"])
            return {name: self.settings[name] for name in updates}

    # ------------------------------------------------------------------------------------------- delta

    def encode_delta(self, cursor: DeltaCursor) -> str:
        payload = json.dumps(cursor.to_dict(), separators=(",", ":")).encode()
        signature = hmac.new(self.delta_key, payload, hashlib.sha256).digest()[:18]
        return f"{_b64(payload)}.{_b64(signature)}"

    def decode_delta(self, token: str, tenant: Tenant, kind: str) -> DeltaCursor:
        """The cursor a state token carries; ``syncStateNotFound`` when forged, foreign, revoked or expired."""
        try:
            payload_text, _, signature_text = token.partition(".")
            payload = _unb64(payload_text)
            expected = hmac.new(self.delta_key, payload, hashlib.sha256).digest()[:18]
            if not hmac.compare_digest(expected, _unb64(signature_text)):
                raise ValueError("bad signature")
            cursor = DeltaCursor.from_dict(json.loads(payload))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise err.SyncStateNotFound() from None
        lifetime = self.settings["deltaTokenLifetimeSeconds"]
        if cursor.tenant == tenant.id and cursor.kind == kind and cursor.epoch in tenant.delta_gone_epochs:
            raise err.SyncStateGone(cursor.select, cursor.members)
        if (
            cursor.tenant != tenant.id
            or cursor.kind != kind
            or cursor.epoch != tenant.delta_epoch
            or self.clock() - cursor.issued >= lifetime
            or max(cursor.since or 0, cursor.until or 0) > tenant.seq
        ):
            raise err.SyncStateNotFound()
        return cursor

    def delta(self, tenant: Tenant, kind: str, params: dict[str, str], *, minimal: bool) -> DeltaPage:
        """One page of ``GET /{users|groups}/delta`` for *params* (``$select``, ``$expand=members``, tokens)."""
        for name in params:
            if name.startswith("$") and name.lower() not in ("$select", "$expand", "$top", "$skiptoken", "$deltatoken"):
                raise err.UnsupportedQuery(f"The query option '{name}' is not supported with delta queries.")
        with self.lock:
            now = self.clock()
            skiptoken = params.get("$skiptoken")
            deltatoken = params.get("$deltatoken")
            if skiptoken:
                cursor = self.decode_delta(skiptoken, tenant, kind)
                if cursor.until is None:
                    raise err.SyncStateNotFound()
            else:
                select, members = self._delta_select(kind, params)
                if deltatoken and deltatoken.lower() != "latest":
                    cursor = self.decode_delta(deltatoken, tenant, kind)
                    if cursor.until is not None:
                        raise err.SyncStateNotFound()  # a skiptoken passed as a deltatoken
                    if "$select" in params or "$expand" in params:
                        cursor.select, cursor.members = select, members
                else:
                    since = tenant.seq if deltatoken else None
                    cursor = DeltaCursor(tenant.id, kind, select, members, since, epoch=tenant.delta_epoch)
                if deltatoken and deltatoken.lower() == "latest":
                    cursor.issued = now
                    return DeltaPage([], cursor.select, deltatoken=self.encode_delta(cursor))
                cursor.until = tenant.seq
                cursor.after, cursor.member_after = 0, None
            items, following = tenant.delta_items(
                cursor,
                page_size=int(self.settings["deltaPageSize"]),
                per_item=int(self.settings["deltaMembersPerItem"]),
                minimal=minimal,
            )
            if following is not None:
                following.issued = now
                return DeltaPage(items, cursor.select, skiptoken=self.encode_delta(following))
            done = DeltaCursor(tenant.id, kind, cursor.select, cursor.members, cursor.until, issued=now)
            done.epoch = tenant.delta_epoch
            return DeltaPage(items, cursor.select, deltatoken=self.encode_delta(done))

    @staticmethod
    def _delta_select(kind: str, params: dict[str, str]) -> tuple[list[str] | None, bool]:
        """The tracked properties (None: all, default set returned) and whether group members are tracked."""
        expand = [e.strip().lower() for e in params.get("$expand", "").split(",") if e.strip()]
        if any(e != MEMBERS for e in expand) or (expand and kind != GROUP):
            raise err.UnsupportedQuery("Only $expand=members is supported with group delta queries.")
        select: list[str] | None = None
        members = kind == GROUP and not params.get("$select")
        if params.get("$select"):
            select = []
            for raw in params["$select"].split(","):
                name = raw.strip()
                if kind == GROUP and name.lower() == MEMBERS:
                    members = True
                    continue
                match = next(
                    (p for p in PROPERTIES[kind] if p.lower() == name.lower() and p != "passwordProfile"), None
                )
                if match is None:
                    raise err.ODataBadRequest(
                        "Parsing OData Select and Expand failed: Could not find a property named "
                        f"'{name}' on type 'microsoft.graph.{kind}'."
                    )
                if match not in select:
                    select.append(match)
            select = [n for n in select if n != "id"] or ["id"]
        return select, members or bool(expand)

    def expire_delta_tokens(self, tenant: Tenant, *, gone: bool = False) -> None:
        """Revoke every delta and skip token issued so far for *tenant*: the next use answers ``400
        syncStateNotFound``, or with *gone* ``410 Gone`` with a ``Location`` to restart the sync from."""
        with self.lock:
            if gone:
                tenant.delta_gone_epochs.add(tenant.delta_epoch)
            tenant.delta_epoch += 1

    # ------------------------------------------------------------------------------------------- throttling, faults

    def throttle(self, tenant: Tenant, app_id: str, method: str, path: str, params: dict[str, str]) -> None:
        """Charge a request to the tenant's limits; raise ``TooManyRequests`` (429, Retry-After) when over one."""
        with self.lock:
            settings = self.settings
            if not settings["throttlingEnabled"]:
                return
            now = self.clock()
            units, writes = request_cost(method, path, params)
            limit = settings["throttleResourceUnits"]
            if limit is None:
                users = tenant.user_count()
                limit = 3500 if users < 50 else 5000 if users <= 500 else 8000
            checks = [(("ru", tenant.id, app_id), limit, settings["throttleResourceWindowSeconds"], units)]
            if writes:
                checks.append(
                    (
                        ("w", tenant.id, app_id),
                        settings["throttleAppWrites"],
                        settings["throttleAppWriteWindowSeconds"],
                        writes,
                    )
                )
                checks.append(
                    (
                        ("w", tenant.id),
                        settings["throttleTenantWrites"],
                        settings["throttleTenantWriteWindowSeconds"],
                        writes,
                    )
                )
            waits = [
                self._windows.setdefault(key, _Window()).wait(now, window, cap, cost)
                for key, cap, window, cost in checks
            ]
            if any(waits):
                raise err.TooManyRequests(max(1, math.ceil(max(waits))))
            for key, _, _, cost in checks:
                self._windows[key].charge(now, cost)

    def fault(self) -> tuple[float, err.GraphError | None]:
        """The injected latency (seconds) and, by ``faultNext429``, ``faultRatio429`` and ``faultRatio5xx``, a 429 or
        503 to answer instead (all with ``faultRetryAfterSeconds``); the ratios' dice are seeded when set."""
        with self.lock:
            latency = self.settings["latencyMs"] / 1000
            retry_after = int(self.settings["faultRetryAfterSeconds"])
            if self.settings["faultNext429"]:  # certain, for tests that must see a 429 however slow the machine
                self.settings["faultNext429"] -= 1
                return latency, err.TooManyRequests(retry_after)
            ratio = self.settings["faultRatio429"]
            if ratio and self.random.random() < ratio:
                return latency, err.TooManyRequests(retry_after)
            ratio = self.settings["faultRatio5xx"]
            if ratio and self.random.random() < ratio:
                return latency, err.ServiceUnavailable(retry_after)
            return latency, None

    def malformed(self, path: str) -> str | None:
        """How to break the answer to a Graph request on ``path`` (``faultMalformed``), or None."""
        with self.lock:
            kind, where = self.settings["faultMalformed"], self.settings["faultMalformedPath"]
            return kind if kind and (not where or where in path) else None

    def drop_connection(self) -> bool:
        """Whether to cut this Graph request's connection after processing it, by ``faultDropRatio``; seeded."""
        with self.lock:
            ratio = self.settings["faultDropRatio"]
            return bool(ratio) and self.random.random() < ratio

    # ------------------------------------------------------------------------------------------- tenants

    def create_tenant(self, spec: dict[str, Any]) -> Tenant:
        if not isinstance(spec, dict):
            raise err.BadRequest("A JSON object is expected.")
        tenant_id = str(uuid.UUID(str(spec["id"]))) if spec.get("id") else str(uuid.uuid4())
        name = str(spec.get("name") or f"tenant{tenant_id[:8]}").lower()
        if not re.fullmatch(r"[a-z0-9]{1,27}", name):
            raise err.BadRequest("name must be 1-27 letters or digits (it becomes <name>.onmicrosoft.com).")
        apps = [App.from_dict(a) for a in spec.get("apps") or [{}]]
        with self.lock:
            if tenant_id in self.tenants or any(t.name == name for t in self.tenants.values()):
                raise err.GraphError(409, "Conflict", f"Tenant '{tenant_id}' or name '{name}' already exists.")
            tenant = Tenant(
                self.lock,
                tenant_id=tenant_id,
                name=name,
                display_name=spec.get("displayName"),
                verified_domains=spec.get("verifiedDomains") or [],
                apps=apps,
            )
            self.tenants[tenant_id] = tenant
            return tenant

    def find_tenant(self, key: str) -> Tenant | None:
        """A tenant by id or by one of its verified domain names (as the identity platform accepts both)."""
        with self.lock:
            wanted = key.lower()
            if wanted in self.tenants:
                return self.tenants[wanted]
            return next((t for t in self.tenants.values() if wanted in t.verified_domains), None)

    def delete_tenant(self, tenant_id: str) -> None:
        with self.lock:
            if self.tenants.pop(tenant_id.lower(), None) is None:
                raise err.ResourceNotFound(tenant_id)
            self._dropped_tenants.add(tenant_id.lower())

    def reset(self) -> None:
        with self.lock:
            self.tenants.clear()
            self._file_generation = None  # the next save writes a new file
            self.settings = {name: spec[0] for name, spec in SETTINGS.items()}
            self.random = random.Random()
            self._windows.clear()
            self.reset_counters()

    # ------------------------------------------------------------------------------------------- counters

    def reset_counters(self) -> None:
        with self.lock:
            self.counters = {"total": 0, "requests": {}, "status": {}, "4xx": 0, "5xx": 0, "429": 0, "batchItems": 0}

    def count(self, method: str, route: str, status: int) -> None:
        with self.lock:
            key = f"{method} {route}"
            self.counters["total"] += 1
            self.counters["requests"][key] = self.counters["requests"].get(key, 0) + 1
            self.counters["status"][str(status)] = self.counters["status"].get(str(status), 0) + 1
            if status == 429:
                self.counters["429"] += 1
            if 400 <= status < 500:
                self.counters["4xx"] += 1
            elif status >= 500:
                self.counters["5xx"] += 1

    def count_batch_items(self, n: int) -> None:
        with self.lock:
            self.counters["batchItems"] += n

    def counters_snapshot(self) -> dict[str, Any]:
        with self.lock:
            return json.loads(json.dumps(self.counters))

    # ------------------------------------------------------------------------------------------- persistence

    def save_soon(self) -> None:
        """Persist after a write, at most about once a second: writing the whole state after every request would
        make bulk writes (a 100,000-user export) quadratic. ``flush`` on shutdown writes what is pending."""
        if not self.state_file:
            return
        with self.lock:
            wait = self._last_save + max(1.0, 5 * self._save_cost) - time.monotonic()
            if wait <= 0:
                self.save()
            elif self._save_timer is None:
                self._save_timer = threading.Timer(wait, self.flush)
                self._save_timer.daemon = True
                self._save_timer.start()

    def flush(self) -> None:
        """Write pending state now (timer, shutdown)."""
        with self.lock:
            if self._save_timer is not None:
                self._save_timer.cancel()
                self._save_timer = None
                self.save()

    def save(self) -> None:
        """Write the state to the SQLite ``state_file`` (mode 0600: it holds the apps' secrets), crash-safe.

        One row per directory object (its properties as JSON text), group link and change-log entry, keyed by
        tenant; the settings, the delta-token key and each tenant's own facts are small and rewritten every time.
        The first save (or one after a reset, or when the file is not the one last written) builds a new file beside
        it and renames it over; later saves write only the rows that changed since, in one transaction.
        """
        if not self.state_file:
            return
        with self.lock:
            started = time.monotonic()
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            db = self._open_current()
            if db is None:
                self._write_new_file()
            else:
                with contextlib.closing(db):
                    self._write_changes(db)
            self._last_save = time.monotonic()
            self._save_cost = self._last_save - started

    def _open_current(self) -> sqlite3.Connection | None:
        """A connection to the state file if it is the one this state last wrote or loaded, else None."""
        assert self.state_file is not None
        if self._file_generation is None or not self.state_file.exists():
            return None
        db = sqlite3.connect(self.state_file, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA cache_size = {_CACHE_KIB}")
            row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        except sqlite3.DatabaseError:
            row = None
        if row is None or json.loads(row[0]) != self._file_generation:
            db.close()
            return None
        return db

    def _meta_rows(self, generation: str) -> list[tuple[str, str]]:
        meta = {
            "version": _STATE_VERSION,
            "generation": generation,
            "tokenLifetime": self.token_lifetime,
            "settings": self.settings,
            "deltaKey": self.delta_key.hex(),
        }
        return [(key, _dumps(value)) for key, value in meta.items()]

    def _write_tenant_headers(self, db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM tenants")
        db.executemany(
            "INSERT INTO tenants VALUES (?, ?, ?)",
            [(pos, t.id, _dumps(t._header())) for pos, t in enumerate(self.tenants.values())],
        )

    def _write_changes(self, db: sqlite3.Connection) -> None:
        """Update the current file in place, in one transaction: the rows that changed since the last save."""
        generation = self._file_generation
        assert generation is not None
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", self._meta_rows(generation))
            self._write_tenant_headers(db)
            fresh = [t for t in self.tenants.values() if not t._stored]
            for tenant_id in self._dropped_tenants | {t.id for t in fresh}:
                for table in ("objects", "links", "changes"):
                    db.execute(f"DELETE FROM {table} WHERE tenant = ?", (tenant_id,))  # noqa: S608 - fixed names
            for tenant in self.tenants.values():
                tenant._write_rows(db, full=not tenant._stored)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite rolls some failures (disk full, I/O errors) back by itself
                db.execute("ROLLBACK")
            raise
        self._saved_all(generation)

    def _write_new_file(self) -> None:
        """Build the whole state in a new file beside the state file, then rename it over (atomic)."""
        assert self.state_file is not None
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.unlink(missing_ok=True)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        generation = secrets.token_hex(8)
        try:
            with contextlib.closing(sqlite3.connect(tmp, isolation_level=None, check_same_thread=False)) as db:
                # A file nobody reads yet: no journal, no syncs; one fsync before the rename makes it durable.
                db.execute("PRAGMA journal_mode = OFF")
                db.execute("PRAGMA synchronous = OFF")
                db.execute(f"PRAGMA cache_size = {_CACHE_KIB}")
                db.executescript(_STATE_SCHEMA)
                db.execute("BEGIN")
                db.executemany("INSERT INTO meta VALUES (?, ?)", self._meta_rows(generation))
                self._write_tenant_headers(db)
                for tenant in self.tenants.values():
                    tenant._write_rows(db, full=True)
                db.execute("COMMIT")
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            # A journal left by a crash belongs to the file being replaced (opening it rolled the journal back).
            Path(f"{self.state_file}-journal").unlink(missing_ok=True)
            os.replace(tmp, self.state_file)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_directory(self.state_file.parent)
        self._saved_all(generation)

    def _saved_all(self, generation: str) -> None:
        self._file_generation = generation
        self._dropped_tenants.clear()
        for tenant in self.tenants.values():
            tenant._saved()

    def load(self) -> None:
        """Read the state saved in the SQLite ``state_file`` (tenants, settings, delta-token key)."""
        assert self.state_file is not None
        try:
            with contextlib.closing(sqlite3.connect(self.state_file)) as db:
                tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if "meta" not in tables:  # an empty file: nothing saved yet
                    return
                meta = {key: json.loads(value) for key, value in db.execute("SELECT key, value FROM meta")}
                headers = [json.loads(row[0]) for row in db.execute("SELECT header FROM tenants ORDER BY pos")]
                with self.lock:
                    self.settings.update({k: v for k, v in meta.get("settings", {}).items() if k in SETTINGS})
                    self.token_lifetime = int(meta.get("tokenLifetime", DEFAULT_TOKEN_LIFETIME))
                    if meta.get("deltaKey"):
                        self.delta_key = bytes.fromhex(meta["deltaKey"])
                    self.tenants = {h["id"]: Tenant._load(self.lock, db, h) for h in headers}
                    self._file_generation = meta.get("generation")
                    self._dropped_tenants.clear()
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{self.state_file} is not an emulator state file (SQLite): {exc}") from None


_STATE_VERSION = 2
_CACHE_KIB = -65536  # SQLite's page cache while saving (negative: KiB), so bulk writes do not spill mid-transaction
_STATE_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE tenants (pos INTEGER NOT NULL, id TEXT PRIMARY KEY, header TEXT NOT NULL);
CREATE TABLE objects (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    seq INTEGER NOT NULL,
    deleted INTEGER NOT NULL,  -- 1: in deleted items (member_of, members: what a restore links again)
    props TEXT NOT NULL,  -- the Graph properties, JSON
    member_of TEXT,
    members TEXT,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE links (
    tenant TEXT NOT NULL,
    group_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    rel TEXT NOT NULL,  -- members | owners
    seq INTEGER NOT NULL,
    PRIMARY KEY (tenant, group_id, member_id, rel)
) WITHOUT ROWID;
CREATE TABLE changes (
    tenant TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    object_id TEXT NOT NULL,
    op TEXT NOT NULL,
    names TEXT NOT NULL,  -- the changed property names, comma-separated
    member_id TEXT NOT NULL,
    member_kind TEXT NOT NULL,
    PRIMARY KEY (tenant, seq)
) WITHOUT ROWID;
"""


def _fsync_directory(directory: Path) -> None:
    """Make a rename in *directory* durable (where the platform allows opening a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
