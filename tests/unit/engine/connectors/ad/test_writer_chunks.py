"""The AD exporter writes objects in chunks: one transaction marks a chunk's plan rows ``sent``, the LDAP writes go one
by one, one transaction settles what they confirmed. A refused object stays a per-object error in a chunk whose other
writes settle; a run killed between the writes and the settle leaves its rows ``sent``, and the next run finishes them
(adds are looked up at their DN and adopted, never added twice; modifies replace values, so sending one again is
harmless). The in-memory directory of test_writer.py stands in for the DC.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from airflow_provider_aadsync.engine.connectors.ad import writer as ad_writer
from airflow_provider_aadsync.engine.connectors.ad.writer import MARK_ATTRIBUTE, ADExportSettings, run_ad_export
from airflow_provider_aadsync.engine.connectors.converters import guid_bytes
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync import PROVISIONAL_PREFIX
from tests.support.fakes import FakeLdapWriter
from tests.support.plans import cs_attrs, cs_row, open_plan, plan_row
from tests.support.stores import fresh_store

USERS_OU = "OU=Users,DC=corp,DC=example"
GROUPS_OU = "OU=Writeback,DC=corp,DC=example"
GUID_ATTRIBUTE = "mS-DS-ConsistencyGuid"


class WatchedLdap(FakeLdapWriter):
    """Records, at each modify, the states of the plan's rows: what the store said while the LDAP writes went."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store
        self.states_seen: list[dict[str, str]] = []

    def modify_object(self, guid: str, replace: dict[str, list[Any]]) -> None:
        objects, _ = open_plan(self.store, "ad")
        self.states_seen.append({anchor: row["state"] for anchor, row in objects.items()})
        super().modify_object(guid, replace)


class Crash(BaseException):
    """Stands in for a SIGKILL: nothing of the exporter's own error handling runs."""


@pytest.fixture
def store(tmp_path):
    with fresh_store(tmp_path) as opened:
        yield opened


def export(store: Store, ldap: FakeLdapWriter):
    return run_ad_export(store, ldap, settings=ADExportSettings(), lock_holder="test-task")


def users_to_stamp(store: Store, ldap: FakeLdapWriter, count: int) -> list[str]:
    """``count`` AD users with an empty mS-DS-ConsistencyGuid and the writeback of their objectGUID planned."""
    anchors = []
    for number in range(count):
        dn = f"CN=User {number},{USERS_OU}"
        anchor = ldap.add_entry(dn, "user", sAMAccountName=[f"user{number}"])
        cs_row(store, "ad", anchor, dn, object_type="person", attrs={"objectGUID": [anchor]})
        plan_row(store, "ad", anchor, dn, operation="update", object_type="person", changes={GUID_ATTRIBUTE: [anchor]})
        anchors.append(anchor)
    return sorted(anchors)  # the order the plan is written in


def test_a_refused_object_fails_alone_and_its_chunk_settles_the_others(store, monkeypatch):
    monkeypatch.setattr(ad_writer, "PAGE_ROWS", 3)
    ldap = WatchedLdap(store)
    anchors = users_to_stamp(store, ldap, 7)  # chunks of 3, 3 and 1
    refused = anchors[4]  # the middle of the second chunk
    ldap.refuse("modify_object", "insufficientAccessRights", match=refused)

    result = export(store, ldap)
    assert result.result == "completed-export-errors", result
    # Each chunk was marked sent before its first write and settled after its last one, not object by object.
    first, second = ldap.states_seen[0], ldap.states_seen[3]
    assert [first[a] for a in anchors[:3]] == ["sent"] * 3 and [first[a] for a in anchors[3:]] == ["pending"] * 4
    assert all(anchor not in second for anchor in anchors[:3])  # the first chunk settled
    assert [second[a] for a in anchors[3:6]] == ["sent"] * 3
    assert set(ldap.states_seen[5]) >= set(anchors[3:6])  # nothing of the chunk settled before its last write
    # The others are written and settled: value in AD, in the connector space, plan row gone.
    written = [anchor for anchor in anchors if anchor != refused]
    for anchor in written:
        assert ldap.entries[anchor][GUID_ATTRIBUTE] == [guid_bytes(anchor)]
        assert cs_attrs(store, "ad", anchor)[GUID_ATTRIBUTE] == [anchor]
    assert GUID_ATTRIBUTE not in ldap.entries[refused] and GUID_ATTRIBUTE not in cs_attrs(store, "ad", refused)
    (error,) = store.run_errors(result.run_id)
    assert error["anchor"] == refused and error["code"] == "insufficientAccessRights"
    objects, _ = open_plan(store, "ad")
    assert list(objects) == [refused] and objects[refused]["state"] == "failed"
    assert objects[refused]["last_error"].startswith("insufficientAccessRights: update of CN=User")
    assert result.counters["person_updates"] == 6 and result.counters["ldap_writes"] == 7

    again = export(store, ldap)  # the refusal is over: the failed row is retried
    assert again.result == "success" and again.counters["person_updates"] == 1, again
    assert ldap.entries[refused][GUID_ATTRIBUTE] == [guid_bytes(refused)] and open_plan(store, "ad") == ({}, 0)


def plan_group_adds(store: Store, count: int) -> list[str]:
    """``count`` written-back groups to create (provisional anchors, our mark in each add); returns their DNs."""
    dns = []
    for number in range(count):
        cloud_id = str(uuid.UUID(int=number + 1))
        dn = f"CN=Group_{cloud_id},{GROUPS_OU}"
        provisional = f"{PROVISIONAL_PREFIX}{uuid.UUID(int=1000 + number)}"
        cs_row(store, "ad", provisional, dn)
        changes = {MARK_ATTRIBUTE: [f"Group_{cloud_id}"], "displayName": [f"Group {number}"], "groupType": ["8"]}
        plan_row(store, "ad", provisional, dn, operation="add", changes=changes)
        dns.append(dn)
    return dns


@pytest.mark.parametrize("crash_at", ["add", "update"])
def test_a_run_killed_before_its_chunk_settles_leaves_rows_sent_and_the_next_run_finishes_them(
    store, monkeypatch, crash_at
):
    ldap = FakeLdapWriter()
    dns = plan_group_adds(store, 3)
    users = users_to_stamp(store, ldap, 3)
    settle = ad_writer.ADExporter._settle

    def killed(self: ad_writer.ADExporter, chunk: Any) -> None:
        if chunk.adopted if crash_at == "add" else chunk.updated:
            raise Crash
        settle(self, chunk)

    monkeypatch.setattr(ad_writer.ADExporter, "_settle", killed)
    with pytest.raises(Crash):
        export(store, ldap)
    monkeypatch.setattr(ad_writer.ADExporter, "_settle", settle)
    killed_chunk = dns if crash_at == "add" else users
    objects, _ = open_plan(store, "ad")
    sent = {anchor for anchor, row in objects.items() if row["state"] == "sent"}
    assert len(sent) == len(killed_chunk)  # written in AD, not settled: every row of the chunk still sent
    if crash_at == "add":
        assert all(anchor.startswith(PROVISIONAL_PREFIX) for anchor in sent)
    else:
        assert sent == set(users) and all(GUID_ATTRIBUTE not in cs_attrs(store, "ad", a) for a in users)
    assert len(ldap.entries) == 6  # the three groups were created by the killed run
    calls_before = len(ldap.calls)

    result = export(store, ldap)
    assert result.result == "success", result
    rerun = [method for method, _target, _detail in ldap.calls[calls_before:]]
    assert "add_object" not in rerun  # no group is created twice
    groups = {guid: entry for guid, entry in ldap.entries.items() if entry["objectClass"] == "group"}
    assert sorted(entry["dn"] for entry in groups.values()) == sorted(dns)
    for guid, entry in groups.items():
        assert cs_attrs(store, "ad", guid)["@dn"] == entry["dn"]  # adopted under its objectGUID
    for anchor in users:
        assert ldap.entries[anchor][GUID_ATTRIBUTE] == [guid_bytes(anchor)]
        assert cs_attrs(store, "ad", anchor)[GUID_ATTRIBUTE] == [anchor]
    if crash_at == "add":
        assert result.counters["adds_reconciled"] == 3 and rerun == ["modify_object"] * 3
    else:
        assert rerun == ["modify_object"] * 3  # modifies replace values: sent again, harmlessly
    assert open_plan(store, "ad") == ({}, 0)
