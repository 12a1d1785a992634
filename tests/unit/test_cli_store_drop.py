"""`aadsync store drop-connector`: the deliberate removal of the connector space of an AD connector taken out of the
connectors file, by its exact object count; the next export then deprovisions what only it fed."""

from __future__ import annotations

from click.testing import CliRunner

from airflow_provider_aadsync.cli import main
from airflow_provider_aadsync.engine.store import Store
from tests.support.forests import small_two_forest_store
from tests.support.world import ad_user, cs_count, exports, links


def test_drop_connector_says_the_count_to_confirm_then_drops_only_that_space(tmp_path):
    url = small_two_forest_store(tmp_path)
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
