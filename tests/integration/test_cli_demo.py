"""The README's main command: `aadsync-dev demo` brings up the local AD and the Graph emulator, runs
`aadsync_full`, makes changes in AD, runs `aadsync_cycle` — both through Airflow itself — and prints the
cycle reports."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from aadsync_devkit.cli import main
from aadsync_devkit.paths import fixture_cache_dir

pytestmark = pytest.mark.integration

USERS, GROUPS, BIG = 1600, 20, 1501


def test_demo_runs_the_full_and_the_delta_cycle_through_airflow_and_prints_the_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("AADSYNC_FIXTURE_CACHE", str(fixture_cache_dir()))  # reuse the cached seeded directories
    monkeypatch.setenv("AADSYNC_HOME", str(tmp_path))
    args = ["demo", "--users", str(USERS), "--groups", str(GROUPS), "--group-size", str(BIG)]
    result = CliRunner().invoke(main, [*args, "--report-file", str(tmp_path / "report.md")])
    assert result.exit_code == 0, result.output
    output = result.stdout
    full, cycle = output.split("# AADSync cycle report: aadsync_cycle / ")
    assert full.startswith("# AADSync cycle report: aadsync_full / manual__")
    exported = f"export on `entra` | success | user creates {USERS:,} · group creates {GROUPS + 1} · member adds"
    for step in ("full-import on `ad` | success", "full-import on `entra` | success", "full-sync on `ad` | success",
                 "full-sync on `entra` | success", exported):  # fmt: skip
        assert step in full, full
    calls, minimum = map(int, re.search(r"\$batch calls (\d+) \(minimum (\d+)\)", full).groups())
    assert minimum <= calls <= 1.05 * minimum
    exported = "export on `entra` | success | user creates 1 · user updates 1 · user deletes 1 · member adds 1"
    for step in ("delta-import on `ad` | success | adds 1 · updates", "delta-import on `entra` | success",
                 "delta-sync on `ad` | success", "delta-sync on `entra` | success", exported):  # fmt: skip
        assert step in cycle, cycle
    assert "Nothing left to export." in cycle
    # the dev world turns group writeback on for itself: the demo's Microsoft 365 group is written back to AD
    # the new hire's objectGUID written into its mS-DS-ConsistencyGuid (ConsistencyGuid writeback) is the user update
    assert "export on `ad` | success | group adds 1 · user updates 1 · member adds 3" in cycle, cycle
    assert "export_ad | | | skipped" not in full
    assert (tmp_path / "report.md").read_text() + "\n" == output
    reports = tmp_path / "airflow" / "aadsync" / "reports"
    assert [len(list((reports / dag_id).glob("*.md"))) for dag_id in ("aadsync_full", "aadsync_cycle")] == [1, 1]
