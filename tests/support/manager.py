"""The sync manager as tests reach it: the app mounted at ``/aadsync`` under a parent app (as Airflow's api-server
mounts it), and requests carrying a JWT that Airflow's simple auth manager signed (as ``POST /auth/token`` would)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from airflow_provider_aadsync.plugins.app import create_app
from airflow_provider_aadsync.plugins.config import ManagerConfig


def token(auth_manager: Any, role: str | None = "VIEWER") -> str:
    """A token of a user with ``role`` (None: a user without one)."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return auth_manager.generate_jwt(SimpleAuthManagerUser(username="someone", role=role))


@contextmanager
def manager_client(
    loader: Callable[..., ManagerConfig], named: Callable[[], list[str]] | None = None
) -> Iterator[TestClient]:
    """A client of the manager reading the configurations ``loader`` gives; its stores are closed after."""
    parent = FastAPI()
    manager = create_app(loader, named=named)
    parent.mount("/aadsync", manager)
    try:
        with TestClient(parent) as client:
            yield client
    finally:
        manager.state.resources.close()


def get(client: TestClient, headers: dict[str, str], path: str, status: int = 200) -> Any:
    """GET ``/aadsync<path>``, asserting the status (the answer's start in the message when it differs)."""
    response = client.get(f"/aadsync{path}", headers=headers)
    assert response.status_code == status, f"{path}: {response.status_code} {response.text[:500]}"
    return response
