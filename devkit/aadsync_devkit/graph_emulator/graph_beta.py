"""The few Microsoft Graph beta routes the sync app calls: a group's ``writebackConfiguration`` (beta only; v1.0 has
no such property and refuses it in ``$select`` or a PATCH body), listed with ``GET /beta/groups`` and set with
``PATCH /beta/groups/{id}``.

Graph documents ``isEnabled`` as nullable, defaulting to true for Microsoft 365 groups and false for security groups,
and ``onPremisesGroupType`` as one of universalDistributionGroup, universalSecurityGroup,
universalMailEnabledSecurityGroup; a group never configured answers both as null, as here.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aadsync_devkit.graph_emulator import exceptions as err
from aadsync_devkit.graph_emulator import odata
from aadsync_devkit.graph_emulator.catalog import DEFAULT_SELECT, GROUP, PROPERTIES
from aadsync_devkit.graph_emulator.graph import GraphJSON, json_body, query_params, route
from aadsync_devkit.graph_emulator.identity import TokenService, base_url
from aadsync_devkit.graph_emulator.tenant import Tenant

WRITEBACK_CONFIGURATION = "writebackConfiguration"
GROUP_TYPES = ("universalDistributionGroup", "universalSecurityGroup", "universalMailEnabledSecurityGroup")
_UNSET = {"isEnabled": None, "onPremisesGroupType": None}


def writeback_configuration(value: Any) -> dict[str, Any]:
    """A PATCH body's ``writebackConfiguration``, checked as Graph types it."""
    if not isinstance(value, dict) or set(value) - {"isEnabled", "onPremisesGroupType", "@odata.type"}:
        raise err.BadRequest("Invalid value for property 'writebackConfiguration'.")
    enabled, kind = value.get("isEnabled"), value.get("onPremisesGroupType")
    if enabled is not None and not isinstance(enabled, bool):
        raise err.BadRequest("Cannot convert the literal to the expected type 'Edm.Boolean'.")
    if kind is not None and kind not in GROUP_TYPES:
        raise err.BadRequest(f"Invalid value for property 'onPremisesGroupType': {kind!r}.")
    return {"isEnabled": enabled, "onPremisesGroupType": kind}


def routes(tokens: TokenService) -> list[Route]:
    properties = {**PROPERTIES[GROUP], WRITEBACK_CONFIGURATION: "rw"}

    def render(row: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
        out = odata.shape(GROUP, row, [n for n in select or [] if n != WRITEBACK_CONFIGURATION] or None,
                          DEFAULT_SELECT[GROUP])  # fmt: skip
        if select is None or WRITEBACK_CONFIGURATION in select:
            out[WRITEBACK_CONFIGURATION] = dict(row.get(WRITEBACK_CONFIGURATION) or _UNSET)
        return out

    async def list_groups(request: Request, tenant: Tenant) -> Response:
        params = query_params(request)
        query = odata.parse_query(params, request.headers, GROUP, properties=properties)
        rows = tenant.list(GROUP, query.predicate)
        base = base_url(request)
        context = f"{base}/beta/$metadata#groups" + (f"({','.join(query.select)})" if query.select else "")
        body = odata.page(rows, query, base=base, path=request.url.path, params=params, context=context,
                          render=lambda row: render(row, query.select))  # fmt: skip
        return GraphJSON(body)

    async def update_group(request: Request, tenant: Tenant) -> Response:
        body = await json_body(request)
        if WRITEBACK_CONFIGURATION in body:
            tenant.set_writeback_configuration(
                request.path_params["id"], writeback_configuration(body.pop(WRITEBACK_CONFIGURATION))
            )
        if body:
            tenant.update_group(request.path_params["id"], body)
        return Response(status_code=204)

    return [
        route(tokens, "/beta/groups", list_groups, ["GET"]),
        route(tokens, "/beta/groups/{id}", update_group, ["PATCH"]),
    ]
