"""deprovision="move": the exporter counts any ``noSuchObject`` of the move as "the object is already gone". Windows AD
answers a modify DN whose new parent does not exist (a holding OU misspelled, or deleted) with ``noSuchObject``
(0000208D NameErr ... NO_OBJECT, "Directory object not found"), so the group is recorded as moved and forgotten by
the connector space while it stays in the writeback OU with all its members; the next import sees it as a stranger
(its adminDescription keeps the inbound rules away) and nothing ever removes it. Samba answers ``other`` instead
(probed), which the exporter already reports as a per-object error."""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine.connectors.ad.writer import ADExportSettings, ADWriteRefused, run_ad_export
from tests.support.fakes import FakeLdapWriter
from tests.support.plans import cs_attrs, cs_row, open_plan, plan_row
from tests.support.stores import fresh_store

OU = "OU=Writeback,DC=corp,DC=example"


class WindowsLikeWriter(FakeLdapWriter):
    """A move under a parent that does not exist is refused noSuchObject, as Windows AD answers it."""

    def __init__(self, containers: set[str]):
        super().__init__()
        self.containers = {c.lower() for c in containers}

    def move_object(self, guid: str, new_dn: str) -> None:
        parent = new_dn.split(",", 1)[1]  # plain DNs in this test
        if guid in self.entries and parent.lower() not in self.containers:
            self._write("move_object", guid, new_dn)
            raise ADWriteRefused(f"modify DN of <GUID={guid}> refused: noSuchObject", code="noSuchObject")
        super().move_object(guid, new_dn)


@pytest.fixture
def store(tmp_path):
    with fresh_store(tmp_path) as opened:
        yield opened


def test_a_move_to_a_holding_ou_that_does_not_exist_is_an_error_not_a_done_deprovisioning(store):
    ldap = WindowsLikeWriter({OU})
    dn = f"CN=Group_1,{OU}"
    group = ldap.add_entry(dn, member={"m1"})
    cs_row(store, "ad", group, dn, attrs={"objectGUID": [group]})
    plan_row(store, "ad", group, dn, operation="delete")
    settings = ADExportSettings(deprovision="move", holding_ou="OU=Holdng,DC=corp,DC=example")  # misspelled
    result = run_ad_export(store, ldap, settings=settings, lock_holder="t")
    assert ldap.entries[group]["dn"] == dn  # still in the writeback OU, with its members
    assert result.result == "completed-export-errors", result.counters
    assert result.counters.get("group_moves_to_holding", 0) == 0
    assert cs_attrs(store, "ad", group) is not None  # the connector space still knows it
    objects, _ = open_plan(store, "ad")
    assert objects[group]["state"] == "failed"
