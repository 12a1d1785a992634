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


class ClientAssertionNotSupported(IdentityError):
    def __init__(self) -> None:
        super().__init__(
            401,
            "invalid_client",
            700027,
            "Client assertion failed signature validation. (The emulator does not accept certificate credentials "
            "yet; use a client secret.)",
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
