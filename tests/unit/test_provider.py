"""Airflow discovers the provider, its hook and its connection form through the entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_aadsync import get_provider_info

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow-home")
    return {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}


def airflow(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def test_provider_info_names_the_distribution():
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-aadsync"
    ad, entra = info["connection-types"]
    assert ad["connection-type"] == "aadsync_ad"
    assert ad["hook-class-name"] == "airflow_provider_aadsync.hooks.active_directory.ActiveDirectoryHook"
    assert {"base_dn", "tls", "ca_cert", "page_size", "attributes"} <= set(ad["conn-fields"])
    assert entra["connection-type"] == "aadsync_entra"
    assert entra["hook-class-name"] == "airflow_provider_aadsync.hooks.entra.EntraHook"
    assert entra["conn-fields"]["cloud"]["schema"]["enum"] == ["global", "china", "usgov", "usgov-dod"]


def test_the_entra_retry_fields_name_the_settings_defaults():
    """The form leaves an empty retry field out of the extras, so the default it names must be the model's."""
    from airflow_provider_aadsync.hooks.entra_settings import EntraConnectionSettings

    (entra,) = [t for t in get_provider_info()["connection-types"] if t["connection-type"] == "aadsync_entra"]
    for name in ("timeout", "max_attempts", "max_retry_wait", "max_throttle_wait"):
        field = entra["conn-fields"][name]
        default = EntraConnectionSettings.model_fields[name].default
        assert "default" not in field["schema"] and field["description"].endswith(f"(empty: {default:g})"), name


def test_airflow_lists_the_provider(airflow_env):
    providers = json.loads(airflow(airflow_env, "providers", "list", "-o", "json"))
    assert {"package_name": "airflow-provider-aadsync"}.items() <= next(
        p for p in providers if p["package_name"] == "airflow-provider-aadsync"
    ).items()


def test_airflow_lists_the_hook_and_its_form_fields(airflow_env):
    hooks = json.loads(airflow(airflow_env, "providers", "hooks", "-o", "json"))
    by_type = {h["connection_type"]: h for h in hooks}
    assert by_type["aadsync_ad"]["class"] == "airflow_provider_aadsync.hooks.active_directory.ActiveDirectoryHook"
    assert by_type["aadsync_ad"]["conn_id_attribute_name"] == "ad_conn_id"
    assert by_type["aadsync_entra"]["class"] == "airflow_provider_aadsync.hooks.entra.EntraHook"
    assert by_type["aadsync_entra"]["conn_id_attribute_name"] == "entra_conn_id"
    widgets = airflow(airflow_env, "providers", "widgets", "-o", "json")
    assert "extra__aadsync_ad__base_dn" in widgets and "extra__aadsync_ad__tls" in widgets
    for field in ("tenant_id", "cloud", "authority_host", "graph_url", "ca_bundle", "certificate", "thumbprint"):
        assert f"extra__aadsync_entra__{field}" in widgets


def test_provider_info_lists_the_operator_modules_and_matches_airflows_schema():
    import importlib
    import importlib.resources

    import jsonschema

    info = get_provider_info()
    schema = json.loads((importlib.resources.files("airflow") / "provider_info.schema.json").read_text())
    jsonschema.validate(info, schema)
    integrations = {integration["integration-name"] for integration in info["integrations"]}
    assert {entry["integration-name"] for entry in info["operators"]} <= integrations
    modules = [module for entry in info["operators"] for module in entry["python-modules"]]
    assert {f"airflow_provider_aadsync.operators.{name}" for name in ("sync", "report", "entra_export")} <= set(modules)
    for module in modules:
        importlib.import_module(module)
