"""A written-back group's add an export had sent, withdrawn by sync before any export recorded it (the cloud group was
deleted): the group the DC made is deleted by the next export, counted by the deletion guard first; an add that
never arrived is forgotten without a write (ad/withdrawn.py, sync/staging.py withdraw_create).
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_aadsync.engine.connectors.ad.writer import MARK_ATTRIBUTE, ADExportSettings, run_ad_export
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync import PROVISIONAL_PREFIX, run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.fakes import FakeLdapWriter, SimulatedKill
from tests.support.plans import open_plan
from tests.support.stores import fresh_store
from tests.support.world import cs_count, deleted, exports, import_delta, links
from tests.support.writeback import CLOUD_GROUP_ID, WRITEBACK_OU, sync_a_written_back_group

OU, CLOUD_ID = WRITEBACK_OU, CLOUD_GROUP_ID


@pytest.fixture
def store(tmp_path):
    with fresh_store(tmp_path) as opened:
        yield opened


class KilledDuringAdd(FakeLdapWriter):
    """A worker killed while its add is on the wire; ``carried_out``: the DC made the group."""

    def __init__(self, *, carried_out: bool) -> None:
        super().__init__()
        self.carried_out = carried_out
        self.kill = True

    def add_object(self, dn: str, object_class: str, attributes: dict[str, list[Any]]) -> str:
        if self.kill:
            if self.carried_out:
                super().add_object(dn, object_class, attributes)
            raise SimulatedKill
        return super().add_object(dn, object_class, attributes)


def export(store: Store, ldap: FakeLdapWriter, **settings: Any):
    return run_ad_export(store, ldap, settings=ADExportSettings(**settings), lock_holder="test-task")


def withdrawn_after_a_killed_add(store: Store, *, carried_out: bool) -> KilledDuringAdd:
    """The group's add killed on the wire, then the cloud group deleted and a delta sync of Entra ID."""
    rules = load_sync_rules(writeback_enabled=True, writeback_ou=OU, consistency_guid_writeback=False)
    sync_a_written_back_group(store, ou=OU, cloud_id=CLOUD_ID)
    ldap = KilledDuringAdd(carried_out=carried_out)
    with pytest.raises(SimulatedKill):
        export(store, ldap)
    assert len(ldap.entries) == carried_out
    import_delta(store, "entra", [deleted(CLOUD_ID)])
    assert run_sync(store, rules, connector="entra", mode="delta").result == "success"
    ((anchor, row),) = exports(store, "ad").items()
    assert anchor.startswith(PROVISIONAL_PREFIX) and (row["operation"], row["state"]) == ("delete", "sent")
    assert row["changes"][MARK_ATTRIBUTE] == [f"Group_{CLOUD_ID}"]  # the mark the lookup compares is kept
    assert links(store, "ad").get(("ad", anchor)) is None and cs_count(store, "ad") == 4  # 3 users, the group
    ldap.kill = False
    return ldap


def test_a_written_back_group_added_then_withdrawn_is_deleted_from_ad(store):
    ldap = withdrawn_after_a_killed_add(store, carried_out=True)
    (created,) = ldap.entries

    stopped = export(store, ldap, deletion_threshold=0)  # counted before the first write, like any delete
    assert stopped.result == "stopped-deletion-threshold-exceeded" and stopped.counters["planned_deletes"] == 1
    assert list(ldap.entries) == [created] and ldap.counters["ldap_reconcile_reads"] == 0

    result = export(store, ldap)
    assert result.result == "success" and result.counters["group_deletes"] == 1, result
    assert ldap.entries == {} and [c[:2] for c in ldap.calls[-1:]] == [("delete_object", created)]
    assert open_plan(store, "ad") == ({}, 0) and cs_count(store, "ad") == 3  # the users only


def test_a_written_back_group_add_never_made_then_withdrawn_is_forgotten(store):
    ldap = withdrawn_after_a_killed_add(store, carried_out=False)
    writes = len(ldap.calls)

    result = export(store, ldap)
    assert result.result == "success" and result.counters["withdrawn_adds_forgotten"] == 1, result
    assert ldap.entries == {} and len(ldap.calls) == writes  # nothing written
    assert open_plan(store, "ad") == ({}, 0) and cs_count(store, "ad") == 3
