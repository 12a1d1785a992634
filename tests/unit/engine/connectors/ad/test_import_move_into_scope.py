"""A user moved into the import's OU scope, seen by a DirSync delta.

DirSync returns only the attributes whose replication metadata changed since the cookie, plus objectGUID,
instanceType and (with ``name``) parentGUID: a move changes ``name`` only, so the entry carries no objectClass and
none of the user's other attributes (Samba's dirsync.c does the same; the hook keeps only the attributes asked for).
For the connector space a move into scope is an add of the whole object, as a move out of scope is a delete.
"""

from __future__ import annotations

import json

import pytest

from airflow_provider_aadsync.engine.connectors.ad.reader import import_active_directory
from airflow_provider_aadsync.engine.store import Store
from tests.support.fakes import ATTRS, NC, FakeDirectory, guid
from tests.support.stores import live_objects

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
