"""Reports saved through Airflow's object storage (issue 18, point 5): a local folder stays owner-only, any fsspec
URL (here fsspec's memory filesystem) is written as an object every worker can read."""

from __future__ import annotations

import stat
from pathlib import Path
from types import SimpleNamespace

from airflow.sdk import ObjectStoragePath

from airflow_provider_aadsync.operators.report import report_location, save_report

CONTEXT = {"dag": SimpleNamespace(dag_id="aadsync_cycle"), "run_id": "manual__2026-01-01T00:00:00+00:00"}


def test_a_file_url_is_a_local_owner_only_report(tmp_path, monkeypatch):
    monkeypatch.setattr("os.umask", lambda mask: 0)
    path = save_report("# report", CONTEXT, f"file://{tmp_path / 'reports'}")
    assert isinstance(path, Path)
    assert path == tmp_path / "reports" / "aadsync_cycle" / "manual__2026-01-01T00:00:00+00:00.md"
    assert path.read_text() == "# report" and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_fsspec_url_is_written_through_object_storage():
    path = save_report("# report in memory", CONTEXT, "memory://aadsync-test/reports/")
    assert isinstance(path, ObjectStoragePath)
    assert str(path) == "memory://aadsync-test/reports/aadsync_cycle/manual__2026-01-01T00:00:00+00:00.md"
    again = ObjectStoragePath("memory://aadsync-test/reports/aadsync_cycle/manual__2026-01-01T00:00:00+00:00.md")
    assert again.read_text() == "# report in memory"
    save_report("# second cycle", {**CONTEXT, "run_id": "scheduled/../x"}, "memory://aadsync-test/reports")
    assert (ObjectStoragePath("memory://aadsync-test/reports/aadsync_cycle") / "scheduled_.._x.md").exists()


def test_an_empty_location_is_the_default_local_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert report_location("d", "r", "  ") == tmp_path / "aadsync" / "reports" / "d" / "r.md"
