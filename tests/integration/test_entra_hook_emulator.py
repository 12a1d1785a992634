"""The EntraHook against the Graph emulator over TLS: msal tokens, Graph reads and writes, errors, paging."""

from __future__ import annotations

import json
import ssl

import httpx
import pytest
from airflow.sdk import Connection

from airflow_provider_aadsync.emulator.server import EmulatorServer
from airflow_provider_aadsync.hooks.entra import (
    EntraAuthError,
    EntraConnectionSettings,
    EntraHook,
    GraphError,
)

CLIENT_ID = "0c1e7a7e-0000-4000-8000-00000000a11d"
SECRET = "hook-integration-secret"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    emulator = EmulatorServer(tmp_path_factory.mktemp("emulator")).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def tenant(server):
    response = httpx.post(
        f"{server.base_url}/_emulator/tenants",
        json={"name": "fabrikam", "apps": [{"clientId": CLIENT_ID, "clientSecret": SECRET}]},
        verify=trust(server),
    )
    assert response.status_code == 201, response.text
    yield response.json()
    httpx.delete(f"{server.base_url}/_emulator/tenants/{response.json()['id']}", verify=trust(server))


@pytest.fixture(autouse=True)
def machine_wide_ca_bundle(monkeypatch):
    """This machine points REQUESTS_CA_BUNDLE at the system bundle; the hook must still trust its own CA."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")


def connection(server, tenant, secret=SECRET) -> Connection:
    return Connection(
        conn_id="aadsync_entra",
        conn_type="aadsync_entra",
        login=CLIENT_ID,
        password=secret,
        extra=json.dumps(
            {
                "tenant_id": tenant["id"],
                "authority_host": server.base_url,
                "graph_url": server.base_url,
                "ca_bundle": str(server.ca_cert),
            }
        ),
    )


def trust(server: EmulatorServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.ca_cert))


def hook_for(server, tenant, secret=SECRET) -> EntraHook:
    return EntraHook(settings=EntraConnectionSettings.from_connection(connection(server, tenant, secret)))


def test_connection_from_airflow_environment(server, tenant, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AADSYNC_ENTRA", connection(server, tenant).as_json())
    ok, message = EntraHook().test_connection()
    assert ok, message
    assert tenant["id"] in message


def test_wrong_secret_is_a_clear_auth_error_without_the_secret(server, tenant):
    hook = hook_for(server, tenant, secret="not-the-secret")
    with pytest.raises(EntraAuthError, match="invalid_client: AADSTS7000215") as caught:
        hook.get_token()
    assert "not-the-secret" not in str(caught.value)
    ok, message = hook.test_connection()
    assert not ok and "invalid_client" in message


def test_writes_reads_errors_and_paging(server, tenant):
    hook = hook_for(server, tenant)
    domain = tenant["initialDomain"]
    for number in range(250):
        hook.request(
            "POST",
            "/users",
            json={
                "accountEnabled": True,
                "displayName": f"User {number}",
                "mailNickname": f"user{number}",
                "userPrincipalName": f"user{number}@{domain}",
                "passwordProfile": {"password": "Xy!12345678abc"},
            },
        )
    pages = list(hook.paginate("/users", params={"$select": "id,userPrincipalName", "$top": "100"}))
    assert [len(page["value"]) for page in pages] == [100, 100, 50]
    assert len({user["id"] for page in pages for user in page["value"]}) == 250
    with pytest.raises(GraphError) as caught:
        hook.request(
            "POST",
            "/users",
            json={
                "accountEnabled": True,
                "displayName": "Dup",
                "mailNickname": "dup",
                "userPrincipalName": f"user1@{domain}",
                "passwordProfile": {"password": "Xy!12345678abc"},
            },
        )
    assert caught.value.status == 400 and caught.value.code == "Request_BadRequest"
    assert "userPrincipalName already exists" in caught.value.graph_message and caught.value.request_id
    with pytest.raises(GraphError) as missing:
        hook.request("GET", "/users/00000000-0000-0000-0000-000000000000")
    assert (missing.value.status, missing.value.code) == (404, "Request_ResourceNotFound")
    assert hook.counters["requests"] >= 254
