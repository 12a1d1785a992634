"""The sync manager's FastAPI app: a JSON API under ``/aadsync/api`` and server-rendered pages under ``/aadsync/``.

Thin on purpose: every route reads the store through :mod:`airflow_provider_aadsync.engine.browse` (the code the
CLI's report, preview and export-plan share) and either returns its data or renders it with a Jinja2 template. The
store is opened as it is (``Store.open_existing``): a request never creates, claims or migrates it, and a store the
sync has not created or migrated yet is a 503 that says so.
Every route, static files included, depends on :func:`~airflow_provider_aadsync.plugins.auth.require_access`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from html import escape
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as FastApiPath
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from airflow_provider_aadsync.plugins.auth import require_access
from airflow_provider_aadsync.plugins.config import (
    ManagerConfig,
    Resources,
    config_from_airflow,
    named_instances_from_airflow,
)

URL_PREFIX = "/aadsync"
#: Where a named sync instance's routes live: ``/aadsync/i/<name>/...``.
INSTANCE_PREFIX = "/i"
#: The named instance the current request reads (None: the default instance); set by the routes' dependency.
_INSTANCE: ContextVar[str | None] = ContextVar("aadsync_manager_instance", default=None)
HERE = Path(__file__).parent
STATIC = {"aadsync.svg": "image/svg+xml", "style.css": "text/css"}

# Query parameters shared by the routes (module level: the routes' annotations are resolved by name). Numbers stop
# below 2**63: a larger one would overflow the store's 64-bit integers, an error instead of an empty page.
ROW_NUMBER_LIMIT = 2**62
Offset = Annotated[int, Query(ge=0, le=ROW_NUMBER_LIMIT)]
RunId = Annotated[int, FastApiPath(ge=0, le=ROW_NUMBER_LIMIT)]
Limit = Annotated[int, Query(ge=1, le=500)]
Days = Annotated[float, Query(gt=0, le=366)]


def _templates():
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        # lenient: a field an older store or a new engine version lacks renders empty rather than failing the page
        undefined=jinja2.ChainableUndefined,
    )
    environment.filters["q"] = lambda value: quote(str(value), safe="")
    environment.filters["num"] = lambda value: "" if value is None else f"{value:,}"
    environment.filters["seconds"] = lambda value: "running" if value is None else f"{value:,.1f} s"
    environment.filters["when"] = lambda value: (value or "")[:19].replace("T", " ")
    return environment


def create_app(
    loader: Callable[..., ManagerConfig] | None = None, named: Callable[[], list[str]] | None = None
) -> FastAPI:
    """The app Airflow mounts at ``/aadsync``. ``loader`` gives an instance's configuration and ``named`` the named
    instances (default: Airflow's Variables, as the DAGs read them).

    The default sync instance is served at ``/aadsync/``, each named instance at ``/aadsync/i/<name>/``: the same
    routes, reading that instance's store and rules. Every link a page builds starts from its instance's prefix, so
    a reader stays in the instance they picked."""
    resources = Resources(loader or config_from_airflow, named or named_instances_from_airflow)
    router = APIRouter()
    app = FastAPI(
        title="AADSync sync manager",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(require_access)],
    )
    app.state.resources = resources
    templates: dict[str, Any] = {}

    def render(request: Request, name: str, **context: Any) -> HTMLResponse:
        if "env" not in templates:
            templates["env"] = _templates()
        root = request.scope.get("root_path", "").rstrip("/")
        airflow = root.removesuffix(URL_PREFIX)  # Airflow's UI (the api-server's base path) for task links
        instance = _INSTANCE.get()
        base = root if instance is None else f"{root}{INSTANCE_PREFIX}/{instance}"
        page = (
            templates["env"]
            .get_template(name)
            .render(
                base=base,
                home=root,
                airflow=airflow,
                instance=instance,
                default_instance=default_name(),
                instances=resources.named(),
                **context,
            )
        )
        return HTMLResponse(page)

    def default_name() -> str:
        """The default instance's name for the instance picker ("default" when its configuration cannot be read)."""
        try:
            return resources.config().instance
        except Exception:  # noqa: BLE001 - a label only: the page that reads the store reports the error
            return "default"

    async def select_instance(request: Request) -> None:
        """The named instance of an ``/i/<name>/`` route (a 404 naming the known ones if there is no such instance);
        the default instance elsewhere. The routes read it through ``store()`` and ``rules()``."""
        instance = request.path_params.get("instance")
        if instance is not None:
            known = await run_in_threadpool(resources.named)
            if instance not in known:
                listed = ", ".join(known) or "none (the Variable aadsync_instances is empty)"
                raise HTTPException(404, f"no sync instance {instance!r}: the named instances are {listed}")
        _INSTANCE.set(instance)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        """JSON for the API; for a page, a short HTML answer (401 links to Airflow's login)."""
        if "/api/" in request.url.path or request.url.path.endswith("/api"):
            return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)
        login = ""
        if error.status_code == 401:
            airflow = request.scope.get("root_path", "").rstrip("/").removesuffix(URL_PREFIX)
            target = quote(str(request.url), safe="")
            login = f'<p><a href="{airflow}/auth/login?next={target}">Sign in to Airflow</a></p>'
        body = f"<!doctype html><title>AADSync</title><h1>{error.status_code}</h1><p>{escape(str(error.detail))}</p>"
        return HTMLResponse(body + login, status_code=error.status_code, headers=error.headers)

    def store():
        from airflow_provider_aadsync.engine.secrets import describe_error, scrub
        from airflow_provider_aadsync.engine.store import StoreNotReadyError

        try:
            return resources.store(_INSTANCE.get())
        except StoreNotReadyError as error:  # before the first sync step, or before the next one migrates it
            raise HTTPException(503, f"the AADSync store is not ready: {scrub(str(error))}") from None
        except Exception as error:  # a bad Variable or an unreachable database: say which, without a secret
            raise HTTPException(503, f"the AADSync store cannot be opened: {describe_error(error)}") from None

    def rules():
        try:
            return resources.rules(_INSTANCE.get())
        except Exception as error:
            from airflow_provider_aadsync.engine.secrets import describe_error

            raise HTTPException(503, f"the sync rules cannot be loaded: {describe_error(error)}") from None

    def connector_spaces() -> dict[str, Any]:
        """The connectors the instance's connectors configuration names and each connector space in the store that
        holds imported objects of a connector it does not name, with its notice (what every cycle report says first)."""
        from dataclasses import asdict

        from airflow_provider_aadsync.engine.runs.unconfigured import unconfigured_spaces
        from airflow_provider_aadsync.engine.secrets import describe_error

        try:
            config = resources.connectors(_INSTANCE.get())
        except Exception as error:  # a missing or invalid file: its problems, each with its file, key and line
            raise HTTPException(503, f"the connectors configuration cannot be read: {describe_error(error)}") from None
        configured = config.connector_names()
        spaces = unconfigured_spaces(store(), configured, entra_connector=config.entra.name)
        return {
            "configured": configured,
            "unconfigured": [{**asdict(space), "message": space.message()} for space in spaces],
        }

    def not_found(call: Callable[[], Any]) -> Any:
        from airflow_provider_aadsync.engine.browse import NotFound

        try:
            return call()
        except NotFound as error:
            raise HTTPException(404, str(error)) from None

    # ------------------------------------------------------------------------------------------------- the API
    @router.get("/api/runs")
    def api_runs(
        connector: str | None = None,
        result: str | None = None,
        profile: str | None = None,
        offset: Offset = 0,
        limit: Limit = 50,
    ) -> dict[str, Any]:
        """Runs newest first, paged; ``result=stopped`` matches every stopped-* result."""
        from airflow_provider_aadsync.engine import browse

        return browse.list_runs(
            store(), connector=connector, result=result, profile=profile, offset=offset, limit=limit
        )

    @router.get("/api/runs/{run_id}")
    def api_run(run_id: RunId, error_offset: Offset = 0, error_limit: Limit = 200) -> dict[str, Any]:
        """One run with its per-object errors, duplicate-attribute conflicts and notices (what it could not write)."""
        from airflow_provider_aadsync.engine import browse

        return not_found(lambda: browse.run_detail(store(), run_id, error_offset=error_offset, error_limit=error_limit))

    @router.get("/api/cycles")
    def api_cycles(days: Days = 7) -> dict[str, Any]:
        """Sync cycles of the last ``days`` days (objects changed, duration), oldest first."""
        from airflow_provider_aadsync.engine import browse

        return {"days": days, "cycles": browse.recent_cycles(store(), days=days)}

    @router.get("/api/objects")
    def api_objects(
        q: str = "",
        connector: str | None = None,
        pending_export: bool = False,
        disconnectors: bool = False,
        limit: Limit = 50,
    ) -> dict[str, Any]:
        """Search connector spaces (one with ``connector``) and the metaverse."""
        from airflow_provider_aadsync.engine import browse

        return browse.search_objects(
            store(),
            q,
            connector=connector or None,
            pending_export_only=pending_export,
            disconnectors_only=disconnectors,
            limit=limit,
        )

    @router.get("/api/preview/{connector}/{anchor:path}")
    def api_preview(connector: str, anchor: str) -> dict[str, Any]:
        """What a sync of one object would do now (the CLI's preview: computed, rolled back, nothing written)."""
        from airflow_provider_aadsync.engine import browse

        loaded = rules()
        return not_found(lambda: browse.preview_object(store(), loaded, connector, anchor))

    @router.get("/api/objects/{connector}/{anchor:path}")
    def api_object(connector: str, anchor: str) -> dict[str, Any]:
        """One object's lineage, attributes with their contributing rule, pending exports and last errors."""
        from airflow_provider_aadsync.engine import browse

        return not_found(lambda: browse.object_lineage(store(), connector, anchor))

    @router.get("/api/rules")
    def api_rules() -> dict[str, Any]:
        """The loaded rule set in precedence order."""
        from airflow_provider_aadsync.engine import browse

        return browse.rules_view(rules())

    @router.get("/api/export-plan")
    def api_export_plan(connector: str = "entra", offset: Offset = 0, limit: Limit = 100) -> dict[str, Any]:
        """What the next export of ``connector`` would write."""
        from airflow_provider_aadsync.engine import browse

        return browse.export_plan(store(), connector=connector, offset=offset, limit=limit)

    @router.get("/api/connector-spaces")
    def api_connector_spaces() -> dict[str, Any]:
        """Connector spaces no configured connector reads: a connector removed or renamed in the connectors file is
        neither imported nor synced any more, so the cloud objects its space feeds are never updated nor deleted.
        Each comes with its ways out (put the name back, ``aadsync store rename-connector`` or ``drop-connector``)."""
        return connector_spaces()

    # ----------------------------------------------------------------------------------------------- the pages
    @router.get("/api/lock")
    def api_lock() -> dict[str, Any]:
        """Who holds the sync instance: the instance lock and its rows for the parallel imports of the holder's run
        and a running sync or export step, each held or stale (``aadsync status --json``)."""
        from airflow_provider_aadsync.engine.store import scopes, utcnow

        opened = store()
        return scopes.lock_overview(opened.engine, opened.instance, utcnow())

    @router.get("/", response_class=HTMLResponse)
    def runs_page(
        request: Request,
        connector: str | None = None,
        result: str | None = None,
        offset: Offset = 0,
        days: Days = 7,
    ) -> HTMLResponse:
        from airflow_provider_aadsync.engine import browse
        from airflow_provider_aadsync.plugins.charts import bar_chart

        opened = store()
        try:
            spaces = connector_spaces()
        except HTTPException as error:  # the runs are still shown; the page says what is wrong with the file
            spaces = {"error": error.detail, "unconfigured": []}
        runs = browse.list_runs(opened, connector=connector or None, result=result or None, offset=offset, limit=50)
        points = browse.recent_cycles(opened, days=days)
        charts = [
            bar_chart(points, "objects_changed", title=f"Objects changed per cycle, last {days:g} days"),
            bar_chart(points, "duration_seconds", title="Duration per cycle", unit=" s", css_class="bar duration"),
        ]
        return render(
            request,
            "runs.html",
            page="runs",
            runs=runs,
            charts=charts,
            cycles=len(points),
            connectors=browse.connectors(opened),
            connector=connector or "",
            result=result or "",
            store_url=opened.display_url,
            lock=jsonable_encoder(api_lock()),  # dates as ISO text, as the other pages get them
            connector_spaces=spaces,
        )

    @router.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, run_id: RunId, error_offset: Offset = 0) -> HTMLResponse:
        from airflow_provider_aadsync.engine import browse

        detail = not_found(lambda: browse.run_detail(store(), run_id, error_offset=error_offset, error_limit=200))
        return render(request, "run.html", page="runs", run=detail, error_offset=error_offset)

    @router.get("/search", response_class=HTMLResponse)
    def search_page(
        request: Request,
        q: str = "",
        connector: str = "",
        pending_export: bool = False,
        disconnectors: bool = False,
    ) -> HTMLResponse:
        from airflow_provider_aadsync.engine import browse

        opened = store()
        searched = bool(q or connector or pending_export or disconnectors)
        hits = (
            browse.search_objects(
                opened,
                q,
                connector=connector or None,
                pending_export_only=pending_export,
                disconnectors_only=disconnectors,
                limit=200,
            )
            if searched
            else None
        )
        return render(
            request,
            "search.html",
            page="search",
            q=q,
            connector=connector,
            connectors=browse.connectors(opened),
            pending_export=pending_export,
            disconnectors=disconnectors,
            hits=hits,
        )

    @router.get("/preview/{connector}/{anchor:path}", response_class=HTMLResponse)
    def preview_page(request: Request, connector: str, anchor: str) -> HTMLResponse:
        from airflow_provider_aadsync.engine import browse

        loaded = rules()
        trace = not_found(lambda: browse.preview_object(store(), loaded, connector, anchor))
        return render(request, "preview.html", page="search", trace=trace)

    @router.get("/objects/{connector}/{anchor:path}", response_class=HTMLResponse)
    def object_page(request: Request, connector: str, anchor: str) -> HTMLResponse:
        from airflow_provider_aadsync.engine import browse

        lineage = not_found(lambda: browse.object_lineage(store(), connector, anchor))
        return render(request, "object.html", page="search", item=lineage)

    @router.get("/rules", response_class=HTMLResponse)
    def rules_page(request: Request) -> HTMLResponse:
        from airflow_provider_aadsync.engine import browse

        return render(request, "rules.html", page="rules", view=browse.rules_view(rules()))

    @router.get("/export-plan", response_class=HTMLResponse)
    def export_plan_page(request: Request, connector: str = "entra", offset: Offset = 0) -> HTMLResponse:
        from airflow_provider_aadsync.engine import browse

        opened = store()
        plan = browse.export_plan(opened, connector=connector, offset=offset, limit=100)
        return render(
            request,
            "export_plan.html",
            page="plan",
            plan=plan,
            connectors=browse.connectors(opened),
            offset=offset,
        )

    @router.get("/static/{name}")
    def static(name: str) -> FileResponse:
        if name not in STATIC:
            raise HTTPException(404, f"no static file {name!r}")
        return FileResponse(HERE / "static" / name, media_type=STATIC[name])

    app.include_router(router, dependencies=[Depends(select_instance)])
    app.include_router(router, prefix=f"{INSTANCE_PREFIX}/{{instance}}", dependencies=[Depends(select_instance)])
    return app
