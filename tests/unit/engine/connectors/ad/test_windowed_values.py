"""A ranged value list that comes as a window (``member;range=0-2``: the first values, more in further ranges).

DirSync with incremental values sends member changes as ``member;range=1-1`` (added) and ``member;range=0-0``
(removed). A DC may also send a window of the whole list (DirSync without the incremental-values flag, a large value
change): taken as the group's member set, it would drop every member past the window, a mass member removal the
export then writes. The delta reads such an object whole by objectGUID (every range, as a full import does) before it
applies it; an object it cannot read whole is a per-object error, left unchanged: with a source that reads objects
whole (the hook) it is listed to be read again by the next delta, and one that cannot keeps its partition's cookie.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.ad.reader import TruncatedValuesError, import_active_directory
from airflow_provider_aadsync.engine.runs.read_again import retry_key
from airflow_provider_aadsync.engine.store import Store, cs_reference
from tests.support.fakes import ATTRS, NC, FakeDirectory, guid

GROUP = 100


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}") as opened:
        yield opened


@pytest.fixture
def directory(store):
    """Users 1..6; the group holds 1..4 when the full import reads it, then user 5 joins it (5 members)."""
    directory = FakeDirectory()
    for n in range(1, 7):
        directory.add_user(n, f"user{n}")
    directory.add_group(GROUP, "group1", [1, 2, 3, 4])
    assert _import(directory, store, "full").result == "success"
    directory.add_group(GROUP, "group1", [1, 2, 3, 4, 5])
    return directory


def _import(directory: FakeDirectory, store: Store, mode: str):
    return import_active_directory(directory, store, mode=mode, attributes=ATTRS)


def _members(store: Store) -> set[str]:
    with store.engine.connect() as connection:
        query = sa.select(cs_reference.c.target_anchor).where(cs_reference.c.anchor == str(guid(GROUP)))
        return set(connection.execute(query).scalars())


def _windowed_entry(directory: FakeDirectory, low: int = 0, high: int = 2) -> tuple[str, dict[str, list[bytes]]]:
    """The group's DirSync entry with a window of its member values (range=low-high of 5)."""
    dn, raw = directory.objects[guid(GROUP)]
    return dn, {"objectGUID": [guid(GROUP).bytes_le], f"member;range={low}-{high}": raw["member"][low : high + 1]}


def test_a_windowed_member_list_in_a_delta_is_read_whole_not_taken_as_the_member_set(directory, store):
    directory.delta_batches = [[_windowed_entry(directory)]]
    result = _import(directory, store, "delta")
    assert result.mode == "delta" and result.result == "success"
    assert _members(store) == {str(guid(n)) for n in range(1, 6)}, "the members past the window were dropped"
    assert result.counters.get("reference_removes", 0) == 0 and result.counters["reference_adds"] == 1
    assert directory.searches == 1  # one search for the page's truncated objects
    assert store.get_watermark("ad", NC).cookie == b"cookie-0+1"
    # a full import afterwards finds nothing the delta got wrong
    after = _import(directory, store, "full")
    assert (after.counters["updates"], after.counters.get("reference_removes", 0)) == (0, 0)


def test_a_window_past_the_first_range_is_read_whole_too(directory, store):
    directory.delta_batches = [[_windowed_entry(directory, 3, 4)]]  # "member;range=3-4": a tail, not the set
    assert _import(directory, store, "delta").result == "success"
    assert _members(store) == {str(guid(n)) for n in range(1, 6)}


def test_the_entry_s_other_changes_apply_with_the_whole_member_list(directory, store):
    dn, raw = _windowed_entry(directory)
    raw["displayName"] = [b"Group One"]
    directory.delta_batches = [[(dn, raw)]]
    assert _import(directory, store, "delta").result == "success"
    assert _members(store) == {str(guid(n)) for n in range(1, 6)}
    with store.engine.connect() as connection:
        attrs = connection.execute(sa.text("select attrs from cs_object where anchor = :a"), {"a": str(guid(GROUP))})
        assert "Group One" in attrs.scalar_one()


def test_a_source_that_cannot_read_objects_whole_makes_it_an_error_not_a_truncated_group(directory, store):
    directory.read_entries = None  # a DirectorySource without read_entries
    directory.delta_batches = [[_windowed_entry(directory)]]
    result = _import(directory, store, "delta")
    assert result.result == "completed-import-errors" and result.counters["errors"] == 1
    [error] = store.run_errors(result.run_id)
    assert error["code"] == "truncated-values" and error["anchor"] == str(guid(GROUP))
    assert "cannot read objects whole" in error["message"]
    assert _members(store) == {str(guid(n)) for n in range(1, 5)}  # unchanged: the 4 the full import read
    assert store.get_watermark("ad", NC).cookie == b"cookie-0"  # the next delta reads the change again


def test_a_group_gone_before_it_is_read_whole_is_an_error_and_left_unchanged(directory, store):
    """Listed to be read again by the next delta (retries.py), which finds it gone and drops it from the list: its
    deletion reaches the connector space as DirSync's change of its own, not as a read that found nothing."""
    directory.delta_batches = [[_windowed_entry(directory)]]
    del directory.objects[guid(GROUP)]
    result = _import(directory, store, "delta")
    assert result.result == "completed-import-errors"
    assert [error["code"] for error in store.run_errors(result.run_id)] == ["truncated-values"]
    assert _members(store) == {str(guid(n)) for n in range(1, 5)}
    assert store.get_watermark("ad", NC).cookie == b"cookie-0+1"  # moved on: the group is read again instead
    assert store.get_watermark("ad", retry_key(NC)).cookie == f'["{guid(GROUP)}"]'.encode()
    again = _import(directory, store, "delta")
    assert again.result == "success" and again.counters["objects_read_again"] == 1
    assert store.get_watermark("ad", retry_key(NC)).cookie == b"[]"
    assert _members(store) == {str(guid(n)) for n in range(1, 5)}


def test_incremental_member_values_are_not_read_whole(directory, store):
    dn, raw = directory.objects[guid(GROUP)]
    entry = {"objectGUID": [guid(GROUP).bytes_le], "member;range=1-1": raw["member"][4:5]}
    directory.delta_batches = [[(dn, entry)]]
    assert _import(directory, store, "delta").result == "success"
    assert _members(store) == {str(guid(n)) for n in range(1, 6)}
    assert getattr(directory, "searches", 0) == 0


def test_a_full_import_given_a_window_stops_rather_than_truncate_the_group(directory, store):
    """The hook completes every range of a full read (hooks/active_directory.py _complete_ranges); a source that did
    not would have the import remove the members past the window, or delete the group if it skipped it."""
    dn, raw = directory.objects[guid(GROUP)]
    directory.objects[guid(GROUP)] = (dn, {**_windowed_entry(directory)[1], "objectClass": raw["objectClass"]})
    with pytest.raises(TruncatedValuesError, match=r"'member' of CN=group1,DC=corp,DC=test"):
        _import(directory, store, "full")
    assert _members(store) == {str(guid(n)) for n in range(1, 5)}  # the failed import changed nothing
