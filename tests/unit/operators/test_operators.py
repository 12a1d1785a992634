"""The operators' templated fields, their small parsers, the report file location and the failure hook."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_aadsync.operators.ad_import import ADImportOperator
from airflow_provider_aadsync.operators.callbacks import on_task_failure
from airflow_provider_aadsync.operators.entra_export import EntraExportOperator
from airflow_provider_aadsync.operators.entra_import import EntraImportOperator
from airflow_provider_aadsync.operators.report import SyncReportOperator, report_path
from airflow_provider_aadsync.operators.sync import (
    CyclePreviewBranchOperator,
    SyncOperator,
    SyncPreviewOperator,
    preview_requested,
)
from airflow_provider_aadsync.operators.templated import templated_flag, templated_float, templated_int, templated_value
from airflow_provider_aadsync.steps import rule_paths

OPERATORS = [
    ADImportOperator(task_id="import_ad"),
    EntraImportOperator(task_id="import_entra"),
    SyncOperator(task_id="sync_ad", connector="ad"),
    EntraExportOperator(task_id="export_entra"),
    SyncReportOperator(task_id="report"),
    SyncPreviewOperator(task_id="preview"),
    CyclePreviewBranchOperator(task_id="choose", preview_task_id="preview", cycle_task_id="import_ad"),
]


@pytest.mark.parametrize("operator", OPERATORS, ids=lambda operator: type(operator).__name__)
def test_template_fields(operator):
    for name in operator.template_fields:
        getattr(operator, name)
    assert "store_url" in operator.template_fields or isinstance(operator, CyclePreviewBranchOperator)


def test_sync_operator_templates_mode_rules_and_endpoint():
    assert {"mode", "rules", "endpoint", "store_url", "instance"} <= set(SyncOperator.template_fields)
    assert {"staging", "deletion_threshold", "entra_conn_id"} <= set(EntraExportOperator.template_fields)


@pytest.mark.parametrize(
    ("rules", "paths"),
    [
        (None, []),
        ("", []),
        ("  ", []),
        ("/etc/aadsync/rules", ["/etc/aadsync/rules"]),
        ("/a.yaml, /b\n/c/", ["/a.yaml", "/b", "/c/"]),
        (["/a.yaml", " ", "/b"], ["/a.yaml", "/b"]),
    ],
)
def test_rule_paths_when_given_as_list_or_templated_string(rules, paths):
    assert rule_paths(rules) == paths


@pytest.mark.parametrize(
    ("dn", "anchor", "requested"),
    [(None, None, False), ("", "", False), ("None", "None", False), ("CN=x", "", True), ("", "abc", True)],
)
def test_preview_requested_when_params_render_empty_or_none(dn, anchor, requested):
    assert preview_requested(dn, anchor) is requested


def test_report_path_when_run_id_has_unsafe_characters(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    path = report_path("aadsync_cycle", "manual__2026-01-01T00:00:00+00:00/../x")
    assert path == tmp_path / "aadsync" / "reports" / "aadsync_cycle" / "manual__2026-01-01T00:00:00+00:00_.._x.md"
    assert report_path("d", "r", tmp_path / "elsewhere") == tmp_path / "elsewhere" / "d" / "r.md"
    assert report_path("d", "r", " ").parent.parent == tmp_path / "aadsync" / "reports"


class _TaskInstance:
    dag_id, task_id = "aadsync_cycle", "export_entra"


def test_failure_hook_logs_and_runs_nothing_a_variable_names(monkeypatch, caplog):
    """A Variable naming a callable would let anyone who may edit Variables run code in the worker: not read."""
    monkeypatch.setenv("AIRFLOW_VAR_AADSYNC_ON_FAILURE_CALLBACK", "os.abort")
    with caplog.at_level(logging.ERROR):
        on_task_failure({"ti": _TaskInstance(), "run_id": "r1", "exception": RuntimeError("boom")})
    assert "AADSync task aadsync_cycle.export_entra (run r1) failed: boom" in caplog.text


def test_templated_parameters_treat_empty_and_none_renderings_as_unset():
    assert [templated_value(v) for v in (None, "", "  ", "None", " CN=x ", 0)] == [None, None, None, None, "CN=x", "0"]
    assert [templated_flag(v) for v in (True, "true", " Yes ", "1", False, "False", "None", "", None)] == [
        True, True, True, True, False, False, False, False, False
    ]  # fmt: skip
    assert [templated_int(v, 500) for v in (None, "", "None", "0", " 1200 ", 7)] == [500, 500, 500, 0, 1200, 7]
    assert [templated_int(v) for v in (None, "None", "3")] == [None, None, 3]
    assert [templated_float(v) for v in ("", "None", "0.5", 2)] == [None, None, 0.5, 2.0]


@pytest.mark.parametrize("operator_class", [ADImportOperator, EntraImportOperator])
def test_import_operators_build_the_import_guard_from_rendered_params(operator_class):
    from airflow_provider_aadsync.engine.runs.import_guard import ImportGuard

    operator = operator_class(task_id="import")
    assert {"confirm_mass_removal", "import_deletion_threshold", "import_deletion_share"} <= set(
        operator.template_fields
    )
    assert operator.import_guard() == ImportGuard()
    operator.confirm_mass_removal, operator.import_deletion_threshold, operator.import_deletion_share = (
        "1200",
        "2000",
        "None",
    )
    assert operator.import_guard() == ImportGuard(deletion_threshold=2000, confirm_mass_removal=1200)
    # what Airflow renders for unset params and Variables means the defaults (read here, never in the engine)
    operator.confirm_mass_removal, operator.import_deletion_threshold, operator.import_deletion_share = (
        "None",
        "None",
        "",
    )
    assert operator.import_guard() == ImportGuard()
    operator.confirm_mass_removal, operator.import_deletion_threshold, operator.import_deletion_share = "1", "42", "0.5"
    assert operator.import_guard() == ImportGuard(deletion_threshold=42, deletion_share=0.5, confirm_mass_removal=1)
    operator.confirm_mass_removal, operator.import_deletion_share = "False", ""  # an older DAG's default
    assert operator.import_guard().confirm_mass_removal is None
    # a yes from an older DAG run (cleared, or its conf copied) confirms no particular removal: refused
    operator.confirm_mass_removal = "1200.0"  # Airflow's Param validation takes it as an integer
    assert operator.import_guard().confirm_mass_removal == 1200
    for refused in ("True", "1.5", "all"):
        operator.confirm_mass_removal = refused
        with pytest.raises(ValueError, match=f"confirm_mass_removal '{refused}': the whole number of deletes"):
            operator.import_guard()
    operator.confirm_mass_removal = None
    operator.import_deletion_share = "10"
    with pytest.raises(ValueError, match="share must be more than 0 and at most 1"):
        operator.import_guard()
    operator.import_deletion_threshold, operator.import_deletion_share = "many", ""
    with pytest.raises(ValueError, match="a whole number and a share"):
        operator.import_guard()
