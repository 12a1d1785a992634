"""Application permissions in the emulator: an app's granted permissions are its tokens' ``roles`` claim, and a
Graph call without one that allows it is refused as Graph refuses it (403 ``Authorization_RequestDenied``)."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from aadsync_devkit.graph_emulator.apps import DEFAULT_ROLES
from airflow_provider_aadsync.hooks.entra_permissions import check_permissions

from .conftest import CLIENT_ID, assert_graph_error, get_token, new_group, new_user

DENIED = "Insufficient privileges to complete the operation."


def roles_of(client: Any, tenant_id: str) -> list[str]:
    response = get_token(client, tenant_id)
    assert response.status_code == 200, response.text
    return jwt.decode(response.json()["access_token"], options={"verify_signature": False}).get("roles", [])


def grant(client: Any, tenant_id: str, roles: list[str]) -> dict[str, str]:
    """Replace the app's granted permissions; a token issued afterwards carries them."""
    response = client.patch(f"/_emulator/tenants/{tenant_id}/apps/{CLIENT_ID}", json={"roles": roles})
    assert response.status_code == 204, response.text
    return {"Authorization": f"Bearer {get_token(client, tenant_id).json()['access_token']}"}


def test_an_app_is_granted_what_the_sync_app_needs_by_default(client, tenant):
    assert roles_of(client, tenant["id"]) == list(DEFAULT_ROLES)
    check = check_permissions(DEFAULT_ROLES)  # the product's own check: nothing missing, not even optional
    assert check.ok and not check.missing_optional


def test_an_app_created_with_fewer_roles_gets_tokens_with_those(client, tenant):
    response = client.post(
        f"/_emulator/tenants/{tenant['id']}/apps", json={"clientId": "reader", "roles": ["User.Read.All"]}
    )
    assert response.status_code == 201 and response.json()["roles"] == ["User.Read.All"]
    token = get_token(client, tenant["id"], client_id="reader", client_secret=response.json()["clientSecret"])
    claims = jwt.decode(token.json()["access_token"], options={"verify_signature": False})
    assert claims["roles"] == ["User.Read.All"]


@pytest.mark.parametrize("roles", ["User.ReadWrite.All", [""], [1]])
def test_roles_must_be_a_list_of_names(client, tenant, roles):
    response = client.patch(f"/_emulator/tenants/{tenant['id']}/apps/{CLIENT_ID}", json={"roles": roles})
    assert_graph_error(response, 400, "Request_BadRequest")


def test_a_call_without_its_permission_is_refused_as_graph_refuses_it(client, tenant):
    auth = grant(client, tenant["id"], ["User.Read.All", "GroupMember.Read.All"])
    assert client.get("/v1.0/users", headers=auth).status_code == 200
    assert client.get("/v1.0/groups/delta", headers=auth).status_code == 200
    assert_graph_error(client.post("/v1.0/users", json=new_user(1), headers=auth), 403,
                       "Authorization_RequestDenied", DENIED)  # fmt: skip
    assert_graph_error(client.post("/v1.0/groups", json=new_group("g"), headers=auth), 403,
                       "Authorization_RequestDenied", DENIED)  # fmt: skip
    assert_graph_error(client.get("/v1.0/organization", headers=auth), 403, "Authorization_RequestDenied", DENIED)
    assert_graph_error(client.get("/v1.0/domains", headers=auth), 403, "Authorization_RequestDenied", DENIED)
    # inside a $batch, each request is checked on its own
    batch = {"requests": [{"id": "1", "method": "GET", "url": "/users"},
                          {"id": "2", "method": "POST", "url": "/users", "body": new_user(2),
                           "headers": {"Content-Type": "application/json"}}]}  # fmt: skip
    answers = {r["id"]: r for r in client.post("/v1.0/$batch", json=batch, headers=auth).json()["responses"]}
    assert answers["1"]["status"] == 200 and answers["2"]["status"] == 403
    assert answers["2"]["body"]["error"]["code"] == "Authorization_RequestDenied"


def test_a_higher_privileged_permission_allows_the_call(client, tenant):
    auth = grant(client, tenant["id"], ["Directory.ReadWrite.All"])
    assert client.post("/v1.0/users", json=new_user(1), headers=auth).status_code == 201
    group = client.post("/v1.0/groups", json=new_group("g"), headers=auth)
    assert group.status_code == 201
    assert client.get("/v1.0/organization", headers=auth).status_code == 200
    assert client.get("/v1.0/domains", headers=auth).status_code == 200
