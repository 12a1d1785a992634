"""An export killed after its create went through, then a cycle whose import reads the created object before the next
export adopts it (engine/runs/export_run.py adopt_anchor): the imported row already holds the real anchor.

The provisional row took that anchor with an UPDATE of the primary key, which the imported row made fail with an
IntegrityError in every later export (the member phase never ran). Now the imported row becomes the created object's:
one row, linked, holding what the directory holds; the add is counted as reconciled and nothing is staged again.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.ad.writer import MARK_ATTRIBUTE, ADExportSettings, run_ad_export
from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings, run_entra_export
from airflow_provider_aadsync.engine.runs.export_run import AnchorHeld, adopt_anchor
from airflow_provider_aadsync.engine.runs.source import SourceObject
from airflow_provider_aadsync.engine.store import Store, cs_object, link, utcnow
from airflow_provider_aadsync.engine.sync import PROVISIONAL_PREFIX, run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.fakes import FakeGraphWriter, FakeLdapWriter, SimulatedKill
from tests.support.plans import cs_attrs, cs_references, cs_row, open_plan, plan_references, plan_row
from tests.support.stores import fresh_store
from tests.support.world import ad_group, ad_user, entra_group, guid, import_delta, import_full, links
from tests.support.writeback import CLOUD_GROUP_ID, WRITEBACK_OU, sync_a_written_back_group

OU, CLOUD_ID = WRITEBACK_OU, CLOUD_GROUP_ID


@pytest.fixture
def store(tmp_path):
    with fresh_store(tmp_path) as opened:
        yield opened


class KilledAfterAdd(FakeLdapWriter):
    """A DC that takes the add, and a worker killed before the store records it."""

    kill = True

    def add_object(self, dn: str, object_class: str, attributes: dict[str, list[Any]]) -> str:
        created = super().add_object(dn, object_class, attributes)
        if self.kill:
            raise SimulatedKill
        return created


def rows(store: Store, connector: str, object_type: str) -> dict[str, dict[str, Any]]:
    """The connector space's objects of one type, by anchor (``@dn``, ``@hash``: their DN and attribute digest)."""
    with store.engine.connect() as connection:
        found = connection.execute(
            sa.select(cs_object).where(cs_object.c.connector == connector, cs_object.c.object_type == object_type)
        ).all()
    return {row.anchor: {**json.loads(row.attrs), "@dn": row.dn, "@hash": row.attrs_hash} for row in found}


def as_imported(anchor: str, entry: dict[str, Any]) -> SourceObject:
    """An object of the fake directory as the AD import reads it: its values, objectGUID and cn, and its members."""
    attrs = {name: list(values) for name, values in entry.items() if name not in ("dn", "objectClass", "member")}
    attrs.update(objectGUID=[anchor], cn=[entry["dn"].split(",")[0].split("=", 1)[1]])
    references = {"member": [(target, None) for target in sorted(entry["member"])]}
    return SourceObject(anchor=anchor, dn=entry["dn"], object_type="group", attrs=attrs, references=references)


# -------------------------------------------------------------------------------------------------------- AD
def test_a_written_back_group_imported_before_its_killed_add_was_recorded_is_adopted_as_the_imported_row(store):
    rules = load_sync_rules(writeback_enabled=True, writeback_ou=OU, consistency_guid_writeback=False)
    sync_a_written_back_group(store, ou=OU, cloud_id=CLOUD_ID)
    ldap = KilledAfterAdd()
    with pytest.raises(SimulatedKill):
        run_ad_export(store, ldap, settings=ADExportSettings(), lock_holder="killed")
    (created,) = ldap.entries
    assert [row["state"] for row in open_plan(store, "ad")[0].values()] == ["sent"]

    # The next cycle: the AD import reads the writeback OU, the In-from-AD rules leave Group_ groups alone.
    import_delta(store, "ad", [as_imported(created, ldap.entries[created])])
    for connector in ("ad", "entra"):
        assert run_sync(store, rules, connector=connector, mode="delta").result == "success"
    assert ("ad", created) not in links(store, "ad")
    imported = rows(store, "ad", "group")[created]

    ldap.kill = False
    result = run_ad_export(store, ldap, settings=ADExportSettings(), lock_holder="next")
    assert result.result == "success", result
    assert result.counters["adds_reconciled"] == 1 and "group_adds" not in result.counters
    assert list(ldap.entries) == [created]  # not created twice
    members = {guid(n) for n in (1, 2, 3)}
    assert ldap.entries[created]["member"] == members == cs_references(store, "ad", created)  # the member phase ran
    assert open_plan(store, "ad") == ({}, 0)
    (group,) = rows(store, "ad", "group").items()  # one row, the imported one, with what the import read
    assert group == (created, imported)
    (mv_id, _type) = links(store, "ad")[("ad", created)]
    assert not any(anchor.startswith(PROVISIONAL_PREFIX) for _c, anchor in links(store))

    # The cycle after: the same object imported again is no change, and sync stages nothing.
    import_delta(store, "ad", [as_imported(created, ldap.entries[created])])
    for connector in ("ad", "entra"):
        assert run_sync(store, rules, connector=connector, mode="delta").result == "success"
    assert open_plan(store, "ad") == ({}, 0) and links(store, "ad")[("ad", created)][0] == mv_id
    assert rows(store, "ad", "group")[created]["@hash"] == imported["@hash"]


def test_an_imported_row_linked_to_another_metaverse_object_is_never_adopted(store):
    """The exporter's check (another connector-space object linked to it) fails the add as not adopted; adopt_anchor
    itself refuses too, naming both objects, and changes nothing."""
    dn = f"CN=Group_{CLOUD_ID},{OU}"
    provisional = f"{PROVISIONAL_PREFIX}00000000-0000-4000-8000-000000000001"
    cs_row(store, "ad", provisional, dn)
    changes = {MARK_ATTRIBUTE: [f"Group_{CLOUD_ID}"], "displayName": ["Falcon"], "groupType": ["8"]}
    plan_row(store, "ad", provisional, dn, operation="add", changes=changes, state="sent")
    ldap = FakeLdapWriter()
    held = ldap.add_entry(dn, **{MARK_ATTRIBUTE: [f"Group_{CLOUD_ID}"]})
    cs_row(store, "ad", held, dn, attrs={"objectGUID": [held], "displayName": ["Other"]})
    with store.transaction() as connection:
        connection.execute(
            sa.insert(link).values(
                connector="ad", anchor=held, mv_id=77, rule="r", link_type="join", created_at=utcnow()
            )
        )
    result = run_ad_export(store, ldap, settings=ADExportSettings(), lock_holder="t")
    assert result.result == "completed-export-errors", result
    (error,) = store.run_errors(result.run_id)
    assert error["code"] == "not-adopted" and error["anchor"] == provisional and held in error["message"]
    assert open_plan(store, "ad")[0][provisional]["state"] == "failed"

    with pytest.raises(AnchorHeld, match=f"{held}.*{provisional}.*metaverse object 77"):
        with store.transaction() as connection:
            adopt_anchor(connection, "ad", provisional, held, changes, run_id=1)
    assert cs_attrs(store, "ad", held)["displayName"] == ["Other"] and cs_attrs(store, "ad", provisional) is not None
    assert links(store, "ad") == {("ad", held): (77, "join")}


def test_adopting_onto_an_imported_row_keeps_its_member_rows_and_moves_the_pending_ones(store):
    provisional = f"{PROVISIONAL_PREFIX}00000000-0000-4000-8000-000000000002"
    created = "00000000-0000-4000-8000-0000000000aa"
    cs_row(store, "ad", provisional, "CN=G,OU=W", members=("stale",))
    cs_row(store, "ad", created, "CN=G,OU=W", attrs={"objectGUID": [created], "info": ["set by hand"]}, members=("a",))
    plan_row(store, "ad", provisional, "CN=G,OU=W", operation="add", changes={"displayName": ["G"]}, state="sent")
    plan_references(store, "ad", provisional, "member", ["a", "b"])
    with store.transaction() as connection:
        connection.execute(
            sa.insert(link).values(
                connector="ad", anchor=provisional, mv_id=5, rule="r", link_type="provisioned", created_at=utcnow()
            )
        )
        adopt_anchor(connection, "ad", provisional, created, {"displayName": ["G"]}, run_id=1)
    assert cs_attrs(store, "ad", provisional) is None and cs_references(store, "ad", provisional) == set()
    assert cs_attrs(store, "ad", created) == {"objectGUID": [created], "info": ["set by hand"], "@dn": "CN=G,OU=W"}
    assert cs_references(store, "ad", created) == {"a"}  # what the directory holds, not what was planned
    assert open_plan(store, "ad") == ({}, 2) and links(store, "ad") == {("ad", created): (5, "provisioned")}


# ------------------------------------------------------------------------------------------------------ Entra
def test_a_cloud_group_imported_before_its_killed_create_was_recorded_is_adopted_as_the_imported_row(store):
    rules = load_sync_rules()
    import_full(store, "ad", [ad_group(100, "Staff")])
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    graph = FakeGraphWriter()
    settings = ExportSettings(resend_settle_seconds=0)
    graph.kill_during_next_call(carried_out=True)
    with pytest.raises(SimulatedKill):
        run_entra_export(store, graph, settings=settings, lock_holder="killed")
    ((created, props),) = graph.groups().items()

    # The next cycle: the Entra import reads the group, and the export runs before a sync joins it (a sync would,
    # by the anchor in the sync app's extension).
    skipped = {"id", "createdDateTime"}  # the import reads neither into the values
    values = {name: value for name, value in props.items() if not name.startswith("@") and name not in skipped}
    import_delta(store, "entra", [entra_group(created, props["displayName"], members=[], **values)])
    assert ("entra", created) not in links(store, "entra")
    imported = rows(store, "entra", "group")[created]

    result = run_entra_export(store, graph, settings=settings, lock_holder="next")
    assert result.result == "success", result
    assert result.counters["creates_reconciled"] == 1 and "group_creates" not in result.counters
    assert list(graph.groups()) == [created] and open_plan(store, "entra") == ({}, 0)
    (group,) = rows(store, "entra", "group").items()
    assert group == (created, imported)
    assert ("entra", created) in links(store, "entra")
    assert not any(anchor.startswith(PROVISIONAL_PREFIX) for _c, anchor in links(store))
    assert run_sync(store, rules, connector="entra", mode="delta").result == "success"
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    assert open_plan(store, "entra") == ({}, 0)


def test_a_user_row_is_unaffected_when_no_import_holds_the_anchor(store):
    """The ordinary adoption is unchanged: the provisional row takes the real anchor and the written values."""
    rules = load_sync_rules()
    import_full(store, "ad", [ad_user(1)])
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    graph = FakeGraphWriter()
    result = run_entra_export(store, graph, settings=ExportSettings(resend_settle_seconds=0), lock_holder="t")
    assert result.result == "success" and result.counters["user_creates"] == 1, result
    ((created, _props),) = graph.users().items()
    assert set(rows(store, "entra", "user")) == {created} and ("entra", created) in links(store, "entra")
