"""The sync benchmark at toy scale: every phase runs and counts what it should (figures belong to bench/ runs)."""

from __future__ import annotations

import pytest

from aadsync_devkit.bench.sync import bench_sync, department_changes, directory
from aadsync_devkit.bench.sync_report import render_sync


class TestDirectory:
    def test_directory_when_a_big_group_is_asked_streams_users_groups_then_the_big_group(self):
        objects = list(directory(users=50, groups=3, group_size=40))
        assert [obj.object_type for obj in objects] == ["user"] * 50 + ["group"] * 4
        assert len({obj.anchor for obj in objects}) == 54
        assert [len(obj.references["member"]) for obj in objects[50:]] == [20, 20, 20, 40]
        user = objects[0].attrs
        assert len(user["proxyAddresses"]) == 2 and "mS-DS-ConsistencyGuid" in user
        assert "mS-DS-ConsistencyGuid" not in objects[1].attrs

    def test_department_changes_are_partial_objects_spread_over_the_users(self):
        changes = department_changes(users=100, changes=4)
        assert all(change.partial and list(change.attrs) == ["department"] for change in changes)
        assert len({change.anchor for change in changes}) == 4


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return bench_sync(
        users=300,
        groups=10,
        group_size=120,
        changes=5,
        home=tmp_path_factory.mktemp("bench"),
        member_changes=30,
        member_limit=150,
    )


class TestBenchSync:
    def test_full_sync_projects_everything_and_stages_the_adds(self, results):
        counters = results["full"]["counters"]
        assert results["full"]["result"] == "success"
        assert counters["projections"] == counters["export_adds_staged"] == 300 + 10 + 1
        assert counters["export_reference_adds_staged"] == 10 * 20 + 120
        assert results["full"]["peak_rss"] > 0 and results["full"]["seconds"] > 0

    def test_full_sync_again_skips_every_object_and_stages_nothing(self, results):
        counters = results["full_again"]["counters"]
        assert not any(value for name, value in counters.items() if "staged" in name)
        assert counters["objects_unchanged"] == 300 + 10 + 1  # the sync memo: nothing changed since the first
        reevaluated = results["full_reevaluated"]["counters"]
        assert reevaluated.get("objects_unchanged", 0) == 0 and reevaluated["objects_evaluated"] == 300 + 10 + 1
        assert not any(value for name, value in reevaluated.items() if "staged" in name)

    def test_delta_sync_evaluates_only_the_changed_users(self, results):
        assert results["delta"]["mode"] == "delta"
        assert results["delta"]["counters"]["objects_evaluated"] == 5

    def test_member_swap_of_the_confirmed_big_group_stages_adds_and_removes(self, results):
        counters = results["big_group_delta"]["counters"]
        assert counters["objects_evaluated"] == 1
        assert counters["export_reference_adds_staged"] == counters["export_reference_removes_staged"] == 30
        assert counters["export_adds_staged"] == 0  # the group exists in Entra now: an update row carries the members

    def test_group_over_the_member_limit_is_a_flow_error_and_the_one_at_the_limit_is_staged(self, results):
        run = results["limit_delta"]
        assert run["result"] == "completed-sync-errors"
        assert [error["code"] for error in run["errors"]] == ["flow-error"]
        assert "Maximum member count exceeded: more than 150 members" in run["errors"][0]["message"]
        assert run["counters"]["export_adds_staged"] == 1
        assert run["counters"]["export_reference_adds_staged"] == 150

    def test_the_store_floor_writes_the_rows_the_full_sync_added(self, results):
        """Every row the full sync added, by table (the metaverse, links, pending exports …), written again alone."""
        floor = results["store_floor"]
        tables = {name: figures["rows"] for name, figures in floor["tables"].items()}
        assert tables["mv_object"] == tables["sync_memo"] == 300 + 10 + 1
        assert tables["link"] == 2 * (300 + 10 + 1)  # the AD objects' and the provisional Entra objects'
        assert tables["cs_object"] == 300 + 10 + 1  # the provisional Entra objects
        staged = results["full"]["counters"]
        assert tables["pending_export"] == staged["export_adds_staged"] + staged["export_updates_staged"]
        assert tables["pending_export_reference"] == 10 * 20 + 120
        assert floor["rows"] == sum(tables.values()) and floor["changed_rows"] >= 300  # pending imports cleared
        assert 0 < floor["commit_seconds"] < floor["seconds"]

    def test_render_sync_prints_figures_with_targets_and_ratios(self, results):
        text = render_sync(results)
        assert "| figure | value | floor / target | ratio |" in text
        assert "≥ 100,000 objects/s" in text and "of full" in text and "flow-error" in text
        assert "≤ 10 s at 100k + 5k" in text and "≤ 5 s at 100k + 5k" in text and "(sync memo)" in text
        assert "the store's write floor" in text and "× floor" in text
