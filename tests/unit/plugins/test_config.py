"""Where the sync manager finds the store and the rules: the DAGs' Variables and the store connection, read in the
api-server through Airflow's own lookups (here from ``AIRFLOW_VAR_*`` / ``AIRFLOW_CONN_*``, which come first)."""

from __future__ import annotations

import json

import pytest

from airflow_provider_aadsync.dag_settings import instance_variable
from airflow_provider_aadsync.plugins.config import ManagerConfig, Resources, config_from_airflow

VARIABLES = (
    "aadsync_store_conn_id",
    "aadsync_store_url",
    "aadsync_instance",
    "aadsync_rules_path",
    "aadsync_writeback_enabled",
    "aadsync_writeback_size_limit",
    "aadsync_writeback_ou",
    "aadsync_writeback_naming",
    "aadsync_block_soft_match",
    "aadsync_block_cloud_object_takeover",
    "aadsync_directory_extensions",
    "aadsync_consistency_guid_writeback",
    "aadsync_connectors_file",
)


@pytest.fixture
def variables(monkeypatch):
    """Every Variable the sync manager reads, empty (the DAGs' defaults), so no lookup reaches a metadata DB."""
    for name in VARIABLES:
        monkeypatch.setenv(f"AIRFLOW_VAR_{name.upper()}", "")

    def set_variable(name: str, value: str) -> None:
        monkeypatch.setenv(f"AIRFLOW_VAR_{name.upper()}", value)

    return set_variable


def test_defaults_are_the_embedded_store_of_the_default_instance_and_the_shipped_rules(variables):
    config = config_from_airflow()
    assert config == ManagerConfig(
        store_url=None,
        instance="default",
        rules="",
        writeback=(
            ("writeback_enabled", ""),
            ("writeback_size_limit", ""),
            ("writeback_ou", ""),
            ("writeback_naming", ""),
        ),
        settings=(
            ("block_soft_match", ""),
            ("block_cloud_object_takeover", ""),
            ("directory_extensions", ""),
            ("consistency_guid_writeback", ""),
        ),
    )
    assert len(Resources(lambda: config).rules().rules) >= 4  # the shipped rules, writeback off


def test_the_rules_are_those_the_sync_tasks_use(variables):
    """The preview shows what the sync tasks would do: with soft match blocked for them, the manager's rules do not
    join on userPrincipalName or mail either."""

    def join_targets(resources: Resources) -> set[str]:
        return {
            pair[1].lower()
            for compiled in resources.rules().rules
            if compiled.rule.direction == "inbound"
            for group in compiled.join_groups
            for pair in group
        }

    assert {"userprincipalname", "primarysmtpaddress"} <= join_targets(Resources(config_from_airflow))
    variables("aadsync_block_soft_match", "true")
    assert not {"userprincipalname", "primarysmtpaddress"} & join_targets(Resources(config_from_airflow))


def test_the_store_connection_gives_the_url_with_its_password(variables, monkeypatch):
    variables("aadsync_store_conn_id", "aadsync_store")
    variables("aadsync_instance", "eu")
    monkeypatch.setenv(
        "AIRFLOW_CONN_AADSYNC_STORE",
        json.dumps({"conn_type": "postgres", "host": "db.example", "login": "sync", "password": "s3cret-pw",
                    "schema": "aadsync", "extra": {"sslmode": "require"}}),
    )  # fmt: skip
    config = config_from_airflow()
    assert config.store_url == "postgresql+psycopg2://sync:s3cret-pw@db.example/aadsync?sslmode=require"
    assert config.instance == "eu"


def test_a_store_url_and_a_store_connection_together_are_refused(variables):
    variables("aadsync_store_conn_id", "aadsync_store")
    variables("aadsync_store_url", "sqlite:////tmp/x.sqlite")
    with pytest.raises(ValueError, match="keep one"):
        config_from_airflow()


def test_writeback_on_without_an_ou_is_a_clear_rules_error(variables, tmp_path):
    variables("aadsync_writeback_enabled", "true")
    variables("aadsync_store_url", f"sqlite:///{tmp_path / 'store.sqlite'}")
    resources = Resources(config_from_airflow)
    assert resources.config().store_url == f"sqlite:///{tmp_path / 'store.sqlite'}"
    with pytest.raises(ValueError, match="aadsync_writeback_ou"):
        resources.rules()
    resources.close()


def test_the_connectors_file_is_the_dags_one_and_a_named_instance_reads_only_its_own(variables, tmp_path):
    """The DAGs are built from the connectors file of their instance (a named instance's own Variable only, never
    the shared one): the manager checks the connector spaces against the same file."""
    shared, emea = tmp_path / "shared.yaml", tmp_path / "emea.yaml"
    shared.write_text("ad:\n  - name: ad_corp\n    conn_id: aadsync_corp\n", encoding="utf-8")
    emea.write_text("ad:\n  - name: ad_emea\n    conn_id: aadsync_e\nentra:\n  name: tenant_emea\n", encoding="utf-8")
    for name in VARIABLES:  # the instance's own Variables, empty: its lookups stop at the environment
        variables(instance_variable(name, "emea"), "")
    variables("aadsync_connectors_file", str(shared))
    resources = Resources(config_from_airflow)
    assert config_from_airflow().connectors_file == str(shared)
    assert resources.connectors().connector_names() == ["ad_corp", "entra"]
    assert config_from_airflow("emea").connectors_file == ""  # not the shared file
    assert resources.connectors("emea").connector_names() == ["ad", "entra"]  # as the DAGs: the one connector ad
    variables(instance_variable("aadsync_connectors_file", "emea"), str(emea))
    assert Resources(config_from_airflow).connectors("emea").connector_names() == ["ad_emea", "tenant_emea"]
