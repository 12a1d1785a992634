"""The import steps of the sync cycle, in the product's order: import AD (DirSync), then import Entra ID (Graph
delta). A delta every 30 minutes, or full imports on demand (``mode`` param).

Sync and export join the cycle in later issues.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param

from airflow_provider_aadsync.operators.ad_import import ADImportOperator
from airflow_provider_aadsync.operators.entra_import import EntraImportOperator

with DAG(
    dag_id="aadsync_import",
    schedule=dt.timedelta(minutes=30),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    params={
        "mode": Param(
            "delta",
            type="string",
            enum=["delta", "full"],
            description="delta: changes since the last run (DirSync, Graph delta); full: read everything",
        ),
    },
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=2), "retry_exponential_backoff": True},
    tags=["aadsync"],
) as dag:
    import_ad = ADImportOperator(task_id="import_ad", mode="{{ params.mode }}")
    import_entra = EntraImportOperator(task_id="import_entra", mode="{{ params.mode }}")
    import_ad >> import_entra
