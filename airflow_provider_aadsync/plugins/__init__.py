"""The sync manager in the Airflow UI: an Airflow plugin (FastAPI app under ``/aadsync`` and an "AADSync" entry in
the navigation) that shows the store's run history, connector spaces, metaverse, rules and export plan.

Registered through the ``airflow.plugins`` entry point, so Airflow loads it with its default settings (a provider's
``plugins`` key is read only when ``[core] lazy_discover_providers`` is off).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from airflow.configuration import conf
from airflow.plugins_manager import AirflowPlugin

from airflow_provider_aadsync.plugins.app import URL_PREFIX, create_app


def ui_path(base_url: str, path: str) -> str:
    """``path`` under the api-server's root (the path of ``[api] base_url``, e.g. ``/airflow`` behind a proxy),
    where Airflow mounts the plugin's app: the navigation entry and its icon must point there."""
    root = urlsplit(base_url or "").path.rstrip("/")
    return f"{root}{path}"


_BASE_URL = conf.get("api", "base_url", fallback="")


class AADSyncPlugin(AirflowPlugin):
    """The AADSync sync manager: pages and a JSON API under ``/aadsync``, protected by Airflow's auth manager."""

    name = "aadsync"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "AADSync sync manager"}]
    external_views = [
        {
            "name": "AADSync",
            "href": ui_path(_BASE_URL, f"{URL_PREFIX}/"),
            "url_route": "aadsync",
            "destination": "nav",
            "nav_top_level": True,
            "icon": ui_path(_BASE_URL, f"{URL_PREFIX}/static/aadsync.svg"),
        }
    ]
