"""`aadsync store drop-connector`: the deliberate removal of the connector space of an AD connector taken out of the
connectors file, by its exact object count; the next export then deprovisions what only it fed."""

from __future__ import annotations

from click.testing import CliRunner

from airflow_provider_aadsync.cli import main
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.world import ad_user, cloud_twin, cs_count, exports, import_full, links


def seeded(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    with Store.open(url) as store:
        rules = load_sync_rules()
        import_full(store, "ad", [ad_user(1)])
        import_full(store, "ad_fabrikam", [ad_user(11, "fab11"), ad_user(12, "fab12")])
        import_full(store, "entra", [cloud_twin(1), cloud_twin(11, "fab11"), cloud_twin(12, "fab12")])
        for connector in ("ad", "ad_fabrikam", "entra"):
            assert run_sync(store, rules, connector=connector, mode="full").result == "success"
    return url


def test_drop_connector_says_the_count_to_confirm_then_drops_only_that_space(tmp_path):
    url = seeded(tmp_path)
    args = ["store", "drop-connector", "--connector", "ad_fabrikam", "--store", url]
    asked = CliRunner().invoke(main, args)
    assert asked.exit_code == 1
    assert "Not dropped: connector space 'ad_fabrikam' holds 2 objects feeding 2 objects of 'entra'" in asked.output
    assert "give --confirm-drop 2" in asked.output
    wrong = CliRunner().invoke(main, [*args, "--confirm-drop", "3"])
    assert wrong.exit_code == 1 and "the confirmation names 3, but" in wrong.output
    with Store.open(url) as store:
        assert cs_count(store, "ad_fabrikam") == 2 and exports(store) == {}

    config = tmp_path / "connectors.yaml"
    config.write_text("ad:\n  - {name: ad, conn_id: aadsync_ad}\n  - {name: ad_fabrikam, conn_id: aadsync_fab}\n")
    still = CliRunner().invoke(main, [*args, "--confirm-drop", "2", "--connectors-file", str(config)])
    assert still.exit_code == 1 and "the connectors configuration still names 'ad_fabrikam'" in still.output

    config.write_text("ad:\n  - {name: ad, conn_id: aadsync_ad}\n")
    dropped = CliRunner().invoke(main, [*args, "--confirm-drop", "2", "--connectors-file", str(config)])
    assert dropped.exit_code == 0, dropped.output
    assert "delta-sync on `ad_fabrikam` — success" in dropped.output and "| disconnections | 2 |" in dropped.output
    assert "Connector space 'ad_fabrikam' dropped. `aadsync export-plan --connector entra`" in dropped.output
    with Store.open(url) as store:
        assert cs_count(store, "ad_fabrikam") == 0 and cs_count(store, "ad") == 1
        assert {anchor: row["operation"] for anchor, row in exports(store).items()} == {
            "cloud-11": "delete", "cloud-12": "delete",
        }  # fmt: skip
        assert set(links(store)) == {("ad", ad_user(1).anchor), ("entra", "cloud-1")}
