"""The identity platform: OIDC discovery, JWKS, the token endpoint and bearer-token validation on Graph."""

from __future__ import annotations

import base64

import jwt
import pytest

from .conftest import CLIENT_ID, SECRET, assert_graph_error, get_token


def test_discovery_has_what_msal_needs(client, tenant):
    response = client.get(f"/{tenant['id']}/v2.0/.well-known/openid-configuration")
    assert response.status_code == 200
    config = response.json()
    root = f"https://testserver/{tenant['id']}"
    assert config["token_endpoint"] == f"{root}/oauth2/v2.0/token"
    assert config["authorization_endpoint"] == f"{root}/oauth2/v2.0/authorize"
    assert config["jwks_uri"] == f"{root}/discovery/v2.0/keys"
    assert config["issuer"] == f"{root}/v2.0"
    assert "client_secret_post" in config["token_endpoint_auth_methods_supported"]


def test_discovery_by_domain_name_and_unknown_tenant(client, tenant):
    by_domain = client.get("/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration")
    assert by_domain.json()["token_endpoint"].endswith(f"/{tenant['id']}/oauth2/v2.0/token")
    unknown = client.get("/nosuch.onmicrosoft.com/v2.0/.well-known/openid-configuration")
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "invalid_tenant"
    assert unknown.json()["error_codes"] == [90002]


def test_token_is_an_rs256_jwt_the_jwks_verifies(client, tenant):
    response = get_token(client, tenant["id"])
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == body["ext_expires_in"] == 3599
    jwk = client.get(f"/{tenant['id']}/discovery/v2.0/keys").json()["keys"][0]
    key = jwt.PyJWK(jwk).key
    claims = jwt.decode(body["access_token"], key, algorithms=["RS256"], audience="https://graph.microsoft.com")
    assert claims["tid"] == tenant["id"]
    assert claims["appid"] == CLIENT_ID
    # a whole-second exp rounded up: the token lives at least the 3599 seconds it announces, at most one more
    assert claims["exp"] - claims["iat"] in (3599, 3600)
    assert jwt.get_unverified_header(body["access_token"])["kid"] == jwk["kid"]


def test_token_with_basic_auth_and_emulator_host_scope(client, tenant):
    basic = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    response = client.post(
        f"/{tenant['id']}/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "scope": "https://127.0.0.1:8443/.default"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("overrides", "status", "error", "code"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client", 7000215),
        ({"client_id": "99999999-0000-4000-8000-000000000000"}, 400, "unauthorized_client", 700016),
        ({"client_secret": None}, 401, "invalid_client", 7000216),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
        ({"scope": "https://graph.microsoft.com/User.Read"}, 400, "invalid_scope", 1002012),
        ({"scope": "https://management.azure.com/.default"}, 400, "invalid_resource", 500011),
        ({"scope": None}, 400, "invalid_request", 900144),
        (
            {
                "client_secret": None,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": "a.b.c",
            },
            401,
            "invalid_client",
            700027,
        ),
    ],
)
def test_token_errors_look_like_the_identity_platform(client, tenant, overrides, status, error, code):
    response = get_token(client, tenant["id"], **overrides)
    assert response.status_code == status
    body = response.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert {"timestamp", "trace_id", "correlation_id", "error_uri"} <= set(body)


def test_token_for_unknown_tenant(client, tenant):
    response = get_token(client, "00000000-0000-4000-8000-000000000bad")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert response.json()["error_codes"] == [90002]


def test_graph_requires_a_bearer_token(client, tenant):
    response = client.get("/v1.0/users")
    error = assert_graph_error(response, 401, "InvalidAuthenticationToken", "Access token is empty.")
    assert error["innerError"]["client-request-id"] == response.headers["client-request-id"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_client_request_id_is_echoed(client, auth):
    response = client.get("/v1.0/users/nope", headers={**auth, "client-request-id": "abc-123"})
    error = assert_graph_error(response, 404, "Request_ResourceNotFound")
    assert error["innerError"]["client-request-id"] == "abc-123"
    assert response.headers["client-request-id"] == "abc-123"


def test_expired_token(client, tenant):
    client.put("/_emulator/settings", json={"tokenLifetimeSeconds": 0})
    token = get_token(client, tenant["id"]).json()
    assert token["expires_in"] == 0
    response = client.get("/v1.0/users", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert_graph_error(response, 401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")


def test_token_lifetime_setting(client, tenant):
    assert client.put("/_emulator/settings", json={"tokenLifetimeSeconds": 120}).json() == {"tokenLifetimeSeconds": 120}
    assert get_token(client, tenant["id"]).json()["expires_in"] == 120
    assert client.put("/_emulator/settings", json={"tokenLifetimeSeconds": -1}).status_code == 400


def test_foreign_and_forged_tokens_are_refused(client, tenant, auth):
    other = client.post(
        "/_emulator/tenants", json={"name": "fabrikam", "apps": [{"clientId": "x", "clientSecret": "y"}]}
    )
    foreign = client.post(
        f"/{other.json()['id']}/oauth2/v2.0/token",
        data={
            "client_id": "x",
            "client_secret": "y",
            "grant_type": "client_credentials",
            "scope": "https://graph.microsoft.com/.default",
        },
    ).json()["access_token"]
    client.delete(f"/_emulator/tenants/{other.json()['id']}")
    response = client.get("/v1.0/users", headers={"Authorization": f"Bearer {foreign}"})
    assert_graph_error(response, 401, "InvalidAuthenticationToken")

    header, payload, signature = auth["Authorization"].removeprefix("Bearer ").split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"
    assert_graph_error(
        client.get("/v1.0/users", headers={"Authorization": f"Bearer {forged}"}), 401, "InvalidAuthenticationToken"
    )
    assert_graph_error(
        client.get("/v1.0/users", headers={"Authorization": "Bearer nodots"}), 401, "InvalidAuthenticationToken"
    )


def test_a_token_sees_only_its_own_tenant(client, tenant, auth):
    other = client.post(
        "/_emulator/tenants", json={"name": "fabrikam", "apps": [{"clientId": "x", "clientSecret": "y"}]}
    )
    token = client.post(
        f"/{other.json()['id']}/oauth2/v2.0/token",
        data={
            "client_id": "x",
            "client_secret": "y",
            "grant_type": "client_credentials",
            "scope": "https://graph.microsoft.com/.default",
        },
    ).json()["access_token"]
    org = client.get("/v1.0/organization", headers={"Authorization": f"Bearer {token}"}).json()
    assert org["value"][0]["id"] == other.json()["id"]
    assert client.get("/v1.0/organization", headers=auth).json()["value"][0]["id"] == tenant["id"]
