"""steps.py, the glue the CLI and the operators share: no Airflow in it, typed parameters, defaults defined once."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from airflow_provider_aadsync import steps
from airflow_provider_aadsync.cli import main
from airflow_provider_aadsync.engine.connectors.ad.writer import ADExportSettings
from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings
from airflow_provider_aadsync.engine.runs import defaults
from airflow_provider_aadsync.engine.runs.import_guard import ImportGuard
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.operators.ad_export import ADExportOperator
from airflow_provider_aadsync.operators.base import ModeStepOperator, StoreStepOperator
from airflow_provider_aadsync.operators.entra_export import EntraExportOperator

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ROOT / "airflow_provider_aadsync"

#: Run in a fresh interpreter: report which airflow and operator modules a snippet loaded.
_PROBE = """
import json, sys
{code}
watched = ("airflow.", "airflow_provider_aadsync.operators")
loaded = sorted(m for m in sys.modules if m == "airflow" or m.startswith(watched))
print(json.dumps(loaded))
"""


def loaded_modules(code: str, tmp_path: Path) -> list[str]:
    env = {**os.environ, "AADSYNC_HOME": str(tmp_path / "home"), "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(code=code)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------- no Airflow
def test_importing_steps_loads_no_airflow(tmp_path):
    assert loaded_modules("import airflow_provider_aadsync.steps", tmp_path) == []


def test_the_cli_runs_its_commands_without_operators_or_airflow(tmp_path):
    """``--help`` of a command, a sync of an empty store and an export with writeback off: no airflow module and no
    operator module is loaded (only a command that talks to a directory loads a hook, which reads Airflow's
    connections)."""
    store = tmp_path / "store.sqlite"
    code = f"""
from click.testing import CliRunner
from airflow_provider_aadsync.cli import main
runner = CliRunner()
for args in (["import-entra", "--help"], ["export-entra", "--help"],
             ["sync", "--connector", "entra", "--mode", "full", "--store", "sqlite:///{store}"],
             ["export-ad", "--no-consistency-guid-writeback", "--store", "sqlite:///{store}"]):
    result = runner.invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, (args, result.output)
"""
    assert loaded_modules(code, tmp_path) == []
    with Store.open(f"sqlite:///{store}") as opened:
        assert [run["connector"] for run in opened.list_runs()] == ["entra"]  # the sync really ran


# -------------------------------------------------------------------------------------------- defaults once
def test_the_thresholds_are_written_once(tmp_path):
    """`grep -rn 500 airflow_provider_aadsync dags | grep -i thresh` finds only the constant."""
    hits = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in (PRODUCT, ROOT / "dags")
        for path in sorted(folder.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "500" in line and "thresh" in line.lower()
    ]
    assert hits == ["airflow_provider_aadsync/engine/runs/defaults.py:12"]


def option_defaults(command: str) -> dict[str, object]:
    return {param.name: param.default for param in main.commands[command].params}


def test_cli_operators_settings_and_dags_take_the_same_defaults():
    guards = {
        "deletion_threshold": defaults.DELETION_THRESHOLD,
        "disable_threshold": defaults.DISABLE_THRESHOLD,
        "member_removal_threshold": defaults.MEMBER_REMOVAL_THRESHOLD,
        "member_removal_group_percent": defaults.MEMBER_REMOVAL_GROUP_PERCENT,
    }
    budget = f"{defaults.WRITE_BUDGET}/{defaults.WRITE_WINDOW_SECONDS:g}"
    assert option_defaults("export-entra").items() >= {**guards, "write_budget": budget}.items()
    assert option_defaults("export-ad").items() >= {**guards, "member_chunk": defaults.MEMBER_CHUNK}.items()
    help_text = CliRunner().invoke(main, ["import-ad", "--help"], terminal_width=200).output
    assert f"(default {defaults.IMPORT_DELETION_THRESHOLD})" in help_text
    assert f"(default {defaults.IMPORT_DELETION_SHARE:g})" in help_text
    entra, ad = EntraExportOperator(task_id="e"), ADExportOperator(task_id="a")
    for name, value in guards.items():
        assert getattr(entra, name) == getattr(ad, name) == value
    assert (entra.write_budget, entra.write_window_seconds) == (defaults.WRITE_BUDGET, defaults.WRITE_WINDOW_SECONDS)
    assert ad.member_chunk == defaults.MEMBER_CHUNK
    assert entra.export_settings() == ExportSettings() == steps.entra_export_settings()
    assert ad.export_settings() == ADExportSettings() == steps.ad_export_settings()
    assert (
        ImportGuard()
        == steps.import_guard()
        == ImportGuard(
            deletion_threshold=defaults.IMPORT_DELETION_THRESHOLD, deletion_share=defaults.IMPORT_DELETION_SHARE
        )
    )


def test_the_dags_and_readme_state_the_same_defaults():

    from airflow_provider_aadsync import dag_factory
    from airflow_provider_aadsync import dag_settings as dags

    assert f"get('aadsync_deletion_threshold', {defaults.DELETION_THRESHOLD})" in dags.DELETION_THRESHOLD
    assert f"get('aadsync_disable_threshold', {defaults.DISABLE_THRESHOLD})" in dags.GUARDS["disable_threshold"]
    assert f"else {defaults.DELETION_THRESHOLD}." in dag_factory.common_params()["deletion_threshold"].description
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"| `aadsync_deletion_threshold` | {defaults.DELETION_THRESHOLD} |" in readme
    import_guard = f"| {defaults.IMPORT_DELETION_THRESHOLD}, {defaults.IMPORT_DELETION_SHARE:g} | when a task runs"
    assert import_guard in readme
    assert f"[--write-budget {defaults.WRITE_BUDGET}/{defaults.WRITE_WINDOW_SECONDS:g}]" in readme


# ------------------------------------------------------------------------------------------ typed parameters
def test_steps_take_typed_values_none_meaning_the_default():
    assert steps.guard_settings() == {
        "deletion_threshold": defaults.DELETION_THRESHOLD,
        "disable_threshold": defaults.DISABLE_THRESHOLD,
        "member_removal_threshold": defaults.MEMBER_REMOVAL_THRESHOLD,
        "member_removal_group_percent": defaults.MEMBER_REMOVAL_GROUP_PERCENT,
        "identity_change_threshold": defaults.IDENTITY_CHANGE_THRESHOLD,
        "attribute_clear_threshold": defaults.ATTRIBUTE_CLEAR_THRESHOLD,
        "confirm_mass_change": None,
    }
    assert steps.guard_settings(deletion_threshold=0)["deletion_threshold"] == 0  # 0 is a value, not "unset"
    confirmed = steps.guard_settings(confirm_mass_change=" member_removals = 1204, deletes=812 ")
    assert confirmed["confirm_mass_change"] == "deletes=812,member_removals=1204"  # the fixed form
    with pytest.raises(ValueError, match="'deletes:812' is not name=count"):
        steps.entra_export_settings(confirm_mass_change="deletes:812")
    assert steps.ad_export_settings(confirm_mass_change="disables=3").confirmed == {"disables": 3}
    settings = steps.entra_export_settings(staging=True, write_budget=10, write_window_seconds=1.0)
    assert (settings.staging, settings.write_budget, settings.write_window_seconds) == (True, 10, 1.0)
    assert steps.parse_write_budget("3000/150") == (3000, 150.0)
    assert steps.parse_write_budget("20") == (20, 1.0)
    with pytest.raises(ValueError):
        steps.parse_write_budget("lots/150")
    moved = steps.ad_export_settings(deprovision="move", holding_ou=" OU=Holding,DC=corp,DC=test ", member_chunk=9)
    assert (moved.deprovision, moved.holding_ou, moved.member_chunk) == ("move", "OU=Holding,DC=corp,DC=test", 9)
    assert steps.store_url_or_default("  ") is None and steps.store_url_or_default(" sqlite:///x ") == "sqlite:///x"
    assert steps.rule_paths(" a.yaml, b\nc ,") == ["a.yaml", "b", "c"] and steps.rule_paths(None) == []
    with pytest.raises(ValueError, match="endpoint must be 'v2' or 'v1'"):
        steps.load_rules_for(None, "v3")


def test_airflows_none_rendering_is_read_in_one_place():
    """Only operators/templated.py reads the string "None" (what Airflow renders for an unset value)."""
    readers = sorted(
        str(path.relative_to(ROOT))
        for path in PRODUCT.rglob("*.py")
        if re.search(r"""in \([^)]*["']None["']""", path.read_text(encoding="utf-8"))
    )
    assert readers == ["airflow_provider_aadsync/operators/templated.py"]


def test_writeback_has_no_default_ou_anywhere():
    """The product never defaults to the dev DC's domain: writeback on without an OU is refused, naming the setting."""
    runner = CliRunner()
    result = runner.invoke(main, ["sync", "--connector", "entra", "--writeback", "--store", "sqlite:///:memory:"])
    assert result.exit_code != 0 and "aadsync_writeback_ou" in result.output and "--writeback-ou" in result.output
    assert "no default" in runner.invoke(main, ["sync", "--help"], terminal_width=200).output
    with pytest.raises(ValueError, match="aadsync_writeback_ou"):
        steps.load_rules_for(None, "v2", writeback_enabled=True)
    for path in PRODUCT.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"""(=|default:?)\s*["']OU=[^"']*DC=""", text), path  # no DN as a default value


def test_aadsync_home_is_resolved_once(tmp_path, monkeypatch):
    from aadsync_devkit import paths as devkit_paths
    from airflow_provider_aadsync.engine.paths import aadsync_home
    from airflow_provider_aadsync.engine.store.store import default_store_url

    monkeypatch.setenv("AADSYNC_HOME", str(tmp_path))
    assert aadsync_home() == tmp_path and devkit_paths.aadsync_home is aadsync_home
    assert default_store_url("blue") == f"sqlite:///{tmp_path / 'store' / 'blue.sqlite'}"
    assert devkit_paths.dev_dc_home() == tmp_path / "dev" / "samba"
    readers = [
        p for p in (*PRODUCT.rglob("*.py"), *(ROOT / "devkit").rglob("*.py")) if 'AADSYNC_HOME")' in p.read_text()
    ]
    assert [str(p.relative_to(ROOT)) for p in readers] == ["airflow_provider_aadsync/engine/paths.py"]


# ---------------------------------------------------------------------------------------- operators' shared base
def test_export_operators_share_the_store_step_base_without_mode():
    for operator_class in (EntraExportOperator, ADExportOperator):
        assert issubclass(operator_class, StoreStepOperator) and not issubclass(operator_class, ModeStepOperator)
        assert "mode" not in operator_class.template_fields
        assert operator_class.template_fields[-3:] == ("store_url", "store_conn_id", "instance")
    assert ModeStepOperator.template_fields == ("mode", "store_url", "store_conn_id", "instance")
    assert not hasattr(EntraExportOperator(task_id="e"), "mode")
