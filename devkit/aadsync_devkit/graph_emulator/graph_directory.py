"""Microsoft Graph v1.0 routes beyond users and groups themselves: the application objects of the tenant's app
registrations with their directory extension definitions (``extensionProperties``),
``directoryObjects/getAvailableExtensionProperties``, the tenant's ``domains``, its activated ``directoryRoles`` and
their members, the unified RBAC API's ``roleAssignments``, PIM's ``roleEligibilityScheduleInstances`` and the
``roleDefinitions``, and a user's ``manager``
(``$ref`` to set and remove it).
Thin, like :mod:`.graph`: parse, call the tenant, render.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aadsync_devkit.graph_emulator import exceptions as err
from aadsync_devkit.graph_emulator import odata
from aadsync_devkit.graph_emulator.apps import DEFAULT_ROLES, EXTENSION_WRITER_OWNED, EXTENSION_WRITERS
from aadsync_devkit.graph_emulator.graph import (
    GraphJSON,
    directory_objects,
    json_body,
    paged,
    query_params,
    route,
    typed,
)
from aadsync_devkit.graph_emulator.identity import TokenService, base_url
from aadsync_devkit.graph_emulator.tenant import Tenant

#: ``/applications/{object id}`` and Graph's alternate key ``/applications(appId='{client id}')``.
_APPLICATION_KEYS = ("/v1.0/applications/{app}", "/v1.0/applications({app})")
_APPLICATION_PROPERTIES = {"id": "ro", "appId": "ro", "displayName": "ro"}
_EXTENSION_PROPERTIES = {
    name: "ro"
    for name in ("id", "deletedDateTime", "appDisplayName", "dataType", "isMultiValued", "isSyncedFromOnPremises",
                 "name", "targetObjects")
}  # fmt: skip
_ROLE_PROPERTIES = {name: "ro" for name in ("id", "deletedDateTime", "description", "displayName", "roleTemplateId")}
_ELIGIBILITY_PROPERTIES = {
    name: "ro"
    for name in ("id", "principalId", "roleDefinitionId", "directoryScopeId", "appScopeId", "startDateTime",
                 "endDateTime", "memberType", "roleEligibilityScheduleId")
}  # fmt: skip
_ELIGIBILITIES = "roleManagement/directory/roleEligibilityScheduleInstances"
_ASSIGNMENT_PROPERTIES = {
    name: "ro" for name in ("id", "principalId", "roleDefinitionId", "directoryScopeId", "appScopeId")
}
_ASSIGNMENTS = "roleManagement/directory/roleAssignments"
_DEFINITION_PROPERTIES = {name: "ro" for name in ("id", "displayName", "isBuiltIn", "isEnabled", "templateId")}
_DOMAIN_PROPERTIES = {
    name: "ro"
    for name in ("authenticationType", "availabilityStatus", "id", "isAdminManaged", "isDefault", "isInitial",
                 "isRoot", "isVerified", "passwordNotificationWindowInDays", "passwordValidityPeriodInDays",
                 "supportedServices", "state")
}  # fmt: skip


def _rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with the ``_seq`` paging cursor the collection pager expects."""
    return [{**item, "_seq": n} for n, item in enumerate(items, 1)]


def _shape(row: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    names = [*select, "id"] if select else [n for n in row if n != "_seq"]
    return {name: row.get(name) for name in dict.fromkeys(names)}


def _collection(request: Request, kind: str, properties: dict[str, str], items: list[dict[str, Any]]) -> Response:
    params = query_params(request)
    query = odata.parse_query(params, request.headers, kind, properties=properties)
    rows = [row for row in _rows(items) if query.predicate is None or query.predicate(row)]
    base = base_url(request)
    context = odata.context_url(base, request.url.path.removeprefix("/v1.0/"), query.select)
    body = odata.page(
        rows, query, base=base, path=request.url.path, params=params, context=context,
        render=lambda row: _shape(row, query.select),
    )  # fmt: skip
    return GraphJSON(body)


def _with_principals(
    request: Request,
    found: list[tuple[dict[str, Any], str, dict[str, Any]]],
    kind: str,
    properties: dict[str, str],
    path: str,
) -> Response:
    """A unified RBAC collection (role assignments, PIM's eligibilities) of ``(item, principal kind, principal
    properties)``; ``$expand=principal`` adds each principal with its ``@odata.type`` (the one expansion the emulator
    serves)."""
    params = query_params(request)
    expand = params.get("$expand", "").strip()
    if expand not in ("", "principal"):
        raise err.BadRequest(f"The emulator expands only 'principal' here, not '{expand}'.")
    rest = {name: value for name, value in params.items() if name != "$expand"}
    query = odata.parse_query(rest, request.headers, kind, properties=properties)
    principals = {n: (of_kind, props) for n, (_, of_kind, props) in enumerate(found, 1)}
    rows = [row for row in _rows([item for item, _, _ in found]) if query.predicate is None or query.predicate(row)]

    def render(row: dict[str, Any]) -> dict[str, Any]:
        shaped = _shape(row, query.select)
        if expand:
            shaped["principal"] = typed(*principals[row["_seq"]], None)
        return shaped

    return paged(request, rest, query, rows, path, render)


def _may_write_extensions(request: Request, tenant: Tenant) -> None:
    """403 unless the caller holds a permission Create extensionProperty documents for applications."""
    target = tenant.application(request.path_params["app"])
    caller = tenant.apps.get(request.scope.get("emulator.app_id", ""))
    roles = set(caller.granted_roles if caller else DEFAULT_ROLES)
    if roles & set(EXTENSION_WRITERS) or (EXTENSION_WRITER_OWNED in roles and caller is target):
        return
    raise err.GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")


def routes(tokens: TokenService) -> list[Route]:
    # ------------------------------------------------------------------------------------------- applications

    async def applications(request: Request, tenant: Tenant) -> Response:
        items = [tenant.application_json(app) for app in tenant.apps.values()]
        return _collection(request, "application", _APPLICATION_PROPERTIES, items)

    async def application(request: Request, tenant: Tenant) -> Response:
        app = tenant.application(request.path_params["app"])
        context = f"{base_url(request)}/v1.0/$metadata#applications/$entity"
        return GraphJSON({"@odata.context": context, **tenant.application_json(app)})

    # ------------------------------------------------------------------------------------------- directory extensions

    async def list_extensions(request: Request, tenant: Tenant) -> Response:
        items = tenant.app_extensions(request.path_params["app"])
        return _collection(request, "extensionProperty", _EXTENSION_PROPERTIES, items)

    async def create_extension(request: Request, tenant: Tenant) -> Response:
        _may_write_extensions(request, tenant)
        created = tenant.add_extension(request.path_params["app"], await json_body(request))
        app = tenant.application(request.path_params["app"])
        context = f"{base_url(request)}/v1.0/$metadata#applications('{app.object_id}')/extensionProperties/$entity"
        return GraphJSON({"@odata.context": context, **created}, status_code=201)

    async def get_extension(request: Request, tenant: Tenant) -> Response:
        found = tenant.app_extension(request.path_params["app"], request.path_params["ext"])
        app = tenant.application(request.path_params["app"])
        context = f"{base_url(request)}/v1.0/$metadata#applications('{app.object_id}')/extensionProperties/$entity"
        return GraphJSON({"@odata.context": context, **found})

    async def delete_extension(request: Request, tenant: Tenant) -> Response:
        _may_write_extensions(request, tenant)
        tenant.delete_extension(request.path_params["app"], request.path_params["ext"])
        return Response(status_code=204)

    async def available_extensions(request: Request, tenant: Tenant) -> Response:
        raw = await request.body()
        body = await json_body(request) if raw.strip() else {}
        synced = body.get("isSyncedFromOnPremises")
        if synced is not None and not isinstance(synced, bool):
            raise err.InvalidPropertyValue("isSyncedFromOnPremises", "GetAvailableExtensionProperties")
        context = f"{base_url(request)}/v1.0/$metadata#Collection(microsoft.graph.extensionProperty)"
        return GraphJSON({"@odata.context": context, "value": tenant.available_extensions(synced)})

    # ------------------------------------------------------------------------------------------- domains

    async def domains(request: Request, tenant: Tenant) -> Response:
        return _collection(request, "domain", _DOMAIN_PROPERTIES, tenant.domains())

    async def domain(request: Request, tenant: Tenant) -> Response:
        found = tenant.domain(request.path_params["name"])
        return GraphJSON({"@odata.context": f"{base_url(request)}/v1.0/$metadata#domains/$entity", **found})

    # ------------------------------------------------------------------------------------------- directory roles

    async def directory_roles(request: Request, tenant: Tenant) -> Response:
        return _collection(request, "directoryRole", _ROLE_PROPERTIES, tenant.directory_roles())

    async def role_members(request: Request, tenant: Tenant) -> Response:
        return directory_objects(request, tenant.role_member_objects(request.path_params["role"]))

    async def role_definitions(request: Request, tenant: Tenant) -> Response:
        return _collection(request, "unifiedRoleDefinition", _DEFINITION_PROPERTIES, tenant.role_definitions())

    async def role_eligibilities(request: Request, tenant: Tenant) -> Response:
        found = tenant.role_eligibilities()
        kind = "unifiedRoleEligibilityScheduleInstance"
        return _with_principals(request, found, kind, _ELIGIBILITY_PROPERTIES, _ELIGIBILITIES)

    async def role_assignments(request: Request, tenant: Tenant) -> Response:
        found = tenant.role_assignments()
        return _with_principals(request, found, "unifiedRoleAssignment", _ASSIGNMENT_PROPERTIES, _ASSIGNMENTS)

    # ------------------------------------------------------------------------------------------- manager

    async def get_manager(request: Request, tenant: Tenant) -> Response:
        kind, props = tenant.manager_of(request.path_params["id"])
        select = [s.strip() for s in query_params(request).get("$select", "").split(",") if s.strip()] or None
        context = f"{base_url(request)}/v1.0/$metadata#directoryObjects/$entity"
        return GraphJSON({"@odata.context": context, **typed(kind, props, select)})

    async def get_manager_ref(request: Request, tenant: Tenant) -> Response:
        _, props = tenant.manager_of(request.path_params["id"])
        base = base_url(request)
        return GraphJSON({"@odata.context": f"{base}/v1.0/$metadata#directoryObjects/$ref",
                          "@odata.id": f"{base}/v1.0/directoryObjects/{props['id']}"})  # fmt: skip

    async def put_manager(request: Request, tenant: Tenant) -> Response:
        body = await json_body(request)
        if "@odata.id" not in body:
            raise err.BadRequest("The request body must contain '@odata.id'.")
        tenant.set_manager(request.path_params["id"], body["@odata.id"])
        return Response(status_code=204)

    async def delete_manager(request: Request, tenant: Tenant) -> Response:
        tenant.remove_manager(request.path_params["id"])
        return Response(status_code=204)

    def graph(path: str, handler: Any, methods: list[str]) -> Route:
        return route(tokens, path, handler, methods)

    return [
        graph("/v1.0/applications", applications, ["GET"]),
        *(graph(key, application, ["GET"]) for key in _APPLICATION_KEYS),
        *(graph(f"{key}/extensionProperties", list_extensions, ["GET"]) for key in _APPLICATION_KEYS),
        *(graph(f"{key}/extensionProperties", create_extension, ["POST"]) for key in _APPLICATION_KEYS),
        *(graph(f"{key}/extensionProperties/{{ext}}", get_extension, ["GET"]) for key in _APPLICATION_KEYS),
        *(graph(f"{key}/extensionProperties/{{ext}}", delete_extension, ["DELETE"]) for key in _APPLICATION_KEYS),
        graph("/v1.0/directoryObjects/getAvailableExtensionProperties", available_extensions, ["POST"]),
        graph("/v1.0/domains", domains, ["GET"]),
        graph("/v1.0/domains/{name}", domain, ["GET"]),
        graph("/v1.0/directoryRoles", directory_roles, ["GET"]),
        graph("/v1.0/directoryRoles/{role}/members", role_members, ["GET"]),
        graph(f"/v1.0/{_ELIGIBILITIES}", role_eligibilities, ["GET"]),
        graph(f"/v1.0/{_ASSIGNMENTS}", role_assignments, ["GET"]),
        graph("/v1.0/roleManagement/directory/roleDefinitions", role_definitions, ["GET"]),
        graph("/v1.0/users/{id}/manager", get_manager, ["GET"]),
        graph("/v1.0/users/{id}/manager/$ref", get_manager_ref, ["GET"]),
        graph("/v1.0/users/{id}/manager/$ref", put_manager, ["PUT"]),
        graph("/v1.0/users/{id}/manager/$ref", delete_manager, ["DELETE"]),
        graph("/v1.0/directoryObjects/microsoft.graph.getAvailableExtensionProperties", available_extensions, ["POST"]),
    ]
