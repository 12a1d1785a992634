"""A connector space the connectors configuration no longer names, in every cycle's report: shown first under the
title and logged as a warning, with its objects, the cloud objects they feed and how to resolve it."""

from __future__ import annotations

from types import SimpleNamespace

from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from airflow_provider_aadsync.operators.report import SyncReportOperator
from tests.support.task_instances import SummariesTaskInstance
from tests.support.world import ad_user, cloud_twin, import_full


def test_the_report_names_a_connector_space_no_configured_connector_reads(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    with Store.open(url, instance="main") as store:
        rules = load_sync_rules()
        import_full(store, "ad", [ad_user(1)])
        import_full(store, "ad_fabrikam", [ad_user(11, "fab11"), ad_user(12, "fab12")])  # removed from the file
        import_full(store, "entra", [cloud_twin(11, "fab11")])
        for connector in ("ad", "ad_fabrikam", "entra"):
            synced = run_sync(store, rules, connector=connector, mode="full")
    context = {
        "dag": SimpleNamespace(dag_id="aadsync_cycle"),
        "run_id": "scheduled__1",
        "ti": SummariesTaskInstance({"sync_entra": synced.summary()}),
    }
    reports = tmp_path / "reports"
    operator = SyncReportOperator(task_id="report", store_url=url, instance="main", step_task_ids=["sync_entra"],
                                  report_dir=str(reports), release_instance=False,
                                  configured_connectors=["ad", "entra"])  # fmt: skip
    warned: list[str] = []
    operator.log.warning = lambda message, *args: warned.append(message % args)  # type: ignore[method-assign]
    result = operator.execute(context)

    text = (reports / "aadsync_cycle" / "scheduled__1.md").read_text()
    assert text.index("## Connector spaces no configured connector reads") < text.index("| step |")
    # two users, both feeding a cloud user: one joined, one whose create is staged
    assert "connector space 'ad_fabrikam' holds 2 objects feeding 2 objects of 'entra'" in text
    assert "--confirm-drop 2" in text and "put the name back in the connectors file" in text
    assert result["unconfigured_connectors"] == [
        {"connector": "ad_fabrikam", "objects": 2, "cloud_objects": 2, "entra_connector": "entra"}
    ]
    assert [m for m in warned if m.startswith("connector space 'ad_fabrikam' holds 2 objects feeding 2")] != []

    # every connector configured: nothing said
    operator = SyncReportOperator(task_id="report", store_url=url, instance="main", step_task_ids=["sync_entra"],
                                  report_dir=str(reports), release_instance=False,
                                  configured_connectors=["ad", "ad_fabrikam", "entra"])  # fmt: skip
    assert "unconfigured_connectors" not in operator.execute(context)
    assert "Connector spaces no configured" not in (reports / "aadsync_cycle" / "scheduled__1.md").read_text()
