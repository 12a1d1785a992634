"""Graph groups: create, members@odata.bind (20-link limit), $ref add/remove, member paging, deletes."""

from __future__ import annotations

from aadsync_devkit.graph_emulator import exceptions as err

from .conftest import assert_graph_error, new_group, new_user

BASE = "https://testserver/v1.0"


def users(client, auth, count, start=0):
    out = []
    for n in range(start, start + count):
        response = client.post("/v1.0/users", headers=auth, json=new_user(n))
        assert response.status_code == 201, response.text
        out.append(response.json()["id"])
    return out


def bind(ids, host="https://graph.microsoft.com"):
    return [f"{host}/v1.0/directoryObjects/{i}" for i in ids]


def test_create_security_and_m365_groups(client, auth):
    response = client.post(
        "/v1.0/groups", headers=auth, json={"@odata.type": "#microsoft.graph.group", **new_group("sec")}
    )
    assert response.status_code == 201
    group = response.json()
    assert group["@odata.context"] == f"{BASE}/$metadata#groups/$entity"
    assert group["securityEnabled"] is True and group["mail"] is None and group["groupTypes"] == []
    assert group["securityIdentifier"].startswith("S-1-12-1-")
    assert group["onPremisesSyncEnabled"] is None
    m365 = client.post(
        "/v1.0/groups",
        headers=auth,
        json=new_group("team", mailEnabled=True, securityEnabled=False, groupTypes=["Unified"]),
    ).json()
    assert m365["mail"] == "team@contoso.onmicrosoft.com"
    assert m365["proxyAddresses"] == ["SMTP:team@contoso.onmicrosoft.com"]


def test_create_group_requires_properties(client, auth):
    body = new_group("g")
    del body["securityEnabled"]
    response = client.post("/v1.0/groups", headers=auth, json=body)
    assert_graph_error(
        response, 400, "Request_BadRequest", "Property securityEnabled value is required but is empty or missing."
    )


def test_bind_up_to_20_on_create_and_patch(client, auth):
    ids = users(client, auth, 41)
    response = client.post("/v1.0/groups", headers=auth, json={**new_group("g"), "members@odata.bind": bind(ids[:20])})
    assert response.status_code == 201, response.text
    group_id = response.json()["id"]
    too_many = client.patch(f"/v1.0/groups/{group_id}", headers=auth, json={"members@odata.bind": bind(ids[20:41])})
    assert_graph_error(too_many, 400, "Request_BadRequest", "A resource cannot contain more than 20 link changes.")
    emulator_host = client.patch(
        f"/v1.0/groups/{group_id}",
        headers=auth,
        json={"members@odata.bind": bind(ids[20:40], host="https://testserver")},
    )
    assert emulator_host.status_code == 204
    members = client.get(f"/v1.0/groups/{group_id}/members?$top=999", headers=auth).json()["value"]
    assert [m["id"] for m in members] == ids[:40]
    too_many_on_create = client.post(
        "/v1.0/groups", headers=auth, json={**new_group("h"), "members@odata.bind": bind(ids[:21])}
    )
    assert_graph_error(too_many_on_create, 400, "Request_BadRequest")


def test_bind_of_existing_member_or_unknown_object(client, auth):
    ids = users(client, auth, 2)
    group_id = client.post(
        "/v1.0/groups", headers=auth, json={**new_group("g"), "members@odata.bind": bind(ids[:1])}
    ).json()["id"]
    response = client.patch(f"/v1.0/groups/{group_id}", headers=auth, json={"members@odata.bind": bind(ids)})
    assert_graph_error(
        response,
        400,
        "Request_BadRequest",
        "One or more added object references already exist for the following modified properties: 'members'.",
    )
    unknown = "5e5e5e5e-0000-4000-8000-000000000000"
    response = client.patch(f"/v1.0/groups/{group_id}", headers=auth, json={"members@odata.bind": bind([unknown])})
    assert_graph_error(response, 404, "Request_ResourceNotFound")
    members = client.get(f"/v1.0/groups/{group_id}/members", headers=auth).json()["value"]
    assert [m["id"] for m in members] == ids[:1]  # a failed PATCH changes nothing


def test_ref_add_duplicate_and_remove(client, auth):
    [user_id] = users(client, auth, 1)
    group_id = client.post("/v1.0/groups", headers=auth, json=new_group("g")).json()["id"]
    ref = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{user_id}"}
    added = client.post(f"/v1.0/groups/{group_id}/members/$ref", headers=auth, json=ref)
    assert added.status_code == 204
    again = client.post(f"/v1.0/groups/{group_id}/members/$ref", headers=auth, json=ref)
    assert_graph_error(
        again,
        400,
        "Request_BadRequest",
        "One or more added object references already exist for the following modified properties: 'members'.",
    )
    removed = client.delete(f"/v1.0/groups/{group_id}/members/{user_id}/$ref", headers=auth)
    assert removed.status_code == 204
    missing = client.delete(f"/v1.0/groups/{group_id}/members/{user_id}/$ref", headers=auth)
    assert_graph_error(missing, 404, "Request_ResourceNotFound")


def test_members_are_paged_and_typed(client, auth):
    ids = users(client, auth, 45)
    group_id = client.post("/v1.0/groups", headers=auth, json=new_group("big")).json()["id"]
    nested = client.post("/v1.0/groups", headers=auth, json=new_group("nested")).json()["id"]
    for start in range(0, 40, 20):
        client.patch(
            f"/v1.0/groups/{group_id}", headers=auth, json={"members@odata.bind": bind(ids[start : start + 20])}
        )
    client.patch(f"/v1.0/groups/{group_id}", headers=auth, json={"members@odata.bind": bind(ids[40:] + [nested])})
    url, seen = f"/v1.0/groups/{group_id}/members?$top=20", []
    while url:
        body = client.get(url, headers=auth).json()
        assert body["@odata.context"] == f"{BASE}/$metadata#directoryObjects"
        seen += body["value"]
        url = body.get("@odata.nextLink")
    assert [m["id"] for m in seen] == ids + [nested]
    assert {m["@odata.type"] for m in seen[:45]} == {"#microsoft.graph.user"}
    assert seen[-1]["@odata.type"] == "#microsoft.graph.group"
    assert "userPrincipalName" in seen[0]
    selected = client.get(f"/v1.0/groups/{group_id}/members?$select=id&$top=1", headers=auth).json()["value"]
    assert selected == [{"@odata.type": "#microsoft.graph.user", "id": ids[0]}]


def test_group_list_filter_and_patch(client, auth):
    a = client.post("/v1.0/groups", headers=auth, json=new_group("alpha")).json()
    client.post(
        "/v1.0/groups",
        headers=auth,
        json=new_group("team", mailEnabled=True, securityEnabled=False, groupTypes=["Unified"]),
    )
    body = client.get("/v1.0/groups?$filter=groupTypes/any(c:c eq 'Unified')&$select=displayName", headers=auth).json()
    assert [g["displayName"] for g in body["value"]] == ["team"]
    assert client.patch(f"/v1.0/groups/{a['id']}", headers=auth, json={"description": "first"}).status_code == 204
    got = client.get(f"/v1.0/groups/{a['id']}", headers=auth).json()
    assert got["description"] == "first"


def test_mail_enabled_security_and_distribution_groups_are_not_created_and_mail_enablement_is_not_patched(client, auth):
    """Graph creates Microsoft 365 groups and security groups only, and has no mailEnabled in Update group."""
    for security in (True, False):  # a mail-enabled security group, a distribution group
        refused = client.post("/v1.0/groups", headers=auth, json=new_group("mesg", mailEnabled=True,
                                                                           securityEnabled=security))  # fmt: skip
        assert_graph_error(refused, 400, "Request_BadRequest", err.MAIL_GROUP_CREATE)
    assert client.get("/v1.0/groups", headers=auth).json()["value"] == []
    group = client.post("/v1.0/groups", headers=auth, json=new_group("sec")).json()["id"]
    patched = client.patch(f"/v1.0/groups/{group}", headers=auth, json={"mailEnabled": True, "description": "d"})
    assert_graph_error(patched, 400, "Request_BadRequest", err.MAIL_ENABLEMENT_UPDATE)
    got = client.get(f"/v1.0/groups/{group}", headers=auth).json()
    assert (got["mailEnabled"], got["description"]) == (False, None)  # a refused PATCH changes nothing
    unchanged = client.patch(f"/v1.0/groups/{group}", headers=auth, json={"mailEnabled": False, "description": "d"})
    assert unchanged.status_code == 204  # the value it has is no change


def test_security_groups_are_hard_deleted_m365_soft(client, auth):
    sec = client.post("/v1.0/groups", headers=auth, json=new_group("sec")).json()["id"]
    m365 = client.post(
        "/v1.0/groups",
        headers=auth,
        json=new_group("team", mailEnabled=True, securityEnabled=False, groupTypes=["Unified"]),
    ).json()
    assert client.delete(f"/v1.0/groups/{sec}", headers=auth).status_code == 204
    assert client.delete(f"/v1.0/groups/{m365['id']}", headers=auth).status_code == 204
    deleted = client.get("/v1.0/directory/deletedItems/microsoft.graph.group", headers=auth).json()["value"]
    assert [g["id"] for g in deleted] == [m365["id"]]


def test_deleting_a_user_removes_its_memberships(client, auth):
    [user_id] = users(client, auth, 1)
    group_id = client.post(
        "/v1.0/groups", headers=auth, json={**new_group("g"), "members@odata.bind": bind([user_id])}
    ).json()["id"]
    client.delete(f"/v1.0/users/{user_id}", headers=auth)
    assert client.get(f"/v1.0/groups/{group_id}/members", headers=auth).json()["value"] == []
    client.post(f"/v1.0/directory/deletedItems/{user_id}/restore", headers=auth)
    assert [m["id"] for m in client.get(f"/v1.0/groups/{group_id}/members", headers=auth).json()["value"]] == [user_id]


def test_synced_group_membership_is_read_only(client, auth, tenant):
    [user_id] = users(client, auth, 1)
    seeded = client.post(
        f"/_emulator/tenants/{tenant['id']}/objects",
        json={"@odata.type": "#microsoft.graph.group", **new_group("synced"), "onPremisesSyncEnabled": True},
    )
    group_id = seeded.json()["id"]
    response = client.post(
        f"/v1.0/groups/{group_id}/members/$ref",
        headers=auth,
        json={"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{user_id}"},
    )
    assert_graph_error(response, 400, "Request_BadRequest")


def test_directory_objects_endpoint(client, auth):
    [user_id] = users(client, auth, 1)
    body = client.get(f"/v1.0/directoryObjects/{user_id}", headers=auth).json()
    assert body["@odata.type"] == "#microsoft.graph.user" and body["id"] == user_id


NICKNAME_CONFLICT = "Another object with the same value for property mailNickname already exists."


def m365(name, **extra):
    return new_group(name, mailEnabled=True, securityEnabled=False, groupTypes=["Unified"], **extra)


def assert_nickname_conflict(response):
    error = assert_graph_error(response, 400, "Request_BadRequest", NICKNAME_CONFLICT)
    assert error["details"] == [{"code": "ObjectConflict", "target": "mailNickname"}]


def test_m365_group_mail_nickname_is_unique_in_the_tenant(client, auth):
    assert client.post("/v1.0/groups", headers=auth, json=m365("team")).status_code == 201
    # Refused as a mailNickname conflict before the derived SMTP address could clash (a proxyAddresses conflict).
    assert_nickname_conflict(client.post("/v1.0/groups", headers=auth, json=m365("TEAM", displayName="Other")))
    assert client.post("/v1.0/users", headers=auth, json=new_user(1, mailNickname="shared")).status_code == 201
    assert client.post("/v1.0/groups", headers=auth, json=new_group("security")).status_code == 201
    assert_nickname_conflict(client.post("/v1.0/groups", headers=auth, json=m365("shared")))
    assert_nickname_conflict(client.post("/v1.0/groups", headers=auth, json=m365("Security")))
    names = [g["mailNickname"] for g in client.get("/v1.0/groups", headers=auth).json()["value"]]
    assert sorted(names) == ["security", "team"]


def test_users_and_security_groups_keep_accepting_duplicate_mail_nicknames(client, auth):
    assert client.post("/v1.0/groups", headers=auth, json=m365("team")).status_code == 201
    for body in (new_group("team"), new_group("team", displayName="Again"), new_group("sec"), new_group("sec")):
        assert client.post("/v1.0/groups", headers=auth, json=body).status_code == 201
    for n in (1, 2):
        assert client.post("/v1.0/users", headers=auth, json=new_user(n, mailNickname="team")).status_code == 201


def test_patching_an_m365_group_to_a_taken_mail_nickname_is_refused(client, auth):
    team = client.post("/v1.0/groups", headers=auth, json=m365("team")).json()
    client.post("/v1.0/groups", headers=auth, json=m365("other"))
    client.post("/v1.0/groups", headers=auth, json=new_group("sec"))
    assert_nickname_conflict(client.patch(f"/v1.0/groups/{team['id']}", headers=auth, json={"mailNickname": "Other"}))
    assert_nickname_conflict(client.patch(f"/v1.0/groups/{team['id']}", headers=auth, json={"mailNickname": "sec"}))
    assert client.get(f"/v1.0/groups/{team['id']}", headers=auth).json()["mailNickname"] == "team"
    for nickname in ("Team", "renamed"):  # its own nickname (any case) and a free one are accepted
        patched = client.patch(f"/v1.0/groups/{team['id']}", headers=auth, json={"mailNickname": nickname})
        assert patched.status_code == 204, patched.text
    sec = client.post("/v1.0/groups", headers=auth, json=new_group("sec2")).json()
    patched = client.patch(f"/v1.0/groups/{sec['id']}", headers=auth, json={"mailNickname": "other"})
    assert patched.status_code == 204, patched.text  # a security group may share an M365 group's nickname


def test_restoring_an_m365_group_whose_mail_nickname_was_taken_is_refused(client, auth):
    team = client.post("/v1.0/groups", headers=auth, json=m365("team")).json()
    assert client.delete(f"/v1.0/groups/{team['id']}", headers=auth).status_code == 204
    taker = client.post("/v1.0/groups", headers=auth, json=new_group("team")).json()
    restored = client.post(f"/v1.0/directory/deletedItems/{team['id']}/restore", headers=auth)
    assert_nickname_conflict(restored)
    assert client.delete(f"/v1.0/groups/{taker['id']}", headers=auth).status_code == 204
    restored = client.post(f"/v1.0/directory/deletedItems/{team['id']}/restore", headers=auth)
    assert restored.status_code == 200, restored.text


def test_writeback_configuration_is_beta_only(client, auth):
    """writebackConfiguration: listed and set through /beta/groups (null until configured), unknown to v1.0."""
    team = client.post(
        "/v1.0/groups", headers=auth, json=new_group("team", mailEnabled=True, securityEnabled=False,
                                                     groupTypes=["Unified"]),
    ).json()["id"]  # fmt: skip
    client.post("/v1.0/groups", headers=auth, json=new_group("sec"))
    params = {"$filter": "groupTypes/any(c:c eq 'Unified')", "$select": "id,writebackConfiguration"}
    listed = client.get("/beta/groups", headers=auth, params=params).json()
    assert listed["value"] == [{"id": team, "writebackConfiguration": {"isEnabled": None, "onPremisesGroupType": None}}]
    assert listed["@odata.context"].endswith("/beta/$metadata#groups(id,writebackConfiguration)")
    body = {"writebackConfiguration": {"isEnabled": False}}
    assert client.patch(f"/beta/groups/{team}", headers=auth, json=body).status_code == 204
    (row,) = client.get("/beta/groups", headers=auth, params=params).json()["value"]
    assert row["writebackConfiguration"] == {"isEnabled": False, "onPremisesGroupType": None}
    bad = {"writebackConfiguration": {"isEnabled": "no"}}
    assert client.patch(f"/beta/groups/{team}", headers=auth, json=bad).status_code == 400
    assert client.patch(f"/v1.0/groups/{team}", headers=auth, json=body).status_code == 400
    selected = client.get("/v1.0/groups", headers=auth, params={"$select": "id,writebackConfiguration"})
    assert_graph_error(selected, 400, "BadRequest")


def test_mail_enabled_security_and_distribution_groups_are_read_only_to_every_write(client, auth, tenant):
    """Graph keeps mail-enabled security groups and distribution groups read-only ("Mail-enabled and distribution
    groups are read-only through Microsoft Graph"): a PATCH of any property (a directory extension too), a member
    added or removed through members/$ref or members@odata.bind, alone or in a $batch, is refused with Graph's
    answer and changes nothing; a Microsoft 365 group with mail and a security group take the same writes."""
    from .test_extensions import PREFIX, register

    assert register(client, auth, "anchor", targetObjects=["Group"]).status_code == 201
    user = client.post("/v1.0/users", headers=auth, json=new_user(1)).json()["id"]
    seeded = client.post(f"/_emulator/tenants/{tenant['id']}/objects", json=[
        {"@odata.type": "#microsoft.graph.group", "displayName": name, "mailNickname": name, "mailEnabled": True,
         "securityEnabled": security, "mail": f"{name}@contoso.com", "members@odata.bind": [f"https://graph.microsoft.com/v1.0/directoryObjects/{user}"]}
        for name, security in (("mesg", True), ("dl", False))
    ])  # fmt: skip
    assert seeded.status_code == 201, seeded.text
    url = f"https://graph.microsoft.com/v1.0/directoryObjects/{user}"
    other = client.post("/v1.0/users", headers=auth, json=new_user(2)).json()["id"]
    for group in [g["id"] for g in seeded.json()["value"]]:
        before = client.get(f"/v1.0/groups/{group}", headers=auth).json()
        writes = [
            ("PATCH", f"/groups/{group}", {"description": "renamed in AD"}),
            ("PATCH", f"/groups/{group}", {f"{PREFIX}_anchor": "c3RhbXA="}),
            ("PATCH", f"/groups/{group}", {"members@odata.bind": [f"https://graph.microsoft.com/v1.0/users/{other}"]}),
            ("POST", f"/groups/{group}/members/$ref", {"@odata.id": f"https://graph.microsoft.com/v1.0/users/{other}"}),
            ("DELETE", f"/groups/{group}/members/{user}/$ref", None),
            ("DELETE", f"/groups/{group}", None),  # read-only: Graph cannot delete it either
        ]
        for method, path, body in writes:
            answer = client.request(method, f"/v1.0{path}", headers=auth, json=body)
            assert_graph_error(answer, 400, "Request_BadRequest", err.MAIL_GROUP_UPDATE)
        requests = [
            {"id": str(i), "method": m, "url": p, "headers": {"Content-Type": "application/json"}, "body": b}
            if b is not None
            else {"id": str(i), "method": m, "url": p}
            for i, (m, p, b) in enumerate(writes)
        ]
        answers = client.post("/v1.0/$batch", headers=auth, json={"requests": requests}).json()["responses"]
        assert {(a["status"], a["body"]["error"]["message"]) for a in answers} == {(400, err.MAIL_GROUP_UPDATE)}
        after = client.get(f"/v1.0/groups/{group}?$select=id,description,{PREFIX}_anchor", headers=auth).json()
        assert after.get("description") == before.get("description") and f"{PREFIX}_anchor" not in after
        members = client.get(f"/v1.0/groups/{group}/members", headers=auth).json()["value"]
        assert [m["id"] for m in members] == [user]
    m365 = client.post("/v1.0/groups", headers=auth, json=new_group("team", mailEnabled=True, groupTypes=["Unified"]))
    for group in (m365.json()["id"], client.post("/v1.0/groups", headers=auth, json=new_group("sec")).json()["id"]):
        assert client.patch(f"/v1.0/groups/{group}", headers=auth, json={f"{PREFIX}_anchor": "x"}).status_code == 204
        added = client.post(f"/v1.0/groups/{group}/members/$ref", headers=auth, json={"@odata.id": url})
        assert added.status_code == 204, added.text
        assert client.delete(f"/v1.0/groups/{group}/members/{user}/$ref", headers=auth).status_code == 204
