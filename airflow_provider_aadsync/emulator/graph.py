"""Microsoft Graph v1.0 routes: thin handlers that authenticate, parse, call the tenant model and render JSON."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from airflow_provider_aadsync.emulator import exceptions as err
from airflow_provider_aadsync.emulator import odata
from airflow_provider_aadsync.emulator.identity import TokenService, base_url
from airflow_provider_aadsync.emulator.models import (
    CONTACT,
    DEFAULT_SELECT,
    ENTITY_SETS,
    GROUP,
    ODATA_TYPES,
    PROPERTIES,
    USER,
    Tenant,
)

ODATA_JSON = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
Handler = Callable[[Request, Tenant], Awaitable[Response]]
_ANY_PROPERTIES = {**PROPERTIES[CONTACT], **PROPERTIES[GROUP], **PROPERTIES[USER]}
_DELETED_KINDS = {"microsoft.graph.user": USER, "microsoft.graph.group": GROUP}


class GraphJSON(JSONResponse):
    media_type = ODATA_JSON


def _params(request: Request) -> dict[str, str]:
    return dict(request.query_params)


async def _json_body(request: Request) -> dict[str, Any]:
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


def _typed(kind: str, props: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    """A directoryObject in a mixed collection: ``@odata.type`` first, then the type's shape."""
    names = [n for n in select if n in PROPERTIES[kind]] if select else None
    return {"@odata.type": ODATA_TYPES[kind], **odata.shape(kind, props, names or None, DEFAULT_SELECT[kind])}


def _select_only(request: Request, kind: str) -> list[str] | None:
    params = {k: v for k, v in _params(request).items() if k == "$select"}
    return odata.parse_query(params, request.headers, kind, properties=PROPERTIES[kind]).select


def routes(tokens: TokenService) -> list[Route]:
    def graph(path: str, handler: Handler, methods: list[str]) -> Route:
        async def endpoint(request: Request) -> Response:
            tenant = tokens.authenticate(request.headers.get("authorization"))
            return await handler(request, tenant)

        return Route(path, endpoint, methods=methods)

    # ------------------------------------------------------------------------------------------- collections

    def list_of(kind: str) -> Handler:
        async def handler(request: Request, tenant: Tenant) -> Response:
            params = _params(request)
            query = odata.parse_query(params, request.headers, kind, properties=PROPERTIES[kind])
            rows = tenant.list(kind, query.predicate)
            base = base_url(request)
            body = odata.page(
                rows,
                query,
                base=base,
                path=request.url.path,
                params=params,
                context=odata.context_url(base, ENTITY_SETS[kind], query.select),
                render=lambda row: odata.shape(kind, row, query.select, DEFAULT_SELECT[kind]),
            )
            return GraphJSON(body)

        return handler

    def raw_count(kind: str) -> Handler:
        async def handler(request: Request, tenant: Tenant) -> Response:
            if request.headers.get("consistencylevel", "").lower() != "eventual":
                raise err.RawCountNotSupported()
            params = {k: v for k, v in _params(request).items() if k == "$filter"}
            query = odata.parse_query({**params, "$count": "true"}, request.headers, kind, properties=PROPERTIES[kind])
            return PlainTextResponse(str(len(tenant.list(kind, query.predicate))))

        return handler

    def get_one(kind: str) -> Handler:
        async def handler(request: Request, tenant: Tenant) -> Response:
            select = _select_only(request, kind)
            _, props = tenant.get(kind, request.path_params["id"])
            body = {"@odata.context": odata.context_url(base_url(request), ENTITY_SETS[kind], select, entity=True)}
            body.update(odata.shape(kind, props, select, DEFAULT_SELECT[kind]))
            return GraphJSON(body)

        return handler

    def create(kind: str) -> Handler:
        async def handler(request: Request, tenant: Tenant) -> Response:
            body = await _json_body(request)
            props = tenant.create_user(body) if kind == USER else tenant.create_group(body)
            base = base_url(request)
            out = {"@odata.context": odata.context_url(base, ENTITY_SETS[kind], None, entity=True)}
            out.update(odata.shape(kind, props, None, DEFAULT_SELECT[kind]))
            location = f"{base}/v1.0/directoryObjects/{props['id']}"
            return GraphJSON(out, status_code=201, headers={"Location": location})

        return handler

    def update(kind: str) -> Handler:
        async def handler(request: Request, tenant: Tenant) -> Response:
            body = await _json_body(request)
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
            {"@odata.context": f"{base}/v1.0/$metadata#directoryObjects/$entity", **_typed(kind, props, None)}
        )

    async def members(request: Request, tenant: Tenant) -> Response:
        params = _params(request)
        query = odata.parse_query(
            params, request.headers, "directoryObject", properties=_ANY_PROPERTIES, allow_filter=False
        )
        rows = tenant.members(request.path_params["id"])
        kinds = {row["_seq"]: kind for kind, row in rows}
        base = base_url(request)
        body = odata.page(
            [row for _, row in rows],
            query,
            base=base,
            path=request.url.path,
            params=params,
            context=odata.context_url(base, "directoryObjects", query.select),
            render=lambda row: _typed(kinds[row["_seq"]], row, query.select),
        )
        return GraphJSON(body)

    async def add_member(request: Request, tenant: Tenant) -> Response:
        body = await _json_body(request)
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
        params = _params(request)
        query = odata.parse_query(params, request.headers, kind, properties=PROPERTIES[kind])
        rows = [row for _, row in tenant.deleted_items(kind) if query.predicate is None or query.predicate(row)]
        base = base_url(request)
        body = odata.page(
            rows,
            query,
            base=base,
            path=request.url.path,
            params=params,
            context=odata.context_url(base, f"directory/deletedItems/{cast}", query.select),
            render=lambda row: odata.shape(kind, row, query.select, DEFAULT_SELECT[kind]),
        )
        return GraphJSON(body)

    async def deleted_one(request: Request, tenant: Tenant) -> Response:
        if request.path_params["id"].lower().startswith("microsoft.graph."):
            request.path_params["cast"] = request.path_params["id"]
            return await deleted_list(request, tenant)
        kind, props = tenant.get_deleted(request.path_params["id"])
        base = base_url(request)
        context = f"{base}/v1.0/$metadata#directory/deletedItems/$entity"
        return GraphJSON({"@odata.context": context, **_typed(kind, props, None)})

    async def deleted_purge(request: Request, tenant: Tenant) -> Response:
        tenant.purge(request.path_params["id"])
        return Response(status_code=204)

    async def deleted_restore(request: Request, tenant: Tenant) -> Response:
        kind, props = tenant.restore(request.path_params["id"])
        base = base_url(request)
        context = f"{base}/v1.0/$metadata#directoryObjects/$entity"
        return GraphJSON({"@odata.context": context, **_typed(kind, props, None)})

    return [
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
