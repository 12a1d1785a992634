"""Microsoft Graph v1.0 routes: thin handlers that authenticate, parse, call the tenant model and render JSON.

Every route first rolls the fault-injection dice, authenticates, and charges the request to the throttling limits
(see :class:`~aadsync_devkit.graph_emulator.state.EmulatorState`). ``POST /v1.0/$batch`` runs each inner request
through the whole app again, so inner requests meet every rule, error, throttle and counter a direct call meets.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Message

from aadsync_devkit.graph_emulator import exceptions as err
from aadsync_devkit.graph_emulator import odata, permissions
from aadsync_devkit.graph_emulator.catalog import (
    CONTACT,
    DEFAULT_SELECT,
    ENTITY_SETS,
    GROUP,
    ODATA_TYPES,
    PROPERTIES,
    USER,
)
from aadsync_devkit.graph_emulator.identity import TokenService, base_url
from aadsync_devkit.graph_emulator.tenant import Tenant

ODATA_JSON = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
MAX_BATCH = 20
DELTA_SUFFIXES = ("delta", "delta()", "microsoft.graph.delta", "microsoft.graph.delta()")
#: Requests that change the tenant: the ones ``faultWrite504Ratio`` answers 504 after carrying them out.
_WRITES = frozenset({"POST", "PATCH", "PUT", "DELETE"})
_BATCH_HEADERS = {"content-type", "location", "retry-after", "preference-applied", "odata-version"}
Handler = Callable[[Request, Tenant], Awaitable[Response]]
_ANY_PROPERTIES = {**PROPERTIES[CONTACT], **PROPERTIES[GROUP], **PROPERTIES[USER]}
_DELETED_KINDS = {"microsoft.graph.user": USER, "microsoft.graph.group": GROUP}


class GraphJSON(JSONResponse):
    media_type = ODATA_JSON

    def render(self, content: Any) -> bytes:
        """Starlette's rendering, or, for a value holding an unpaired surrogate (written through a JSON escape, as
        JSON allows), the same document with non-ASCII text escaped: valid JSON that carries the surrogate as it was
        written, where UTF-8 cannot encode it (Starlette would answer 500)."""
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def paged(
    request: Request, params: dict[str, str], query: Any, rows: list[Any], entity_set: str, render: Any
) -> Response:
    """One page of a collection with Graph's ``@odata.context`` and an absolute ``@odata.nextLink``."""
    base = base_url(request)
    context = odata.context_url(base, entity_set, query.select)
    return GraphJSON(
        odata.page(rows, query, base=base, path=request.url.path, params=params, context=context, render=render)
    )


def directory_objects(request: Request, rows: list[tuple[str, dict[str, Any]]]) -> Response:
    """One page of a mixed collection of directory objects (``(kind, properties with _seq)`` rows), each with its
    ``@odata.type``: a group's members, a directory role's members. ``$select`` applies, ``$filter`` is refused."""
    params = query_params(request)
    query = odata.parse_query(
        params, request.headers, "directoryObject", properties=_ANY_PROPERTIES, allow_filter=False
    )
    kinds = {row["_seq"]: kind for kind, row in rows}
    return paged(
        request, params, query, [row for _, row in rows], "directoryObjects",
        lambda row: typed(kinds[row["_seq"]], row, query.select),
    )  # fmt: skip


def query_params(request: Request) -> dict[str, str]:
    return dict(request.query_params)


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise err.BadRequest(
            "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid "
            "JSON format."
        )
    return body


def typed(kind: str, props: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    """A directoryObject in a mixed collection: ``@odata.type`` first, then the type's shape."""
    names = [n for n in select if n in PROPERTIES[kind]] if select else None
    return {"@odata.type": ODATA_TYPES[kind], **odata.shape(kind, props, names or None, DEFAULT_SELECT[kind])}


def _expand_manager(kind: str, params: dict[str, str]) -> tuple[dict[str, str], bool]:
    """The query without ``$expand=manager`` (users only, as Graph documents it) and whether it was asked for."""
    if kind == USER and params.get("$expand", "").strip().lower() == "manager":
        return {k: v for k, v in params.items() if k != "$expand"}, True
    return params, False


def _with_manager(tenant: Tenant, user_id: str, body: dict[str, Any], expand: bool) -> dict[str, Any]:
    """*body* with the user's ``manager`` (a directoryObject) when expanded and set; left out when there is none."""
    if expand:
        try:
            kind, props = tenant.manager_of(user_id)
        except err.ResourceNotFound:
            return body
        body["manager"] = typed(kind, props, None)
    return body


def _select_only(request: Request, kind: str, tenant: Tenant) -> list[str] | None:
    params = {k: v for k, v in query_params(request).items() if k == "$select"}
    extensions = tenant.extension_names(kind)
    return odata.parse_query(params, request.headers, kind, properties=PROPERTIES[kind], extensions=extensions).select


def _batch_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The validated requests of a ``$batch`` body, each with ``dependsOn`` (``depends_on`` accepted too)."""
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise err.InvalidBatchPayload("The 'requests' property must be a non-empty array.")
    if len(requests) > MAX_BATCH:
        raise err.BatchTooLarge(MAX_BATCH)
    items, seen = [], set()
    for raw in requests:
        if not isinstance(raw, dict):
            raise err.InvalidBatchPayload()
        item_id, method, url = raw.get("id"), raw.get("method"), raw.get("url")
        if isinstance(item_id, int) and not isinstance(item_id, bool):
            item_id = str(item_id)
        if not isinstance(item_id, str) or not item_id or not isinstance(method, str) or not isinstance(url, str):
            raise err.InvalidBatchPayload("Each request needs a string 'id', 'method' and 'url'.")
        if item_id.lower() in seen:
            raise err.InvalidBatchPayload(f"The id '{item_id}' is used by more than one request.")
        seen.add(item_id.lower())
        depends = raw.get("dependsOn", raw.get("depends_on")) or []
        headers = raw.get("headers") or {}
        if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
            raise err.InvalidBatchPayload("'dependsOn' must be an array of request ids.")
        if not isinstance(headers, dict):
            raise err.InvalidBatchPayload("'headers' must be an object.")
        items.append({**raw, "id": item_id, "method": method.upper(), "dependsOn": depends, "headers": headers})
    for item in items:
        for dep in item["dependsOn"]:
            if dep.lower() not in seen or dep.lower() == item["id"].lower():
                raise err.InvalidBatchPayload(f"Request '{item['id']}' depends on an unknown request '{dep}'.")
    _check_dependency_pattern(items)
    return items


def _check_dependency_pattern(items: list[dict[str, Any]]) -> None:
    """Graph runs a batch fully parallel (no ``dependsOn``) or fully sequential (each request depends on the one
    before it), and accepts requests that all state the same single dependency; anything else is a 400.

    Microsoft's Graph JavaScript client validates these three patterns before sending (``BatchRequestContent``), and
    Graph answers other mixes with "Batch should be either fully sequential or fully parallel".
    """
    stated = [[dep.lower() for dep in item["dependsOn"]] for item in items]
    if not any(stated):
        return
    serial = not stated[0] and all(deps == [items[n - 1]["id"].lower()] for n, deps in enumerate(stated) if n)
    same = len({tuple(deps) for deps in stated if deps}) == 1 and all(len(deps) <= 1 for deps in stated)
    if not (serial or same):
        raise err.ODataBadRequest("Batch should be either fully sequential or fully parallel")


def _batch_order(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dependencies first (requests without ``dependsOn`` keep their order); 400 on a dependency cycle."""
    done: set[str] = set()
    order: list[dict[str, Any]] = []
    pending = list(items)
    while pending:
        ready = [i for i in pending if all(d.lower() in done for d in i["dependsOn"])]
        if not ready:
            raise err.InvalidBatchPayload("The 'dependsOn' references form a cycle.")
        for item in ready:
            order.append(item)
            done.add(item["id"].lower())
            pending.remove(item)
    return order


async def _dispatch(request: Request, item: dict[str, Any]) -> dict[str, Any]:
    """Run one ``$batch`` request through the whole app (middleware, routing, rules) and capture its answer."""
    parts = urlsplit(item["url"].strip())
    path = parts.path if parts.scheme else item["url"].strip().split("?", 1)[0]
    query = parts.query
    if path == "/v1.0" or path.startswith("/v1.0/"):
        path = path[len("/v1.0") :]
    path = "/v1.0" + ("" if path.startswith("/") else "/") + path
    headers = {k.lower(): str(v) for k, v in item["headers"].items()}
    headers.setdefault("authorization", request.headers.get("authorization", ""))
    headers["host"] = request.headers.get("host", request.url.netloc)
    body = item.get("body")
    if body is None:
        raw = b""
    elif isinstance(body, str):
        # A non-JSON-object body travels base64-encoded (the msgraph SDK does so for any body that is not a JSON
        # object); text that is not base64 is taken as it is.
        try:
            raw = base64.b64decode(body, validate=True)
        except ValueError:
            raw = body.encode()
    else:
        raw = json.dumps(body).encode()
        headers.setdefault("content-type", "application/json")
    scope = {
        "type": "http",
        "asgi": request.scope.get("asgi", {"version": "3.0"}),
        "http_version": "1.1",
        "method": item["method"],
        "scheme": request.url.scheme,
        "server": request.scope.get("server"),
        "client": request.scope.get("client"),
        "root_path": "",
        "path": unquote(path),
        "raw_path": path.encode(),
        "query_string": query.encode("latin-1"),
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        # an inner request has no connection of its own to drop
        "emulator.batch_item": True,
    }
    sent = False
    answer: dict[str, Any] = {"status": 500, "headers": [], "body": b""}

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = message.get("headers", [])
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    try:
        await request.app(scope, receive, send)
    except Exception:  # noqa: BLE001 - an inner 500 is answered in the envelope, as Graph does
        answer["status"] = 500
    out: dict[str, Any] = {"id": item["id"], "status": answer["status"], "headers": {"Cache-Control": "no-cache"}}
    content_type = ""
    for key, value in answer["headers"]:
        name = key.decode("latin-1").lower()
        if name in _BATCH_HEADERS:
            out["headers"]["-".join(p.capitalize() for p in name.split("-")).replace("Odata", "OData")] = value.decode(
                "latin-1"
            )
            if name == "content-type":
                content_type = value.decode("latin-1")
    if answer["body"]:
        text = answer["body"].decode("utf-8", "replace")
        out["body"] = json.loads(text) if "json" in content_type else text
    return out


def route(tokens: TokenService, path: str, handler: Handler, methods: list[str], *, throttled: bool = True) -> Route:
    """A Graph route: the fault dice, the bearer token, the throttling limits, then *handler*."""
    state = tokens.state

    async def endpoint(request: Request) -> Response:
        latency, fault = state.fault()
        if latency:
            await asyncio.sleep(latency)
        if fault is not None:
            raise fault
        tenant, app_id, roles = tokens.authenticate_roles(request.headers.get("authorization"))
        request.scope["emulator.app_id"] = app_id  # the caller, for the routes that check its permissions
        permissions.require(request.method, path, roles)
        if throttled:
            state.throttle(tenant, app_id, request.method, request.url.path, query_params(request))
        response = await handler(request, tenant)
        carried_out = request.method in _WRITES and response.status_code < 400
        if carried_out and path != "/v1.0/$batch" and state.gateway_timeout():
            request.scope["emulator.written"] = True  # carried out (and saved), but the caller never learns it
            raise err.GatewayTimeout()
        return response

    return Route(path, endpoint, methods=methods)


def routes(tokens: TokenService) -> list[Route]:
    state = tokens.state

    def graph(path: str, handler: Handler, methods: list[str], *, throttled: bool = True) -> Route:
        return route(tokens, path, handler, methods, throttled=throttled)

    # ------------------------------------------------------------------------------------------- collections

    def list_of(kind: str) -> Handler:
        async def handler(request: Request, tenant: Tenant) -> Response:
            params = query_params(request)
            parsed, manager = _expand_manager(kind, params)
            extensions = tenant.extension_names(kind)
            query = odata.parse_query(parsed, request.headers, kind, properties=PROPERTIES[kind], extensions=extensions)
            rows = tenant.list(kind, query.predicate)
            return paged(
                request, params, query, rows, ENTITY_SETS[kind],
                lambda row: _with_manager(
                    tenant, row["id"], odata.shape(kind, row, query.select, DEFAULT_SELECT[kind]), manager
                ),
            )  # fmt: skip

        return handler

    def raw_count(kind: str) -> Handler:
        async def handler(request: Request, tenant: Tenant) -> Response:
            if request.headers.get("consistencylevel", "").lower() != "eventual":
                raise err.RawCountNotSupported()
            params = {k: v for k, v in query_params(request).items() if k == "$filter"}
            query = odata.parse_query(
                {**params, "$count": "true"}, request.headers, kind, properties=PROPERTIES[kind],
                extensions=tenant.extension_names(kind),
            )  # fmt: skip
            return PlainTextResponse(str(len(tenant.list(kind, query.predicate))))

        return handler

    def get_one(kind: str) -> Handler:
        async def handler(request: Request, tenant: Tenant) -> Response:
            select = _select_only(request, kind, tenant)
            _, props = tenant.get(kind, request.path_params["id"])
            body = {"@odata.context": odata.context_url(base_url(request), ENTITY_SETS[kind], select, entity=True)}
            body.update(odata.shape(kind, props, select, DEFAULT_SELECT[kind]))
            return GraphJSON(_with_manager(tenant, props["id"], body, _expand_manager(kind, query_params(request))[1]))

        return handler

    def create(kind: str) -> Handler:
        async def handler(request: Request, tenant: Tenant) -> Response:
            body = await json_body(request)
            props = tenant.create_user(body) if kind == USER else tenant.create_group(body)
            base = base_url(request)
            out = {"@odata.context": odata.context_url(base, ENTITY_SETS[kind], None, entity=True)}
            out.update(odata.shape(kind, props, None, DEFAULT_SELECT[kind]))
            location = f"{base}/v1.0/directoryObjects/{props['id']}"
            return GraphJSON(out, status_code=201, headers={"Location": location})

        return handler

    def update(kind: str) -> Handler:
        async def handler(request: Request, tenant: Tenant) -> Response:
            body = await json_body(request)
            key = request.path_params["id"]
            if kind == USER:
                tenant.update_user(key, body)
            else:
                tenant.update_group(key, body)
            return Response(status_code=204)

        return handler

    def delete(kind: str) -> Handler:
        async def handler(request: Request, tenant: Tenant) -> Response:
            tenant.delete(kind, request.path_params["id"])
            return Response(status_code=204)

        return handler

    def delta(kind: str) -> Handler:
        async def handler(request: Request, tenant: Tenant) -> Response:
            prefer = [p.strip().lower() for p in request.headers.get("prefer", "").split(",")]
            minimal = "return=minimal" in prefer
            base = base_url(request)
            entity_set = ENTITY_SETS[kind]
            try:
                page = state.delta(tenant, kind, query_params(request), minimal=minimal)
            except err.SyncStateGone as gone:
                names = [*(gone.select or []), *(["members"] if gone.members and kind == GROUP else [])]
                restart = f"{base}/v1.0/{entity_set}/delta" + (f"?$select={','.join(names)}" if gone.select else "")
                raise err.SyncStateGone(gone.select, gone.members, restart) from None
            body: dict[str, Any] = {"@odata.context": odata.context_url(base, entity_set, page.select)}
            link = f"{base}/v1.0/{entity_set}/delta?"
            if page.skiptoken:
                body["@odata.nextLink"] = f"{link}$skiptoken={page.skiptoken}"
            else:
                body["@odata.deltaLink"] = f"{link}$deltatoken={page.deltatoken}"
            body["value"] = page.items
            return GraphJSON(body, headers={"Preference-Applied": "return=minimal"} if minimal else None)

        return handler

    async def batch(request: Request, tenant: Tenant) -> Response:
        items = _batch_items(await json_body(request))
        results: dict[str, dict[str, Any]] = {}
        for item in _batch_order(items):
            if any(results[d.lower()]["status"] >= 400 for d in item["dependsOn"]):
                request_id = str(uuid.uuid4())
                error = err.FailedDependency()
                results[item["id"].lower()] = {
                    "id": item["id"],
                    "status": error.status,
                    "headers": {"Cache-Control": "no-cache", "Content-Type": ODATA_JSON},
                    "body": error.body(request_id=request_id, client_request_id=request_id),
                }
                state.count(item["method"], "(failed dependency)", error.status)
                continue
            results[item["id"].lower()] = await _dispatch(request, item)
        state.count_batch_items(len(items))
        return GraphJSON({"responses": [results[i["id"].lower()] for i in items]})

    # ------------------------------------------------------------------------------------------- others

    async def organization(request: Request, tenant: Tenant) -> Response:
        base = base_url(request)
        return GraphJSON({"@odata.context": f"{base}/v1.0/$metadata#organization", "value": [tenant.organization()]})

    async def organization_one(request: Request, tenant: Tenant) -> Response:
        if request.path_params["id"].lower() != tenant.id:
            raise err.ResourceNotFound(request.path_params["id"])
        base = base_url(request)
        return GraphJSON({"@odata.context": f"{base}/v1.0/$metadata#organization/$entity", **tenant.organization()})

    async def directory_object(request: Request, tenant: Tenant) -> Response:
        kind, props = tenant.get(None, request.path_params["id"])
        base = base_url(request)
        return GraphJSON(
            {"@odata.context": f"{base}/v1.0/$metadata#directoryObjects/$entity", **typed(kind, props, None)}
        )

    async def members(request: Request, tenant: Tenant) -> Response:
        return directory_objects(request, tenant.members(request.path_params["id"]))

    async def add_member(request: Request, tenant: Tenant) -> Response:
        body = await json_body(request)
        if "@odata.id" not in body:
            raise err.BadRequest("The request body must contain '@odata.id'.")
        tenant.add_member(request.path_params["id"], body["@odata.id"])
        return Response(status_code=204)

    async def remove_member(request: Request, tenant: Tenant) -> Response:
        tenant.remove_member(request.path_params["id"], request.path_params["member"])
        return Response(status_code=204)

    async def deleted_list(request: Request, tenant: Tenant) -> Response:
        cast = request.path_params["cast"]
        kind = _DELETED_KINDS.get(cast.lower())
        if kind is None:
            raise err.SegmentNotFound(cast)
        params = query_params(request)
        query = odata.parse_query(params, request.headers, kind, properties=PROPERTIES[kind])
        rows = [row for _, row in tenant.deleted_items(kind) if query.predicate is None or query.predicate(row)]
        return paged(
            request, params, query, rows, f"directory/deletedItems/{cast}",
            lambda row: odata.shape(kind, row, query.select, DEFAULT_SELECT[kind]),
        )  # fmt: skip

    async def deleted_one(request: Request, tenant: Tenant) -> Response:
        if request.path_params["id"].lower().startswith("microsoft.graph."):
            request.path_params["cast"] = request.path_params["id"]
            return await deleted_list(request, tenant)
        kind, props = tenant.get_deleted(request.path_params["id"])
        base = base_url(request)
        context = f"{base}/v1.0/$metadata#directory/deletedItems/$entity"
        return GraphJSON({"@odata.context": context, **typed(kind, props, None)})

    async def deleted_purge(request: Request, tenant: Tenant) -> Response:
        tenant.purge(request.path_params["id"])
        return Response(status_code=204)

    async def deleted_restore(request: Request, tenant: Tenant) -> Response:
        kind, props = tenant.restore(request.path_params["id"])
        base = base_url(request)
        context = f"{base}/v1.0/$metadata#directoryObjects/$entity"
        return GraphJSON({"@odata.context": context, **typed(kind, props, None)})

    delta_routes = [
        graph(f"/v1.0/{ENTITY_SETS[kind]}/{suffix}", delta(kind), ["GET"])
        for kind in (USER, GROUP)
        for suffix in DELTA_SUFFIXES
    ]
    return [
        graph("/v1.0/$batch", batch, ["POST"], throttled=False),
        *delta_routes,
        graph("/v1.0/organization", organization, ["GET"]),
        graph("/v1.0/organization/{id}", organization_one, ["GET"]),
        graph("/v1.0/users", list_of(USER), ["GET"]),
        graph("/v1.0/users", create(USER), ["POST"]),
        graph("/v1.0/users/$count", raw_count(USER), ["GET"]),
        graph("/v1.0/users/{id}", get_one(USER), ["GET"]),
        graph("/v1.0/users/{id}", update(USER), ["PATCH"]),
        graph("/v1.0/users/{id}", delete(USER), ["DELETE"]),
        graph("/v1.0/groups", list_of(GROUP), ["GET"]),
        graph("/v1.0/groups", create(GROUP), ["POST"]),
        graph("/v1.0/groups/$count", raw_count(GROUP), ["GET"]),
        graph("/v1.0/groups/{id}", get_one(GROUP), ["GET"]),
        graph("/v1.0/groups/{id}", update(GROUP), ["PATCH"]),
        graph("/v1.0/groups/{id}", delete(GROUP), ["DELETE"]),
        graph("/v1.0/groups/{id}/members", members, ["GET"]),
        graph("/v1.0/groups/{id}/members/$ref", add_member, ["POST"]),
        graph("/v1.0/groups/{id}/members/{member}/$ref", remove_member, ["DELETE"]),
        graph("/v1.0/contacts", list_of(CONTACT), ["GET"]),
        graph("/v1.0/contacts/$count", raw_count(CONTACT), ["GET"]),
        graph("/v1.0/contacts/{id}", get_one(CONTACT), ["GET"]),
        graph("/v1.0/directoryObjects/{id}", directory_object, ["GET"]),
        graph("/v1.0/directory/deletedItems/{id}", deleted_one, ["GET"]),
        graph("/v1.0/directory/deletedItems/{id}", deleted_purge, ["DELETE"]),
        graph("/v1.0/directory/deletedItems/{id}/restore", deleted_restore, ["POST"]),
    ]
