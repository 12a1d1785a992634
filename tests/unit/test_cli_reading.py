"""The CLI's polish (issue 18, point 6): --version, the store from the environment, --json on every reading command."""

from __future__ import annotations

import json

from click.testing import CliRunner

from airflow_provider_aadsync import VERSION
from airflow_provider_aadsync.cli import main
from airflow_provider_aadsync.engine.store import Store


def _store_with_a_run(tmp_path) -> tuple[str, int]:
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    with Store.open(url) as store:
        run_id = store.start_run("full-import", "ad")
        store.record_errors(run_id, [{"anchor": "a", "dn": "CN=Bad", "code": "undecodable-value", "message": "m"}])
        store.finish_run(run_id, "completed-import-errors", {"adds": 3, "errors": 1})
    return url, run_id


def test_version_prints_the_package_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"aadsync {VERSION}"


def test_the_store_url_comes_from_the_environment(tmp_path):
    url, _ = _store_with_a_run(tmp_path)
    result = CliRunner().invoke(main, ["report"], env={"AADSYNC_STORE_URL": url})
    assert result.exit_code == 0, result.output
    assert "completed-import-errors" in result.output
    assert "AADSYNC_STORE_URL" in CliRunner().invoke(main, ["report", "--help"]).output


def test_report_json_has_the_runs_with_their_errors(tmp_path):
    url, run_id = _store_with_a_run(tmp_path)
    result = CliRunner().invoke(main, ["report", "--json", "--store", url])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    [found] = document["runs"]
    assert found["id"] == run_id and found["result"] == "completed-import-errors"
    assert found["counters"] == {"adds": 3, "errors": 1} and found["errors_total"] == 1
    assert found["errors"] == [{"anchor": "a", "dn": "CN=Bad", "code": "undecodable-value", "message": "m"}]
    assert found["conflicts"] == []
    assert json.loads(CliRunner().invoke(main, ["report", "--json", "--store", url, "999"]).output)["runs"] == []


def test_export_plan_json_is_the_sync_managers_shape(tmp_path):
    url, _ = _store_with_a_run(tmp_path)
    result = CliRunner().invoke(main, ["export-plan", "--json", "--store", url])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["connector"] == "entra" and document["total"] == 0 and document["operations"] == []
    assert set(document) == {"connector", "counts", "total", "offset", "operations", "open_conflicts"}


def test_every_reading_command_offers_json():
    for command in ("report", "export-plan", "preview", "preflight"):
        assert "--json" in CliRunner().invoke(main, [command, "--help"]).output, command


def test_an_error_is_one_line_with_exit_code_1_and_v_shows_the_traceback(tmp_path):
    bad = ["report", "--store", "notascheme://x"]
    result = CliRunner().invoke(main, bad)
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("Error: ")
    verbose = CliRunner().invoke(main, ["-v", *bad])
    assert verbose.exit_code == 1 and "Traceback" in verbose.stderr
