"""An OU renamed or moved, seen by a DirSync delta: the objects under it follow (engine.connectors.ad.moves).

AD's ModifyDN changes the moved entry only (MS-ADTS 3.1.1.5.4.1.3) and DirSync reports only that entry, with the
attributes the move changed (no objectClass); the children's DNs change implicitly and DirSync says nothing of them.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.ad.reader import import_active_directory
from airflow_provider_aadsync.engine.connectors.config import PartitionConfig
from airflow_provider_aadsync.engine.runs.import_guard import STOPPED_DELETION_THRESHOLD, ImportGuard
from airflow_provider_aadsync.engine.store import cs_object
from tests.support.fakes import ATTRS, NC, FakeDirectory, guid
from tests.support.stores import fresh_store, live_objects

TOP = f"OU=Top,{NC}"
PARKING = f"OU=Parking,{TOP}"
#: The OU's number, its objects' numbers and the number of the OU below it, whose object is 30.
OU, SUB, USERS, DEEP = 10, 11, (20, 21, 22), 30


@pytest.fixture
def store(tmp_path):
    with fresh_store(tmp_path) as opened:
        yield opened


def _ou(directory: FakeDirectory, n: int, dn: str) -> None:
    directory.objects[guid(n)] = (
        directory.ext(n, dn),
        {"objectGUID": [guid(n).bytes_le], "objectClass": [b"top", b"organizationalUnit"]},
    )


def _user(directory: FakeDirectory, n: int, parent: str) -> None:
    directory.add_user(n, f"user{n}")
    dn, raw = directory.objects[guid(n)]
    directory.objects[guid(n)] = (directory.ext(n, f"CN=user{n},{parent}"), raw)


def _directory(ou_dn: str) -> FakeDirectory:
    """TOP and PARKING, the OU at ``ou_dn`` holding USERS and SUB, SUB holding DEEP."""
    directory = FakeDirectory()
    _ou(directory, 1, TOP)
    _ou(directory, 2, PARKING)
    _ou(directory, OU, ou_dn)
    _ou(directory, SUB, f"OU=Sub,{ou_dn}")
    for n in USERS:
        _user(directory, n, ou_dn)
    _user(directory, DEEP, f"OU=Sub,{ou_dn}")
    return directory


def _move(directory: FakeDirectory, new_dn: str) -> None:
    """Move the OU as AD does: every DN under it changes; DirSync reports the OU alone, without objectClass."""
    old_dn = directory.objects[guid(OU)][0].split(";")[-1]
    for n, (dn, raw) in list(directory.objects.items()):
        plain = dn.split(";")[-1]
        if plain.endswith(old_dn):
            directory.objects[n] = (directory.ext(n.int, plain[: len(plain) - len(old_dn)] + new_dn), raw)
    directory.delta_batches = [[(directory.ext(OU, new_dn), {"objectGUID": [guid(OU).bytes_le]})]]


def _import(directory: FakeDirectory, store, mode: str, **options):
    partition = PartitionConfig(dn=NC, exclude_ous=(PARKING,))
    return import_active_directory(directory, store, mode=mode, attributes=ATTRS, partitions=[partition], **options)


def _dns(store) -> dict[int, str]:
    return {uuid_int(anchor): row["dn"] for anchor, row in live_objects(store).items()}


def _synced(store) -> None:
    """What a sync leaves: no pending import."""
    with store.transaction() as connection:
        connection.execute(sa.update(cs_object).values(pending_import=None))


def uuid_int(anchor: str) -> int:
    return int(anchor.replace("-", ""), 16)


def _directory_dns(directory: FakeDirectory) -> dict[int, str]:
    return {n.int: dn.split(";")[-1] for n, (dn, _) in directory.objects.items()}


def test_a_renamed_ou_takes_every_object_under_it_along(store):
    directory = _directory(f"OU=Sales,{TOP}")
    _ou(directory, 40, f"OU=Sales2,{TOP}")
    _user(directory, 41, f"OU=Sales2,{TOP}")  # a sibling whose name starts the same stays where it is
    assert _import(directory, store, "full").result == "success"
    _synced(store)

    _move(directory, f"OU=Sales\\, EMEA,{TOP}")
    delta = _import(directory, store, "delta")
    assert delta.mode == "delta" and delta.result == "success"
    expected = {n: dn for n, dn in _directory_dns(directory).items() if n != 2}
    assert _dns(store) == expected
    assert _dns(store)[DEEP] == f"CN=user{DEEP},OU=Sub,OU=Sales\\, EMEA,{TOP}"
    rows = live_objects(store)
    assert {rows[str(guid(n))]["pending_import"] for n in (SUB, *USERS, DEEP)} == {"update"}
    assert (delta.counters["renames"], delta.counters["deletes"]) == (6, 0)
    assert directory.subtree_reads == []  # nothing new in the scope: nothing read below
    full = _import(directory, store, "full")
    assert (full.counters["renames"], full.counters["adds"], full.counters["deletes"]) == (0, 0, 0)


def test_an_ou_moved_into_an_excluded_ou_deletes_everything_under_it_through_the_guard(store):
    directory = _directory(f"OU=Leaving,{TOP}")
    assert _import(directory, store, "full").result == "success"
    _move(directory, f"OU=Leaving,{PARKING}")
    stopped = _import(directory, store, "delta", guard=ImportGuard(deletion_threshold=5))
    assert stopped.result == STOPPED_DELETION_THRESHOLD and stopped.counters["deletes_planned"] == 6
    assert set(_dns(store)) >= {OU, SUB, *USERS, DEEP}  # nothing written

    _move(directory, f"OU=Leaving,{PARKING}")  # the same change read again from the kept cookie
    delta = _import(directory, store, "delta", guard=ImportGuard(confirm_mass_removal=6))
    assert delta.result == "success" and delta.counters["deletes"] == 6
    assert set(_dns(store)) == {1}


def test_an_ou_moved_out_of_an_excluded_ou_brings_its_subtree_in(store):
    directory = _directory(f"OU=Arriving,{PARKING}")
    assert _import(directory, store, "full").result == "success"
    assert set(_dns(store)) == {1}

    _move(directory, f"OU=Arriving,{TOP}")
    delta = _import(directory, store, "delta")
    assert delta.result == "success" and delta.counters["adds"] == 6, delta.counters
    assert directory.subtree_reads == [f"OU=Arriving,{TOP}"]
    assert _dns(store) == {n: dn for n, dn in _directory_dns(directory).items() if n != 2}
    assert {row["pending_import"] for row in live_objects(store).values() if row["object_type"] == "user"} == {"add"}
    full = _import(directory, store, "full")
    assert (full.counters["adds"], full.counters["updates"], full.counters["deletes"]) == (0, 0, 0)


def test_a_rename_that_moves_objects_out_from_under_an_exclusion_reads_them(store):
    """An excluded OU named by its DN under a renamed OU: after the rename nothing there is excluded any more (the
    configured DN no longer exists), so the objects under it come into the scope: read below the new DN."""
    directory = _directory(f"OU=Sales,{TOP}")
    _ou(directory, 50, f"OU=Hidden,OU=Sales,{TOP}")
    _user(directory, 51, f"OU=Hidden,OU=Sales,{TOP}")
    scope = PartitionConfig(dn=NC, exclude_ous=(PARKING, f"OU=Hidden,OU=Sales,{TOP}"))
    full = import_active_directory(directory, store, mode="full", attributes=ATTRS, partitions=[scope])
    assert full.result == "success" and 51 not in _dns(store)

    _move(directory, f"OU=Sales West,{TOP}")
    delta = import_active_directory(directory, store, mode="delta", attributes=ATTRS, partitions=[scope])
    assert delta.result == "success" and directory.subtree_reads == [f"OU=Sales West,{TOP}"]
    assert _dns(store)[51] == f"CN=user51,OU=Hidden,OU=Sales West,{TOP}"
    assert delta.counters["adds"] == 2 and delta.counters["deletes"] == 0
