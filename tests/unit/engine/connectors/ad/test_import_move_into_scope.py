"""A user moved into the import's OU scope, seen by a DirSync delta.

DirSync returns only the attributes whose replication metadata changed since the cookie, plus objectGUID,
instanceType and (with ``name``) parentGUID: a move changes ``name`` only, so the entry carries no objectClass and
none of the user's other attributes (Samba's dirsync.c does the same; the hook keeps only the attributes asked for).
For the connector space a move into scope is an add of the whole object, as a move out of scope is a delete.
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.ad.reader import import_active_directory
from airflow_provider_aadsync.engine.store import Store, cs_reference
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.fakes import ATTRS, NC, FakeDirectory, guid
from tests.support.stores import live_objects
from tests.support.world import links, mv_members

SCOPE = f"OU=In,{NC}"


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}") as opened:
        yield opened


def test_user_moved_into_scope_is_added_by_the_delta_with_its_attributes(store):
    directory = FakeDirectory()
    directory.add_user(1, "user1")
    directory.add_user(2, "user2")
    dn, raw = directory.objects[guid(2)]
    directory.objects[guid(2)] = (dn.replace(f",{NC}", f",{SCOPE}"), raw)
    import_active_directory(directory, store, mode="full", attributes=ATTRS, scope_dn=SCOPE)
    assert set(live_objects(store)) == {str(guid(2))}

    # user1 moved from the domain root into OU=In: DirSync reports the move, not the object
    moved_dn = f"CN=user1,{SCOPE}"
    directory.objects[guid(1)] = (FakeDirectory.ext(1, moved_dn), directory.objects[guid(1)][1])
    directory.delta_batches = [[(FakeDirectory.ext(1, moved_dn), {"objectGUID": [guid(1).bytes_le]})]]
    delta = import_active_directory(directory, store, mode="delta", attributes=ATTRS, scope_dn=SCOPE)

    assert delta.mode == "delta"
    rows = live_objects(store)
    assert str(guid(1)) in rows, f"the moved-in user was not imported: {delta.counters}"
    assert rows[str(guid(1))]["object_type"] == "user"
    assert json.loads(rows[str(guid(1))]["attrs"])["displayName"] == ["user1"]
    # a full import afterwards finds nothing the delta missed
    full = import_active_directory(directory, store, mode="full", attributes=ATTRS, scope_dn=SCOPE)
    assert (full.counters["adds"], full.counters["updates"]) == (0, 0)


def _computer(directory: FakeDirectory, n: int) -> None:
    directory.objects[guid(n)] = (
        directory.ext(n, f"CN=PC{n},{NC}"),
        {"objectGUID": [guid(n).bytes_le], "objectClass": [b"top", b"user", b"computer"], "displayName": [b"pc"]},
    )


def test_changed_objects_the_import_never_keeps_are_read_in_one_search_per_page_not_one_by_one(store):
    """A computer's change (lastLogonTimestamp, pwdLastSet) comes like a move: objectGUID and what changed. The
    connector space never holds computers, so every delta asks again: one search per page for all of them (the
    hook's search leaves computers out), never an LDAP read per computer."""
    directory = FakeDirectory()
    directory.add_user(1, "user1")
    for n in range(100, 150):
        _computer(directory, n)
    import_active_directory(directory, store, mode="full", attributes=ATTRS)
    for _cycle in range(2):
        directory.delta_batches = [
            [(directory.ext(n, f"CN=PC{n},{NC}"), {"objectGUID": [guid(n).bytes_le]}) for n in range(100, 150)]
        ]
        delta = import_active_directory(directory, store, mode="delta", attributes=ATTRS)
        assert delta.counters.get("adds", 0) == 0
    assert directory.searches == 2 and set(live_objects(store)) == {str(guid(1))}


# ------------------------------------------------------------------------------- out of the scope and back again
ATTRS_SYNCED = [*ATTRS, "sAMAccountName", "userPrincipalName", "userAccountControl", "groupType"]


def _place(directory: FakeDirectory, n: int, dn: str) -> None:
    directory.objects[guid(n)] = (directory.ext(n, dn), directory.objects[guid(n)][1])


def _members(store: Store) -> set[tuple[str, str]]:
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(cs_reference.c.anchor, cs_reference.c.target_anchor)).all()
    return {tuple(row) for row in rows}


def _delta(store: Store, directory: FakeDirectory, entries: list) -> dict:
    directory.delta_batches = [entries]
    return import_active_directory(directory, store, mode="delta", attributes=ATTRS_SYNCED, scope_dn=SCOPE).counters


#: What the sync rules need to project a user and a security group.
SYNCED = {
    1: {"sAMAccountName": b"u1", "userPrincipalName": b"u1@corp.example", "userAccountControl": b"512"},
    2: {"sAMAccountName": b"g", "groupType": b"-2147483646"},
}


def _group_with_member(store: Store) -> FakeDirectory:
    directory = FakeDirectory()
    directory.add_user(1, "u1")
    _place(directory, 1, f"CN=u1,{SCOPE}")
    directory.add_group(2, "g", [1])
    _place(directory, 2, f"CN=g,{SCOPE}")
    for n, values in SYNCED.items():
        directory.objects[guid(n)][1].update({name: [value] for name, value in values.items()})
    import_active_directory(directory, store, mode="full", attributes=ATTRS_SYNCED, scope_dn=SCOPE)
    assert _members(store) == {(str(guid(2)), str(guid(1)))}
    return directory


def _move_user(store: Store, directory: FakeDirectory, dn: str) -> dict:
    _place(directory, 1, dn)
    return _delta(store, directory, [(directory.ext(1, dn), {"objectGUID": [guid(1).bytes_le]})])


def test_a_user_moved_out_of_the_scope_and_back_keeps_its_group_membership(store):
    """AD does not change the group when its member moves: the delta reports the user alone, both ways. The move out
    deletes the user from the connector space but keeps the group's reference (a full import keeps it too); the move
    back finds the membership still there, and a full import afterwards has nothing to add."""
    directory = _group_with_member(store)
    moved_out = _move_user(store, directory, f"CN=u1,OU=Out,{NC}")
    assert moved_out["deletes"] == 1 and str(guid(1)) not in live_objects(store)
    assert _members(store) == {(str(guid(2)), str(guid(1)))}
    assert _move_user(store, directory, f"CN=u1,{SCOPE}")["adds"] == 1
    assert _members(store) == {(str(guid(2)), str(guid(1)))}
    full = import_active_directory(directory, store, mode="full", attributes=ATTRS_SYNCED, scope_dn=SCOPE).counters
    assert [full.get(name, 0) for name in ("adds", "updates", "reference_adds", "reference_removes")] == [0, 0, 0, 0]


def test_an_ou_of_users_moved_out_of_the_scope_and_back_keeps_their_group_memberships(store):
    directory = FakeDirectory()
    directory.objects[guid(10)] = (
        directory.ext(10, f"OU=Team,{SCOPE}"),
        {"objectGUID": [guid(10).bytes_le], "objectClass": [b"top", b"organizationalUnit"]},
    )
    for n in (1, 2, 3):
        directory.add_user(n, f"u{n}")
        _place(directory, n, f"CN=u{n},OU=Team,{SCOPE}")
    directory.add_group(20, "g", [1, 2, 3])
    _place(directory, 20, f"CN=g,{SCOPE}")
    import_active_directory(directory, store, mode="full", attributes=ATTRS_SYNCED, scope_dn=SCOPE)
    expected = {(str(guid(20)), str(guid(n))) for n in (1, 2, 3)}
    assert _members(store) == expected
    for ou, deletes, adds in ((f"OU=Team,OU=Elsewhere,{NC}", 4, 0), (f"OU=Team,{SCOPE}", 0, 4)):
        _place(directory, 10, ou)
        for n in (1, 2, 3):
            _place(directory, n, f"CN=u{n},{ou}")
        counters = _delta(store, directory, [(directory.ext(10, ou), {"objectGUID": [guid(10).bytes_le]})])
        assert (counters["deletes"], counters["adds"]) == (deletes, adds)
        assert _members(store) == expected
    full = import_active_directory(directory, store, mode="full", attributes=ATTRS_SYNCED, scope_dn=SCOPE).counters
    assert [full.get(name, 0) for name in ("adds", "updates", "reference_adds", "reference_removes")] == [0, 0, 0, 0]


def test_a_user_deleted_in_ad_takes_the_references_to_it_with_it(store):
    """A tombstone (isDeleted): AD removed the member from the group, and DirSync reports that on the user only."""
    directory = _group_with_member(store)
    tombstone = f"CN=u1\\0ADEL:{guid(1)},CN=Deleted Objects,{NC}"
    entry = {"objectGUID": [guid(1).bytes_le], "isDeleted": [b"TRUE"]}
    assert _delta(store, directory, [(directory.ext(1, tombstone), entry)])["deletes"] == 1
    assert _members(store) == set()


def test_an_ou_deleted_in_ad_takes_the_references_to_its_users_with_it(store):
    directory = FakeDirectory()
    directory.objects[guid(10)] = (
        directory.ext(10, f"OU=Team,{SCOPE}"),
        {"objectGUID": [guid(10).bytes_le], "objectClass": [b"top", b"organizationalUnit"]},
    )
    directory.add_user(1, "u1")
    _place(directory, 1, f"CN=u1,OU=Team,{SCOPE}")
    directory.add_group(2, "g", [1])
    _place(directory, 2, f"CN=g,{SCOPE}")
    import_active_directory(directory, store, mode="full", attributes=ATTRS_SYNCED, scope_dn=SCOPE)
    tombstone = f"OU=Team\\0ADEL:{guid(10)},CN=Deleted Objects,{NC}"
    entry = {"objectGUID": [guid(10).bytes_le], "isDeleted": [b"TRUE"]}
    assert _delta(store, directory, [(directory.ext(10, tombstone), entry)])["deletes"] == 2
    assert _members(store) == set()


def test_the_metaverse_group_lacks_a_member_out_of_the_scope_and_has_it_again_once_back(store):
    """The kept reference names an object the connector space holds deleted (or not at all): sync resolves
    references through live links only, so the member is unresolved while it is out of the scope."""
    directory = _group_with_member(store)
    rules = load_sync_rules()
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    group = links(store, "ad")[("ad", str(guid(2)))][0]
    user = links(store, "ad")[("ad", str(guid(1)))][0]
    assert mv_members(store, group) == {user}

    _move_user(store, directory, f"CN=u1,OU=Out,{NC}")
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    assert ("ad", str(guid(1))) not in links(store, "ad")
    assert mv_members(store, group) == set()

    _move_user(store, directory, f"CN=u1,{SCOPE}")
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    back = links(store, "ad")[("ad", str(guid(1)))][0]
    assert mv_members(store, group) == {back}
