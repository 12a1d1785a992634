"""Certificate credentials at the token endpoint: client assertions signed by a certificate registered on the app."""

from __future__ import annotations

import base64
import datetime as dt
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from aadsync_devkit.graph_emulator.identity import CLIENT_ASSERTION_TYPE

from .conftest import CLIENT_ID, get_token


def make_certificate(*, days: int = 30, start_days: int = -1) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aadsync-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=start_days))
        .not_valid_after(now + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return key, cert


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def assertion(
    key: rsa.RSAPrivateKey,
    cert: x509.Certificate,
    tenant_id: str,
    *,
    sha256: bool = False,
    algorithm: str = "RS256",
    **claims: Any,
) -> str:
    now = int(time.time())
    header = (
        {"x5t#S256": b64url(cert.fingerprint(hashes.SHA256()))}
        if sha256
        else {"x5t": b64url(cert.fingerprint(hashes.SHA1()))}  # noqa: S303
    )
    payload = {
        "aud": f"https://testserver/{tenant_id}/oauth2/v2.0/token",
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
        **claims,
    }
    return jwt.encode(payload, key, algorithm=algorithm, headers=header)


def with_assertion(client, tenant_id: str, token: str):
    return get_token(
        client, tenant_id, client_secret=None, client_assertion_type=CLIENT_ASSERTION_TYPE, client_assertion=token
    )


@pytest.fixture
def credential(client, tenant):
    key, cert = make_certificate()
    response = client.post(
        f"/_emulator/tenants/{tenant['id']}/apps/{CLIENT_ID}/certificates", json={"certificate": pem(cert)}
    )
    assert response.status_code == 201, response.text
    assert response.json()["thumbprint"] == cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
    return key, cert


def assert_identity_error(response, status: int, error: str, code: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    return body["error_description"]


@pytest.mark.parametrize(("sha256", "algorithm"), [(False, "RS256"), (True, "PS256")])
def test_certificate_assertion_gets_a_token(client, tenant, credential, sha256, algorithm):
    key, cert = credential
    response = with_assertion(
        client, tenant["id"], assertion(key, cert, tenant["id"], sha256=sha256, algorithm=algorithm)
    )
    assert response.status_code == 200, response.text
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["appid"] == CLIENT_ID and claims["tid"] == tenant["id"]


def test_audience_may_name_the_tenant_by_domain(client, tenant, credential):
    key, cert = credential
    token = assertion(key, cert, tenant["id"], aud="https://testserver/contoso.onmicrosoft.com/oauth2/v2.0/token")
    assert with_assertion(client, tenant["id"], token).status_code == 200


def test_certificate_registered_with_the_tenant(client):
    key, cert = make_certificate()
    created = client.post(
        "/_emulator/tenants", json={"name": "fabrikam", "apps": [{"clientId": CLIENT_ID, "certificates": [pem(cert)]}]}
    ).json()
    assert created["apps"][0]["certificates"][0]["thumbprintSha256"] == cert.fingerprint(hashes.SHA256()).hex().upper()
    response = with_assertion(
        client,
        created["id"],
        assertion(key, cert, created["id"], aud=f"https://testserver/{created['id']}/oauth2/token"),
    )
    assert response.status_code == 200, response.text


def test_other_key_same_thumbprint_fails_signature_validation(client, tenant, credential):
    _, cert = credential
    other_key, _ = make_certificate()
    description = assert_identity_error(
        with_assertion(client, tenant["id"], assertion(other_key, cert, tenant["id"])), 401, "invalid_client", 700027
    )
    assert "invalid signature" in description
    assert cert.fingerprint(hashes.SHA1()).hex().upper() in description  # noqa: S303


def test_unregistered_certificate_is_refused(client, tenant, credential):
    other_key, other_cert = make_certificate()
    description = assert_identity_error(
        with_assertion(client, tenant["id"], assertion(other_key, other_cert, tenant["id"], sha256=True)),
        401,
        "invalid_client",
        700027,
    )
    assert "is not registered on application" in description
    assert other_cert.fingerprint(hashes.SHA256()).hex().upper() in description


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"exp": int(time.time()) - 3600, "nbf": int(time.time()) - 4200}, 700024),
        ({"nbf": int(time.time()) + 3600, "exp": int(time.time()) + 4200}, 700024),
        ({"aud": "https://login.microsoftonline.com/common/oauth2/v2.0/token"}, 50012),
        ({"aud": ["a", "b"]}, 5002741),
        ({"iss": "someone-else", "sub": "someone-else"}, 700021),
    ],
)
def test_assertion_claims_are_checked(client, tenant, credential, claims, code):
    key, cert = credential
    response = with_assertion(client, tenant["id"], assertion(key, cert, tenant["id"], **claims))
    assert_identity_error(response, 401, "invalid_client", code)


def test_expired_certificate_is_refused(client, tenant):
    key, cert = make_certificate(days=-1, start_days=-10)
    client.post(f"/_emulator/tenants/{tenant['id']}/apps/{CLIENT_ID}/certificates", content=pem(cert))
    description = assert_identity_error(
        with_assertion(client, tenant["id"], assertion(key, cert, tenant["id"])), 401, "invalid_client", 700027
    )
    assert "The key used is expired." in description


def test_assertion_type_and_a_secret_are_not_mixed_up(client, tenant, credential):
    key, cert = credential
    token = assertion(key, cert, tenant["id"])
    wrong_type = get_token(
        client, tenant["id"], client_secret=None, client_assertion_type="saml", client_assertion=token
    )
    assert_identity_error(wrong_type, 400, "invalid_request", 50027)
    no_type = get_token(client, tenant["id"], client_secret=None, client_assertion=token)
    assert_identity_error(no_type, 400, "invalid_request", 900144)
    # An app with a certificate keeps its secret.
    assert get_token(client, tenant["id"]).status_code == 200


def test_admin_lists_adds_and_removes_certificates(client, tenant, credential):
    key, cert = credential
    url = f"/_emulator/tenants/{tenant['id']}/apps/{CLIENT_ID}/certificates"
    thumbprint = cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
    assert [c["thumbprint"] for c in client.get(url).json()["value"]] == [thumbprint]
    assert client.post(url, json={"certificate": "not a certificate"}).status_code == 400
    assert (
        client.post(f"/_emulator/tenants/{tenant['id']}/apps/nope/certificates", content=pem(cert)).status_code == 404
    )
    assert client.delete(f"{url}/{thumbprint.lower()}").status_code == 204
    assert client.get(url).json()["value"] == []
    assert_identity_error(
        with_assertion(client, tenant["id"], assertion(key, cert, tenant["id"])), 401, "invalid_client", 700027
    )
    added = client.post(
        f"/_emulator/tenants/{tenant['id']}/apps", json={"clientId": "second", "certificates": [pem(cert)]}
    )
    assert added.status_code == 201 and added.json()["certificates"][0]["thumbprint"] == thumbprint
    assert client.post(f"/_emulator/tenants/{tenant['id']}/apps", json={"clientId": "second"}).status_code == 409
