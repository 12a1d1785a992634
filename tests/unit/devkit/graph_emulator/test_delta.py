"""Delta queries on users and groups: rounds, paging, $select, members@delta, removals, tokens and their expiry."""

from __future__ import annotations

import warnings
from urllib.parse import parse_qs, urlsplit

import pytest

from aadsync_devkit.graph_emulator.app import create_app
from aadsync_devkit.graph_emulator.state import EmulatorState

from .conftest import assert_graph_error, create_group, get_token, new_user, put_settings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

BASE = "https://testserver/v1.0"
SYNC_STATE_MESSAGE = (
    "The sync state generation is not found. The delta token is expired and data must be synchronized again."
)


def create_user(client, auth, n, **extra):
    response = client.post("/v1.0/users", headers=auth, json=new_user(n, **extra))
    assert response.status_code == 201, response.text
    return response.json()["id"]


def add_member(client, auth, group_id, member_id):
    ref = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{member_id}"}
    assert client.post(f"/v1.0/groups/{group_id}/members/$ref", headers=auth, json=ref).status_code == 204


def run_round(client, auth, url, headers=None):
    """Follow nextLinks to the deltaLink: (pages, deltaLink)."""
    pages = []
    while True:
        response = client.get(url, headers={**auth, **(headers or {})})
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body)
        if "@odata.nextLink" in body:
            assert "@odata.deltaLink" not in body
            url = body["@odata.nextLink"]
            continue
        return pages, body["@odata.deltaLink"]


def items(pages):
    return [item for page in pages for item in page["value"]]


@pytest.mark.parametrize("suffix", ["delta", "delta()", "microsoft.graph.delta", "microsoft.graph.delta()"])
def test_initial_round_returns_every_user_with_the_default_properties(client, auth, suffix):
    first = create_user(client, auth, 1, jobTitle="Boss")
    second = create_user(client, auth, 2)
    response = client.get(f"/v1.0/users/{suffix}", headers=auth)
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["@odata.context", "@odata.deltaLink", "value"]
    assert body["@odata.context"] == f"{BASE}/$metadata#users"
    assert body["@odata.deltaLink"].startswith(f"{BASE}/users/delta?$deltatoken=")
    assert body["value"] == [
        {
            "businessPhones": [],
            "displayName": "User 1",
            "givenName": None,
            "jobTitle": "Boss",
            "mail": None,
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": None,
            "surname": None,
            "userPrincipalName": "user1@contoso.com",
            "id": first,
        },
        {
            "businessPhones": [],
            "displayName": "User 2",
            "givenName": None,
            "jobTitle": None,
            "mail": None,
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": None,
            "surname": None,
            "userPrincipalName": "user2@contoso.com",
            "id": second,
        },
    ]


def test_pages_carry_select_in_the_skiptoken(client, auth):
    put_settings(client, deltaPageSize=2)
    ids = [create_user(client, auth, n) for n in range(5)]
    pages, delta_link = run_round(client, auth, "/v1.0/users/delta?$select=displayName,onPremisesImmutableId")
    assert [len(p["value"]) for p in pages] == [2, 2, 1]
    for page in pages[:-1]:
        link = urlsplit(page["@odata.nextLink"])
        assert f"{link.scheme}://{link.netloc}{link.path}" == f"{BASE}/users/delta"
        assert list(parse_qs(link.query)) == ["$skiptoken"]
    assert all(p["@odata.context"] == f"{BASE}/$metadata#users(displayName,onPremisesImmutableId)" for p in pages)
    assert items(pages) == [{"displayName": f"User {n}", "onPremisesImmutableId": None, "id": ids[n]} for n in range(5)]
    assert list(parse_qs(urlsplit(delta_link).query)) == ["$deltatoken"]
    # Nothing changed: the next round is empty.
    pages, _ = run_round(client, auth, delta_link)
    assert items(pages) == []


def test_objects_created_during_a_round_come_in_the_next_one(client, auth):
    put_settings(client, deltaPageSize=1)
    create_user(client, auth, 1)
    create_user(client, auth, 2)
    first = client.get("/v1.0/users/delta?$select=displayName", headers=auth).json()
    late = create_user(client, auth, 3)
    pages, delta_link = run_round(client, auth, first["@odata.nextLink"])
    assert [i["displayName"] for i in items(pages)] == ["User 2"]
    pages, _ = run_round(client, auth, delta_link)
    assert items(pages) == [{"displayName": "User 3", "id": late}]


def test_changes_since_the_delta_link(client, auth, tenant):
    kept = create_user(client, auth, 1)
    renamed = create_user(client, auth, 2)
    untracked = create_user(client, auth, 3)
    soft = create_user(client, auth, 4)
    purged = create_user(client, auth, 5)
    _, delta_link = run_round(client, auth, "/v1.0/users/delta?$select=displayName,jobTitle")
    client.patch(f"/v1.0/users/{renamed}", headers=auth, json={"displayName": "Renamed"})
    client.patch(f"/v1.0/users/{untracked}", headers=auth, json={"department": "Sales"})  # not selected
    client.patch(f"/v1.0/users/{kept}", headers=auth, json={"displayName": "User 1"})  # same value: no change
    client.delete(f"/v1.0/users/{soft}", headers=auth)
    client.delete(f"/v1.0/users/{purged}", headers=auth)
    client.delete(f"/v1.0/directory/deletedItems/{purged}", headers=auth)
    added = create_user(client, auth, 6, jobTitle="New")
    pages, next_link = run_round(client, auth, delta_link)
    assert pages[0]["@odata.context"] == f"{BASE}/$metadata#users(displayName,jobTitle)"
    assert items(pages) == [
        {"displayName": "Renamed", "jobTitle": None, "id": renamed},
        {"id": soft, "@removed": {"reason": "changed"}},
        {"id": purged, "@removed": {"reason": "deleted"}},
        {"displayName": "User 6", "jobTitle": "New", "id": added},
    ]
    # Restoring a soft-deleted user brings it back whole.
    client.post(f"/v1.0/directory/deletedItems/{soft}/restore", headers=auth)
    pages, _ = run_round(client, auth, next_link)
    assert items(pages) == [{"displayName": "User 4", "jobTitle": None, "id": soft}]


def test_prefer_return_minimal_gives_only_changed_properties(client, auth):
    user = create_user(client, auth, 1)
    _, delta_link = run_round(client, auth, "/v1.0/users/delta?$select=displayName,jobTitle,mobilePhone")
    client.patch(f"/v1.0/users/{user}", headers=auth, json={"jobTitle": "Boss", "mobilePhone": None})
    response = client.get(delta_link, headers={**auth, "Prefer": "return=minimal"})
    assert response.headers["Preference-Applied"] == "return=minimal"
    assert response.json()["value"] == [{"jobTitle": "Boss", "id": user}]  # mobilePhone was already null


def test_without_select_every_property_is_tracked(client, auth):
    user = create_user(client, auth, 1)
    _, delta_link = run_round(client, auth, "/v1.0/users/delta")
    client.patch(f"/v1.0/users/{user}", headers=auth, json={"department": "Sales"})
    pages, _ = run_round(client, auth, delta_link, headers={"Prefer": "return=minimal"})
    assert items(pages) == [{"department": "Sales", "id": user}]


def test_deltatoken_latest_starts_from_now(client, auth):
    create_user(client, auth, 1)
    response = client.get("/v1.0/users/delta?$deltatoken=latest&$select=displayName", headers=auth)
    body = response.json()
    assert body["value"] == [] and "@odata.nextLink" not in body
    assert body["@odata.context"] == f"{BASE}/$metadata#users(displayName)"
    later = create_user(client, auth, 2)
    pages, _ = run_round(client, auth, body["@odata.deltaLink"])
    assert items(pages) == [{"displayName": "User 2", "id": later}]


def test_groups_carry_members_at_delta(client, auth):
    users = [create_user(client, auth, n) for n in range(3)]
    nested = create_group(client, auth, "nested")
    group = create_group(client, auth, "g", members=users[:2] + [nested])
    pages, _ = run_round(client, auth, "/v1.0/groups/delta?$select=displayName,members")
    assert pages[0]["@odata.context"] == f"{BASE}/$metadata#groups(displayName)"
    assert items(pages) == [
        {"displayName": "nested", "id": nested},  # no members: no members@delta
        {
            "displayName": "g",
            "id": group,
            "members@delta": [
                {"@odata.type": "#microsoft.graph.user", "id": users[0]},
                {"@odata.type": "#microsoft.graph.user", "id": users[1]},
                {"@odata.type": "#microsoft.graph.group", "id": nested},
            ],
        },
    ]


def test_members_are_tracked_by_default_and_not_when_unselected(client, auth):
    user = create_user(client, auth, 1)
    group = create_group(client, auth, "g", members=[user])
    default = items(run_round(client, auth, "/v1.0/groups/delta")[0])
    assert default[0]["members@delta"] == [{"@odata.type": "#microsoft.graph.user", "id": user}]
    assert default[0]["securityEnabled"] is True and default[0]["id"] == group
    pages, delta_link = run_round(client, auth, "/v1.0/groups/delta?$select=displayName")
    assert items(pages) == [{"displayName": "g", "id": group}]
    client.delete(f"/v1.0/groups/{group}/members/{user}/$ref", headers=auth)
    assert items(run_round(client, auth, delta_link)[0]) == []  # membership is not tracked


def test_member_changes_in_later_rounds(client, auth):
    users = [create_user(client, auth, n) for n in range(4)]
    group = create_group(client, auth, "g", members=users[:3])
    _, delta_link = run_round(client, auth, "/v1.0/groups/delta?$select=displayName,members")
    add_member(client, auth, group, users[3])
    client.delete(f"/v1.0/groups/{group}/members/{users[0]}/$ref", headers=auth)
    client.delete(f"/v1.0/users/{users[1]}", headers=auth)  # deleting a user removes its memberships
    pages, delta_link = run_round(client, auth, delta_link)
    assert items(pages) == [
        {
            "displayName": "g",
            "id": group,
            "members@delta": [
                {"@odata.type": "#microsoft.graph.user", "id": users[3]},
                {"@odata.type": "#microsoft.graph.user", "id": users[0], "@removed": {"reason": "deleted"}},
                {"@odata.type": "#microsoft.graph.user", "id": users[1], "@removed": {"reason": "deleted"}},
            ],
        }
    ]
    client.patch(f"/v1.0/groups/{group}", headers=auth, json={"description": "only a property"})
    minimal = client.get(delta_link, headers={**auth, "Prefer": "return=minimal"}).json()["value"]
    assert minimal == []  # description is not selected
    client.patch(f"/v1.0/groups/{group}", headers=auth, json={"displayName": "renamed"})
    minimal = client.get(delta_link, headers={**auth, "Prefer": "return=minimal"}).json()["value"]
    assert minimal == [{"displayName": "renamed", "id": group}]


def test_big_groups_are_split_across_pages(client, auth):
    put_settings(client, deltaMembersPerItem=3, deltaPageSize=10)
    users = [create_user(client, auth, n) for n in range(7)]
    small = create_group(client, auth, "small", members=users[:1])
    big = create_group(client, auth, "big", members=users)
    after = create_group(client, auth, "after")
    pages, delta_link = run_round(client, auth, "/v1.0/groups/delta?$select=displayName,members")
    shape = [[(i["displayName"], [m["id"] for m in i.get("members@delta", [])]) for i in p["value"]] for p in pages]
    assert shape == [
        [("small", users[:1]), ("big", users[0:3])],
        [("big", users[3:6])],
        [("big", users[6:7]), ("after", [])],
    ]
    assert [i["id"] for i in items(pages)] == [small, big, big, big, after]
    # Member changes of a big group are chunked the same way in later rounds.
    for user in users[:5]:
        client.delete(f"/v1.0/groups/{big}/members/{user}/$ref", headers=auth)
    pages, _ = run_round(client, auth, delta_link)
    assert [[len(i["members@delta"]) for i in p["value"]] for p in pages] == [[3], [2]]
    assert all(m["@removed"] == {"reason": "deleted"} for m in items(pages)[0]["members@delta"])


def test_group_removals(client, auth):
    security = create_group(client, auth, "sec")
    m365 = create_group(client, auth, "team", mailEnabled=True, securityEnabled=False, groupTypes=["Unified"])
    _, delta_link = run_round(client, auth, "/v1.0/groups/delta?$select=displayName")
    client.delete(f"/v1.0/groups/{security}", headers=auth)
    client.delete(f"/v1.0/groups/{m365}", headers=auth)
    pages, _ = run_round(client, auth, delta_link)
    assert items(pages) == [
        {"id": security, "@removed": {"reason": "deleted"}},
        {"id": m365, "@removed": {"reason": "changed"}},
    ]


def test_select_errors_and_unsupported_options(client, auth):
    assert_graph_error(client.get("/v1.0/users/delta?$select=shoeSize", headers=auth), 400, "BadRequest")
    assert_graph_error(client.get("/v1.0/users/delta?$select=members", headers=auth), 400, "BadRequest")
    assert_graph_error(
        client.get("/v1.0/users/delta?$orderby=displayName", headers=auth), 400, "Request_UnsupportedQuery"
    )
    assert client.get("/v1.0/users/delta?$top=5", headers=auth).status_code == 200  # $top is ignored


def test_forged_foreign_and_mismatched_tokens_are_sync_state_not_found(client, auth):
    create_user(client, auth, 1)
    _, user_link = run_round(client, auth, "/v1.0/users/delta")
    token = parse_qs(urlsplit(user_link).query)["$deltatoken"][0]
    payload, _, signature = token.partition(".")
    forged = ("A" if payload[0] != "A" else "B") + payload[1:] + "." + signature
    for url in (
        "/v1.0/users/delta?$deltatoken=nonsense",
        f"/v1.0/users/delta?$deltatoken={forged}",
        f"/v1.0/groups/delta?$deltatoken={token}",  # a users token on groups
        f"/v1.0/users/delta?$skiptoken={token}",  # a delta token as a skip token
    ):
        assert_graph_error(client.get(url, headers=auth), 400, "syncStateNotFound", SYNC_STATE_MESSAGE)


def test_tokens_expire_after_the_configured_lifetime(client, auth, state):
    now = [1_000_000.0]
    state.clock = lambda: now[0]
    create_user(client, auth, 1)
    _, delta_link = run_round(client, auth, "/v1.0/users/delta")
    now[0] += 7 * 24 * 3600 - 1
    assert client.get(delta_link, headers=auth).status_code == 200
    now[0] += 1
    assert_graph_error(client.get(delta_link, headers=auth), 400, "syncStateNotFound", SYNC_STATE_MESSAGE)
    put_settings(client, deltaTokenLifetimeSeconds=60)
    _, delta_link = run_round(client, auth, "/v1.0/users/delta")
    now[0] += 60
    assert_graph_error(client.get(delta_link, headers=auth), 400, "syncStateNotFound")


def test_admin_hook_expires_every_token_of_a_tenant(client, auth, tenant):
    put_settings(client, deltaPageSize=1)
    create_user(client, auth, 1)
    create_user(client, auth, 2)
    first = client.get("/v1.0/users/delta", headers=auth).json()
    _, delta_link = run_round(client, auth, first["@odata.nextLink"])
    assert client.post(f"/_emulator/tenants/{tenant['id']}/deltaTokens/expire").status_code == 204
    assert_graph_error(client.get(first["@odata.nextLink"], headers=auth), 400, "syncStateNotFound")
    assert_graph_error(client.get(delta_link, headers=auth), 400, "syncStateNotFound")
    assert client.get("/v1.0/users/delta", headers=auth).status_code == 200  # a full resync works


def test_tokens_of_another_tenant_are_refused(client, auth):
    other = client.post(
        "/_emulator/tenants", json={"name": "fabrikam", "apps": [{"clientId": "c2", "clientSecret": "s2"}]}
    ).json()
    other_auth = {
        "Authorization": "Bearer "
        + get_token(client, other["id"], client_id="c2", client_secret="s2").json()["access_token"]
    }
    _, delta_link = run_round(client, auth, "/v1.0/users/delta")
    assert_graph_error(client.get(delta_link, headers=other_auth), 400, "syncStateNotFound")


def test_delta_links_survive_a_restart_with_a_state_file(tmp_path):
    state_file = tmp_path / "state.sqlite"

    def connect(client):
        token = get_token(client, "contoso.onmicrosoft.com", client_id="c1", client_secret="s1").json()
        return {"Authorization": f"Bearer {token['access_token']}"}

    with TestClient(create_app(EmulatorState(state_file=state_file)), base_url="https://testserver") as first:
        first.post("/_emulator/tenants", json={"name": "contoso", "apps": [{"clientId": "c1", "clientSecret": "s1"}]})
        auth = connect(first)
        _, delta_link = run_round(first, auth, "/v1.0/users/delta?$select=displayName")
        user = first.post(
            "/v1.0/users", headers=auth, json=new_user(1, userPrincipalName="user1@contoso.onmicrosoft.com")
        ).json()
    with TestClient(create_app(EmulatorState(state_file=state_file)), base_url="https://testserver") as second:
        pages, _ = run_round(second, connect(second), delta_link)
        assert items(pages) == [{"displayName": "User 1", "id": user["id"]}]


def test_admin_hook_can_answer_410_gone_with_a_restart_location(client, auth, tenant):
    user_id = create_user(client, auth, 1)
    create_group(client, auth, "g", members=[user_id])
    _, users_link = run_round(client, auth, "/v1.0/users/delta?$select=displayName,mail")
    _, groups_link = run_round(client, auth, "/v1.0/groups/delta?$select=displayName,members")
    assert client.post(f"/_emulator/tenants/{tenant['id']}/deltaTokens/expire?mode=gone").status_code == 204
    gone = client.get(users_link, headers=auth)
    assert_graph_error(gone, 410, "resyncRequired")
    assert gone.headers["Location"] == f"{BASE}/users/delta?$select=displayName,mail"
    restarted, _ = run_round(client, auth, gone.headers["Location"])
    assert items(restarted) == [{"displayName": "User 1", "mail": None, "id": user_id}]
    gone = client.get(groups_link, headers=auth)
    assert_graph_error(gone, 410, "resyncRequired")
    assert gone.headers["Location"] == f"{BASE}/groups/delta?$select=displayName,members"
    restarted, _ = run_round(client, auth, gone.headers["Location"])
    assert [m["id"] for m in items(restarted)[0]["members@delta"]] == [user_id]
    # Tokens issued after the reset work; a later plain expiry answers 400 again.
    _, fresh = run_round(client, auth, "/v1.0/users/delta")
    assert client.get(fresh, headers=auth).status_code == 200
    client.post(f"/_emulator/tenants/{tenant['id']}/deltaTokens/expire")
    assert_graph_error(client.get(fresh, headers=auth), 400, "syncStateNotFound")
