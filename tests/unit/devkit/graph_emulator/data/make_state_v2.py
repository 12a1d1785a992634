"""Write ``state-v2.sqlite`` and ``state-v2.json``: a state file of every kind of row, and what it must load as.

Run once with the emulator as it was before its models were cut into modules (issue 14), so that
``test_state_file_compat.py`` proves a state file written by that code still loads. Rerun only on purpose: a new
file proves nothing about old ones.

    PYTHONPATH=$PWD:$PWD/devkit python tests/unit/devkit/graph_emulator/data/make_state_v2.py
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

from aadsync_devkit.graph_emulator.app import create_app
from aadsync_devkit.graph_emulator.state import EmulatorState

HERE = Path(__file__).parent
TENANT_ID = "5e7d0000-0000-4000-8000-00000000c0de"
CLIENT_ID = "5e7d0000-0000-4000-8000-0000000a0001"
SECRET = "fixture-secret-not-a-real-one"
GRAPH = "https://graph.microsoft.com/v1.0/directoryObjects/"


def _certificate() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aadsync-fixture")])
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _ok(response, status: int = 201):
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def main() -> None:
    target = HERE / "state-v2.sqlite"
    target.unlink(missing_ok=True)
    state = EmulatorState(state_file=target)
    with TestClient(create_app(state), base_url="https://testserver") as client:
        _ok(client.put("/_emulator/settings", json={"deltaTokenLifetimeSeconds": 10**10, "deltaPageSize": 50}), 200)
        apps = [
            {"clientId": CLIENT_ID, "clientSecret": SECRET, "displayName": "fixture", "certificates": [_certificate()]}
        ]
        _ok(
            client.post(
                "/_emulator/tenants",
                json={
                    "id": TENANT_ID,
                    "name": "fixture",
                    "displayName": "Fixture",
                    "verifiedDomains": ["fixture.example"],
                    "apps": apps,
                },
            )
        )
        _ok(client.post("/_emulator/tenants", json={"name": "other", "verifiedDomains": ["other.example"]}))
        token = _ok(
            client.post(
                f"/{TENANT_ID}/oauth2/v2.0/token",
                data={
                    "client_id": CLIENT_ID,
                    "client_secret": SECRET,
                    "grant_type": "client_credentials",
                    "scope": "https://graph.microsoft.com/.default",
                },
            ),
            200,
        )["access_token"]
        auth = {"Authorization": f"Bearer {token}"}

        def user(n: int, **extra):
            body = {
                "accountEnabled": True,
                "displayName": f"Fixture User {n}",
                "mailNickname": f"fu{n}",
                "userPrincipalName": f"fu{n}@fixture.example",
                "passwordProfile": {"password": "Fixture-Passw0rd!"},
                **extra,
            }
            return _ok(client.post("/v1.0/users", headers=auth, json=body))["id"]

        users = [user(n, jobTitle="Engineer", businessPhones=["+1 555 0100"]) for n in range(6)]
        users.append(user(6, mail="fu6@fixture.example", onPremisesImmutableId="AAAAAAAAAAAAAAAAAAAAAA=="))
        security = _ok(
            client.post(
                "/v1.0/groups",
                headers=auth,
                json={
                    "displayName": "Security",
                    "mailEnabled": False,
                    "mailNickname": "security",
                    "securityEnabled": True,
                    "members@odata.bind": [GRAPH + u for u in users[:3]],
                    "owners@odata.bind": [GRAPH + users[5]],
                },
            )
        )["id"]
        unified = _ok(
            client.post(
                "/v1.0/groups",
                headers=auth,
                json={
                    "displayName": "Team",
                    "mailEnabled": True,
                    "mailNickname": "team",
                    "securityEnabled": False,
                    "groupTypes": ["Unified"],
                    "members@odata.bind": [GRAPH + u for u in users[2:5]],
                },
            )
        )["id"]
        _ok(
            client.post(f"/v1.0/groups/{unified}/members/$ref", headers=auth, json={"@odata.id": GRAPH + security}), 204
        )
        _ok(
            client.post(
                f"/_emulator/tenants/{TENANT_ID}/objects",
                json=[
                    {
                        "@odata.type": "#microsoft.graph.orgContact",
                        "displayName": "Contact",
                        "mail": "c@partner.example",
                    },
                    {
                        "@odata.type": "#microsoft.graph.user",
                        "accountEnabled": True,
                        "displayName": "Synced",
                        "mailNickname": "synced",
                        "userPrincipalName": "synced@fixture.example",
                        "onPremisesSyncEnabled": True,
                        "proxyAddresses": ["SMTP:synced@fixture.example", "smtp:s@fixture.example"],
                    },
                ],
            )
        )
        delta = _ok(client.get("/v1.0/users/delta?$select=displayName,jobTitle", headers=auth), 200)
        while "@odata.nextLink" in delta:
            delta = _ok(client.get(delta["@odata.nextLink"], headers=auth), 200)
        delta_link = delta["@odata.deltaLink"]
        _ok(client.patch(f"/v1.0/users/{users[0]}", headers=auth, json={"jobTitle": "Lead"}), 204)
        _ok(client.delete(f"/v1.0/groups/{security}/members/{users[1]}/$ref", headers=auth), 204)
        _ok(client.delete(f"/v1.0/users/{users[3]}", headers=auth), 204)  # soft-deleted, was in both groups
        _ok(client.delete(f"/v1.0/users/{users[4]}", headers=auth), 204)
        _ok(client.delete(f"/v1.0/directory/deletedItems/{users[4]}", headers=auth), 204)  # purged
        _ok(client.delete(f"/v1.0/groups/{unified}", headers=auth), 204)  # Microsoft 365: soft-deleted
        _ok(client.post("/_emulator/flush"), 204)
        state.save()
        expected = {
            "settings": state.settings_snapshot(),
            "deltaLink": delta_link,
            "tenants": [t.to_dict() for t in state.tenants.values()],
        }
    (HERE / "state-v2.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    print(f"wrote {target} ({target.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
