"""The ASGI app: identity platform + Graph v1.0 + the emulator's admin API under ``/_emulator``.

Admin API (no auth; refused unless the caller is on loopback):

- ``POST /_emulator/tenants`` ``{"id"?, "name"?, "displayName"?, "verifiedDomains"?: [...],
  "apps"?: [{"clientId"?, "clientSecret"?, "displayName"?, "certificates"?: [PEM, ...]}]}`` → 201 with the tenant
  (generated ids and secrets included); ``GET /_emulator/tenants``, ``GET``/``DELETE /_emulator/tenants/{id}``;
- ``POST /_emulator/tenants/{id}/apps`` (one app object as above) → 201 with the app;
- ``POST /_emulator/tenants/{id}/domains`` ``{"name", "isVerified"?: true, "isDefault"?: false,
  "authenticationType"?: "Managed"|"Federated"}`` → 201 with the domain as ``GET /v1.0/domains/{name}`` shows it;
  ``PATCH .../domains/{name}`` (the same settings: verify, make default, federate) → 200, ``DELETE`` → 204 (not the
  initial ``<name>.onmicrosoft.com``); only verified domains may carry a UPN;
- ``POST /_emulator/tenants/{id}/roleAssignments`` ``{"role": role name or definition id, "principalId"}``
  → 201: a user or role-assignable group holds the directory role (``GET /v1.0/directoryRoles`` lists a built-in one
  activated, ``GET /v1.0/roleManagement/directory/roleAssignments`` every one); with ``"directoryScopeId":
  "/administrativeUnits/{id}"`` it holds it at that scope only (not a ``directoryRoles`` member); with ``"eligible":
  true`` it is eligible for it in PIM instead, tenant-wide or at the scope given
  (``GET /v1.0/roleManagement/directory/roleEligibilityScheduleInstances``);
  ``DELETE .../roleAssignments/{role definition id}/{principal id}`` → 204 (``?eligible=true``: the eligibility;
  ``?directoryScopeId=...``: the scoped one); a tenant created with ``"pimLicensed": false`` has no Microsoft
  Entra ID P2; ``POST /_emulator/tenants/{id}/roleDefinitions`` ``{"displayName"}`` → 201: a custom role, listed by
  ``GET /v1.0/roleManagement/directory/roleDefinitions`` and assignable by name or id;
- ``POST /_emulator/tenants/{id}/apps/{clientId}/certificates`` ``{"certificate": PEM}`` (or the PEM itself as the
  body) → 201 ``{"thumbprint" (SHA-1 hex), "thumbprintSha256", "subject", "startDateTime", "endDateTime"}``: a
  certificate credential whose private key may then sign client assertions; ``GET`` lists them (``{"value"}``),
  ``DELETE .../certificates/{thumbprint}`` → 204;
- ``POST /_emulator/tenants/{id}/objects`` ``{"@odata.type": "#microsoft.graph.user|group|orgContact", ...}`` →
  201: seed an object, read-only properties allowed (``onPremisesSyncEnabled``, ``proxyAddresses``, contacts), and
  a group's ``members@odata.bind`` may name any number of members (Graph takes 20 per request);
  a JSON array of such objects seeds them in order (stopping at the first refused one) → 201 ``{"value": [...]}``;
- ``POST /_emulator/reset`` → 204 (no tenants, default settings, counters zeroed);
- ``POST /_emulator/flush`` → 204 once pending state is written to the state file (writes are saved at most about
  once a second, later for a big state; benchmarks flush after seeding so no save lands in a measured window);
- ``POST /_emulator/tenants/{id}/deltaTokens/expire`` → 204: every delta/skip token issued so far for the tenant
  answers ``400 syncStateNotFound`` from now on; with ``?mode=gone`` it answers ``410 Gone`` (``resyncRequired``)
  with a ``Location`` header naming a fresh full round (same ``$select``) to restart from;
- ``POST /_emulator/tenants/{id}/tokens/revoke`` → 204: every access token issued so far for the tenant answers
  ``401 InvalidAuthenticationToken`` (as an expired or revoked token does); new tokens work;
- ``PATCH /_emulator/tenants/{id}/apps/{clientId}`` ``{"clientSecret": "..."}`` → 204: the app's secret is replaced
  (the old one is refused from now on: a revoked or rotated credential); ``{"roles": [...]}`` replaces the
  application permissions its next tokens carry (``null``: the default User.ReadWrite.All, Group.ReadWrite.All,
  Directory.ReadWrite.All; an app spec may carry ``roles`` too). Creating or deleting a directory extension
  definition needs Application.ReadWrite.All or Directory.ReadWrite.All, or Application.ReadWrite.OwnedBy on the
  caller's own application, else ``403 Authorization_RequestDenied``; so does every Graph call the sync app makes
  whose token holds none of the permissions Graph's API reference lists for it (``permissions.py``);
- ``GET /_emulator/counters`` (requests by method and route template, per status, 4xx/5xx, 429s, ``batchItems``;
  each ``$batch`` request counts once plus once per inner request under its own route; admin calls are not
  counted), ``DELETE`` zeroes them;
- ``GET``/``PUT /_emulator/settings``: a partial object of ``tokenLifetimeSeconds``, ``deltaTokenLifetimeSeconds``
  (7 days), ``deltaPageSize`` (200), ``deltaMembersPerItem`` (100), ``throttlingEnabled`` (false),
  ``throttleResourceUnits`` (null: 3,500/5,000/8,000 by tenant size) per ``throttleResourceWindowSeconds`` (10),
  ``throttleAppWrites`` (3,000) per ``throttleAppWriteWindowSeconds`` (150), ``throttleTenantWrites`` (18,000) per
  ``throttleTenantWriteWindowSeconds`` (300), ``faultRatio5xx`` (0: share of requests answered 503),
  ``faultRetryAfterSeconds`` (1), ``faultDropRatio`` (0: share of Graph requests processed whose connection is then
  cut mid-answer), ``faultWrite504Ratio`` (0: share of Graph writes, ``$batch`` items too, carried out and then
  answered 504 GatewayTimeout, as a gateway that stopped waiting for the answer does), ``faultRatio429`` (0: share of
  requests answered 429 with ``faultRetryAfterSeconds``),
  ``faultNext429`` (0: the next N Graph requests are answered 429, counted down),
  ``faultMalformed`` (null, or one of ``truncated-json``, ``wrong-types``, ``missing-id``, ``no-value``, ``html-200``,
  ``html-502``, ``batch-missing-items``: every Graph request is processed, then its answer is broken so) and
  ``faultMalformedPath`` (null, or a string the path of the requests to break contains), ``latencyMs`` (0),
  ``randomSeed`` (null; setting it reseeds the fault dice);
  ``null`` restores a default. ``GET`` answers every setting, ``PUT`` the ones it changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aadsync_devkit.graph_emulator import exceptions as err
from aadsync_devkit.graph_emulator import graph, graph_beta, graph_directory, identity
from aadsync_devkit.graph_emulator.apps import parse_roles
from aadsync_devkit.graph_emulator.malformed import break_answer
from aadsync_devkit.graph_emulator.state import EmulatorState

_MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
#: Writes that change nothing the state file holds: no save after them (a save of a big tenant costs seconds).
_STATELESS_WRITES = {"/_emulator/counters", "/_emulator/flush"}


def _changes_no_saved_state(template: str) -> bool:
    return template.endswith("/token") or template in _STATELESS_WRITES


_SLASHES = re.compile("/{2,}")
_LOOPBACK_CLIENTS = {"127.0.0.1", "::1", "localhost", "testclient"}


class GraphMiddleware:
    """Per request: a ``request-id`` (echoed with ``client-request-id``), the counters, and the state snapshot."""

    def __init__(self, app: ASGIApp, state: EmulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "//" in scope["path"]:
            # The msgraph SDK joins its base URL (which httpx ends with "/") and "/users": Graph ignores empty segments.
            scope = {**scope, "path": _SLASHES.sub("/", scope["path"])}
            scope["raw_path"] = re.sub(rb"/{2,}", b"/", scope.get("raw_path") or scope["path"].encode())
        request_id = str(uuid.uuid4())
        client_request_id = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"client-request-id"), request_id
        )
        scope["emulator.request_id"] = request_id
        scope["emulator.client_request_id"] = client_request_id
        status = 500

        async def wrapped_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"request-id", request_id.encode()))
                headers.append((b"client-request-id", client_request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        dropped = (
            scope["path"].startswith("/v1.0/") and not scope.get("emulator.batch_item") and self.state.drop_connection()
        )

        async def swallowed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        broken = (
            self.state.malformed(scope["path"])
            if scope["path"].startswith("/v1.0/") and not scope.get("emulator.batch_item")
            else None
        )
        answer: dict[str, Any] = {"status": 500, "headers": [], "body": b""}

        async def buffered_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = answer["status"] = message["status"]
                answer["headers"] = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                answer["body"] += message.get("body", b"")

        try:
            if broken and not dropped:
                # Processed as usual; the answer is then broken as a faulty proxy or gateway would break it.
                await self.app(scope, receive, buffered_send)
                code, headers, body = break_answer(broken, answer["status"], answer["headers"], answer["body"])
                await wrapped_send({"type": "http.response.start", "status": code, "headers": headers})
                await send({"type": "http.response.body", "body": body, "more_body": False})
            elif dropped:
                # The request is processed (a write happens), but the client never gets a whole answer: the response
                # promises more bytes than it sends, so the server closes the connection mid-body.
                await self.app(scope, receive, swallowed_send)
                headers = [(b"content-type", b"application/json"), (b"content-length", b"4096")]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": b'{"value": [', "more_body": False})
            else:
                await self.app(scope, receive, wrapped_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "(unmatched)"
            if not scope["path"].startswith("/_emulator/"):
                self.state.count(scope["method"], template, status)
            written = status < 400 or scope.get("emulator.written", False)
            if scope["method"] in _MUTATING and written and not _changes_no_saved_state(template):
                self.state.save_soon()


def _graph_error(request: Request, error: err.GraphError) -> JSONResponse:
    body = error.body(
        request_id=request.scope.get("emulator.request_id", ""),
        client_request_id=request.scope.get("emulator.client_request_id", ""),
    )
    return JSONResponse(body, status_code=error.status, headers=error.headers, media_type=graph.ODATA_JSON)


async def _on_graph_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, err.GraphError)
    return _graph_error(request, exc)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/v1.0"):
        if exc.status_code == 405:
            return _graph_error(request, err.MethodNotAllowed())
        if exc.status_code == 404:
            segment = next((s for s in reversed(request.url.path.split("/")) if s), "v1.0")
            return _graph_error(request, err.SegmentNotFound(segment))
    return PlainTextResponse(str(exc.detail), status_code=exc.status_code, headers=exc.headers)


def _admin_routes(state: EmulatorState) -> list[Route]:
    def loopback_only(request: Request) -> None:
        if request.client is None or request.client.host not in _LOOPBACK_CLIENTS:
            raise err.GraphError(403, "Forbidden", "The admin API answers loopback clients only.")

    async def body_of(request: Request) -> Any:
        try:
            return await request.json()
        except ValueError:
            raise err.BadRequest("A JSON body is expected.") from None

    def tenant_of(request: Request):
        tenant = state.find_tenant(request.path_params["tenant"])
        if tenant is None:
            raise err.ResourceNotFound(request.path_params["tenant"])
        return tenant

    async def tenants(request: Request) -> Response:
        loopback_only(request)
        if request.method == "POST":
            tenant = state.create_tenant(await body_of(request))
            return JSONResponse(tenant.summary(), status_code=201)
        with state.lock:
            return JSONResponse({"value": [t.summary() for t in state.tenants.values()]})

    async def tenant(request: Request) -> Response:
        loopback_only(request)
        found = tenant_of(request)
        if request.method == "DELETE":
            state.delete_tenant(found.id)
            return Response(status_code=204)
        return JSONResponse(found.summary())

    async def objects(request: Request) -> Response:
        loopback_only(request)
        body = await body_of(request)
        found = tenant_of(request)
        if isinstance(body, list):  # bulk seeding: one request for thousands of objects
            return JSONResponse({"value": [found.seed(item) for item in body]}, status_code=201)
        return JSONResponse(found.seed(body), status_code=201)

    async def apps(request: Request) -> Response:
        loopback_only(request)
        app = tenant_of(request).add_app(await body_of(request))
        return JSONResponse(app.to_dict(), status_code=201)

    async def certificates(request: Request) -> Response:
        loopback_only(request)
        found = tenant_of(request)
        client_id = request.path_params["client_id"]
        if request.method == "GET":
            return JSONResponse({"value": [c.summary() for c in found.app(client_id).certificates]})
        raw = (await request.body()).decode("utf-8", "replace")
        body: Any = raw if raw.lstrip().startswith("-----BEGIN") else await body_of(request)
        certificate = found.add_app_certificate(client_id, body)
        return JSONResponse(certificate.summary(), status_code=201)

    async def certificate(request: Request) -> Response:
        loopback_only(request)
        tenant_of(request).remove_app_certificate(request.path_params["client_id"], request.path_params["thumbprint"])
        return Response(status_code=204)

    async def flush(request: Request) -> Response:
        """Write pending state now, so a deferred save cannot land inside a benchmark's measured window."""
        loopback_only(request)
        await asyncio.to_thread(state.flush)
        return Response(status_code=204)

    async def reset(request: Request) -> Response:
        loopback_only(request)
        state.reset()
        return Response(status_code=204)

    async def counters(request: Request) -> Response:
        loopback_only(request)
        if request.method == "DELETE":
            state.reset_counters()
            return Response(status_code=204)
        return JSONResponse(state.counters_snapshot())

    async def settings(request: Request) -> Response:
        loopback_only(request)
        if request.method == "PUT":
            return JSONResponse(state.update_settings(await body_of(request)))
        return JSONResponse(state.settings_snapshot())

    async def revoke_tokens(request: Request) -> Response:
        loopback_only(request)
        found = tenant_of(request)
        with state.lock:
            found.token_epoch += 1
        return Response(status_code=204)

    async def app_secret(request: Request) -> Response:
        loopback_only(request)
        body = await body_of(request)
        if not isinstance(body, dict) or not ({"clientSecret", "roles"} & set(body)):
            raise err.BadRequest("A JSON object with a non-empty 'clientSecret' or 'roles' is expected.")
        secret = body.get("clientSecret", "unchanged")
        if not isinstance(secret, str) or not secret:
            raise err.BadRequest("A JSON object with a non-empty 'clientSecret' is expected.")
        roles = parse_roles(body["roles"]) if body.get("roles") is not None else None
        app = tenant_of(request).app(request.path_params["client_id"])
        with state.lock:
            if "clientSecret" in body:
                app.secret = secret
            if "roles" in body:
                app.roles = roles  # null: the default roles again
        return Response(status_code=204)

    async def domains(request: Request) -> Response:
        loopback_only(request)
        return JSONResponse(tenant_of(request).add_domain(await body_of(request)), status_code=201)

    async def domain(request: Request) -> Response:
        loopback_only(request)
        found = tenant_of(request)
        if request.method == "DELETE":
            found.remove_domain(request.path_params["name"])
            return Response(status_code=204)
        return JSONResponse(found.update_domain(request.path_params["name"], await body_of(request)))

    async def role_assignments(request: Request) -> Response:
        loopback_only(request)
        return JSONResponse(tenant_of(request).assign_role(await body_of(request)), status_code=201)

    async def role_assignment(request: Request) -> Response:
        loopback_only(request)
        role, principal = request.path_params["role"], request.path_params["principal"]
        tenant_of(request).unassign_role(
            role,
            principal,
            eligible=request.query_params.get("eligible") == "true",
            scope=request.query_params.get("directoryScopeId", "/"),
        )
        return Response(status_code=204)

    async def role_definitions(request: Request) -> Response:
        loopback_only(request)
        return JSONResponse(tenant_of(request).add_custom_role(await body_of(request)), status_code=201)

    async def expire_delta_tokens(request: Request) -> Response:
        loopback_only(request)
        state.expire_delta_tokens(tenant_of(request), gone=request.query_params.get("mode") == "gone")
        return Response(status_code=204)

    return [
        Route("/_emulator/tenants", tenants, methods=["GET", "POST"]),
        Route("/_emulator/tenants/{tenant}", tenant, methods=["GET", "DELETE"]),
        Route("/_emulator/tenants/{tenant}/objects", objects, methods=["POST"]),
        Route("/_emulator/tenants/{tenant}/apps", apps, methods=["POST"]),
        Route("/_emulator/tenants/{tenant}/domains", domains, methods=["POST"]),
        Route("/_emulator/tenants/{tenant}/domains/{name}", domain, methods=["PATCH", "DELETE"]),
        Route("/_emulator/tenants/{tenant}/apps/{client_id}/certificates", certificates, methods=["GET", "POST"]),
        Route(
            "/_emulator/tenants/{tenant}/apps/{client_id}/certificates/{thumbprint}", certificate, methods=["DELETE"]
        ),
        Route("/_emulator/tenants/{tenant}/roleAssignments", role_assignments, methods=["POST"]),
        Route("/_emulator/tenants/{tenant}/roleDefinitions", role_definitions, methods=["POST"]),
        Route("/_emulator/tenants/{tenant}/roleAssignments/{role}/{principal}", role_assignment, methods=["DELETE"]),
        Route("/_emulator/tenants/{tenant}/deltaTokens/expire", expire_delta_tokens, methods=["POST"]),
        Route("/_emulator/tenants/{tenant}/tokens/revoke", revoke_tokens, methods=["POST"]),
        Route("/_emulator/tenants/{tenant}/apps/{client_id}", app_secret, methods=["PATCH"]),
        Route("/_emulator/reset", reset, methods=["POST"]),
        Route("/_emulator/flush", flush, methods=["POST"]),
        Route("/_emulator/counters", counters, methods=["GET", "DELETE"]),
        Route("/_emulator/settings", settings, methods=["GET", "PUT"]),
    ]


def create_app(state: EmulatorState) -> Starlette:
    """The emulator as an ASGI app over *state*; ``app.state.emulator`` and ``app.state.tokens`` expose both."""
    tokens = identity.TokenService(state)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        state.flush()  # writes coalesced by save_soon must reach the file before the process ends

    app = Starlette(
        routes=[
            *_admin_routes(state),
            *graph.routes(tokens),
            *graph_directory.routes(tokens),
            *graph_beta.routes(tokens),
            *identity.routes(state, tokens),
        ],
        exception_handlers={err.GraphError: _on_graph_error, HTTPException: _on_http_error},
        lifespan=lifespan,
    )
    app.add_middleware(GraphMiddleware, state=state)
    app.state.emulator = state
    app.state.tokens = tokens
    return app
