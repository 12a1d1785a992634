"""Errors the emulator answers with, one class per error code, shaped like the real services' bodies.

Graph (``/v1.0``) errors render as ``{"error": {"code", "message", "innerError": {...}}}``; identity platform
(token endpoint, OIDC discovery) errors render as the OAuth 2 body with ``error``, ``error_description`` (prefixed
with the ``AADSTS`` number), ``error_codes``, ``timestamp``, ``trace_id``, ``correlation_id`` and ``error_uri``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any


def graph_date(now: dt.datetime | None = None) -> str:
    """Graph's ``innerError.date`` format: UTC, seconds, no zone designator."""
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%S")


class GraphError(Exception):
    """A Microsoft Graph error: HTTP status, Graph error code and message (and optional ``details``)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = dict(headers or {})

    def body(self, *, request_id: str, client_request_id: str, date: str | None = None) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        error["innerError"] = {
            "date": date or graph_date(),
            "request-id": request_id,
            "client-request-id": client_request_id,
        }
        return {"error": error}


# ------------------------------------------------------------------------------------------------- 400


#: Graph's answer to a create of a mail-enabled security group or a distribution group (read-only through Graph;
#: made in Exchange Online), word for word as Graph sends it.
MAIL_GROUP_CREATE = "Cannot Create a mail-enabled security groups and or distribution list."
#: Graph's answer to any write to an existing mail-enabled security group or distribution group (a PATCH of any
#: property, directory extensions included; a member added or removed, through members/$ref or members@odata.bind):
#: Graph keeps them read-only ("Mail-enabled and distribution groups are read-only through Microsoft Graph", groups
#: overview), word for word as Graph sends it.
MAIL_GROUP_UPDATE = "Cannot Update a mail-enabled security groups and or distribution list."
#: Graph's answer to a write that mail-enables a group or mail-disables one (mailEnabled is set at the create only).
MAIL_ENABLEMENT_UPDATE = (
    "The service does not currently support writes of mail-enabled groups. Please ensure that the mail-enablement "
    "property is unset and the security-enablement property is set."
)


class BadRequest(GraphError):
    """``Request_BadRequest``: the directory refused the request body or its effect."""

    def __init__(self, message: str, *, details: list[dict[str, str]] | None = None) -> None:
        super().__init__(400, "Request_BadRequest", message, details=details)


class ODataBadRequest(GraphError):
    """``BadRequest``: the OData layer refused the URL (unknown segment, bad ``$select``, bad ``$filter``)."""

    def __init__(self, message: str) -> None:
        super().__init__(400, "BadRequest", message)


class UnsupportedQuery(GraphError):
    """``Request_UnsupportedQuery``: a query the directory does not support (in this form)."""

    def __init__(self, message: str) -> None:
        super().__init__(400, "Request_UnsupportedQuery", message)


class PropertyRequired(BadRequest):
    def __init__(self, name: str) -> None:
        super().__init__(f"Property {name} value is required but is empty or missing.")


class InvalidPropertyValue(BadRequest):
    def __init__(self, name: str, resource: str) -> None:
        super().__init__(
            f"Invalid value specified for property '{name}' of resource '{resource}'.",
            details=[{"code": "InvalidValue", "target": name}],
        )


class UnknownProperty(BadRequest):
    def __init__(self, name: str) -> None:
        super().__init__(f"Property '{name}' does not exist as a declared property or extension property.")


class ReadOnlyProperty(BadRequest):
    def __init__(self, name: str) -> None:
        super().__init__(f"Property '{name}' is read-only and cannot be set.")


class UnverifiedUpnDomain(BadRequest):
    def __init__(self) -> None:
        super().__init__(
            "The domain portion of the userPrincipalName property is invalid. "
            "You must use one of the verified domain names in your organization.",
            details=[{"code": "InvalidValue", "target": "userPrincipalName"}],
        )


class ObjectConflict(BadRequest):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"Another object with the same value for property {name} already exists.",
            details=[{"code": "ObjectConflict", "target": name}],
        )


class TooManyLinkChanges(BadRequest):
    def __init__(self) -> None:
        super().__init__("A resource cannot contain more than 20 link changes.")


class ReferenceAlreadyExists(BadRequest):
    def __init__(self, prop: str = "members") -> None:
        super().__init__(
            f"One or more added object references already exist for the following modified properties: '{prop}'."
        )


class DirSyncMastered(BadRequest):
    def __init__(self) -> None:
        super().__init__(
            "Unable to update the specified properties for on-premises mastered Directory Sync objects "
            "or objects currently undergoing migration."
        )


class InvalidPageSize(BadRequest):
    def __init__(self, raw: str) -> None:
        super().__init__(f"Invalid page size specified: '{raw}'. Must be between 1 and 999 inclusive.")


class CountNotSupported(BadRequest):
    """``$count=true`` without the ``ConsistencyLevel: eventual`` header."""

    def __init__(self) -> None:
        super().__init__("$count is not currently supported.")


class RawCountNotSupported(UnsupportedQuery):
    def __init__(self) -> None:
        super().__init__(
            "Raw count (/$count) is not supported because the 'ConsistencyLevel:eventual' header is missing. "
            "Refer to https://aka.ms/graph-docs/advanced-queries for more information"
        )


class SegmentNotFound(ODataBadRequest):
    def __init__(self, segment: str) -> None:
        super().__init__(f"Resource not found for the segment '{segment}'.")


class SyncStateNotFound(GraphError):
    """A delta or skip token that is expired, revoked, forged or from another tenant/collection: resync fully."""

    def __init__(self) -> None:
        super().__init__(
            400,
            "syncStateNotFound",
            "The sync state generation is not found. The delta token is expired and data must be synchronized again.",
        )


class SyncStateGone(GraphError):
    """410 Gone: the delta state was reset on the service side; restart from the ``Location`` header's link (a
    fresh full round with the same ``$select``), which the route fills in."""

    def __init__(self, select: list[str] | None, members: bool, location: str = "") -> None:
        super().__init__(
            410,
            "resyncRequired",
            "The delta token is no longer valid and the sync state must be reset. Restart the synchronization from "
            "the URL in the Location header and replace the local copies with what it returns.",
            headers={"Location": location} if location else None,
        )
        self.select = select
        self.members = members


class InvalidBatchPayload(ODataBadRequest):
    def __init__(self, detail: str | None = None) -> None:
        super().__init__("Invalid batch payload format." + (f" {detail}" if detail else ""))


class BatchTooLarge(ODataBadRequest):
    def __init__(self, limit: int) -> None:
        super().__init__(f"Number of batch requests exceeds the maximum of {limit}.")


# ------------------------------------------------------------------------------------------------- 401/404/405


class InvalidAuthenticationToken(GraphError):
    """401: missing, malformed, expired or foreign bearer token."""

    def __init__(self, message: str) -> None:
        super().__init__(
            401,
            "InvalidAuthenticationToken",
            message,
            headers={
                "WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
                'oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"'
            },
        )


class ResourceNotFound(GraphError):
    def __init__(self, resource_id: str) -> None:
        super().__init__(
            404,
            "Request_ResourceNotFound",
            f"Resource '{resource_id}' does not exist or one of its queried reference-property objects are not "
            "present.",
        )


class MethodNotAllowed(GraphError):
    def __init__(self) -> None:
        super().__init__(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")


class FailedDependency(GraphError):
    """424 for a ``$batch`` request whose ``dependsOn`` request failed; it is not executed."""

    def __init__(self) -> None:
        super().__init__(424, "FailedDependency", "The request could not be processed because a dependency failed.")


# ------------------------------------------------------------------------------------------------- 429/5xx


class TooManyRequests(GraphError):
    """429 from throttling, with ``Retry-After`` in whole seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(429, "TooManyRequests", "Please retry again later.", headers={"Retry-After": str(retry_after)})


class ServiceUnavailable(GraphError):
    """503 from fault injection, with ``Retry-After`` in whole seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            503,
            "serviceNotAvailable",
            "The service is temporarily unavailable. Try the request again after a delay.",
            headers={"Retry-After": str(retry_after)},
        )


class GatewayTimeout(GraphError):
    """504 from fault injection: the write was carried out, but the gateway stopped waiting for its answer."""

    def __init__(self) -> None:
        super().__init__(504, "UnknownError", "The gateway did not receive a timely response from the service.")


# ------------------------------------------------------------------------------------------------- identity platform


class IdentityError(Exception):
    """An OAuth 2 / OIDC error from the identity platform, with its ``AADSTS`` number."""

    def __init__(self, status: int, error: str, aadsts: int, description: str) -> None:
        super().__init__(f"{error}: AADSTS{aadsts}: {description}")
        self.status = status
        self.error = error
        self.aadsts = aadsts
        self.description = description

    def body(self, *, trace_id: str, correlation_id: str, now: dt.datetime | None = None) -> dict[str, Any]:
        timestamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M:%SZ")
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.aadsts}: {self.description} Trace ID: {trace_id} "
            f"Correlation ID: {correlation_id} Timestamp: {timestamp}",
            "error_codes": [self.aadsts],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.aadsts}",
        }


class TenantNotFound(IdentityError):
    """AADSTS90002. The token endpoint says ``invalid_request``; OIDC discovery says ``invalid_tenant``."""

    def __init__(self, tenant: str, *, discovery: bool = False) -> None:
        super().__init__(
            400,
            "invalid_tenant" if discovery else "invalid_request",
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into "
            "the correct cloud. Check with your subscription administrator, this may happen if there are no active "
            "subscriptions for the tenant.",
        )


class ApplicationNotFound(IdentityError):
    def __init__(self, client_id: str, tenant: str) -> None:
        super().__init__(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen "
            "if the application has not been installed by the administrator of the tenant or consented to by any "
            "user in the tenant. You may have sent your authentication request to the wrong tenant.",
        )


class InvalidClientSecret(IdentityError):
    def __init__(self, client_id: str) -> None:
        super().__init__(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, "
            f"not the client secret ID, for a secret added to app '{client_id}'.",
        )


class MissingClientCredential(IdentityError):
    def __init__(self) -> None:
        super().__init__(
            401,
            "invalid_client",
            7000216,
            "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
        )


_KEYS_HINT = (
    "Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id "
    "'{client_id}'. Review the documentation at https://docs.microsoft.com/en-us/graph/deployments to determine the "
    "corresponding service endpoint and https://docs.microsoft.com/en-us/graph/api/application-get?view=graph-rest-1.0"
    "&tabs=http to build a query request URL, such as 'https://graph.microsoft.com/beta/applications/{client_id}'"
)
_CERT_DOCS = "Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."


def _key_dates(start: dt.datetime, end: dt.datetime) -> str:
    return f"Start={start:%m/%d/%Y %H:%M:%S}, End={end:%m/%d/%Y %H:%M:%S}"


class InvalidClientAssertion(IdentityError):
    """AADSTS700027 for a client assertion that is not a verifiable JWT at all (or names no certificate)."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(
            401,
            "invalid_client",
            700027,
            "Client assertion failed signature validation." + (f" [Reason - {reason}]" if reason else ""),
        )


class CertificateNotRegistered(IdentityError):
    """AADSTS700027: the assertion's ``x5t``/``x5t#S256`` names no certificate registered on the app."""

    def __init__(self, thumbprint: str, client_id: str) -> None:
        super().__init__(
            401,
            "invalid_client",
            700027,
            "The certificate with identifier used to sign the client assertion is not registered on application. "
            f"[Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}', "
            + _KEYS_HINT.format(client_id=client_id)
            + "].",
        )


class InvalidAssertionSignature(IdentityError):
    """AADSTS700027: the certificate was found but the assertion's signature does not verify with it (or it is
    outside its validity period)."""

    def __init__(
        self, thumbprint: str, start: dt.datetime, end: dt.datetime, *, client_id: str, expired: bool = False
    ) -> None:
        reason = (
            "The key used is expired."
            if expired
            else "The provided signature value did not match the expected signature value."
        )
        super().__init__(
            401,
            "invalid_client",
            700027,
            f"Client assertion contains an invalid signature. [Reason - {reason}, Thumbprint of key used by client: "
            f"'{thumbprint}', Found key '{_key_dates(start, end)}', " + _KEYS_HINT.format(client_id=client_id) + "].",
        )


class AssertionNotInValidTimeRange(IdentityError):
    """AADSTS700024: the assertion's ``exp`` has passed (or its ``nbf`` is in the future)."""

    def __init__(self, now: dt.datetime, valid_from: dt.datetime, expires: dt.datetime) -> None:
        fmt = "%Y-%m-%dT%H:%M:%S.%f0Z"
        super().__init__(
            401,
            "invalid_client",
            700024,
            f"Client assertion is not within its valid time range. Current time: {now.strftime(fmt)}, assertion "
            f"valid from {valid_from.strftime(fmt)}, expiry time of assertion {expires.strftime(fmt)}. {_CERT_DOCS}",
        )


class AssertionAudienceMismatch(IdentityError):
    """AADSTS50012: the assertion's ``aud`` is not this tenant's token endpoint."""

    def __init__(self) -> None:
        super().__init__(
            401, "invalid_client", 50012, f"Client assertion audience claim does not match Realm issuer. {_CERT_DOCS}"
        )


class TooManyAssertionAudiences(IdentityError):
    """AADSTS5002741: the assertion's ``aud`` holds more than one value."""

    def __init__(self, count: int) -> None:
        super().__init__(
            401,
            "invalid_client",
            5002741,
            f"Number of audience values in the provided client credential exceed maximum allowed. {count} audience "
            "values provided, maximum allowed is 1.",
        )


class AssertionIssuerMismatch(IdentityError):
    """AADSTS700021: the assertion's ``iss``/``sub`` is not the ``client_id`` of the request."""

    def __init__(self) -> None:
        super().__init__(
            401,
            "invalid_client",
            700021,
            f"Client assertion application identifier doesn't match 'client_id' parameter. {_CERT_DOCS}",
        )


class UnsupportedAssertionType(IdentityError):
    """A ``client_assertion_type`` other than the JWT bearer one (AADSTS50027: invalid JWT)."""

    def __init__(self, assertion_type: str) -> None:
        super().__init__(
            400,
            "invalid_request",
            50027,
            f"JWT token is invalid or malformed. The client_assertion_type '{assertion_type}' is not supported; "
            "use 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.",
        )


class MissingParameter(IdentityError):
    def __init__(self, name: str) -> None:
        super().__init__(
            400, "invalid_request", 900144, f"The request body must contain the following parameter: '{name}'."
        )


class UnsupportedGrantType(IdentityError):
    def __init__(self, grant_type: str) -> None:
        super().__init__(
            400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant_type}'."
        )


class InvalidScope(IdentityError):
    def __init__(self, scope: str) -> None:
        super().__init__(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid. Client credential flows must have a scope value with "
            "/.default suffixed to the resource identifier (application ID URI).",
        )


class UnknownResource(IdentityError):
    def __init__(self, resource: str, tenant: str) -> None:
        super().__init__(
            400,
            "invalid_resource",
            500011,
            f"The resource principal named {resource} was not found in the tenant named {tenant}. This can happen if "
            "the application has not been installed by the administrator of the tenant or consented to by any user "
            "in the tenant. You might have sent your authentication request to the wrong tenant.",
        )
