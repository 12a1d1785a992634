"""The tenant's lookup indexes (UPN, proxyAddresses, mailNickname): bulk seeding stays fast and the uniqueness rules
still hold after updates, deletes, restores and a state-file round trip."""

from __future__ import annotations

import time

import pytest

from aadsync_devkit.graph_emulator import exceptions as err
from aadsync_devkit.graph_emulator.state import EmulatorState
from aadsync_devkit.graph_emulator.tenant import Tenant

from .conftest import assert_graph_error, new_user

SEEDED = 5000


@pytest.fixture
def state(tmp_path) -> EmulatorState:
    """A state with a state file; nothing is written until ``save()`` (only the app's middleware saves on its own)."""
    return EmulatorState(state_file=tmp_path / "state.sqlite")


@pytest.fixture
def seeded(state) -> Tenant:
    tenant = state.create_tenant({"name": "contoso", "verifiedDomains": ["contoso.com"]})
    started = time.perf_counter()
    for n in range(SEEDED):
        tenant.create_user(new_user(n, mail=f"user{n}@contoso.com"))
    # A scan per create made this quadratic (20,000 users took 36 s); with indexes it is a fraction of a second.
    assert time.perf_counter() - started < 10
    return tenant


def test_bulk_seed_then_duplicates_are_refused_case_insensitively(seeded):
    assert seeded.summary()["counts"]["users"] == SEEDED
    with pytest.raises(err.ObjectConflict, match="userPrincipalName"):
        seeded.create_user(new_user("x", userPrincipalName="USER4999@Contoso.COM"))
    with pytest.raises(err.ObjectConflict, match="proxyAddresses"):
        seeded.create_user(new_user("y", mail="User17@CONTOSO.com"))
    assert seeded.get("user", "User42@CONTOSO.COM")[1]["displayName"] == "User 42"
    assert len(seeded.with_mail_nickname("USER7")) == 1


def test_rename_frees_the_old_upn_and_takes_the_new_one(seeded):
    user_id = seeded.get("user", "user1@contoso.com")[1]["id"]
    seeded.update_user(user_id, {"userPrincipalName": "renamed@contoso.com", "mail": "renamed@contoso.com"})
    with pytest.raises(err.ResourceNotFound):
        seeded.get("user", "user1@contoso.com")
    assert seeded.get("user", "RENAMED@contoso.com")[1]["id"] == user_id
    with pytest.raises(err.ObjectConflict, match="userPrincipalName"):
        seeded.create_user(new_user("z", userPrincipalName="Renamed@Contoso.com"))
    with pytest.raises(err.ObjectConflict, match="userPrincipalName"):
        seeded.update_user("user2@contoso.com", {"userPrincipalName": "RENAMED@contoso.com"})
    # The old UPN and its proxy address are free again; the user keeps its own UPN when patched with it.
    seeded.create_user(new_user("again", userPrincipalName="user1@contoso.com", mail="user1@contoso.com"))
    seeded.update_user(user_id, {"userPrincipalName": "renamed@CONTOSO.com"})


def test_delete_frees_the_upn_and_restore_conflicts_with_its_new_holder(seeded):
    user_id = seeded.get("user", "user3@contoso.com")[1]["id"]
    seeded.delete("user", user_id)
    assert seeded.summary()["counts"] == {"users": SEEDED - 1, "groups": 0, "contacts": 0, "deletedItems": 1}
    taker = seeded.create_user(new_user("taker", userPrincipalName="USER3@contoso.com"))
    with pytest.raises(err.ObjectConflict, match="userPrincipalName"):
        seeded.restore(user_id)
    seeded.delete("user", taker["id"])
    seeded.restore(user_id)
    with pytest.raises(err.ObjectConflict, match="userPrincipalName"):
        seeded.create_user(new_user("late", userPrincipalName="user3@contoso.com"))
    with pytest.raises(err.ObjectConflict, match="proxyAddresses"):
        seeded.create_user(new_user("late", mail="user3@contoso.com"))


def test_indexes_are_rebuilt_from_a_state_file(state, seeded):
    state.save()
    [copy] = EmulatorState(state_file=state.state_file).tenants.values()
    with pytest.raises(err.ObjectConflict, match="userPrincipalName"):
        copy.create_user(new_user("dup", userPrincipalName="user10@CONTOSO.com"))
    assert copy.user_count() == SEEDED


def test_seeding_through_the_admin_api_and_graph_keeps_the_rules(client, auth, tenant):
    for n in range(300):
        seeded = client.post(f"/_emulator/tenants/{tenant['id']}/objects", json={
            "@odata.type": "#microsoft.graph.user", **new_user(n)})  # fmt: skip
        assert seeded.status_code == 201, seeded.text
    duplicate = client.post("/v1.0/users", headers=auth, json=new_user("d", userPrincipalName="USER299@contoso.com"))
    assert_graph_error(duplicate, 400, "Request_BadRequest")
    assert duplicate.json()["error"]["details"] == [{"code": "ObjectConflict", "target": "userPrincipalName"}]


def test_bulk_seeding_20000_users_in_one_admin_request(client, auth, tenant):
    users = [{"@odata.type": "#microsoft.graph.user", **new_user(n)} for n in range(20000)]
    started = time.perf_counter()
    response = client.post(f"/_emulator/tenants/{tenant['id']}/objects", json=users)
    assert response.status_code == 201, response.text
    assert time.perf_counter() - started < 20  # about a second here; it was 36 s through a UPN scan per user
    assert len(response.json()["value"]) == 20000
    assert client.get(f"/_emulator/tenants/{tenant['id']}").json()["counts"]["users"] == 20000
    duplicate = client.post(f"/_emulator/tenants/{tenant['id']}/objects", json=[users[5]])
    assert_graph_error(duplicate, 400, "Request_BadRequest")
    assert client.post(f"/_emulator/tenants/{tenant['id']}/objects", json=[1]).status_code == 400
