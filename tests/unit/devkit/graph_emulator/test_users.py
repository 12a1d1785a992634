"""Graph users: create rules, reads, $select/$filter/$top/$count, paging, update, soft delete."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from .conftest import assert_graph_error, new_user

BASE = "https://testserver/v1.0"


def create(client, auth, n, **extra):
    response = client.post("/v1.0/users", headers=auth, json=new_user(n, **extra))
    assert response.status_code == 201, response.text
    return response.json()


def test_create_returns_201_with_the_default_property_set(client, auth):
    response = client.post("/v1.0/users", headers=auth, json={"@odata.type": "#microsoft.graph.user", **new_user(1)})
    assert response.status_code == 201
    body = response.json()
    assert list(body) == [
        "@odata.context",
        "businessPhones",
        "displayName",
        "givenName",
        "jobTitle",
        "mail",
        "mobilePhone",
        "officeLocation",
        "preferredLanguage",
        "surname",
        "userPrincipalName",
        "id",
    ]
    assert body["@odata.context"] == f"{BASE}/$metadata#users/$entity"
    assert body["userPrincipalName"] == "user1@contoso.com"
    assert response.headers["Location"].endswith(body["id"])


@pytest.mark.parametrize(
    "missing", ["accountEnabled", "displayName", "mailNickname", "userPrincipalName", "passwordProfile"]
)
def test_create_names_the_missing_required_property(client, auth, missing):
    body = new_user(1)
    del body[missing]
    response = client.post("/v1.0/users", headers=auth, json=body)
    assert_graph_error(
        response, 400, "Request_BadRequest", f"Property {missing} value is required but is empty or missing."
    )


def test_upn_domain_must_be_verified(client, auth):
    response = client.post("/v1.0/users", headers=auth, json=new_user(1, userPrincipalName="a@elsewhere.com"))
    error = assert_graph_error(response, 400, "Request_BadRequest")
    assert "verified domain" in error["message"]
    assert create(client, auth, 2, userPrincipalName="b@contoso.onmicrosoft.com")["id"]


def test_upn_is_unique_case_insensitively(client, auth):
    create(client, auth, 1)
    response = client.post("/v1.0/users", headers=auth, json=new_user(2, userPrincipalName="USER1@contoso.com"))
    assert_graph_error(
        response,
        400,
        "Request_BadRequest",
        "Another object with the same value for property userPrincipalName already exists.",
    )


def test_immutable_id_is_unique_among_live_users_as_written(client, auth):
    """Entra ID refuses a second user with an onPremisesImmutableId another holds (Entra Connect's
    AttributeValueMustBeUnique): on create, on update and on restore. Base64's letter case matters; a deleted user
    frees its value until it is restored."""
    taken = "AbCdEfGhIjKlMnOpQrStUw=="
    conflict = "Another object with the same value for property onPremisesImmutableId already exists."
    first = create(client, auth, 1, onPremisesImmutableId=taken)
    response = client.post("/v1.0/users", headers=auth, json=new_user(2, onPremisesImmutableId=taken))
    error = assert_graph_error(response, 400, "Request_BadRequest", conflict)
    assert error["details"] == [{"code": "ObjectConflict", "target": "onPremisesImmutableId"}]
    other = create(client, auth, 3, onPremisesImmutableId=taken.lower())
    patched = client.patch(f"/v1.0/users/{other['id']}", headers=auth, json={"onPremisesImmutableId": taken})
    assert_graph_error(patched, 400, "Request_BadRequest", conflict)
    same = client.patch(f"/v1.0/users/{first['id']}", headers=auth, json={"onPremisesImmutableId": taken})
    assert same.status_code == 204  # its own value again

    assert client.delete(f"/v1.0/users/{first['id']}", headers=auth).status_code == 204
    create(client, auth, 4, onPremisesImmutableId=taken)
    restore = client.post(f"/v1.0/directory/deletedItems/{first['id']}/restore", headers=auth)
    assert_graph_error(restore, 400, "Request_BadRequest", conflict)


def test_mail_derives_a_unique_proxy_address_and_proxy_addresses_are_read_only(client, auth):
    create(client, auth, 1, mail="one@contoso.com")
    response = client.post("/v1.0/users", headers=auth, json=new_user(2, mail="ONE@contoso.com"))
    assert_graph_error(
        response,
        400,
        "Request_BadRequest",
        "Another object with the same value for property proxyAddresses already exists.",
    )
    response = client.post("/v1.0/users", headers=auth, json=new_user(3, proxyAddresses=["SMTP:x@contoso.com"]))
    assert_graph_error(response, 400, "Request_BadRequest", "Property 'proxyAddresses' is read-only and cannot be set.")


def test_unknown_property_and_wrong_type(client, auth):
    response = client.post("/v1.0/users", headers=auth, json=new_user(1, shoeSize="42"))
    assert_graph_error(response, 400, "Request_BadRequest")
    response = client.post("/v1.0/users", headers=auth, json=new_user(1, accountEnabled="yes"))
    assert_graph_error(
        response, 400, "Request_BadRequest", "Invalid value specified for property 'accountEnabled' of resource 'User'."
    )


def test_get_by_id_or_upn_with_select(client, auth):
    user = create(client, auth, 1, onPremisesImmutableId="abc==")
    by_upn = client.get("/v1.0/users/user1@contoso.com", headers=auth).json()
    assert by_upn["id"] == user["id"]
    selected = client.get(
        f"/v1.0/users/{user['id']}?$select=onPremisesImmutableId,accountEnabled,onPremisesSyncEnabled", headers=auth
    ).json()
    assert selected == {
        "@odata.context": f"{BASE}/$metadata#users(onPremisesImmutableId,accountEnabled,onPremisesSyncEnabled)/$entity",
        "onPremisesImmutableId": "abc==",
        "accountEnabled": True,
        "onPremisesSyncEnabled": None,
        "id": user["id"],
    }


def test_unknown_id_is_404(client, auth):
    response = client.get("/v1.0/users/4d3c2b1a-0000-4000-8000-000000000000", headers=auth)
    assert_graph_error(
        response,
        404,
        "Request_ResourceNotFound",
        "Resource '4d3c2b1a-0000-4000-8000-000000000000' does not exist or one of its queried reference-property "
        "objects are not present.",
    )


def test_bad_select_is_400(client, auth):
    response = client.get("/v1.0/users?$select=shoeSize", headers=auth)
    assert_graph_error(response, 400, "BadRequest")


def test_paging_250_users_with_top_100(client, auth):
    ids = [create(client, auth, n)["id"] for n in range(250)]
    url = "/v1.0/users?$top=100&$select=displayName"
    seen, pages = [], 0
    while url:
        response = client.get(url, headers={**auth, "Accept": "*/*"})
        assert response.status_code == 200
        body = response.json()
        assert body["@odata.context"] == f"{BASE}/$metadata#users(displayName)"
        assert all(set(item) == {"displayName", "id"} for item in body["value"])
        seen += [item["id"] for item in body["value"]]
        pages += 1
        url = body.get("@odata.nextLink")
        if url:
            assert url.startswith(f"{BASE}/users?")
            query = parse_qs(urlsplit(url).query)
            assert query["$top"] == ["100"] and query["$select"] == ["displayName"] and "$skiptoken" in query
    assert pages == 3
    assert seen == ids


def test_default_page_is_100_and_top_is_bounded(client, auth):
    for n in range(101):
        create(client, auth, n)
    first = client.get("/v1.0/users", headers=auth).json()
    assert len(first["value"]) == 100 and "@odata.nextLink" in first
    for bad in ("0", "1000", "x"):
        response = client.get(f"/v1.0/users?$top={bad}", headers=auth)
        assert_graph_error(
            response,
            400,
            "Request_BadRequest",
            f"Invalid page size specified: '{bad}'. Must be between 1 and 999 inclusive.",
        )


def test_filter_eq_startswith_and_in(client, auth):
    a = create(client, auth, "alice", onPremisesImmutableId="imm-a", mail="alice@contoso.com")
    create(client, auth, "albert")
    b = create(client, auth, "bob", onPremisesImmutableId="imm'b")

    def ids(query):
        response = client.get(f"/v1.0/users?$filter={query}", headers=auth)
        assert response.status_code == 200, response.text
        return sorted(u["id"] for u in response.json()["value"])

    assert ids("userPrincipalName eq 'USERALICE@contoso.com'") == [a["id"]]
    assert len(ids("startswith(displayName,'User al')")) == 2
    assert ids("onPremisesImmutableId eq 'imm''b'") == [b["id"]]
    assert ids("mail eq 'alice@contoso.com'") == [a["id"]]
    assert ids("mailNickname eq 'userbob' or mailNickname eq 'useralice'") == sorted([a["id"], b["id"]])
    assert ids(f"id in ('{a['id']}', '{b['id']}')") == sorted([a["id"], b["id"]])
    assert ids("proxyAddresses/any(p:p eq 'smtp:alice@contoso.com')") == [a["id"]]
    assert ids("onPremisesImmutableId eq null") == [u for u in ids("startswith(displayName,'User al')") if u != a["id"]]


def test_filter_errors(client, auth):
    response = client.get("/v1.0/users?$filter=shoeSize eq '42'", headers=auth)
    assert_graph_error(response, 400, "Request_UnsupportedQuery")
    response = client.get("/v1.0/users?$filter=displayName ne 'x'", headers=auth)
    assert_graph_error(response, 400, "Request_UnsupportedQuery")
    response = client.get("/v1.0/users?$filter=displayName eq", headers=auth)
    assert_graph_error(response, 400, "BadRequest")


def test_count_needs_consistency_level_eventual(client, auth):
    for n in range(3):
        create(client, auth, n)
    response = client.get("/v1.0/users?$count=true", headers=auth)
    assert_graph_error(response, 400, "Request_BadRequest", "$count is not currently supported.")
    body = client.get("/v1.0/users?$count=true&$top=2", headers={**auth, "ConsistencyLevel": "eventual"}).json()
    assert list(body)[:2] == ["@odata.context", "@odata.count"]
    assert body["@odata.count"] == 3 and len(body["value"]) == 2
    advanced = client.get(
        "/v1.0/users?$count=true&$filter=displayName ne 'User 1'", headers={**auth, "ConsistencyLevel": "eventual"}
    ).json()
    assert advanced["@odata.count"] == 2
    raw = client.get("/v1.0/users/$count", headers={**auth, "ConsistencyLevel": "eventual"})
    assert raw.text == "3"
    assert_graph_error(client.get("/v1.0/users/$count", headers=auth), 400, "Request_UnsupportedQuery")


def test_patch_is_204_and_keeps_rules(client, auth):
    user = create(client, auth, 1)
    create(client, auth, 2)
    response = client.patch(
        f"/v1.0/users/{user['id']}",
        headers=auth,
        json={"@odata.type": "#microsoft.graph.user", "onPremisesImmutableId": "new==", "jobTitle": "Boss"},
    )
    assert response.status_code == 204 and response.content == b""
    got = client.get(f"/v1.0/users/{user['id']}?$select=onPremisesImmutableId,jobTitle", headers=auth).json()
    assert got["onPremisesImmutableId"] == "new==" and got["jobTitle"] == "Boss"
    response = client.patch(f"/v1.0/users/{user['id']}", headers=auth, json={"userPrincipalName": "user2@contoso.com"})
    assert_graph_error(response, 400, "Request_BadRequest")
    response = client.patch(f"/v1.0/users/{user['id']}", headers=auth, json={"onPremisesSyncEnabled": True})
    assert_graph_error(response, 400, "Request_BadRequest")
    response = client.patch(f"/v1.0/users/{user['id']}", headers=auth, content=b"{not json")
    assert_graph_error(response, 400, "Request_BadRequest")


def test_synced_users_reject_writes_of_synced_attributes(client, auth, tenant):
    seeded = client.post(
        f"/_emulator/tenants/{tenant['id']}/objects",
        json={
            "@odata.type": "#microsoft.graph.user",
            "accountEnabled": True,
            "displayName": "Synced",
            "mailNickname": "synced",
            "userPrincipalName": "synced@contoso.com",
            "onPremisesSyncEnabled": True,
            "onPremisesImmutableId": "AAAA",
        },
    )
    assert seeded.status_code == 201, seeded.text
    user_id = seeded.json()["id"]
    response = client.patch(f"/v1.0/users/{user_id}", headers=auth, json={"displayName": "Renamed"})
    assert_graph_error(
        response,
        400,
        "Request_BadRequest",
        "Unable to update the specified properties for on-premises "
        "mastered Directory Sync objects or objects currently undergoing migration.",
    )
    assert client.patch(f"/v1.0/users/{user_id}", headers=auth, json={"usageLocation": "DE"}).status_code == 204


def test_delete_is_soft_and_visible_in_deleted_items(client, auth):
    user = create(client, auth, 1)
    assert client.delete(f"/v1.0/users/{user['id']}", headers=auth).status_code == 204
    assert_graph_error(client.get(f"/v1.0/users/{user['id']}", headers=auth), 404, "Request_ResourceNotFound")
    deleted = client.get("/v1.0/directory/deletedItems/microsoft.graph.user", headers=auth).json()
    assert deleted["@odata.context"] == f"{BASE}/$metadata#directory/deletedItems/microsoft.graph.user"
    assert [u["id"] for u in deleted["value"]] == [user["id"]]
    assert deleted["value"][0]["userPrincipalName"] == user["id"].replace("-", "") + "user1@contoso.com"
    one = client.get(f"/v1.0/directory/deletedItems/{user['id']}", headers=auth).json()
    assert one["@odata.type"] == "#microsoft.graph.user"
    # The UPN is free again; restoring the old user then conflicts.
    create(client, auth, 1)
    assert_graph_error(
        client.post(f"/v1.0/directory/deletedItems/{user['id']}/restore", headers=auth), 400, "Request_BadRequest"
    )
    assert client.delete(f"/v1.0/directory/deletedItems/{user['id']}", headers=auth).status_code == 204
    assert client.get("/v1.0/directory/deletedItems/microsoft.graph.user", headers=auth).json()["value"] == []


def test_restore_brings_the_user_back(client, auth):
    user = create(client, auth, 1)
    client.delete(f"/v1.0/users/{user['id']}", headers=auth)
    restored = client.post(f"/v1.0/directory/deletedItems/{user['id']}/restore", headers=auth)
    assert restored.status_code == 200
    assert restored.json()["userPrincipalName"] == "user1@contoso.com"
    assert client.get("/v1.0/users/user1@contoso.com", headers=auth).status_code == 200


def test_organization(client, auth, tenant):
    body = client.get("/v1.0/organization", headers=auth).json()
    assert body["@odata.context"] == f"{BASE}/$metadata#organization"
    org = body["value"][0]
    assert org["id"] == tenant["id"] and org["displayName"] == "Contoso"
    domains = {d["name"]: d for d in org["verifiedDomains"]}
    assert set(domains) == {"contoso.onmicrosoft.com", "contoso.com"}
    assert domains["contoso.onmicrosoft.com"]["isInitial"] is True
