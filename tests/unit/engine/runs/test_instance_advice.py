"""The CLI options a guard's advice gives to open the store the stopped run was on (instance_advice.cli_store)."""

from __future__ import annotations

from airflow_provider_aadsync.engine.runs.instance_advice import cli_instance, cli_store
from airflow_provider_aadsync.engine.store import default_store_url
from airflow_provider_aadsync.engine.store.urls import remember_connection


def test_the_embedded_store_of_the_instance_needs_no_option(tmp_path, monkeypatch):
    monkeypatch.setenv("AADSYNC_HOME", str(tmp_path))
    assert cli_store(default_store_url("emea"), "emea") == ""
    assert cli_instance("emea", cli_store(default_store_url("emea"), "emea")) == "--instance emea "
    assert cli_instance("default", cli_store(default_store_url(), "default")) == ""


def test_another_store_is_named_by_its_connection_or_its_url_never_its_password(tmp_path, monkeypatch):
    monkeypatch.setenv("AADSYNC_HOME", str(tmp_path))
    # the default instance's store given elsewhere: following the advice without --store opens another store
    other = f"sqlite:///{tmp_path / 'shared store.sqlite'}"
    assert cli_store(other, "default") == f"--store 'sqlite:///{tmp_path / 'shared store.sqlite'}' "
    secret = "postgresql+psycopg2://sync:s3cret-pw@db.example.test/aadsync_emea"
    assert cli_store(secret, "emea") == "--store-conn-id STORE_CONNECTION "
    in_query = "postgresql+psycopg2://sync@db.example.test/aadsync_emea?password=s3cret-pw"
    assert "s3cret-pw" not in cli_store(in_query, "emea")
    remember_connection(secret, "aadsync_store_emea")  # read from that Airflow connection (hooks/store.py)
    assert cli_instance("emea", cli_store(secret, "emea")) == "--instance emea --store-conn-id aadsync_store_emea "
    peer = "postgresql+psycopg2://sync@/aadsync_emea?host=/run/postgresql"
    assert cli_store(peer, "emea") == f"--store '{peer}' "
