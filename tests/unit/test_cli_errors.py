"""The CLI's errors: one clear line on stderr and exit code 1 (``-v``: the traceback), never a secret; and the store
taken from an Airflow connection with --store-conn-id."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from airflow_provider_aadsync.cli import main
from airflow_provider_aadsync.engine.store import Store, owner

SECRET = "Cl1ent-S3cret-for-the-CLI"


@pytest.fixture
def runner():
    return CliRunner()


def test_a_missing_connection_is_one_line_and_exit_1(runner, tmp_path):
    result = runner.invoke(main, ["import-entra", "--conn-id", "no_such_conn", "--store", f"sqlite:///{tmp_path}/s"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: ") and "no_such_conn" in lines[-1] and "-v shows the traceback" in lines[-1]
    assert "Traceback" not in result.stderr


def test_a_bad_extra_is_one_line_naming_the_field_and_no_secret(runner, tmp_path, monkeypatch):
    conn = {"conn_type": "aadsync_entra", "login": "app", "password": SECRET, "extra": {"cloud": "mars"}}
    monkeypatch.setenv("AIRFLOW_CONN_BAD_ENTRA", json.dumps({**conn, "extra": {"tenant_id": "t", "cloud": "mars"}}))
    result = runner.invoke(main, ["import-entra", "--conn-id", "bad_entra", "--store", f"sqlite:///{tmp_path}/s"])
    assert result.exit_code == 1
    assert "connection 'bad_entra' is not usable: cloud:" in result.stderr and "Traceback" not in result.stderr
    assert SECRET not in result.output + result.stderr


def test_the_old_certificate_extra_is_one_line_without_the_key(runner, tmp_path, monkeypatch):
    key = "MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAqPfgaTEWEP3S9w0t"
    conn = {"conn_type": "aadsync_entra", "login": "app", "extra": {"tenant_id": "t", "certificate": key}}
    monkeypatch.setenv("AIRFLOW_CONN_OLD_ENTRA", json.dumps(conn))
    result = runner.invoke(main, ["import-entra", "--conn-id", "old_entra", "--store", f"sqlite:///{tmp_path}/s"])
    assert result.exit_code == 1 and "'certificate' extra is no longer read" in result.stderr
    assert key not in result.output + result.stderr


def test_verbose_shows_the_traceback_scrubbed(runner, tmp_path, monkeypatch):
    from airflow_provider_aadsync.engine import secrets

    secrets.register_secret(SECRET)

    def fail(*args, **kwargs):
        raise OSError(f"could not open {SECRET}")

    monkeypatch.setattr("airflow_provider_aadsync.cli._open_store_to_read", fail)
    plain = runner.invoke(main, ["report"])
    assert plain.exit_code == 1
    assert plain.stderr.strip() == "Error: OSError: could not open *** (-v shows the traceback)"
    verbose = runner.invoke(main, ["-v", "report"])
    assert verbose.exit_code == 1 and "Traceback (most recent call last)" in verbose.stderr
    assert "OSError: could not open ***" in verbose.stderr and SECRET not in verbose.stderr


def test_store_from_an_airflow_connection(runner, tmp_path, monkeypatch):
    store = tmp_path / "from-conn.sqlite"
    monkeypatch.setenv("AIRFLOW_CONN_LOCAL_STORE", json.dumps({"conn_type": "sqlite", "host": str(store)}))
    result = runner.invoke(main, ["report", "--store-conn-id", "local_store"])
    # A command that only reads never creates the store (a mistyped name would leave an empty one behind).
    assert result.exit_code == 1 and "does not exist yet: the first sync step" in result.stderr
    assert not store.exists()
    Store.open(f"sqlite:///{store}").close()  # what the first step does
    result = runner.invoke(main, ["report", "--store-conn-id", "local_store"])
    assert result.exit_code == 0, result.output + result.stderr
    assert "No runs recorded in this store yet" in result.output
    both = runner.invoke(main, ["report", "--store-conn-id", "local_store", "--store", f"sqlite:///{store}"])
    assert both.exit_code == 2 and "give --store or --store-conn-id, not both" in both.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["report"],
        ["status"],
        ["export-plan", "--connector", "entra"],
        ["preview", "--connector", "ad", "--anchor", "a"],
    ],
)
def test_a_reading_command_never_creates_or_claims_a_store(runner, tmp_path, command):
    missing = tmp_path / "typo.sqlite"
    result = runner.invoke(main, [*command, "--store", f"sqlite:///{missing}"])
    assert result.exit_code == 1 and "does not exist yet: the first sync step" in result.stderr
    assert list(tmp_path.iterdir()) == []
    unmarked = Store(f"sqlite:///{tmp_path / 'unmarked.sqlite'}")
    unmarked.migrate()  # a current schema no instance has claimed yet
    runner.invoke(main, [*command, "--store", unmarked.url, "--instance", "emea"])
    assert owner.read_owner(unmarked.engine) is None  # not claimed for the instance named by mistake
    unmarked.close()


def test_verbose_log_lines_are_scrubbed(runner, monkeypatch):
    """``-v`` logs every library's DEBUG lines to stderr, and in a task Airflow's masker hides secrets in them; the
    CLI's own log lines went out as they were, a retried Graph error or a logged traceback quoting a secret too."""
    import logging

    from airflow_provider_aadsync.engine import secrets
    from airflow_provider_aadsync.hooks.entra_settings import GraphError

    secrets.register_secret(SECRET)
    # a process of its own: the CLI's logging.basicConfig installs its stderr handler (pytest's are set aside)
    monkeypatch.setattr(logging.root, "handlers", [])
    monkeypatch.setattr(logging.root, "level", logging.root.level)

    def fail(*args, **kwargs):
        log = logging.getLogger("airflow_provider_aadsync.hooks.entra")
        error = GraphError(503, "serviceUnavailable", f"the proxy said {SECRET}", method="GET", url="/users")
        log.info("retrying %s in %.1f s after %s", "/users", 1.0, error)
        try:
            raise OSError(f"could not open {SECRET}")
        except OSError:
            log.exception("closing the store")
        raise RuntimeError("stopped")

    monkeypatch.setattr("airflow_provider_aadsync.cli._open_store_to_read", fail)
    try:
        result = runner.invoke(main, ["-v", "report"])
    finally:
        secrets.forget_secrets()
    assert result.exit_code == 1
    assert "retrying /users in 1.0 s after GET /users → 503 serviceUnavailable: the proxy said ***" in result.stderr
    assert "closing the store" in result.stderr and "OSError: could not open ***" in result.stderr
    assert SECRET not in result.stderr
