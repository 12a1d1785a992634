"""`aadsync store rename-connector`: a connector renamed in the connectors file is renamed in the store, after saying
what would move; its next sync then changes nothing."""

from __future__ import annotations

from click.testing import CliRunner

from airflow_provider_aadsync.cli import main
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.forests import small_two_forest_store
from tests.support.world import cs_count, exports, links


def test_rename_connector_says_what_would_move_then_moves_it(tmp_path):
    url = small_two_forest_store(tmp_path)
    with Store.open(url) as store:
        before = (links(store, "entra"), exports(store))
    config = tmp_path / "connectors.yaml"
    config.write_text("ad:\n  - {name: ad, conn_id: aadsync_ad}\n  - {name: ad_fabrikam, conn_id: aadsync_fab}\n")
    args = ["store", "rename-connector", "--connector", "ad_fabrikam", "--to", "ad_contoso", "--store", url]
    stale = CliRunner().invoke(main, [*args, "--connectors-file", str(config)])
    assert stale.exit_code == 1
    assert "Not renamed: the connectors configuration must name 'ad_contoso' and no longer" in stale.output

    config.write_text("ad:\n  - {name: ad, conn_id: aadsync_ad}\n  - {name: ad_contoso, conn_id: aadsync_fab}\n")
    asked = CliRunner().invoke(main, [*args, "--connectors-file", str(config)])
    assert asked.exit_code == 1 and "would be renamed 'ad_contoso': cs_object 2" in asked.output
    assert "Give --confirm-rename to do it (nothing was changed)" in asked.output
    with Store.open(url) as store:
        assert cs_count(store, "ad_fabrikam") == 2

    done = CliRunner().invoke(main, [*args, "--connectors-file", str(config), "--confirm-rename"])
    assert done.exit_code == 0, done.output
    assert "Connector 'ad_fabrikam' renamed 'ad_contoso': cs_object 2" in done.output
    with Store.open(url) as store:
        assert cs_count(store, "ad_fabrikam") == 0 and cs_count(store, "ad_contoso") == 2
        synced = run_sync(store, load_sync_rules(), connector="ad_contoso", mode="delta")
        assert synced.mode == "full" and synced.result == "success"
        assert (links(store, "entra"), exports(store)) == before
