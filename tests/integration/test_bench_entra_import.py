"""`aadsync-dev bench entra-import` at toy scale: the benchmark runs end to end and measures what it says."""

from __future__ import annotations

import pytest

from aadsync_devkit.bench.runner import bench_entra_import, render_entra

pytestmark = pytest.mark.integration


def test_entra_import_benchmark_at_toy_scale(tmp_path):
    results = bench_entra_import(300, 5, tmp_path, latencies_ms=[20])

    assert results["full_objects"] == 305 and results["httpx_items"] == 305
    assert results["insert_rows"] == 305 + 5 * 20  # objects and member references
    assert results["full_graph_requests"] >= 3  # at least the 3 delta pages (2 of users, 1 of groups)
    [delayed] = results["latencies"]
    # every Graph request of the floor waited 20 ms more: at least one per page
    assert delayed["milliseconds"] == 20 and delayed["httpx_seconds"] >= 0.02 * 3
    assert delayed["httpx_seconds"] > results["httpx_seconds"]
    text = render_entra(results)
    assert "with 20 ms added to every Graph request: full import" in text
