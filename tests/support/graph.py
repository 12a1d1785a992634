"""What a tenant holds, read through an EntraHook: users by ImmutableId, groups by name, a group's members; and a
cloud-only user made in it.

The integration and reliability tests compare these with what the directory holds.
"""

from __future__ import annotations


def create_user(hook, domain: str, number: int) -> str:
    """A cloud-only user ``user<number>@<domain>`` (department Sales for odd numbers, else Engineering); its id."""
    return hook.request("POST", "/users", json={
        "accountEnabled": True, "displayName": f"User {number}", "mailNickname": f"user{number}",
        "userPrincipalName": f"user{number}@{domain}", "department": "Sales" if number % 2 else "Engineering",
        "passwordProfile": {"password": "Xy!12345678abc"}})["id"]  # fmt: skip


def graph_users(hook) -> dict[str, dict]:
    select = "id,userPrincipalName,displayName,department,onPremisesImmutableId,accountEnabled"
    return {
        user["onPremisesImmutableId"]: user
        for page in hook.paginate("/users", params={"$select": select, "$top": "999"})
        for user in page["value"]
        if user.get("onPremisesImmutableId")
    }


def graph_groups(hook) -> dict[str, dict]:
    return {
        group["displayName"]: group
        for page in hook.paginate("/groups", params={"$top": "999"})
        for group in page["value"]
    }


def graph_members(hook, group_id: str) -> set[str]:
    return {
        member["id"]
        for page in hook.paginate(f"/groups/{group_id}/members", params={"$select": "id", "$top": "999"})
        for member in page["value"]
    }


def graph_managers(hook) -> dict[str, str]:
    """Each user's manager (``$expand=manager``) as ImmutableIds, user -> manager; users without one left out."""
    users = [
        user
        for page in hook.paginate(
            "/users", params={"$select": "id,onPremisesImmutableId", "$expand": "manager", "$top": "999"}
        )
        for user in page["value"]
    ]
    immutable = {user["id"]: user.get("onPremisesImmutableId") for user in users}
    return {user["onPremisesImmutableId"]: immutable[user["manager"]["id"]] for user in users if user.get("manager")}
