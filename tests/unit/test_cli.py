from __future__ import annotations

import json
import shlex

from airflow.sdk import Connection
from click.testing import CliRunner

from aadsync_devkit.cli import main as dev_main
from airflow_provider_aadsync.cli import main
from airflow_provider_aadsync.engine.store import Store


def test_dev_env_prints_an_airflow_json_connection(tmp_path, monkeypatch):
    monkeypatch.setenv("AADSYNC_HOME", str(tmp_path))
    result = CliRunner().invoke(dev_main, ["env"])
    assert result.exit_code == 0, result.output
    exports = dict(line.removeprefix("export ").partition("=")[::2] for line in result.output.strip().splitlines())
    assert set(exports) == {"AIRFLOW_CONN_AADSYNC_AD", "AIRFLOW_CONN_AADSYNC_ENTRA",
                            "AIRFLOW_VAR_AADSYNC_WRITEBACK_ENABLED", "AIRFLOW_VAR_AADSYNC_WRITEBACK_OU",
                            "AIRFLOW_VAR_AADSYNC_WRITE_BUDGET", "AIRFLOW_VAR_AADSYNC_WRITE_WINDOW_SECONDS"}  # fmt: skip
    # the dev world turns group writeback on for itself, into the OU `dev up` creates (the product has no default)
    assert exports["AIRFLOW_VAR_AADSYNC_WRITEBACK_ENABLED"] == "true"
    (ou,) = shlex.split(exports["AIRFLOW_VAR_AADSYNC_WRITEBACK_OU"])
    assert ou == "OU=Writeback,OU=AADSync,DC=corp,DC=example,DC=test"
    ad = Connection.from_json(shlex.split(exports["AIRFLOW_CONN_AADSYNC_AD"])[0], conn_id="aadsync_ad")
    assert ad.conn_type == "aadsync_ad" and ad.host == "127.0.0.1" and ad.port == 636
    assert ad.extra_dejson["tls"] == "ldaps"
    assert ad.extra_dejson["ca_cert"] == str(tmp_path / "dev" / "samba" / "tls" / "ca.pem")
    entra = Connection.from_json(shlex.split(exports["AIRFLOW_CONN_AADSYNC_ENTRA"])[0], conn_id="aadsync_entra")
    assert entra.conn_type == "aadsync_entra" and entra.extra_dejson["graph_url"] == "https://127.0.0.1:8443"
    assert entra.extra_dejson["ca_bundle"] == str(tmp_path / "dev" / "graph" / "tls" / "ca.pem")


def test_dev_env_leaves_out_a_second_forest_that_is_not_running(tmp_path, monkeypatch):
    """A forest provisioned once (`up --forests 2`) and stopped since is not named: the DAGs would get an import task
    that fails after its retries. A comment line (harmless under eval) says why."""
    from aadsync_devkit.world.forests import FORESTS

    monkeypatch.setenv("AADSYNC_HOME", str(tmp_path))
    stopped = FORESTS[1].dc()
    (stopped.home / "private").mkdir(parents=True)
    (stopped.home / "private" / "sam.ldb").write_bytes(b"")
    stopped.tls_files.server_key.parent.mkdir(parents=True, exist_ok=True)
    stopped.tls_files.server_key.write_text("not a key")
    assert stopped.is_provisioned() and not stopped.is_running()
    result = CliRunner().invoke(dev_main, ["env"])
    assert result.exit_code == 0, result.output
    assert "CONNECTORS_FILE" not in result.output and f"CONN_{FORESTS[1].conn_id.upper()}" not in result.output
    assert f"# {FORESTS[1].name}: provisioned, not running: left out" in result.output


def test_dev_status_when_nothing_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("AADSYNC_HOME", str(tmp_path))
    result = CliRunner().invoke(dev_main, ["status"])
    assert result.exit_code == 0
    status = json.loads(result.output)
    assert status["samba"]["running"] is False and status["graph"]["running"] is False


def test_import_ad_needs_a_connection_and_never_falls_back_to_the_dev_dc(tmp_path, monkeypatch):
    monkeypatch.setenv("AADSYNC_HOME", str(tmp_path))
    monkeypatch.delenv("AIRFLOW_CONN_AADSYNC_AD", raising=False)
    result = CliRunner().invoke(main, ["import-ad", "--mode", "full", "--store", f"sqlite:///{tmp_path / 's.sqlite'}"])
    assert result.exit_code == 1 and "aadsync_ad" in result.output, result.output


def test_dev_commands_are_the_dev_kits_and_the_product_names_where_they_went():
    for name, moved in (("dev", "aadsync-dev up"), ("demo", "aadsync-dev demo"), ("bench", "aadsync-dev bench")):
        result = CliRunner().invoke(main, [name])
        assert result.exit_code == 2 and moved in result.output, result.output
    assert {"up", "down", "status", "seed", "env", "demo", "bench", "emulator"} <= set(dev_main.commands)


def test_report_prints_recorded_runs(tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    with Store.open(url) as store:
        run_id = store.start_run("full-import", "ad")
        store.record_errors(run_id, [{"anchor": "a", "dn": "CN=Bad", "code": "undecodable-value", "message": "m"}])
        store.finish_run(run_id, "completed-import-errors", {"adds": 1200, "errors": 1})
    result = CliRunner().invoke(main, ["report", "--store", url])
    assert result.exit_code == 0, result.output
    assert "full-import on `ad` — completed-import-errors" in result.output
    assert "| adds | 1,200 |" in result.output and "| undecodable-value | CN=Bad | m |" in result.output


def test_import_guard_options_are_checked_before_anything_connects(tmp_path, monkeypatch):
    monkeypatch.setenv("AADSYNC_HOME", str(tmp_path))
    for command in ("import-ad", "import-entra"):
        result = CliRunner().invoke(main, [command, "--import-deletion-share", "10"])
        assert result.exit_code == 2 and "share must be more than 0 and at most 1" in result.output
        help_text = CliRunner().invoke(main, [command, "--help"]).output
        assert "--confirm-mass-removal" in help_text and "--import-deletion-threshold" in help_text


def test_group_writeback_is_opt_in_on_the_command_line(tmp_path, monkeypatch):
    monkeypatch.setenv("AADSYNC_HOME", str(tmp_path))
    store = f"sqlite:///{tmp_path / 'store.sqlite'}"
    args = ["export-ad", "--no-consistency-guid-writeback", "--store", store]
    result = CliRunner().invoke(main, args)  # no DC needed: nothing is written
    assert result.exit_code == 0, result.output
    assert "ConsistencyGuid writeback are off: the AD export writes nothing" in result.output
    assert "--writeback" in result.output
    result = CliRunner().invoke(main, ["sync", "--connector", "entra", "--writeback", "--store", store])
    assert result.exit_code == 2 and "no writeback OU is set" in result.output and "--writeback-ou" in result.output


def test_export_guard_flags_reach_the_export_and_a_stop_says_which_flag_confirms_it(tmp_path, monkeypatch):
    import json

    from airflow_provider_aadsync.engine.store import Store
    from tests.support.plans import add_group, stage_removes

    monkeypatch.setenv("AADSYNC_HOME", str(tmp_path))
    monkeypatch.setenv(
        "AIRFLOW_CONN_AADSYNC_ENTRA",  # never reached: a guard stop and a staging run write nothing
        json.dumps({"conn_type": "aadsync_entra", "login": "client", "password": "secret",
                    "extra": {"tenant_id": "00000000-0000-0000-0000-000000000001"}}),
    )  # fmt: skip
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    with Store.open(url) as store:
        add_group(store, "entra", "sales", "Sales", 20, "members")
        stage_removes(store, "entra", "sales", 20, "members")
    stopped = CliRunner().invoke(main, ["export-entra", "--store", url])
    assert stopped.exit_code == 1, stopped.output
    assert "stopped-member-removal-threshold-exceeded" in stopped.output
    assert f"`aadsync export-entra --store {url} --member-removal-group-percent 100`" in stopped.output
    flags = ["--member-removal-group-percent", "100", "--member-removal-threshold", "20", "--disable-threshold", "0"]
    flags += ["--identity-change-threshold", "3", "--attribute-clear-threshold", "4"]
    staged = CliRunner().invoke(main, ["export-entra", "--store", url, "--staging", *flags])
    assert staged.exit_code == 0 and "— staged" in staged.output, staged.output
    assert "member and manager removals 20 of 20 · groups losing more than 100 % of their members 0" in staged.output
    assert "identity changes 0 of 3 · attribute clears 0 of 4" in staged.output
    refused = CliRunner().invoke(main, ["export-ad", "--member-removal-group-percent", "101"])
    assert refused.exit_code == 2 and "0<=x<=100" in refused.output

    # the exact counts the stop names confirm it for one run; a count that differs stops again
    assert f"`aadsync export-entra --store {url} --confirm-mass-change member_removals=20`" in stopped.output
    other = CliRunner().invoke(main, ["export-entra", "--store", url, "--confirm-mass-change", "member_removals=19"])
    assert other.exit_code == 1 and "This run confirmed member_removals=19, but 20 are pending now" in other.output
    args = ["export-entra", "--store", url, "--staging", "--confirm-mass-change", "member_removals=20"]
    confirmed = CliRunner().invoke(main, args)
    assert confirmed.exit_code == 0 and "— staged" in confirmed.output, confirmed.output
    assert "mass change confirmed for this run: member_removals=20" in confirmed.output
    assert "groups losing more than 50 % of their members 1 (exceeded, confirmed)" in confirmed.output
    for command in ("export-entra", "export-ad"):
        malformed = CliRunner().invoke(main, [command, "--confirm-mass-change", "20"])
        assert malformed.exit_code == 2 and "a number alone does not say which guard" in malformed.output


def test_a_stop_of_a_named_instance_on_a_connection_store_gives_a_command_that_opens_that_store(tmp_path, monkeypatch):
    """The advice of a stop names the store's Airflow connection: without it, the command run as given would open the
    instance's embedded SQLite store and confirm nothing there."""
    from tests.support.plans import add_group, stage_removes

    monkeypatch.setenv("AADSYNC_HOME", str(tmp_path))
    path = tmp_path / "stores" / "emea.sqlite"
    path.parent.mkdir()
    monkeypatch.setenv("AIRFLOW_CONN_AADSYNC_STORE_EMEA", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    monkeypatch.setenv(
        "AIRFLOW_CONN_AADSYNC_ENTRA",  # never reached: a guard stop and a staging run write nothing
        json.dumps({"conn_type": "aadsync_entra", "login": "client", "password": "secret",
                    "extra": {"tenant_id": "00000000-0000-0000-0000-000000000001"}}),
    )  # fmt: skip
    with Store.open(f"sqlite:///{path}", instance="emea") as store:
        add_group(store, "entra", "sales", "Sales", 20, "members")
        stage_removes(store, "entra", "sales", 20, "members")
    stopped = CliRunner().invoke(main, ["export-entra", "--instance", "emea", "--store-conn-id", "aadsync_store_emea"])
    assert stopped.exit_code == 1, stopped.output
    advice = "`aadsync export-entra --instance emea --store-conn-id aadsync_store_emea --confirm-mass-change "
    assert advice + "member_removals=20`" in stopped.output
    command = shlex.split(advice.strip("`") + "member_removals=20")[1:]
    confirmed = CliRunner().invoke(main, [*command, "--staging"])
    assert confirmed.exit_code == 0 and "— staged" in confirmed.output, confirmed.output
    assert "mass change confirmed for this run: member_removals=20" in confirmed.output
    assert not (tmp_path / "store" / "emea.sqlite").exists()  # the instance's embedded store was never opened
