"""The README's main command: `aadsync demo` imports and synchronizes the local AD and prints the report."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from airflow_provider_aadsync.cli import main
from airflow_provider_aadsync.devenv.paths import fixture_cache_dir

pytestmark = pytest.mark.integration


def test_demo_runs_imports_and_syncs_and_prints_the_export_plan(tmp_path, monkeypatch):
    monkeypatch.setenv("AADSYNC_FIXTURE_CACHE", str(fixture_cache_dir()))  # reuse the cached seeded directories
    monkeypatch.setenv("AADSYNC_HOME", str(tmp_path))
    result = CliRunner().invoke(main, ["demo", "--users", "1600", "--groups", "20", "--group-size", "1501"])
    assert result.exit_code == 0, result.output
    for heading in (
        "full-import on `ad` — success",
        "full-sync on `ad` — success",
        "delta-import on `ad` — success",
        "delta-sync on `ad` — success",
        "## Pending exports",
    ):
        assert heading in result.output
    assert "| entra | add | user | pending |" in result.output
    assert "| entra | reference add | members | pending |" in result.output
