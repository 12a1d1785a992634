"""Fixtures: the emulator app in Starlette's TestClient, a tenant with one app, and Graph auth headers."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")  # starlette notice
    from starlette.testclient import TestClient

from aadsync_devkit.graph_emulator.app import create_app
from aadsync_devkit.graph_emulator.state import EmulatorState

CLIENT_ID = "0b1c2d3e-0000-4000-8000-00000000a001"
SECRET = "test-secret-value"


@pytest.fixture
def state() -> EmulatorState:
    return EmulatorState()


@pytest.fixture
def client(state: EmulatorState) -> Iterator[TestClient]:
    with TestClient(create_app(state), base_url="https://testserver") as test_client:
        yield test_client


@pytest.fixture
def tenant(client: TestClient) -> dict[str, Any]:
    response = client.post(
        "/_emulator/tenants",
        json={
            "name": "contoso",
            "displayName": "Contoso",
            "verifiedDomains": ["contoso.com"],
            "apps": [{"clientId": CLIENT_ID, "clientSecret": SECRET}],
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


def get_token(client: TestClient, tenant_id: str, **overrides: str) -> Any:
    form = {
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "grant_type": "client_credentials",
        "scope": "https://graph.microsoft.com/.default",
        "client_info": "1",
        **overrides,
    }
    return client.post(f"/{tenant_id}/oauth2/v2.0/token", data={k: v for k, v in form.items() if v is not None})


@pytest.fixture
def auth(client: TestClient, tenant: dict[str, Any]) -> dict[str, str]:
    response = get_token(client, tenant["id"])
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def new_user(n: int | str, **extra: Any) -> dict[str, Any]:
    return {
        "accountEnabled": True,
        "displayName": f"User {n}",
        "mailNickname": f"user{n}",
        "userPrincipalName": f"user{n}@contoso.com",
        "passwordProfile": {"forceChangePasswordNextSignIn": False, "password": "P@ssw0rd!x"},
        **extra,
    }


def new_group(name: str, **extra: Any) -> dict[str, Any]:
    return {"displayName": name, "mailEnabled": False, "mailNickname": name, "securityEnabled": True, **extra}


def create_group(client: TestClient, auth: dict[str, str], name: str, members: Any = (), **extra: Any) -> str:
    """A group created through Graph (``members`` bound on create); its id."""
    body = {**new_group(name, **extra)}
    if members:
        body["members@odata.bind"] = [f"https://graph.microsoft.com/v1.0/directoryObjects/{m}" for m in members]
    response = client.post("/v1.0/groups", headers=auth, json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def put_settings(client: TestClient, **values: Any) -> dict[str, Any]:
    """Change emulator settings; the settings it changed."""
    response = client.put("/_emulator/settings", json=values)
    assert response.status_code == 200, response.text
    return response.json()


def assert_graph_error(response: Any, status: int, code: str, message: str | None = None) -> dict[str, Any]:
    """The Graph error body: code, message, innerError with date / request-id / client-request-id."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    if message is not None:
        assert error["message"] == message
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    assert error["innerError"]["request-id"] == response.headers["request-id"]
    return error
