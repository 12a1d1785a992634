"""`aadsync-dev bench export` at toy scale: the benchmark runs end to end and its figures meet the targets."""

from __future__ import annotations

import pytest

from aadsync_devkit.bench.export import bench_export, render_export

pytestmark = pytest.mark.integration


def test_export_benchmark_at_toy_scale(tmp_path):
    results = bench_export(200, 5, 150, 60, 40, 1.0, tmp_path)
    counters = results["initial"]["counters"]
    assert counters["batch_calls"] == counters["batch_calls_minimum"]
    assert counters["user_creates"] == 200 and counters["member_adds"] == 5 * 20 + 150
    assert results["throttled_in_graph"] == 60 and results["throttled_429s"] == 0
    text = render_export(results)
    assert "initial export: $batch calls" in text and "150-member group: member $batch calls" in text
