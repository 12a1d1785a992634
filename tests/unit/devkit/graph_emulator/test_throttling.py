"""Throttling (resource units, writes) and fault injection: off by default, switchable through the settings."""

from __future__ import annotations

import pytest

from aadsync_devkit.graph_emulator.exceptions import TooManyRequests
from aadsync_devkit.graph_emulator.throttling import request_cost

from .conftest import assert_graph_error, new_user


@pytest.fixture
def clock(state):
    now = [1_000_000.0]
    state.clock = lambda: now[0]
    return now


def put(client, **values):
    response = client.put("/_emulator/settings", json=values)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(
    ("method", "path", "params", "cost"),
    [
        ("GET", "/v1.0/users", {}, (2, 0)),
        ("GET", "/v1.0/users", {"$select": "id"}, (1, 0)),
        ("GET", "/v1.0/users", {"$select": "id", "$top": "5"}, (1, 0)),
        ("GET", "/v1.0/groups/g/members", {"$top": "999"}, (3, 0)),
        ("GET", "/v1.0/users/delta", {}, (1, 0)),
        ("POST", "/v1.0/users", {}, (1, 1)),
        ("DELETE", "/v1.0/groups/g/members/m/$ref", {}, (1, 1)),
    ],
)
def test_request_costs(method, path, params, cost):
    assert request_cost(method, path, params) == cost


def test_off_by_default(client, auth):
    settings = client.get("/_emulator/settings").json()
    assert settings["throttlingEnabled"] is False and settings["faultRatio5xx"] == 0.0
    for _ in range(50):
        assert client.get("/v1.0/users", headers=auth).status_code == 200


def test_resource_units_per_window(client, auth, clock):
    put(client, throttlingEnabled=True, throttleResourceUnits=5)
    assert client.get("/v1.0/users", headers=auth).status_code == 200  # 2
    clock[0] += 4
    assert client.get("/v1.0/users", headers=auth).status_code == 200  # 4
    clock[0] += 1
    response = client.get("/v1.0/users", headers=auth)  # 6 > 5
    error = assert_graph_error(response, 429, "TooManyRequests", "Please retry again later.")
    assert error["innerError"]["request-id"]
    assert response.headers["Retry-After"] == "5"  # the first request leaves the 10 s window in 5 s
    assert client.get("/v1.0/users?$select=id", headers=auth).status_code == 200  # 1 unit still fits
    clock[0] += 5
    assert client.get("/v1.0/users", headers=auth).status_code == 200
    counters = client.get("/_emulator/counters").json()
    assert counters["429"] == 1 and counters["status"]["429"] == 1


@pytest.mark.parametrize(("users", "limit"), [(0, 3500), (49, 3500), (50, 5000), (500, 5000), (501, 8000)])
def test_default_limit_follows_tenant_size(state, clock, users, limit):
    tenant = state.create_tenant({"name": "sized"})
    for n in range(users):
        tenant.create_user(new_user(n, userPrincipalName=f"u{n}@sized.onmicrosoft.com"))
    state.update_settings({"throttlingEnabled": True})
    for _ in range(limit):
        state.throttle(tenant, "app", "GET", "/v1.0/users/x", {})
    with pytest.raises(TooManyRequests) as raised:
        state.throttle(tenant, "app", "GET", "/v1.0/users/x", {})
    assert raised.value.headers == {"Retry-After": "10"}
    state.throttle(tenant, "other-app", "GET", "/v1.0/users/x", {})  # the limit is per app and tenant


def test_writes_per_app(client, auth, clock):
    put(client, throttlingEnabled=True, throttleAppWrites=2, throttleAppWriteWindowSeconds=150)
    assert client.post("/v1.0/users", headers=auth, json=new_user(1)).status_code == 201
    clock[0] += 100
    assert client.patch("/v1.0/users/user1@contoso.com", headers=auth, json={"jobTitle": "x"}).status_code == 204
    response = client.delete("/v1.0/users/user1@contoso.com", headers=auth)
    assert_graph_error(response, 429, "TooManyRequests")
    assert response.headers["Retry-After"] == "50"
    assert client.get("/v1.0/users", headers=auth).status_code == 200  # reads still pass
    clock[0] += 50
    assert client.delete("/v1.0/users/user1@contoso.com", headers=auth).status_code == 204


def test_throttled_inner_request_is_a_429_item(client, auth, clock):
    put(client, throttlingEnabled=True, throttleResourceUnits=3)
    response = client.post(
        "/v1.0/$batch",
        headers=auth,
        json={"requests": [{"id": str(n), "method": "GET", "url": "/users"} for n in range(3)]},
    )
    assert response.status_code == 200
    items = {item["id"]: item for item in response.json()["responses"]}
    assert [items[n]["status"] for n in ("0", "1", "2")] == [200, 429, 429]
    assert items["1"]["headers"]["Retry-After"] == "10"
    assert items["1"]["body"]["error"]["code"] == "TooManyRequests"
    assert client.get("/_emulator/counters").json()["429"] == 2


def test_fault_injection_is_seeded(client, auth):
    put(client, faultRatio5xx=1, faultRetryAfterSeconds=3)
    response = client.get("/v1.0/users", headers=auth)
    assert_graph_error(response, 503, "serviceNotAvailable")
    assert response.headers["Retry-After"] == "3"

    def run():
        put(client, faultRatio5xx=0.5, randomSeed=42)
        return [client.get("/v1.0/users", headers=auth).status_code for _ in range(20)]

    first = run()
    assert set(first) == {200, 503}
    assert run() == first
    put(client, faultRatio5xx=None, latencyMs=5)
    assert client.get("/v1.0/users", headers=auth).status_code == 200


def test_settings_validation(client):
    for bad in (
        {"shoeSize": 1},
        {"throttlingEnabled": "yes"},
        {"faultRatio5xx": 2},
        {"deltaPageSize": 0},
        {"latencyMs": 1.5},
        {"deltaTokenLifetimeSeconds": True},
    ):
        assert client.put("/_emulator/settings", json=bad).status_code == 400, bad
    assert put(client, deltaPageSize=7, throttleResourceUnits=None) == {
        "deltaPageSize": 7,
        "throttleResourceUnits": None,
    }
    assert client.get("/_emulator/settings").json()["deltaPageSize"] == 7
    client.post("/_emulator/reset")
    assert client.get("/_emulator/settings").json()["deltaPageSize"] == 200
