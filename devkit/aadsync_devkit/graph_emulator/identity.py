"""The identity platform's part: OIDC discovery, JWKS, the v2.0 token endpoint (client credentials), and the
validation of the bearer tokens Graph requests carry.

msal needs, from discovery, ``authorization_endpoint`` and ``token_endpoint`` (it takes the tenant from the
latter); it POSTs ``client_id``, ``grant_type``, ``scope``, ``client_secret`` (or ``client_assertion_type`` and a
``client_assertion`` signed by a certificate registered on the app, see :func:`verify_client_assertion`) and
``client_info=1`` as a form, and reads ``access_token``/``expires_in`` from the JSON answer, or ``error`` from any
non-5xx error body. Tokens are RS256 JWTs signed with a key generated when the app is built.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import math
import secrets
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aadsync_devkit.graph_emulator import exceptions as err
from aadsync_devkit.graph_emulator.apps import DEFAULT_ROLES, App
from aadsync_devkit.graph_emulator.state import EmulatorState
from aadsync_devkit.graph_emulator.tenant import Tenant

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_HOSTS = {
    "graph.microsoft.com",
    "graph.microsoft.us",
    "dod-graph.microsoft.us",
    "microsoftgraph.chinacloudapi.cn",
    "canary.graph.microsoft.com",
}
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_USER_SCOPES = {"openid", "profile", "offline_access"}
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("RS256", "PS256", "RS384", "PS384", "RS512", "PS512", "ES256", "ES384")
CLOCK_SKEW = 300  # seconds of clock skew tolerated on a client assertion's exp/nbf


def _b64(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).decode().rstrip("=")


def is_graph_resource(resource: str) -> bool:
    """Graph, named by its app id or any cloud's Graph host, or the emulator itself on loopback."""
    if resource.lower() == GRAPH_APP_ID:
        return True
    parts = urlsplit(resource)
    host = (parts.hostname or "").lower()
    return parts.scheme == "https" and parts.path in ("", "/") and (host in GRAPH_HOSTS or host in _LOOPBACK)


def base_url(request: Request) -> str:
    """The scheme://host[:port] the client used (so links and endpoints point back at this emulator)."""
    return f"{request.url.scheme}://{request.url.netloc}"


class TokenService:
    """Issues and validates the emulator's access tokens (one RSA key per running app)."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = self._key.public_key().public_numbers()
        self._n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        self.kid = _b64(hashlib.sha256(self._n).digest())[:27]

    def jwks(self) -> dict[str, Any]:
        numbers = self._key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "alg": "RS256",
                    "kid": self.kid,
                    "x5t": self.kid,
                    "n": _b64(self._n),
                    "e": _b64(numbers.e.to_bytes(3, "big")),
                }
            ]
        }

    def issue(self, tenant: Tenant, client_id: str, resource: str, *, lifetime: int | None = None) -> tuple[str, int]:
        """A Graph access token (v1 claims, as Graph's tokens are) and its lifetime in seconds."""
        lifetime = self.state.token_lifetime if lifetime is None else lifetime
        issued = time.time()
        now = int(issued)
        # exp is a whole second (a NumericDate as Entra ID writes it) rounded UP for a token that lives at all, so a
        # token announced as living N seconds is accepted for at least N seconds: rounded down, a 2-second token
        # could expire after 1 s, before the client that just got it had used it on a loaded machine.
        expires = math.ceil(issued) + lifetime if lifetime > 0 else now
        app = tenant.apps.get(client_id)
        audience = "https://graph.microsoft.com" if resource.lower() != GRAPH_APP_ID else GRAPH_APP_ID
        claims = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{tenant.id}/",
            "iat": now,
            "nbf": now,
            "exp": expires,
            "aio": _b64(secrets.token_bytes(24)),
            "app_displayname": app.display_name if app else client_id,
            "appid": client_id,
            "appidacr": "1",
            "idp": f"https://sts.windows.net/{tenant.id}/",
            "idtyp": "app",
            "oid": app.service_principal_id if app else client_id,
            "roles": app.granted_roles if app else list(DEFAULT_ROLES),
            "sub": app.service_principal_id if app else client_id,
            "tid": tenant.id,
            "uti": _b64(secrets.token_bytes(16)),
            "ver": "1.0",
            "xms_epoch": tenant.token_epoch,
        }
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid, "x5t": self.kid})
        return token, lifetime

    def authenticate(self, authorization: str | None) -> Tenant:
        """The tenant a Graph request acts in, from its bearer token; 401 ``InvalidAuthenticationToken`` otherwise."""
        return self.authenticate_app(authorization)[0]

    def authenticate_app(self, authorization: str | None) -> tuple[Tenant, str]:
        """The tenant and the calling app's client id (``appid``) of a Graph request's bearer token."""
        tenant, app_id, _roles = self.authenticate_roles(authorization)
        return tenant, app_id

    def authenticate_roles(self, authorization: str | None) -> tuple[Tenant, str, frozenset[str]]:
        """The tenant, the calling app's client id and the application permissions (``roles``) of a bearer token."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if not authorization or not token or scheme.lower() != "bearer":
            raise err.InvalidAuthenticationToken("Access token is empty.")
        if token.count(".") != 2:
            raise err.InvalidAuthenticationToken(
                "IDX14100: JWT is not well formed, there are no dots (.).\nThe token needs to be in JWS or JWE "
                "Compact Serialization Format. (JWS): 'EncodedHeader.EndcodedPayload.EncodedSignature'. (JWE): "
                "'EncodedProtectedHeader.EncodedEncryptedKey.EncodedInitializationVector.EncodedCiphertext."
                "EncodedAuthenticationTag'."
            )
        try:
            claims = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["RS256"],
                options={"verify_aud": False, "require": ["exp", "tid", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise err.InvalidAuthenticationToken("Lifetime validation failed, the token is expired.") from None
        except jwt.PyJWTError:
            raise err.InvalidAuthenticationToken("Access token validation failure.") from None
        if not is_graph_resource(str(claims["aud"])):
            raise err.InvalidAuthenticationToken("Access token validation failure. Invalid audience.")
        with self.state.lock:
            tenant = self.state.tenants.get(str(claims["tid"]))
        if tenant is None:
            raise err.InvalidAuthenticationToken("Access token validation failure. Invalid issuer or tenant.")
        if claims.get("xms_epoch", 0) < tenant.token_epoch:
            raise err.InvalidAuthenticationToken("Lifetime validation failed, the token is expired.")
        roles = claims.get("roles", [])
        return tenant, str(claims.get("appid", "")), frozenset(roles if isinstance(roles, list) else [])


def _identity_error(error: err.IdentityError) -> JSONResponse:
    trace_id = str(uuid.uuid4())
    return JSONResponse(
        error.body(trace_id=trace_id, correlation_id=str(uuid.uuid4())),
        status_code=error.status,
        headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache", "x-ms-request-id": trace_id},
    )


def openid_configuration(base: str, tenant: Tenant) -> dict[str, Any]:
    root = f"{base}/{tenant.id}"
    return {
        "token_endpoint": f"{root}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": f"{root}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/{tenant.id}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{base}/oidc/userinfo",
        "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce", "tid", "ver", "oid"],
        "kerberos_endpoint": f"{root}/kerberos",
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": urlsplit(base).netloc,
        "rbac_url": "https://pas.windows.net",
    }


def _basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None, None
    try:
        client_id, _, secret = base64.b64decode(value.strip()).decode().partition(":")
    except ValueError:
        return None, None
    from urllib.parse import unquote_plus

    return unquote_plus(client_id), unquote_plus(secret)


def verify_client_assertion(fields: dict[str, str], app: App, audiences: set[str], *, now: float) -> None:
    """Check a certificate credential (``private_key_jwt``) as the identity platform does, or raise its error.

    The assertion is a JWT signed (RS256/PS256, or ES256) by the private key of a certificate registered on the app,
    named by the ``x5t#S256`` header (base64url SHA-256 thumbprint; msal's default) or else ``x5t`` (base64url
    SHA-1 thumbprint; msal given a ``thumbprint``). ``aud`` is the token endpoint, ``iss`` = ``sub`` = the client id,
    ``exp`` (and ``nbf`` if present) must hold within five minutes of clock skew. A reused ``jti`` is accepted (msal
    reuses one assertion for up to ten minutes).
    """
    assertion_type = fields.get("client_assertion_type")
    if not assertion_type:
        raise err.MissingParameter("client_assertion_type")
    if assertion_type != CLIENT_ASSERTION_TYPE:
        raise err.UnsupportedAssertionType(assertion_type)
    assertion = fields.get("client_assertion")
    if not assertion:
        raise err.MissingParameter("client_assertion")
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        raise err.InvalidClientAssertion() from None
    x5t_s256, x5t = header.get("x5t#S256"), header.get("x5t")
    if not isinstance(x5t_s256, str) and not isinstance(x5t, str):
        raise err.InvalidClientAssertion("The key was not found.")
    certificate = app.find_certificate(
        x5t=x5t if isinstance(x5t, str) else None, x5t_s256=x5t_s256 if isinstance(x5t_s256, str) else None
    )
    if certificate is None:
        raise err.CertificateNotRegistered(_thumbprint_hex(x5t_s256 or x5t), app.client_id)
    thumbprint = certificate.thumbprint_sha256 if isinstance(x5t_s256, str) else certificate.thumbprint
    if header.get("alg") not in ASSERTION_ALGORITHMS:
        raise err.InvalidClientAssertion(f"The signing algorithm '{header.get('alg')}' is not supported.")
    try:
        claims = jwt.decode(
            assertion,
            certificate.cert.public_key(),  # type: ignore[arg-type]
            algorithms=list(ASSERTION_ALGORITHMS),
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False},
        )
    except jwt.InvalidSignatureError:
        raise err.InvalidAssertionSignature(
            thumbprint, certificate.start, certificate.end, client_id=app.client_id
        ) from None
    except jwt.PyJWTError:
        raise err.InvalidClientAssertion() from None
    when = dt.datetime.fromtimestamp(now, dt.UTC)
    if not certificate.start <= when <= certificate.end:
        raise err.InvalidAssertionSignature(
            thumbprint, certificate.start, certificate.end, client_id=app.client_id, expired=True
        )
    audience = claims.get("aud")
    if isinstance(audience, list):
        if len(audience) != 1:
            raise err.TooManyAssertionAudiences(len(audience))
        audience = audience[0]
    if not isinstance(audience, str) or audience.rstrip("/").lower() not in audiences:
        raise err.AssertionAudienceMismatch()
    if claims.get("iss") != app.client_id or claims.get("sub", app.client_id) != app.client_id:
        raise err.AssertionIssuerMismatch()
    exp, nbf = claims.get("exp"), claims.get("nbf", 0)
    if not isinstance(exp, int | float) or not isinstance(nbf, int | float):
        raise err.InvalidClientAssertion("The assertion needs numeric 'exp' (and 'nbf') claims.")
    if now > exp + CLOCK_SKEW or now + CLOCK_SKEW < nbf:
        raise err.AssertionNotInValidTimeRange(
            when, dt.datetime.fromtimestamp(nbf, dt.UTC), dt.datetime.fromtimestamp(exp, dt.UTC)
        )


def _thumbprint_hex(x5t: str) -> str:
    """The upper-case hex of a base64url thumbprint header, as the identity platform's messages show it."""
    try:
        return base64.urlsafe_b64decode(x5t + "=" * (-len(x5t) % 4)).hex().upper()
    except ValueError:
        return x5t


def routes(state: EmulatorState, tokens: TokenService) -> list[Route]:
    def tenant_or_error(key: str, *, discovery: bool) -> Tenant:
        tenant = state.find_tenant(key)
        if tenant is None:
            raise err.TenantNotFound(key, discovery=discovery)
        return tenant

    async def discovery(request: Request) -> JSONResponse:
        try:
            tenant = tenant_or_error(request.path_params["tenant"], discovery=True)
        except err.IdentityError as error:
            return _identity_error(error)
        return JSONResponse(openid_configuration(base_url(request), tenant))

    async def keys(request: Request) -> JSONResponse:
        return JSONResponse(tokens.jwks())

    async def token(request: Request) -> JSONResponse:
        try:
            form = await request.form()
            fields = {k: str(v) for k, v in form.items()}
            tenant = tenant_or_error(request.path_params["tenant"], discovery=False)
            grant_type = fields.get("grant_type")
            if not grant_type:
                raise err.MissingParameter("grant_type")
            if grant_type != "client_credentials":
                raise err.UnsupportedGrantType(grant_type)
            basic_id, basic_secret = _basic_credentials(request.headers.get("authorization"))
            client_id = fields.get("client_id") or basic_id
            if not client_id:
                raise err.MissingParameter("client_id")
            app = tenant.apps.get(client_id)
            if app is None:
                raise err.ApplicationNotFound(client_id, tenant.id)
            if fields.get("client_assertion") or fields.get("client_assertion_type"):
                audiences = {
                    f"{base_url(request)}/{key}/{path}".lower()
                    for key in {tenant.id, request.path_params["tenant"].lower(), *tenant.verified_domains}
                    for path in ("oauth2/v2.0/token", "oauth2/token")
                }
                verify_client_assertion(fields, app, audiences, now=state.clock())
            else:
                secret = fields.get("client_secret") or basic_secret
                if not secret:
                    raise err.MissingClientCredential()
                if not secrets.compare_digest(secret.encode(), app.secret.encode()):
                    raise err.InvalidClientSecret(client_id)
            scopes = [s for s in fields.get("scope", "").split() if s.lower() not in _USER_SCOPES]
            if not scopes:
                raise err.MissingParameter("scope")
            if len(scopes) != 1 or not scopes[0].endswith("/.default"):
                raise err.InvalidScope(" ".join(scopes))
            resource = scopes[0][: -len("/.default")]
            if not is_graph_resource(resource):
                raise err.UnknownResource(resource, tenant.id)
        except err.IdentityError as error:
            return _identity_error(error)
        access_token, lifetime = tokens.issue(tenant, client_id, resource)
        return JSONResponse(
            {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": access_token},
            headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
        )

    return [
        Route("/{tenant}/v2.0/.well-known/openid-configuration", discovery, methods=["GET"]),
        Route("/{tenant}/discovery/v2.0/keys", keys, methods=["GET"]),
        Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
    ]
