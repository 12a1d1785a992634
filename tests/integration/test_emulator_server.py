"""The emulator over real TLS on loopback, driven by msal and httpx exactly as the EntraHook will drive it."""

from __future__ import annotations

import socket

import httpx
import msal
import pytest

from aadsync_devkit.graph_emulator.server import EmulatorServer
from tests.support.servers import self_signed_certificate, trust

CLIENT_ID = "6a7b8c9d-0000-4000-8000-00000000c11e"
SECRET = "integration-secret"
SCOPES = ["https://graph.microsoft.com/.default"]


@pytest.fixture
def server(tmp_path):
    emulator = EmulatorServer(tmp_path / "emulator").start()
    yield emulator
    emulator.stop()


@pytest.fixture
def tenant(server):
    response = httpx.post(
        f"{server.base_url}/_emulator/tenants",
        json={"name": "contoso", "apps": [{"clientId": CLIENT_ID, "clientSecret": SECRET}]},
        verify=trust(server),
    )
    assert response.status_code == 201, response.text
    return response.json()


def msal_app(server, tenant, secret=SECRET):
    return msal.ConfidentialClientApplication(
        CLIENT_ID,
        client_credential=secret,
        authority=f"{server.base_url}/{tenant['id']}",
        validate_authority=False,
        instance_discovery=False,
        verify=str(server.ca_cert),
    )


@pytest.fixture(params=["unset", "emulator-ca"])
def ca_env(request, monkeypatch, server):
    """requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override msal's verify=: run with both unset, and with
    REQUESTS_CA_BUNDLE pointing at the emulator's CA."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    if request.param == "emulator-ca":
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_cert))


def test_msal_token_then_graph_over_tls(server, tenant, ca_env):
    result = msal_app(server, tenant).acquire_token_for_client(scopes=SCOPES)
    assert "access_token" in result, result
    assert result["token_type"] == "Bearer"
    with httpx.Client(base_url=f"{server.base_url}/v1.0", verify=trust(server)) as graph:
        headers = {"Authorization": f"Bearer {result['access_token']}"}
        created = graph.post(
            "/users",
            headers=headers,
            json={
                "accountEnabled": True,
                "displayName": "Ada",
                "mailNickname": "ada",
                "userPrincipalName": "ada@contoso.onmicrosoft.com",
                "passwordProfile": {"password": "Xy!12345678"},
            },
        )
        assert created.status_code == 201, created.text
        listed = graph.get("/users", headers=headers).json()
        assert listed["@odata.context"] == f"{server.base_url}/v1.0/$metadata#users"
        assert [u["userPrincipalName"] for u in listed["value"]] == ["ada@contoso.onmicrosoft.com"]


def test_msal_wrong_secret_gives_invalid_client(server, tenant, ca_env):
    result = msal_app(server, tenant, secret="wrong").acquire_token_for_client(scopes=SCOPES)
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert "access_token" not in result


def test_server_stops_cleanly(tmp_path):
    emulator = EmulatorServer(tmp_path / "emulator").start()
    port = emulator.port
    assert httpx.get(f"{emulator.base_url}/_emulator/counters", verify=trust(emulator)).status_code == 200
    emulator.stop()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_state_file_survives_a_restart(tmp_path, monkeypatch):
    state_file = tmp_path / "state.sqlite"
    with EmulatorServer(tmp_path / "emulator", state_file=state_file) as first:
        httpx.post(f"{first.base_url}/_emulator/tenants", json={"name": "contoso"}, verify=trust(first))
    with EmulatorServer(tmp_path / "emulator", state_file=state_file) as second:
        tenants = httpx.get(f"{second.base_url}/_emulator/tenants", verify=trust(second)).json()["value"]
        assert [t["name"] for t in tenants] == ["contoso"]


def test_delta_and_batch_over_tls(server, tenant, ca_env):
    """Absolute links point back at the TLS server; $batch items with percent-encoded queries and depends_on."""
    result = msal_app(server, tenant).acquire_token_for_client(scopes=SCOPES)
    headers = {"Authorization": f"Bearer {result['access_token']}", "Accept": "*/*"}
    with httpx.Client(base_url=f"{server.base_url}/v1.0", verify=trust(server)) as graph:
        user = {
            "accountEnabled": True,
            "displayName": "Ada",
            "mailNickname": "ada",
            "userPrincipalName": "ada@contoso.onmicrosoft.com",
            "passwordProfile": {"password": "Xy!12345678"},
        }
        batch = graph.post(
            "/$batch",
            headers=headers,
            json={
                "requests": [
                    {"id": "1", "method": "POST", "url": "/users", "body": user,
                     "headers": {"Content-Type": "application/json"}},
                    {"id": "2", "method": "GET", "url": "/users?%24select=displayName", "depends_on": ["1"]},
                ]
            },
        )  # fmt: skip
        assert batch.status_code == 200, batch.text
        responses = {r["id"]: r for r in batch.json()["responses"]}
        assert responses["1"]["status"] == 201
        assert responses["2"]["body"]["value"] == [{"displayName": "Ada", "id": responses["1"]["body"]["id"]}]
        first = graph.get("/users/delta()", params={"$select": "displayName"}, headers=headers).json()
        assert first["value"] == [{"displayName": "Ada", "id": responses["1"]["body"]["id"]}]
        assert first["@odata.deltaLink"].startswith(f"{server.base_url}/v1.0/users/delta?$deltatoken=")
        graph.patch(f"/users/{responses['1']['body']['id']}", headers=headers, json={"displayName": "Ada L."})
        second = graph.get(first["@odata.deltaLink"], headers=headers).json()
        assert [u["displayName"] for u in second["value"]] == ["Ada L."]


def test_msal_certificate_credential(server, tenant, ca_env):
    """msal signs a client assertion with the app's private key (x5t = SHA-1 thumbprint, or x5t#S256 when given the
    public certificate); a certificate the app does not have, or another key, is refused with AADSTS700027."""
    from cryptography.hazmat.primitives import hashes, serialization

    private, cert = self_signed_certificate()
    public = cert.public_bytes(serialization.Encoding.PEM).decode()
    thumbprint = cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
    registered = httpx.post(
        f"{server.base_url}/_emulator/tenants/{tenant['id']}/apps/{CLIENT_ID}/certificates",
        json={"certificate": public},
        verify=trust(server),
    )
    assert registered.status_code == 201 and registered.json()["thumbprint"] == thumbprint

    def acquire(credential):
        return msal_app(server, tenant, secret=credential).acquire_token_for_client(scopes=SCOPES)

    by_thumbprint = acquire({"private_key": private, "thumbprint": thumbprint})
    assert "access_token" in by_thumbprint, by_thumbprint
    by_certificate = acquire({"private_key": private, "public_certificate": public})
    assert "access_token" in by_certificate, by_certificate

    other_private, other_cert = self_signed_certificate()
    other_thumbprint = other_cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
    unknown = acquire({"private_key": other_private, "thumbprint": other_thumbprint})
    assert unknown["error"] == "invalid_client" and unknown["error_codes"] == [700027], unknown
    assert "not registered on application" in unknown["error_description"]
    wrong_key = acquire({"private_key": other_private, "thumbprint": thumbprint})
    assert wrong_key["error"] == "invalid_client" and wrong_key["error_codes"] == [700027], wrong_key
    assert "invalid signature" in wrong_key["error_description"]
