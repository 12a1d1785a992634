"""The user properties issue 17 syncs, with Graph's documented types and limits (the user resource;
onPremisesExtensionAttributes resource)."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import assert_graph_error, new_user

EVERY = {
    "employeeId": "E" * 16,
    "employeeType": "Contractor",
    "employeeHireDate": "2024-05-01T09:30:00+02:00",
    "employeeOrgData": {"division": "Research", "costCenter": "CC-42"},
    "faxNumber": "+1 555 0199",
    "otherMails": ["bob@partner.example", "robert@home.example"],
    "preferredDataLocation": "EUR",
    "preferredLanguage": "en-US",
    "usageLocation": "DE",
    "businessPhones": ["+49 30 123456"],
    "companyName": "C" * 64,
    "streetAddress": "Straße 1\nHof 2",
    "city": "Zürich",
    "onPremisesExtensionAttributes": {"extensionAttribute1": "x" * 1024, "extensionAttribute15": "last"},
}


def create(client: Any, auth: dict[str, str], n: Any, **extra: Any) -> Any:
    return client.post("/v1.0/users", headers=auth, json=new_user(n, **extra))


def read(client: Any, auth: dict[str, str], user: str, *names: str) -> dict[str, Any]:
    response = client.get(f"/v1.0/users/{user}?$select={','.join(names)}", headers=auth)
    assert response.status_code == 200, response.text
    return response.json()


def test_every_property_is_written_and_read_back_with_graphs_types(client, auth):
    created = create(client, auth, 1, **EVERY)
    assert created.status_code == 201, created.text
    user = created.json()["id"]
    body = read(client, auth, user, *EVERY)
    expected = {**EVERY, "employeeHireDate": "2024-05-01T07:30:00Z"}  # DateTimeOffset, in UTC
    attributes = {f"extensionAttribute{n}": None for n in range(1, 16)}
    expected["onPremisesExtensionAttributes"] = attributes | EVERY["onPremisesExtensionAttributes"]
    assert {name: body[name] for name in EVERY} == expected
    found = client.get("/v1.0/users?$filter=employeeType eq 'contractor'&$select=id", headers=auth).json()["value"]
    assert [u["id"] for u in found] == [user]


def test_extension_attributes_are_patched_member_by_member(client, auth):
    user = create(client, auth, 2, onPremisesExtensionAttributes={"extensionAttribute1": "a"}).json()["id"]
    patch = {"onPremisesExtensionAttributes": {"extensionAttribute2": "b", "extensionAttribute1": None}}
    assert client.patch(f"/v1.0/users/{user}", headers=auth, json=patch).status_code == 204
    attributes = read(client, auth, user, "onPremisesExtensionAttributes")["onPremisesExtensionAttributes"]
    assert attributes["extensionAttribute1"] is None and attributes["extensionAttribute2"] == "b"
    assert len(attributes) == 15


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("employeeId", "E" * 17),
        ("companyName", "C" * 65),
        ("streetAddress", "S" * 1025),
        ("postalCode", "1" * 41),
        ("businessPhones", ["+1", "+2"]),
        ("usageLocation", "Germany"),
        ("preferredLanguage", "English"),
        ("otherMails", ["böb@example.com"]),
        ("employeeHireDate", "next monday"),
        ("employeeHireDate", 20240501),
        ("onPremisesExtensionAttributes", {"extensionAttribute16": "x"}),
        ("onPremisesExtensionAttributes", {"extensionAttribute1": "x" * 1025}),
        ("employeeOrgData", {"team": "x"}),
        ("faxNumber", 5550199),
    ],
)
def test_values_outside_graphs_limits_are_refused_naming_the_property(client, auth, name, value):
    response = create(client, auth, 3, **{name: value})
    assert_graph_error(
        response, 400, "Request_BadRequest", f"Invalid value specified for property '{name}' of resource 'User'."
    )


@pytest.mark.parametrize("name", ["displayName", "usageLocation", "mail"])
def test_an_update_cannot_clear_what_graph_keeps(client, auth, name):
    """ "Update user": displayName "can't be cleared during updates", usageLocation is "Not nullable", mail "can't be
    updated to null": the update is refused whole, and the user keeps every value."""
    user = create(client, auth, 1, usageLocation="DE", mail="user1@example.test").json()["id"]
    refused = client.patch(f"/v1.0/users/{user}", headers=auth, json={name: None, "jobTitle": "Clerk"})
    assert_graph_error(
        refused, 400, "Request_BadRequest", f"Invalid value specified for property '{name}' of resource 'User'."
    )
    kept = read(client, auth, user, "displayName", "usageLocation", "mail", "jobTitle")
    assert kept["usageLocation"] == "DE" and kept["mail"] == "user1@example.test" and kept["jobTitle"] is None
