"""The reliability faults of the emulator: malformed answers (``faultMalformed``), 429 storms (``faultRatio429``),
certain 429s (``faultNext429``), revoked tokens and a replaced app secret."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import CLIENT_ID, SECRET, get_token, new_user, put_settings


def users_page(client, auth) -> Any:
    return client.get("/v1.0/users", headers=auth, params={"$select": "id,displayName,accountEnabled"})


@pytest.fixture
def two_users(client, auth) -> list[str]:
    return [client.post("/v1.0/users", headers=auth, json=new_user(n)).json()["id"] for n in (1, 2)]


def test_truncated_json_is_a_whole_http_answer_with_half_a_document(client, auth, two_users):
    put_settings(client, faultMalformed="truncated-json")
    response = users_page(client, auth)
    assert response.status_code == 200 and int(response.headers["content-length"]) == len(response.content)
    with pytest.raises(ValueError):
        json.loads(response.content)


@pytest.mark.parametrize(("kind", "status"), [("html-200", 200), ("html-502", 502)])
def test_html_error_pages(client, auth, two_users, kind, status):
    put_settings(client, faultMalformed=kind)
    response = users_page(client, auth)
    assert response.status_code == status and response.headers["content-type"].startswith("text/html")
    assert response.text.startswith("<!DOCTYPE html>")


def test_wrong_types_missing_id_and_no_value(client, auth, two_users):
    put_settings(client, faultMalformed="wrong-types")
    items = users_page(client, auth).json()["value"]
    assert {type(item["id"]) for item in items} == {int} and {item["accountEnabled"] for item in items} == {"yes"}
    put_settings(client, faultMalformed="missing-id")
    assert all("id" not in item for item in users_page(client, auth).json()["value"])
    put_settings(client, faultMalformed="no-value")
    assert "value" not in users_page(client, auth).json()
    put_settings(client, faultMalformed=None)
    assert sorted(item["id"] for item in users_page(client, auth).json()["value"]) == sorted(two_users)


def test_batch_missing_items_and_the_writes_still_happen(client, auth):
    put_settings(client, faultMalformed="batch-missing-items", faultMalformedPath="/$batch")
    requests = [{"id": str(n), "method": "POST", "url": "/users", "body": new_user(n),
                 "headers": {"Content-Type": "application/json"}} for n in range(4)]  # fmt: skip
    answer = client.post("/v1.0/$batch", headers=auth, json={"requests": requests}).json()
    assert len(answer["responses"]) == 2
    assert len(users_page(client, auth).json()["value"]) == 4  # the path filter leaves /users alone


def test_malformed_setting_is_validated(client):
    response = client.put("/_emulator/settings", json={"faultMalformed": "garbage"})
    assert response.status_code == 400 and "faultMalformed must be one of" in response.text


def test_429_storm_with_its_retry_after(client, auth):
    put_settings(client, faultRatio429=1.0, faultRetryAfterSeconds=3600)
    response = users_page(client, auth)
    assert response.status_code == 429 and response.headers["retry-after"] == "3600"
    put_settings(client, faultRatio429=None, faultRetryAfterSeconds=None)
    assert users_page(client, auth).status_code == 200


def test_the_next_requests_are_answered_429_whatever_the_dice(client, auth):
    """faultNext429 counts down: exactly that many Graph requests get a 429, then answers are normal again."""
    put_settings(client, faultNext429=2, faultRetryAfterSeconds=0)
    assert [users_page(client, auth).status_code for _ in range(3)] == [429, 429, 200]
    assert client.get("/_emulator/settings").json()["faultNext429"] == 0
    put_settings(client, faultRetryAfterSeconds=None)


def test_revoked_tokens_are_refused_and_new_ones_work(client, auth, tenant):
    assert users_page(client, auth).status_code == 200
    assert client.post(f"/_emulator/tenants/{tenant['id']}/tokens/revoke").status_code == 204
    refused = users_page(client, auth)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "InvalidAuthenticationToken"
    fresh = {"Authorization": f"Bearer {get_token(client, tenant['id']).json()['access_token']}"}
    assert users_page(client, fresh).status_code == 200


def test_a_replaced_secret_refuses_the_old_one(client, tenant):
    changed = client.patch(f"/_emulator/tenants/{tenant['id']}/apps/{CLIENT_ID}", json={"clientSecret": "new-one"})
    assert changed.status_code == 204
    assert get_token(client, tenant["id"]).json()["error"] == "invalid_client"
    assert get_token(client, tenant["id"], client_secret="new-one").status_code == 200
    assert SECRET != "new-one"
