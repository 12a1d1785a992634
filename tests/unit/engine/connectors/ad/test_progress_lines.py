"""The AD side tells its progress: an import (full, then a second full with an estimated total, then a delta) and an
export (group writeback) log their phases, done/total and a final line per phase."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_aadsync.engine import progress
from airflow_provider_aadsync.engine.connectors.ad.reader import import_active_directory
from airflow_provider_aadsync.engine.connectors.ad.writer import ADExportSettings, run_ad_export
from tests.support.fakes import ATTRS, NC, FakeDirectory, FakeLdapWriter, guid
from tests.support.stores import fresh_store
from tests.support.writeback import CLOUD_GROUP_ID, WRITEBACK_OU, sync_a_written_back_group

OU, CLOUD_ID = WRITEBACK_OU, CLOUD_GROUP_ID


@pytest.fixture
def store(tmp_path):
    with fresh_store(tmp_path) as opened:
        yield opened


@pytest.fixture
def lines(caplog, monkeypatch):
    """The progress lines logged, with a line at every increment (the interval is a microsecond)."""
    monkeypatch.setenv(progress.INTERVAL_ENV, "0.000001")
    caplog.set_level(logging.INFO)

    def logged() -> list[str]:
        found = [record.getMessage() for record in caplog.records if record.name == progress.log.name]
        caplog.clear()
        return found

    return logged


def test_an_import_logs_what_it_read_against_the_connector_space_it_knew(store, lines):
    directory = FakeDirectory()
    for n in range(1, 6):
        directory.add_user(n, f"user{n}")
    directory.add_group(100, "group1", [1, 2, 3])
    assert import_active_directory(directory, store, mode="full", attributes=ATTRS).result == "success"
    first = lines()
    assert first[0] == "full import of ad: reading started"  # an empty connector space: no estimate
    assert first[-1].startswith("full import of ad: reading done, 6 objects")
    directory.add_user(6, "user6")
    import_active_directory(directory, store, mode="full", attributes=ATTRS)
    second = lines()
    assert second[0] == "full import of ad: reading started (~6 objects)"
    assert any(line.startswith("full import of ad: reading 7/~6 objects") for line in second), second
    assert second[-1].startswith("full import of ad: reading done, 7/~6 objects")
    directory.delta_batches = [
        [(FakeDirectory.ext(1, f"CN=user1,{NC}"), {"objectGUID": [guid(1).bytes_le], "displayName": [b"New"]})]
    ]
    assert import_active_directory(directory, store, mode="delta", attributes=ATTRS).mode == "delta"
    delta = lines()
    assert delta[0] == "delta import of ad: reading changes started"
    assert delta[-1].startswith("delta import of ad: reading changes done, 1 changes")


def test_an_ad_export_logs_its_object_writes_and_member_changes(store, lines):
    sync_a_written_back_group(store, ou=OU, cloud_id=CLOUD_ID)
    lines()
    result = run_ad_export(store, FakeLdapWriter(), settings=ADExportSettings(member_chunk=2), lock_holder="task")
    assert result.result == "success", result
    logged = lines()
    assert logged[0] == "export to ad: object writes started (1 objects)"
    assert "export to ad: object writes 1/1 objects (100%)" in logged[1]
    assert logged[2].startswith("export to ad: object writes done, 1/1 objects")
    assert logged[3] == "export to ad: member changes started (3 references)"
    assert [line.split(",")[0] for line in logged[4:]] == [
        "export to ad: member changes 2/3 references (67%)",
        "export to ad: member changes 3/3 references (100%)",
        "export to ad: member changes done",
    ]
