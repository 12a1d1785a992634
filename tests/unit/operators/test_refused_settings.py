"""A refused export / import-guard setting (a Variable such as aadsync_deletion_threshold or
aadsync_import_deletion_share holding a bad value) must fail the task without retries, naming the setting, as the
other refused configurations do (CONFIGURATION_ERRORS, load_task_rules): a retry only repeats the same refusal."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_aadsync.operators.ad_export import ADExportOperator
from airflow_provider_aadsync.operators.ad_import import ADImportOperator
from airflow_provider_aadsync.operators.entra_export import EntraExportOperator


def _context():
    return {"dag": type("Dag", (), {"dag_id": "aadsync_cycle"})(), "run_id": "manual__1", "ti": None}


@pytest.mark.parametrize(
    ("rendered", "named"),
    [
        ({"deletion_threshold": "ten"}, "deletion_threshold"),
        ({"deletion_threshold": "-1"}, "deletion_threshold"),
        ({"write_budget": "3000/150"}, "write_budget"),
        ({"write_budget": "0"}, "write_budget"),
    ],
)
def test_entra_export_bad_setting_fails_without_retry_naming_it(tmp_path, rendered, named):
    operator = EntraExportOperator(
        task_id="export_entra", store_url=f"sqlite:///{tmp_path / 'store.sqlite'}", **rendered
    )
    with pytest.raises(AirflowFailException, match=f"not retried.*{named}"):
        operator.execute(_context())


@pytest.mark.parametrize("rendered", [{"deletion_threshold": "ten"}, {"member_chunk": "-5"}])
def test_ad_export_bad_setting_fails_without_retry_naming_it(tmp_path, rendered):
    operator = ADExportOperator(
        task_id="export_ad", writeback_enabled="true", store_url=f"sqlite:///{tmp_path / 'store.sqlite'}", **rendered
    )
    (named,) = rendered
    with pytest.raises(AirflowFailException, match=f"not retried.*{named}"):
        operator.execute(_context())


@pytest.mark.parametrize(
    "rendered",
    [{"import_deletion_share": "10"}, {"import_deletion_threshold": "many"}, {"import_deletion_threshold": "-3"}],
)
def test_import_guard_bad_variable_fails_without_retry(tmp_path, rendered):
    operator = ADImportOperator(
        task_id="import_ad", ad_conn_id="no_such_connection", mode="full",
        store_url=f"sqlite:///{tmp_path / 'store.sqlite'}", **rendered,
    )  # fmt: skip
    with pytest.raises(AirflowFailException, match="not retried.*import deletion"):
        operator.execute(_context())
