"""A connector space the connectors configuration no longer names (an AD connector removed or renamed in the file):
reported with its objects and the cloud objects they feed, and dropped deliberately, by its exact count, so the next
export deprovisions what only it fed through the deletion threshold; the other connectors are not touched."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.entra.settings import ExportSettings
from airflow_provider_aadsync.engine.report import render_cycle_report
from airflow_provider_aadsync.engine.runs.export_run import run_export
from airflow_provider_aadsync.engine.runs.unconfigured import (
    DropRefused,
    UnconfiguredSpace,
    drop_connector_space,
    unconfigured_spaces,
)
from airflow_provider_aadsync.engine.store import Store, link, mv_object, watermark
from tests.support.plans import RecordingExporter
from tests.support.world import cs_count, exports, links, metaverse


def mv_rows(store: Store) -> dict[int, tuple[str, str]]:
    with store.engine.connect() as connection:
        return {r.id: (r.attrs, r.contributions) for r in connection.execute(sa.select(mv_object))}


def watermarks(store: Store) -> set[str]:
    with store.engine.connect() as connection:
        return set(connection.execute(sa.select(watermark.c.connector)).scalars())


def test_a_removed_or_renamed_connector_is_reported_with_what_it_feeds(world):
    store, _rules = world
    assert unconfigured_spaces(store, ["ad", "ad_fabrikam", "entra"]) == []
    (removed,) = unconfigured_spaces(store, ["ad", "entra"])
    assert removed == UnconfiguredSpace("ad_fabrikam", objects=4, cloud_objects=4)  # 3 users, the group staged
    assert "aadsync store drop-connector --connector ad_fabrikam --confirm-drop 4" in removed.message()
    assert "put the name back in the connectors file" in removed.message()
    # Renamed in the file: the new name is configured, the old space is still there, so it is reported all the same.
    assert unconfigured_spaces(store, ["ad", "ad_contoso", "entra"]) == [removed]
    # Reading it writes nothing.
    assert cs_count(store, "ad_fabrikam") == 4

    text = render_cycle_report(store, [], title="t", unconfigured=[removed])
    title, _, rest = text.partition("\n\nStore:")
    assert rest.split("\n\n", 1)[1].startswith("## Connector spaces no configured connector reads")
    assert "- **ad_fabrikam**: connector space 'ad_fabrikam' holds 4 objects feeding 4 objects of 'entra'" in text
    assert "Connector spaces no configured" not in render_cycle_report(store, [], title="t")


def test_the_group_writeback_space_is_not_reported_for_what_sync_provisioned_there(world):
    store, _rules = world
    with store.transaction() as connection:  # what group writeback leaves: a provisioned object, written by sync
        connection.execute(sa.update(link).where(link.c.connector == "ad").values(link_type="provision"))
    assert [space.connector for space in unconfigured_spaces(store, ["ad_fabrikam", "entra"])] == []


def test_a_drop_is_refused_without_its_exact_count_and_changes_nothing(world):
    store, rules = world
    before = (mv_rows(store), links(store), exports(store), watermarks(store))
    refusals = {
        None: "holds 4 objects feeding 4 objects of 'entra': give --confirm-drop 4",
        3: "the confirmation names 3, but connector space 'ad_fabrikam' holds 4 objects",
    }
    for confirm, message in refusals.items():
        with pytest.raises(DropRefused, match=message):
            drop_connector_space(store, rules, "ad_fabrikam", confirm_drop=confirm)
    with pytest.raises(DropRefused, match="the connectors configuration still names 'ad_fabrikam'"):
        drop_connector_space(store, rules, "ad_fabrikam", confirm_drop=4, configured=["ad_fabrikam", "entra"])
    with pytest.raises(DropRefused, match="'entra' is not an AD connector"):
        drop_connector_space(store, rules, "entra", confirm_drop=5)
    with pytest.raises(DropRefused, match=r"no connector space .ad_contoso. in the store \(connectors: ad, ad_fab"):
        drop_connector_space(store, rules, "ad_contoso", confirm_drop=0)
    assert (mv_rows(store), links(store), exports(store), watermarks(store)) == before
    assert cs_count(store, "ad_fabrikam") == 4 and store.list_runs(limit=1)[0]["profile"] == "full-sync"


def test_a_confirmed_drop_deprovisions_what_only_it_fed_and_leaves_the_other_forest_alone(world):
    store, rules = world
    corp_links = links(store, "ad")
    corp_ids = {mv_id for mv_id, _ in corp_links.values()}
    corp_mv = {mv_id: row for mv_id, row in mv_rows(store).items() if mv_id in corp_ids}
    staged_before = exports(store)
    assert any("Fab" in str(row["changes"].get("displayName")) for row in staged_before.values())

    result = drop_connector_space(store, rules, "ad_fabrikam", confirm_drop=4)

    assert result.result == "success" and result.connector == "ad_fabrikam"
    assert result.counters["disconnections"] == 4 and result.counters["metaverse_deletes"] == 4
    # The space, its links, its metaverse objects and its watermark are gone; nothing is left to report.
    assert cs_count(store, "ad_fabrikam") == 0 and links(store, "ad_fabrikam") == {}
    assert watermarks(store) == {"ad"}
    assert unconfigured_spaces(store, ["ad", "entra"]) == []
    assert not any("fab11" in attrs.get("accountName", []) for attrs in metaverse(store).values())
    # The cloud accounts it fed are deleted by the next export; its group's create is withdrawn.
    staged = exports(store)
    assert {anchor: row["operation"] for anchor, row in staged.items() if row["operation"] == "delete"} == {
        "cloud-11": "delete", "cloud-12": "delete", "cloud-13": "delete",
    }  # fmt: skip
    assert not any("Fab" in str(row["changes"].get("displayName")) for row in staged.values())
    # The other forest: its objects, links, metaverse rows and staged exports are as they were.
    assert cs_count(store, "ad") == 3 and links(store, "ad") == corp_links
    assert {mv_id: row for mv_id, row in mv_rows(store).items() if mv_id in corp_ids} == corp_mv
    assert {a: r for a, r in staged.items() if r["operation"] != "delete"} == {
        a: r for a, r in staged_before.items() if "Fab" not in str(r["changes"].get("displayName"))
    }


def test_the_deprovisioning_goes_through_the_deletion_threshold(world):
    store, rules = world
    drop_connector_space(store, rules, "ad_fabrikam", confirm_drop=4)
    writer = RecordingExporter()
    stopped = run_export(store, connector="entra", settings=ExportSettings(deletion_threshold=2), plan=dict,
                         exporter=lambda _run_id: writer, command="export-entra")  # fmt: skip
    assert stopped.result == "stopped-deletion-threshold-exceeded" and not writer.ran
    assert "3 deletes are pending" in stopped.detail
