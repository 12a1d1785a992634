"""The DirSync cookie's lifetime: the forest's deletion window ([MS-ADTS] 3.1.1.1.15), read once per import."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.ad.lifetime import DEFAULT_TOMBSTONE_LIFETIME, deletion_window
from airflow_provider_aadsync.engine.connectors.ad.reader import import_active_directory
from airflow_provider_aadsync.engine.store import Store, utcnow, watermark
from tests.support.fakes import ATTRS, NC, FakeDirectory


@pytest.mark.parametrize(
    ("tombstone", "deleted_object", "recycle_bin", "days"),
    [
        (None, None, False, 60),  # unset: the spec's default, not the 180 days a new forest is given
        (180, None, False, 180),
        (180, 30, False, 180),  # a deleted-object lifetime means nothing without the Recycle Bin
        (180, None, True, 180),  # unset: the tombstone lifetime
        (180, 30, True, 30),  # then recycled, which SHOW_DELETED does not show
        (60, 365, True, 60),  # the smaller of the two
        (None, 90, True, 60),
        (1, None, False, 2),  # below the least value: 2 days
        (180, 0, True, 2),
    ],
)
def test_deletion_window(tombstone, deleted_object, recycle_bin, days):
    assert deletion_window(tombstone, deleted_object, recycle_bin) == dt.timedelta(days=days)


class ForestDirectory(FakeDirectory):
    """A directory whose forest keeps deleted objects ``days`` days; counts how often it is asked."""

    def __init__(self, days: int):
        super().__init__()
        for n in range(1, 4):
            self.add_user(n, f"user{n}")
        self.days = days
        self.asked = 0

    def deletion_window(self) -> dt.timedelta:
        self.asked += 1
        return dt.timedelta(days=self.days)


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'store.sqlite'}") as opened:
        yield opened


def age_cookie(store: Store, days: float) -> None:
    with store.engine.begin() as connection:
        aged = sa.update(watermark).where(watermark.c.partition == NC)  # the partition's cookie, not the scope rows
        connection.execute(aged.values(updated_at=utcnow() - dt.timedelta(days=days)))


def test_a_cookie_older_than_the_forest_s_window_imports_fully(store):
    directory = ForestDirectory(days=60)
    import_active_directory(directory, store, mode="full", attributes=ATTRS)
    assert directory.asked == 0  # a full import trusts no cookie: nothing to read
    age_cookie(store, 61)
    result = import_active_directory(directory, store, mode="delta", attributes=ATTRS)
    assert result.mode == "full"
    assert result.fallback_reason == f"the DirSync cookie of {NC} is older than 60 days"
    assert directory.asked == 1  # once per import, whatever the partitions and messages ask


def test_a_cookie_inside_the_window_reads_the_delta(store):
    directory = ForestDirectory(days=60)
    import_active_directory(directory, store, mode="full", attributes=ATTRS)
    age_cookie(store, 59)
    result = import_active_directory(directory, store, mode="delta", attributes=ATTRS)
    assert result.mode == "delta" and result.fallback_reason is None
    assert directory.asked == 1


def test_a_forest_keeping_deleted_objects_longer_keeps_the_cookie_longer(store):
    directory = ForestDirectory(days=180)
    import_active_directory(directory, store, mode="full", attributes=ATTRS)
    age_cookie(store, 100)
    assert import_active_directory(directory, store, mode="delta", attributes=ATTRS).mode == "delta"


def test_a_source_that_cannot_say_gets_the_spec_s_default(store):
    directory = FakeDirectory()
    directory.add_user(1, "user1")
    import_active_directory(directory, store, mode="full", attributes=ATTRS)
    age_cookie(store, DEFAULT_TOMBSTONE_LIFETIME.days + 1)
    result = import_active_directory(directory, store, mode="delta", attributes=ATTRS)
    assert result.mode == "full" and "older than 60 days" in result.fallback_reason
