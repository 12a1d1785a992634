"""App registrations of a tenant: their client secrets and certificate credentials (what the identity platform
checks a client's credentials against)."""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from aadsync_devkit.graph_emulator import exceptions as err
from aadsync_devkit.graph_emulator.catalog import b64url


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
        return b64url(bytes.fromhex(self.thumbprint))

    @property
    def x5t_s256(self) -> str:
        """The JOSE ``x5t#S256`` header value: base64url of the SHA-256 thumbprint's bytes."""
        return b64url(bytes.fromhex(self.thumbprint_sha256))

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


#: The application permissions an app is granted unless its spec says otherwise: enough for the sync (users, groups,
#: Directory.ReadWrite.All, which also covers directory extension definitions, and RoleManagement.Read.Directory,
#: which PIM's role eligibilities need: Directory.ReadWrite.All does not cover them).
DEFAULT_ROLES = (
    "User.ReadWrite.All",
    "Group.ReadWrite.All",
    "Directory.ReadWrite.All",
    "RoleManagement.Read.Directory",
)
#: Who may create and delete directory extension definitions (Create extensionProperty, application permissions):
#: Application.ReadWrite.OwnedBy (least privileged; here: on the caller's own application object), or the higher
#: Application.ReadWrite.All and Directory.ReadWrite.All (on any).
EXTENSION_WRITERS = ("Application.ReadWrite.All", "Directory.ReadWrite.All")
EXTENSION_WRITER_OWNED = "Application.ReadWrite.OwnedBy"


def parse_roles(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(r, str) and r for r in value):
        raise err.BadRequest("roles must be an array of permission names, such as 'User.ReadWrite.All'.")
    return list(dict.fromkeys(value))


@dataclass
class App:
    client_id: str
    secret: str
    display_name: str = "aadsync"
    service_principal_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    certificates: list[AppCertificate] = field(default_factory=list)
    #: The application object's id (``/applications/{id}``), apart from its ``appId`` (the client id).
    object_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: The application permissions (app roles) granted to it; None: ``DEFAULT_ROLES``.
    roles: list[str] | None = None

    @property
    def granted_roles(self) -> list[str]:
        """The ``roles`` claim of its tokens: what it was granted, or ``DEFAULT_ROLES``."""
        return list(DEFAULT_ROLES if self.roles is None else self.roles)

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
            "objectId": self.object_id,
            "certificates": [{**c.summary(), "certificate": c.pem} for c in self.certificates],
            **({} if self.roles is None else {"roles": list(self.roles)}),
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
        # State files written before applications had an object id get a stable one, derived from the client id.
        app.object_id = str(data.get("objectId") or uuid.uuid5(uuid.NAMESPACE_URL, f"aadsync-app:{app.client_id}"))
        for certificate in certificates:
            app.add_certificate(certificate)
        if data.get("roles") is not None:
            app.roles = parse_roles(data["roles"])
        return app


class TenantApps:
    """The app-registration side of :class:`~aadsync_devkit.graph_emulator.tenant.Tenant`."""

    _lock: threading.RLock
    apps: dict[str, App]

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
