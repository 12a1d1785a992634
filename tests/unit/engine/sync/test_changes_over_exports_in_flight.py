"""A change staged while an update is in flight: an export killed mid-write leaves its rows ``sent`` (the next export
sends them again, PATCH being idempotent). The next sync stages a newer plan over such an update, still ``sent``, so the
next export writes the change made meanwhile. Before, staging skipped a ``sent`` row: the export sent the older values,
recorded them, and no delta sync looked at the object again: a leaver disabled in AD stayed enabled in Entra ID, an
object scoped out stayed there, until a full sync."""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings, run_entra_export
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync import run_sync
from tests.support.fakes import FakeGraphWriter, SimulatedKill
from tests.support.world import ad_user, exports, import_delta, world_with_cloud_twins


def _killed_update(store: Store) -> tuple[object, FakeGraphWriter]:
    """cloud-1 joined; a department change staged and its export killed after Graph carried it out."""
    rules = world_with_cloud_twins(store, 1)
    graph = FakeGraphWriter()
    graph.objects["cloud-1"] = {
        "@kind": "user",
        "id": "cloud-1",
        "accountEnabled": True,
        "createdDateTime": "2020-01-01T00:00:00Z",
    }
    import_delta(store, "ad", [ad_user(1, department="Sales")])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    graph.kill_during_next_call(carried_out=True)
    with pytest.raises(SimulatedKill):
        _export(store, graph)
    assert exports(store)["cloud-1"]["state"] == "sent"
    return rules, graph


def _export(store: Store, graph: FakeGraphWriter):
    return run_entra_export(store, graph, settings=ExportSettings(resend_settle_seconds=0), lock_holder="test")


def test_a_leaver_disabled_while_an_update_is_in_flight_is_disabled_by_the_next_export(store):
    rules, graph = _killed_update(store)
    import_delta(store, "ad", [ad_user(1, department="Sales", disabled=True)])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    row = exports(store)["cloud-1"]
    assert (row["operation"], row["state"]) == ("update", "sent")  # still looked at as sent: resent, never twice
    assert row["changes"]["accountEnabled"] == [False] and row["changes"]["department"] == ["Sales"]
    assert _export(store, graph).result == "success"
    assert graph.objects["cloud-1"]["accountEnabled"] is False
    assert graph.objects["cloud-1"]["department"] == "Sales"
    assert exports(store) == {}


def test_an_object_scoped_out_while_an_update_is_in_flight_is_deleted_by_the_next_export(store):
    rules, graph = _killed_update(store)
    filtered = ad_user(1, department="Sales", msExchRecipientTypeDetails=str(0x800000))  # out of the sync scope
    import_delta(store, "ad", [filtered])
    assert run_sync(store, rules, connector="ad", mode="delta").result == "success"
    row = exports(store)["cloud-1"]
    assert (row["operation"], row["state"]) == ("delete", "sent")
    assert _export(store, graph).result == "success"
    assert "cloud-1" not in graph.objects
    assert exports(store) == {}
