"""The sync manager in the Airflow UI: an Airflow plugin (FastAPI app under ``/aadsync`` and an "AADSync" entry in
the navigation) that shows the store's run history, connector spaces, metaverse, rules and export plan.

Registered through the ``airflow.plugins`` entry point, so Airflow loads it with its default settings (a provider's
``plugins`` key is read only when ``[core] lazy_discover_providers`` is off).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_aadsync.plugins.app import URL_PREFIX, create_app


class AADSyncPlugin(AirflowPlugin):
    """The AADSync sync manager: pages and a JSON API under ``/aadsync``, protected by Airflow's auth manager."""

    name = "aadsync"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "AADSync sync manager"}]
    external_views = [
        {
            "name": "AADSync",
            "href": f"{URL_PREFIX}/",
            "url_route": "aadsync",
            "destination": "nav",
            "nav_top_level": True,
            "icon": f"{URL_PREFIX}/static/aadsync.svg",
        }
    ]
