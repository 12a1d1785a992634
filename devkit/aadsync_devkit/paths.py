"""Filesystem locations of the developer world (test DC, fixture cache).

Kept in one place so the CLI, the test fixtures and the benchmarks agree on where things live and so a
developer can redirect everything with ``AADSYNC_HOME`` / ``AADSYNC_FIXTURE_CACHE``.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow_provider_aadsync.engine.paths import aadsync_home

__all__ = ["aadsync_home", "dev_dc_home", "dev_graph_home", "fixture_cache_dir"]


def dev_dc_home() -> Path:
    """Home of the developer's long-lived Samba DC (``aadsync-dev up``)."""
    return aadsync_home() / "dev" / "samba"


def fixture_cache_dir() -> Path:
    """Where seeded-DC snapshots are cached: ``$AADSYNC_FIXTURE_CACHE`` or ``<home>/fixtures``."""
    env = os.environ.get("AADSYNC_FIXTURE_CACHE")
    return Path(env).expanduser() if env else aadsync_home() / "fixtures"


def dev_graph_home() -> Path:
    """Where ``aadsync-dev up`` keeps the Graph emulator's TLS files, state and PID."""
    return aadsync_home() / "dev" / "graph"


def dev_postgres_home() -> Path:
    """Home of the dev world's PostgreSQL server (``aadsync-dev up --airflow celery``): ``$AADSYNC_DEV_POSTGRES_HOME``
    or ``<home>/dev/postgres``. As root, point it outside ``/root``: the server runs as the ``postgres`` user."""
    env = os.environ.get("AADSYNC_DEV_POSTGRES_HOME")
    return Path(env).expanduser() if env else aadsync_home() / "dev" / "postgres"


def dev_airflow_home() -> Path:
    """``AIRFLOW_HOME`` of the dev world's Celery deployment (its services.json, logs, secrets)."""
    return aadsync_home() / "dev" / "airflow-celery"
