"""A preview lists only the exports a sync would stage: an object already in step with Entra ID gets none there."""

from __future__ import annotations

from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings, run_entra_export
from airflow_provider_aadsync.engine.sync import preview, run_sync
from tests.support.fakes import FakeGraphWriter
from tests.support.world import ad_user, import_full, links


def test_the_preview_of_a_user_in_step_with_entra_lists_no_export_there(store, rules):
    import_full(store, "ad", [ad_user(1, department="Sales")])
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    exported = run_entra_export(store, FakeGraphWriter(), settings=ExportSettings(resend_settle_seconds=0))
    assert exported.result == "success" and exported.counters["user_creates"] == 1
    assert run_sync(store, rules, connector="ad", mode="full", reevaluate=True).result == "success"
    (anchor,) = [anchor for (connector, anchor) in links(store, "ad")]

    trace = preview(store, rules, connector="ad", anchor=anchor)
    # An outbound rule evaluated it (an update with no change: nothing to stage), and the preview says nothing of it;
    # before, it listed an "update" to Entra ID with no changes, which the sync never stages.
    assert "entra" in trace["outbound"]
    assert [e for e in trace.get("pending_exports", []) if e["connector"] == "entra"] == []

    import_full(store, "ad", [ad_user(1, department="Finance")])
    changed = preview(store, rules, connector="ad", anchor=anchor)
    (update,) = [e for e in changed["pending_exports"] if e["connector"] == "entra"]
    assert (update["operation"], update["changes"]) == ("update", {"department": ["Finance"]})
