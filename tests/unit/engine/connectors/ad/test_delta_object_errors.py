"""A change a DirSync delta read but could not apply (a per-object error) is read again by the next delta.

DirSync reports the attributes changed since the cookie. An object whose entry failed to decode had every change of
that entry dropped; had the cookie moved on, the next delta would report only what changed after it (the value the
admin fixed), and the other changes of the failed entry would be lost until a full import. The import keeps the old
cookie of a partition where an object failed (the rows it applied commit), so the next delta reads the object's
changes since then again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import pytest

from airflow_provider_aadsync.engine.connectors.ad.reader import import_active_directory
from airflow_provider_aadsync.engine.store import Store
from tests.support.fakes import ATTRS, FakeDirectory, guid
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
        self.log.append((self.objects[guid(n)][0], {"objectGUID": [guid(n).bytes_le], **values}))

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
    directory.add_user(1, "user1")
    directory.add_user(2, "user2")
    _import(directory, store, "full")

    # user1 gets a new display name and, in the same change, a description that is not valid UTF-8
    directory.change(1, displayName=[b"User One"], description=[b"\xff\xfe"])
    directory.change(2, displayName=[b"User Two"])
    first = _import(directory, store, "delta")
    assert first.result == "completed-import-errors" and first.counters["errors"] == 1
    assert json.loads(live_objects(store)[str(guid(2))]["attrs"])["displayName"] == ["User Two"]  # the rest commits

    directory.change(1, description=[b"fixed"])  # the admin fixes the value
    second = _import(directory, store, "delta")
    assert second.result == "success"
    attrs = json.loads(live_objects(store)[str(guid(1))]["attrs"])
    assert attrs["description"] == ["fixed"]
    assert attrs["displayName"] == ["User One"], "the display name changed with the broken value was lost"
    assert directory.cookies_seen == [b"0", b"0"]  # the second delta read again from before the failed entry

    directory.change(2, description=[b"later"])
    assert _import(directory, store, "delta").result == "success"
    assert directory.cookies_seen[-1] == b"3"  # a clean delta moves the cookie on


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
