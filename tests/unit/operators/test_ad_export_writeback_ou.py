"""A group writeback OU outside the AD connection's base DN stops the AD export before its first write, at the step
(``export_to_ad``), in the operator (a refused configuration, not retried) and on the command line; the plan the sync
staged stays as it was. Inside the base DN, the same plan is written."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException
from click.testing import CliRunner

from airflow_provider_aadsync.cli import main
from airflow_provider_aadsync.engine.connectors.config import ADConnectorConfig, PartitionConfig
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync.settings import WritebackSettingsError
from airflow_provider_aadsync.operators.ad_export import ADExportOperator
from airflow_provider_aadsync.steps import ad_export_settings, export_to_ad
from tests.support.fakes import FakeLdapWriter
from tests.support.plans import open_plan
from tests.support.writeback import sync_a_written_back_group

BASE = "DC=corp,DC=example"
OUTSIDE = "OU=Writeback,DC=notcorp,DC=example"  # a typo: its text ends like the base DN, it is not under it
CLOUD_ID = "5a1e5000-0000-4000-8000-00000000c0de"


class ConnectedDirectory(FakeLdapWriter):
    """The in-memory directory behind a connection whose extra holds ``base_dn`` (what export_to_ad reads)."""

    def __init__(self, base_dn: str) -> None:
        super().__init__()
        self.settings = SimpleNamespace(base_dn=base_dn)

    def close(self) -> None:
        pass


@pytest.fixture
def store_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    with Store.open(url, instance="default") as store:
        sync_a_written_back_group(store, ou=OUTSIDE, cloud_id=CLOUD_ID)  # the sync staged the group under OUTSIDE
    return url


def unreachable_dc(monkeypatch) -> None:
    """The connection ``writeback_ad`` to a DC that cannot be reached: an attempt to connect would end in another
    error than the refusal (so the refusal came first)."""
    connection = {"conn_type": "aadsync_ad", "host": "127.0.0.1", "port": 1, "login": "CN=svc,DC=corp,DC=example",
                  "password": "pw", "extra": {"base_dn": BASE, "tls": "ldaps", "connect_timeout": 1}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_WRITEBACK_AD", json.dumps(connection))


def plan_and_runs(store_url: str):
    with Store.open(store_url, instance="default") as store:
        objects, references = open_plan(store, "ad")
        return sorted(row["operation"] for row in objects.values()), references, store.list_runs(limit=10)


def test_export_to_ad_stops_before_any_write_when_the_writeback_ou_is_outside_the_base_dn(store_url):
    before = plan_and_runs(store_url)
    assert before[0] == ["add"] and before[1] == 3  # one group and its three members to write
    ldap = ConnectedDirectory(BASE)
    with Store.open(store_url, instance="default") as store, pytest.raises(WritebackSettingsError) as raised:
        export_to_ad(ldap, store, settings=ad_export_settings(), writeback_ou=OUTSIDE)
    assert f"{OUTSIDE!r} lies outside the AD connection's base DN {BASE!r}" in str(raised.value)
    assert "aadsync_writeback_ou" in str(raised.value)
    assert ldap.calls == [] and ldap.entries == {}
    assert plan_and_runs(store_url) == before  # no export run recorded, the plan kept

    # the same plan through a connection whose base DN holds the OU: written
    wider = ConnectedDirectory("dc=EXAMPLE")
    with Store.open(store_url, instance="default") as store:
        summary = export_to_ad(wider, store, settings=ad_export_settings(), writeback_ou=OUTSIDE)
    assert summary["result"] == "success" and [method for method, _t, _d in wider.calls][:1] == ["add_object"]


def test_with_the_connectors_scope_the_ou_is_checked_against_its_partitions_not_the_base_dn(store_url):
    """The DAGs give the export the connector's scope, as its import gets it: an OU in a partition beside the base
    DN is written; an OU under the base DN that the partitions' OU filter leaves out is refused."""
    beside = [PartitionConfig(dn=BASE), PartitionConfig(dn="DC=notcorp,DC=example")]
    reads_outside = ADConnectorConfig(name="ad", conn_id="writeback_ad", partitions=beside)
    filtered = ADConnectorConfig(
        name="ad", conn_id="writeback_ad",
        partitions=[PartitionConfig(dn="DC=notcorp,DC=example", include_ous=("OU=People,DC=notcorp,DC=example",))],
    )  # fmt: skip
    before = plan_and_runs(store_url)
    ldap = ConnectedDirectory(BASE)
    with Store.open(store_url, instance="default") as store, pytest.raises(WritebackSettingsError) as raised:
        export_to_ad(ldap, store, settings=ad_export_settings(), writeback_ou=OUTSIDE, scope=filtered)
    assert "lies outside what the AD import of connector ad reads" in str(raised.value)
    assert ldap.calls == [] and plan_and_runs(store_url) == before
    with Store.open(store_url, instance="default") as store:
        summary = export_to_ad(ldap, store, settings=ad_export_settings(), writeback_ou=OUTSIDE, scope=reads_outside)
    assert summary["result"] == "success" and [method for method, _t, _d in ldap.calls][:1] == ["add_object"]


def test_the_operator_refuses_it_without_retries_before_opening_ad(store_url, monkeypatch):
    unreachable_dc(monkeypatch)
    before = plan_and_runs(store_url)
    operator = ADExportOperator(
        task_id="export_ad", ad_conn_id="writeback_ad", writeback_enabled="true", writeback_ou=OUTSIDE,
        store_url=store_url,
    )  # fmt: skip
    context = {"dag": type("Dag", (), {"dag_id": "aadsync_cycle"})(), "run_id": "manual__1", "ti": None}
    refused = "AD export: refused configuration, not retried: the group writeback OU"
    with pytest.raises(AirflowFailException, match=refused) as raised:
        operator.execute(context)
    assert f"{OUTSIDE!r} lies outside the AD connection's base DN {BASE!r}" in str(raised.value)
    assert plan_and_runs(store_url) == before
    # writeback on without an OU is refused as the sync refuses it, before the store or AD is opened
    missing = ADExportOperator(task_id="export_ad", writeback_enabled="true", writeback_ou="None", store_url="x://")
    with pytest.raises(AirflowFailException, match="not retried: group writeback is on but no writeback OU is set"):
        missing.execute(context)


def test_the_command_line_refuses_it_before_any_write(store_url, monkeypatch):
    unreachable_dc(monkeypatch)
    before = plan_and_runs(store_url)
    args = ["export-ad", "--conn-id", "writeback_ad", "--writeback", "--store", store_url]
    refused = CliRunner().invoke(main, [*args, "--writeback-ou", OUTSIDE])
    assert refused.exit_code == 1 and f"lies outside the AD connection's base DN {BASE!r}" in refused.output
    assert plan_and_runs(store_url) == before
    missing = CliRunner().invoke(main, args)
    assert missing.exit_code == 2 and "no writeback OU is set" in missing.output
