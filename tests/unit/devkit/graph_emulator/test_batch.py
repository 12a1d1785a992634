"""JSON batching: inner requests go through the same routes and rules; dependsOn, 424, limits and counters."""

from __future__ import annotations

from aadsync_devkit.graph_emulator.graph import ODATA_JSON

from .conftest import assert_graph_error, new_group, new_user

BASE = "https://testserver/v1.0"


def batch(client, auth, requests, **headers):
    return client.post("/v1.0/$batch", headers={**auth, "Accept": "*/*", **headers}, json={"requests": requests})


def by_id(response):
    assert response.status_code == 200, response.text
    return {item["id"]: item for item in response.json()["responses"]}


def test_inner_requests_run_through_the_normal_routes(client, auth):
    response = batch(
        client,
        auth,
        [
            {
                "id": "1",
                "method": "POST",
                "url": "/users",
                "headers": {"Content-Type": "application/json"},
                "body": new_user(1),
            },
            {
                "id": "2",
                "method": "GET",
                "url": "/users?%24select=displayName&%24filter=startswith(displayName,'User')",
            },
            {"id": "3", "method": "GET", "url": "users/4d3c2b1a-0000-4000-8000-000000000000"},
            {"id": "4", "method": "GET", "url": "/nothing"},
        ],
    )
    assert response.headers["content-type"].startswith("application/json")
    assert [item["id"] for item in response.json()["responses"]] == ["1", "2", "3", "4"]
    items = by_id(response)
    created = items["1"]
    assert created["status"] == 201
    assert created["headers"]["Content-Type"] == ODATA_JSON
    assert created["headers"]["Location"] == f"{BASE}/directoryObjects/{created['body']['id']}"
    assert created["body"]["userPrincipalName"] == "user1@contoso.com"
    assert items["2"]["status"] == 200
    assert items["2"]["body"] == {
        "@odata.context": f"{BASE}/$metadata#users(displayName)",
        "value": [{"displayName": "User 1", "id": created["body"]["id"]}],
    }
    assert items["3"]["status"] == 404 and items["3"]["body"]["error"]["code"] == "Request_ResourceNotFound"
    assert items["4"]["status"] == 400 and items["4"]["body"]["error"]["code"] == "BadRequest"


def test_rules_apply_inside_a_batch(client, auth):
    users = [client.post("/v1.0/users", headers=auth, json=new_user(n)).json()["id"] for n in range(21)]
    group = client.post("/v1.0/groups", headers=auth, json=new_group("g")).json()["id"]
    binds = [f"https://graph.microsoft.com/v1.0/directoryObjects/{u}" for u in users]
    items = by_id(
        batch(
            client,
            auth,
            [
                {
                    "id": "a",
                    "method": "PATCH",
                    "url": f"/groups/{group}",
                    "headers": {"Content-Type": "application/json"},
                    "body": {"members@odata.bind": binds},
                },
                {
                    "id": "b",
                    "method": "PATCH",
                    "url": f"/groups/{group}",
                    "headers": {"Content-Type": "application/json"},
                    "body": {"members@odata.bind": binds[:20]},
                },
            ],
        )
    )
    assert items["a"]["status"] == 400
    assert items["a"]["body"]["error"]["message"] == "A resource cannot contain more than 20 link changes."
    assert items["b"]["status"] == 204 and "body" not in items["b"]


def test_depends_on_orders_requests_and_failures_give_424(client, auth):
    sequential = batch(
        client,
        auth,
        [
            {"id": "1", "method": "POST", "url": "/users", "body": new_user(1)},
            {"id": "2", "method": "PATCH", "url": "/users/user1@contoso.com", "body": {"jobTitle": "Boss"},
             "dependsOn": ["1"]},
            {"id": "3", "method": "GET", "url": "/users/user1@contoso.com", "dependsOn": ["2"]},
        ],
    )  # fmt: skip
    assert by_id(sequential)["3"]["status"] == 200 and by_id(sequential)["3"]["body"]["jobTitle"] == "Boss"
    failing = batch(
        client,
        auth,
        [
            {"id": "4", "method": "GET", "url": "/users/nobody@contoso.com"},
            {"id": "5", "method": "GET", "url": "/users", "depends_on": ["4"]},  # msgraph-sdk's spelling
            {"id": "6", "method": "GET", "url": "/users", "dependsOn": ["5"]},
        ],
    )
    items = by_id(failing)
    assert items["4"]["status"] == 404
    for failed in ("5", "6"):
        assert items[failed]["status"] == 424
        error = items[failed]["body"]["error"]
        assert error["code"] == "FailedDependency"
        assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}


def test_batches_are_fully_sequential_or_fully_parallel(client, auth):
    """The patterns Graph takes: none depends, each depends on the one before, or all state the same dependency."""
    same = [
        {"id": "a", "method": "POST", "url": "/users", "body": new_user(7)},
        {"id": "b", "method": "GET", "url": "/users/user7@contoso.com", "dependsOn": ["a"]},
        {"id": "c", "method": "GET", "url": "/users?$top=1", "dependsOn": ["a"]},
    ]
    assert {item["status"] for item in batch(client, auth, same).json()["responses"]} == {201, 200}
    mixed = [
        {"id": "1", "method": "GET", "url": "/users"},
        {"id": "2", "method": "GET", "url": "/users", "dependsOn": ["1"]},
        {"id": "3", "method": "GET", "url": "/users", "dependsOn": ["2"]},
        {"id": "4", "method": "GET", "url": "/groups"},
    ]
    message = "Batch should be either fully sequential or fully parallel"
    assert_graph_error(batch(client, auth, mixed), 400, "BadRequest", message)
    out_of_order = [{"id": "1", "method": "GET", "url": "/users", "dependsOn": ["2"]},
                    {"id": "2", "method": "GET", "url": "/users"},
                    {"id": "3", "method": "GET", "url": "/users", "dependsOn": ["1"]}]  # fmt: skip
    assert_graph_error(batch(client, auth, out_of_order), 400, "BadRequest", message)
    two = [{"id": "1", "method": "GET", "url": "/users"}, {"id": "2", "method": "GET", "url": "/users"},
           {"id": "3", "method": "GET", "url": "/users", "dependsOn": ["1", "2"]}]  # fmt: skip
    assert_graph_error(batch(client, auth, two), 400, "BadRequest", message)


def test_batch_payload_errors(client, auth):
    many = [{"id": str(n), "method": "GET", "url": "/users"} for n in range(21)]
    assert_graph_error(
        batch(client, auth, many), 400, "BadRequest", "Number of batch requests exceeds the maximum of 20."
    )
    assert batch(client, auth, many[:20]).status_code == 200
    twice = [{"id": "1", "method": "GET", "url": "/users"}, {"id": "1", "method": "GET", "url": "/groups"}]
    assert_graph_error(batch(client, auth, twice), 400, "BadRequest")
    unknown = [{"id": "1", "method": "GET", "url": "/users", "dependsOn": ["9"]}]
    assert_graph_error(batch(client, auth, unknown), 400, "BadRequest")
    cycle = [
        {"id": "1", "method": "GET", "url": "/users", "dependsOn": ["2"]},
        {"id": "2", "method": "GET", "url": "/users", "dependsOn": ["1"]},
    ]
    assert_graph_error(batch(client, auth, cycle), 400, "BadRequest")
    assert_graph_error(batch(client, auth, []), 400, "BadRequest", "Invalid batch payload format. "
                       "The 'requests' property must be a non-empty array.")  # fmt: skip
    assert_graph_error(batch(client, {}, many[:1]), 401, "InvalidAuthenticationToken")


def test_inner_requests_are_counted(client, auth):
    client.delete("/_emulator/counters")
    batch(
        client,
        auth,
        [
            {"id": "1", "method": "GET", "url": "/users"},
            {"id": "2", "method": "GET", "url": "/users/nobody@contoso.com"},
            {"id": "3", "method": "GET", "url": "/users", "dependsOn": ["2"]},
        ],
    )
    counters = client.get("/_emulator/counters").json()
    assert counters["requests"] == {
        "POST /v1.0/$batch": 1,
        "GET /v1.0/users": 1,
        "GET /v1.0/users/{id}": 1,
        "GET (failed dependency)": 1,
    }
    assert counters["batchItems"] == 3 and counters["total"] == 4
    assert counters["status"] == {"200": 2, "404": 1, "424": 1}


def test_string_bodies_are_base64_as_the_sdk_sends_them(client, auth):
    import base64
    import json

    encoded = base64.b64encode(json.dumps(new_user(7)).encode()).decode()
    response = batch(
        client,
        auth,
        [
            {"id": "1", "method": "POST", "url": "/users", "headers": {"content-type": "application/json"},
             "body": encoded},
            {"id": "2", "method": "PATCH", "url": "/users/user7@contoso.com",
             "headers": {"Content-Type": "application/json"}, "body": '{"displayName": "Seven"}'},
        ],
    )  # fmt: skip
    items = by_id(response)
    assert items["1"]["status"] == 201, items["1"]
    assert items["2"]["status"] == 204, items["2"]
