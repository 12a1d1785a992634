"""Import Active Directory into the sync store: a DirSync delta every 30 minutes, or a full import on demand.

The complete sync cycle (Entra import, sync, export) joins in later issues; this DAG already runs the first step.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param

from airflow_provider_aadsync.operators.ad_import import ADImportOperator

with DAG(
    dag_id="aadsync_ad_import",
    schedule=dt.timedelta(minutes=30),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    params={
        "mode": Param(
            "delta",
            type="string",
            enum=["delta", "full"],
            description="delta: DirSync changes since the last run; full: read the whole directory",
        ),
    },
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=2), "retry_exponential_backoff": True},
    tags=["aadsync"],
) as dag:
    ADImportOperator(task_id="import_ad", mode="{{ params.mode }}")
