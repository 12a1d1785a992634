"""A change a DirSync delta read but could not apply (a per-object error) is not lost: the object is read again
whole by each delta until it applies, while the cookie moves on.

DirSync reports the attributes changed since the cookie. An object whose entry failed to decode had every change of
that entry dropped; the cookie moved on, the next delta reports only what changed after it (the value the admin
fixed), so the other changes of the failed entry would be lost. The import lists the failed objects beside the
cookie (engine/runs/read_again.py) and each delta reads them again whole by objectGUID. Keeping the old cookie
instead, as before, made every delta read everything changed since, for as long as the object kept failing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import pytest

from airflow_provider_aadsync.engine.connectors.ad.reader import import_active_directory
from airflow_provider_aadsync.engine.runs import read_again
from airflow_provider_aadsync.engine.runs.read_again import retry_key
from airflow_provider_aadsync.engine.store import Store
from tests.support.fakes import ATTRS, NC, FakeDirectory, guid
from tests.support.stores import live_objects


class ChangeLogDirectory(FakeDirectory):
    """DirSync over a change log: a cookie is a position; a delta returns each object changed after it once, with
    the latest values of the attributes changed since (as DirSync does)."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, dict[str, list[bytes]]]] = []

    def dirsync_watermark(self) -> bytes:
        return b"%d" % len(self.log)

    def change(self, n: int, **values: list[bytes]) -> None:
        dn, current = self.objects[guid(n)]
        current.update(values)  # the object as a read by objectGUID finds it now
        self.log.append((dn, {"objectGUID": [guid(n).bytes_le], **values}))

    def dirsync_pages(self, attributes: Sequence[str], cookie: bytes) -> Iterator:
        self.cookies_seen.append(cookie)
        merged: dict[str, tuple[str, dict[str, list[bytes]]]] = {}
        for dn, raw in self.log[int(cookie) :]:
            known = merged.setdefault(dn, (dn, {}))
            known[1].update(raw)
        yield list(merged.values()), b"%d" % len(self.log)


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}") as opened:
        yield opened


def _import(directory: FakeDirectory, store: Store, mode: str):
    return import_active_directory(directory, store, mode=mode, attributes=[*ATTRS, "description"])


def test_changes_of_an_entry_that_failed_to_decode_are_read_again_once_it_is_fixed(store):
    directory = ChangeLogDirectory()
    for n in (1, 2, 3):
        directory.add_user(n, f"user{n}")
    _import(directory, store, "full")

    # user1 gets a new display name and, in the same change, a description that is not valid UTF-8
    directory.change(1, displayName=[b"User One"], description=[b"\xff\xfe"])
    directory.change(2, displayName=[b"User Two"])
    first = _import(directory, store, "delta")
    assert first.result == "completed-import-errors" and first.counters["errors"] == 1
    assert first.counters["objects_to_read_again"] == 1
    assert json.loads(live_objects(store)[str(guid(2))]["attrs"])["displayName"] == ["User Two"]  # the rest commits
    assert _to_read_again(store) == [str(guid(1))]

    # still broken: read again whole by the next delta, which fails on it again; the cookie moves on all the same
    directory.change(3, displayName=[b"User Three"])
    again = _import(directory, store, "delta")
    assert again.result == "completed-import-errors" and again.counters["objects_read_again"] == 1
    assert [error["anchor"] for error in store.run_errors(again.run_id)] == [str(guid(1))]
    assert directory.cookies_seen == [b"0", b"2"]  # not from before the failed entry again

    directory.change(1, description=[b"fixed"])  # the admin fixes the value
    second = _import(directory, store, "delta")
    assert second.result == "success"
    attrs = json.loads(live_objects(store)[str(guid(1))]["attrs"])
    assert attrs["description"] == ["fixed"]
    assert attrs["displayName"] == ["User One"], "the display name changed with the broken value was lost"
    assert directory.cookies_seen == [b"0", b"2", b"3"] and _to_read_again(store) == []

    directory.change(2, description=[b"later"])
    clean = _import(directory, store, "delta")
    assert clean.result == "success" and "objects_read_again" not in clean.counters
    assert directory.cookies_seen[-1] == b"4"


def test_an_object_read_again_is_replaced_whole_and_one_gone_leaves_the_list(store):
    """Read again, an object is what the directory holds now: a value cleared since is cleared, as a full import's
    read would; an object the directory no longer returns leaves the list (its deletion is a DirSync change)."""
    directory = ChangeLogDirectory()
    for n in (1, 2):
        directory.add_user(n, f"user{n}")
    directory.objects[guid(1)][1]["description"] = [b"old"]
    directory.objects[guid(2)][1]["description"] = [b"old"]
    _import(directory, store, "full")
    for n in (1, 2):
        directory.change(n, displayName=[b"\xff"])
    assert _import(directory, store, "delta").counters["objects_to_read_again"] == 2

    directory.change(1, displayName=[b"User One"])
    del directory.objects[guid(1)][1]["description"]  # cleared in AD since (DirSync's change came with the failure)
    del directory.objects[guid(2)]
    result = _import(directory, store, "delta")
    assert result.result == "success" and result.counters["objects_read_again"] == 2
    attrs = json.loads(live_objects(store)[str(guid(1))]["attrs"])
    assert attrs["displayName"] == ["User One"] and "description" not in attrs
    assert _to_read_again(store) == []


def test_a_delta_reads_again_at_most_its_share_the_ones_waiting_longest_first(store, monkeypatch):
    """Thousands of broken objects must not make each delta read them all, nor fill its error limit (5,000 errors
    stop a run: every delta would stop): a delta reads a bounded share, and what fails again waits at the end."""
    monkeypatch.setattr(read_again, "READ_AGAIN_AT_MOST", 2)
    directory = ChangeLogDirectory()
    for n in (1, 2, 3):
        directory.add_user(n, f"user{n}")
    _import(directory, store, "full")
    for n in (1, 2, 3):
        directory.change(n, displayName=[b"\xff"])
    assert _import(directory, store, "delta").counters["errors"] == 3
    assert _to_read_again(store) == [str(guid(n)) for n in (1, 2, 3)]

    second = _import(directory, store, "delta")
    assert (second.counters["objects_read_again"], second.counters["errors"]) == (2, 2)
    assert _to_read_again(store) == [str(guid(n)) for n in (3, 1, 2)]
    third = _import(directory, store, "delta")
    assert [error["anchor"] for error in store.run_errors(third.run_id)] == [str(guid(n)) for n in (3, 1)]
    assert _to_read_again(store) == [str(guid(n)) for n in (2, 3, 1)]


def _to_read_again(store: Store) -> list[str]:
    watermark = store.get_watermark("ad", retry_key(NC))
    return json.loads(watermark.cookie) if watermark is not None else []


def test_an_entry_a_full_import_cannot_decode_is_kept_as_it_was_never_deleted(store):
    """A full import deletes what it did not see. An object it read but could not apply (one value it cannot
    decode) is there all the same: deleted, its cloud account would be deprovisioned by the next cycle."""
    directory = ChangeLogDirectory()
    for n in (1, 2, 3):
        directory.add_user(n, f"user{n}")
    _import(directory, store, "full")

    directory.objects[guid(1)][1]["description"] = [b"\xff\xfe"]  # not valid UTF-8
    directory.objects[guid(2)][1]["displayName"] = [b"User Two"]
    del directory.objects[guid(3)]  # gone from the directory: deleted as before
    result = _import(directory, store, "full")
    assert result.result == "completed-import-errors" and result.counters["errors"] == 1
    assert result.counters["kept_unreadable"] == 1 and result.counters["deletes"] == 1
    objects = live_objects(store)
    assert set(objects) == {str(guid(1)), str(guid(2))}
    assert "description" not in json.loads(objects[str(guid(1))]["attrs"])  # as it was before the failed read
    assert json.loads(objects[str(guid(2))]["attrs"])["displayName"] == ["User Two"]
    [error] = store.run_errors(result.run_id)
    assert error["anchor"] == str(guid(1))

    directory.objects[guid(1)][1]["description"] = [b"fixed"]  # fixed: the next full import applies it
    fixed = _import(directory, store, "full")
    assert fixed.result == "success" and "kept_unreadable" not in fixed.counters
    assert json.loads(live_objects(store)[str(guid(1))]["attrs"])["description"] == ["fixed"]
