"""The sync benchmark on a PostgreSQL store (``bench/run sync --postgres``), at toy scale: every phase runs on a
throw-away local server and counts what it counts on SQLite (figures belong to bench/ runs)."""

from __future__ import annotations

import pytest

from aadsync_devkit.bench.sync import bench_sync
from aadsync_devkit.bench.sync_report import render_sync

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_the_sync_benchmark_runs_on_postgresql_and_counts_as_on_sqlite(tmp_path):
    results = bench_sync(users=200, groups=5, group_size=0, changes=4, home=tmp_path, member_limit=150, postgres=True)
    assert results["store"] == "postgresql"
    full = results["full"]["counters"]
    assert results["full"]["result"] == "success"
    assert full["projections"] == full["export_adds_staged"] == 200 + 5
    assert full["export_reference_adds_staged"] == 5 * 20
    assert results["full_again"]["counters"]["objects_unchanged"] == 200 + 5  # the sync memo, on PostgreSQL
    assert results["delta"]["counters"]["objects_evaluated"] == 4
    assert "postgresql store" in render_sync(results).splitlines()[0]
