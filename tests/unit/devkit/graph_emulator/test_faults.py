"""Injected latency and dropped connections (``PUT /_emulator/settings``), the group delta function's spellings, and
``$filter`` with ``eq`` / ``startswith`` on group names.

Most tests drive the app in Starlette's TestClient like the other emulator unit tests. A dropped connection only
exists on a real socket (the TestClient hands over the truncated body as if it were whole), so that test runs the
emulator over TLS on a free loopback port in this process.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aadsync_devkit.graph_emulator.server import EmulatorServer

from .conftest import CLIENT_ID, SECRET, create_group, new_user, put_settings

SLOW_MS = 150


def timed(call: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


# ------------------------------------------------------------------------------------------------------- latency


def test_latency_slows_every_graph_request_until_set_back_to_zero(client, auth):
    def list_users() -> Any:
        response = client.get("/v1.0/users", headers=auth, params={"$select": "id"})
        assert response.status_code == 200, response.text
        return response

    assert put_settings(client, latencyMs=SLOW_MS) == {"latencyMs": SLOW_MS}
    assert client.get("/_emulator/settings").json()["latencyMs"] == SLOW_MS
    for _ in range(3):
        elapsed, _response = timed(list_users)
        assert elapsed >= SLOW_MS / 1000, elapsed
    elapsed, created = timed(lambda: client.post("/v1.0/users", headers=auth, json=new_user("slow")))
    assert created.status_code == 201, created.text  # writes wait too, and still happen
    assert elapsed >= SLOW_MS / 1000, elapsed

    assert put_settings(client, latencyMs=0) == {"latencyMs": 0}
    fastest = min(timed(list_users)[0] for _ in range(3))
    assert fastest < SLOW_MS / 1000 / 2, fastest
    assert [u["id"] for u in list_users().json()["value"]] == [created.json()["id"]]


def test_latency_null_restores_the_default_of_zero(client, auth):
    put_settings(client, latencyMs=SLOW_MS)
    assert put_settings(client, latencyMs=None) == {"latencyMs": 0}
    assert min(timed(lambda: client.get("/v1.0/users", headers=auth))[0] for _ in range(3)) < SLOW_MS / 1000 / 2


# ---------------------------------------------------------------------------------------------- dropped answers


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[EmulatorServer]:
    server = EmulatorServer(tmp_path / "emulator").start()
    yield server
    server.stop()


def test_drop_ratio_one_cuts_graph_answers_mid_body_but_not_admin_or_token(tls_server):
    trust = ssl.create_default_context(cafile=str(tls_server.ca_cert))
    with httpx.Client(base_url=tls_server.base_url, verify=trust, timeout=10) as http:
        tenant = http.post(
            "/_emulator/tenants",
            json={"name": "contoso", "verifiedDomains": ["contoso.com"],
                  "apps": [{"clientId": CLIENT_ID, "clientSecret": SECRET}]},
        )  # fmt: skip
        assert tenant.status_code == 201, tenant.text

        def token() -> dict[str, str]:
            form = {"client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "client_credentials",
                    "scope": "https://graph.microsoft.com/.default"}  # fmt: skip
            response = http.post(f"/{tenant.json()['id']}/oauth2/v2.0/token", data=form)
            assert response.status_code == 200, response.text  # the identity platform is not cut
            return {"Authorization": f"Bearer {response.json()['access_token']}"}

        auth = token()
        assert http.put("/_emulator/settings", json={"faultDropRatio": 1.0}).json() == {"faultDropRatio": 1.0}

        for _ in range(3):  # every Graph request: a transport-level failure, never an HTTP status to read
            with pytest.raises(httpx.RemoteProtocolError, match="without sending complete message body"):
                http.get("/v1.0/users", headers=auth)
        with pytest.raises(httpx.RemoteProtocolError):  # the write is processed, only its answer is lost
            http.post("/v1.0/users", headers=auth, json=new_user("dropped"))

        settings = http.get("/_emulator/settings")  # the admin API answers whole
        assert settings.status_code == 200 and settings.json()["faultDropRatio"] == 1.0
        assert http.get("/_emulator/tenants").json()["value"][0]["counts"]["users"] == 1
        auth = token()

        assert http.put("/_emulator/settings", json={"faultDropRatio": 0}).json() == {"faultDropRatio": 0.0}
        listed = http.get("/v1.0/users", headers=auth, params={"$select": "userPrincipalName"})
        assert listed.status_code == 200, listed.text
        assert [u["userPrincipalName"] for u in listed.json()["value"]] == ["userdropped@contoso.com"]
        again = http.post("/v1.0/users", headers=auth, json=new_user("after"))
        assert again.status_code == 201, again.text


# ------------------------------------------------------------------------------------------ delta function names


def round_of(client: Any, auth: dict[str, str], url: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Follow nextLinks to the deltaLink: (items, last page)."""
    found: list[dict[str, Any]] = []
    while True:
        response = client.get(url, headers=auth)
        assert response.status_code == 200, response.text
        page = response.json()
        found += page["value"]
        if "@odata.nextLink" not in page:
            return found, page
        url = page["@odata.nextLink"]


@pytest.mark.parametrize("suffix", ["delta()", "microsoft.graph.delta()", "microsoft.graph.delta"])
def test_group_delta_answers_the_same_under_every_spelling(client, auth, suffix):
    put_settings(client, deltaPageSize=2)  # several pages, so nextLinks are followed too
    user = client.post("/v1.0/users", headers=auth, json=new_user(1)).json()["id"]
    groups = [create_group(client, auth, f"g{n}") for n in range(3)]
    ref = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{user}"}
    assert client.post(f"/v1.0/groups/{groups[0]}/members/$ref", headers=auth, json=ref).status_code == 204

    for query in ("", "?$select=displayName,members"):
        plain_items, plain_last = round_of(client, auth, f"/v1.0/groups/delta{query}")
        items, last = round_of(client, auth, f"/v1.0/groups/{suffix}{query}")
        assert items == plain_items
        assert sorted(item["id"] for item in items) == sorted(groups)
        assert last["@odata.context"] == plain_last["@odata.context"]
        assert last["@odata.deltaLink"].startswith("https://testserver/v1.0/groups/delta?$deltatoken=")

    # The deltaLink of a round started under this spelling carries on like any other.
    _, last = round_of(client, auth, f"/v1.0/groups/{suffix}?$select=displayName")
    assert client.patch(f"/v1.0/groups/{groups[1]}", headers=auth, json={"displayName": "renamed"}).status_code == 204
    changed, _ = round_of(client, auth, last["@odata.deltaLink"])
    assert [(item["id"], item["displayName"]) for item in changed] == [(groups[1], "renamed")]


# --------------------------------------------------------------------------------------------- $filter on names


@pytest.fixture
def named_groups(client, auth) -> dict[str, str]:
    """displayName -> id; nicknames differ from names so each property is matched on its own."""
    specs = {
        "Sales": "team-sales",
        "Sales EMEA": "team-sales-emea",
        "Presales": "presales",
        "Marketing": "sales-marketing",
        "O'Brien's Team": "obrien",
    }
    return {name: create_group(client, auth, name, mailNickname=nickname) for name, nickname in specs.items()}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("displayName eq 'Sales'", {"Sales"}),
        ("displayName eq 'sales emea'", {"Sales EMEA"}),  # the directory compares strings case-insensitively
        ("displayName eq 'Sale'", set()),
        ("displayName eq 'O''Brien''s Team'", {"O'Brien's Team"}),  # '' escapes a quote inside a literal
        ("startswith(displayName,'Sales')", {"Sales", "Sales EMEA"}),
        ("startswith(displayName,'sal')", {"Sales", "Sales EMEA"}),
        ("startswith(displayName,'EMEA')", set()),
        ("mailNickname eq 'presales'", {"Presales"}),
        ("mailNickname eq 'Sales'", set()),  # no group has that nickname, though one has that name
        ("startswith(mailNickname,'team-sales')", {"Sales", "Sales EMEA"}),
        ("startswith(mailNickname,'sales')", {"Marketing"}),
        ("startswith(mailNickname,'TEAM-')", {"Sales", "Sales EMEA"}),
    ],
)
def test_group_filter_eq_and_startswith_on_names(client, auth, named_groups, expression, expected):
    client.post("/v1.0/users", headers=auth, json=new_user("sales", displayName="Sales"))  # users never match
    response = client.get("/v1.0/groups", headers=auth, params={"$filter": expression, "$select": "id,displayName"})
    assert response.status_code == 200, response.text
    found = {group["displayName"]: group["id"] for group in response.json()["value"]}
    assert found == {name: named_groups[name] for name in expected}
