"""The cutover preflight in a DAG run's report (issue 15, point 3): a staging or preflight run's report shows the
counts first, under its title, and saves every row beside it as CSV and JSON through the report storage."""

from __future__ import annotations

import csv
import io
import json
from types import SimpleNamespace

from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from airflow_provider_aadsync.operators.report import SyncReportOperator
from tests.support.task_instances import SummariesTaskInstance
from tests.support.world import ad_group, ad_user, entra_user, guid, immutable_id, import_full


def test_a_preflight_run_reports_the_counts_first_and_saves_every_row(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    with Store.open(url, instance="main") as store:
        import_full(store, "ad", [ad_user(1), ad_user(2), ad_user(3), ad_user(4), ad_group(20, "Staff", members=[1])])
        import_full(store, "entra", [
            entra_user("c1", "someone@corp.example", immutable_id(guid(1))),  # hard match
            entra_user("c2", "USER2@corp.example"),  # soft match on userPrincipalName
            entra_user("c4", "user4@corp.example", immutable_id(guid(444))),  # another anchor: a conflict
        ])  # fmt: skip
        synced = run_sync(store, load_sync_rules(), connector="ad", mode="full")
    context = {
        "dag": SimpleNamespace(dag_id="aadsync_full"),
        "run_id": "manual__preflight",
        "ti": SummariesTaskInstance({"sync_ad": synced.summary()}),
    }
    reports = tmp_path / "reports"
    operator = SyncReportOperator(task_id="report", store_url=url, instance="main", step_task_ids=["sync_ad"],
                                  report_dir=str(reports), preflight="True", release_instance=False)  # fmt: skip
    result = operator.execute(context)

    text = (reports / "aadsync_full" / "manual__preflight.md").read_text()
    title, _, rest = text.partition("\n")
    assert rest.lstrip().startswith("## Cutover preflight (before any write)")
    assert "- hard match: 1" in text and "- soft match on userPrincipalName: 1" in text and "- create: 1" in text
    assert "- conflict: cloud user holds another ImmutableId: never overwritten: 1" in text
    assert "- group create: 1" in text  # groups have their rows too (matched through the directory extension)
    assert text.index("Cutover preflight") < text.index("full-sync on `ad`")
    rows = list(csv.DictReader(io.StringIO((reports / "aadsync_full" / "manual__preflight.preflight.csv").read_text())))
    (group,) = [row for row in rows if row["object_type"] == "group"]
    assert group["ad_dn"].startswith("CN=Staff") and group["outcome"] == "create"
    rows = [row for row in rows if row["object_type"] == "user"]
    outcomes = {row["user_principal_name"].split("@")[0]: (row["outcome"], row["cloud_id"]) for row in rows}
    assert outcomes == {"user1": ("hard match", "c1"), "user2": ("soft match", "c2"), "user3": ("create", ""),
                        "user4": ("conflict", "c4")}  # fmt: skip
    as_json = json.loads((reports / "aadsync_full" / "manual__preflight.preflight.json").read_text())
    assert as_json["counts"] == result["preflight"]["counts"] and len(as_json["rows"]) == 5

    # not asked (a run that writes): no preflight section, no files
    plain = str(tmp_path / "plain")
    operator = SyncReportOperator(task_id="report", store_url=url, instance="main", step_task_ids=["sync_ad"],
                                  report_dir=plain, preflight="False", release_instance=False)  # fmt: skip
    assert "preflight" not in operator.execute(context)
    assert [p.name for p in (tmp_path / "plain" / "aadsync_full").iterdir()] == ["manual__preflight.md"]
