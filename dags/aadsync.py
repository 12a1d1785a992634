"""The shipped sync cycle DAGs, composed from the provider's DAG factory (airflow_provider_aadsync.dag_factory):

- ``aadsync_cycle``: a delta cycle every 30 minutes (one run at a time, no catch-up). A delta whose watermark is
  missing or too old, or a sync after the rule set changed, runs as a full one by itself, and the report says why.
- ``aadsync_full``: the initial / full cycle, triggered by hand: full imports and full syncs, then the export.

Both take the same params in the trigger form and read their configuration from Airflow Variables; see the README's
"The DAGs" section. Copy this file to build your own DAGs from the same factory.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param

from airflow_provider_aadsync.dag_factory import common_params, connectors_from_variable, sync_cycle_dag

#: Read when this file is parsed: it decides the DAGs' shape (one import and one sync task per AD connector).
CONNECTORS = connectors_from_variable()

aadsync_cycle = sync_cycle_dag(
    "aadsync_cycle",
    schedule=dt.timedelta(minutes=30),
    mode="{{ params.mode }}",
    params={
        "mode": Param(
            "delta",
            type="string",
            enum=["delta", "full"],
            title="Mode",
            description="delta: the changes since the last run (DirSync, Graph delta query, objects with pending "
            "imports); full: read and evaluate everything.",
        ),
        **common_params(CONNECTORS),
    },
    connectors=CONNECTORS,
    doc="""The delta sync cycle, every 30 minutes: import AD → import Entra ID → sync AD → sync Entra ID → export to
Entra ID → report. A delta without a usable watermark (none yet, older than its lifetime, rejected) or after a rule
set change runs as a full one, and the report says why. Trigger it with params for a full cycle, a staging run or
the preview of one object.""",
)

aadsync_full = sync_cycle_dag(
    "aadsync_full",
    schedule=None,
    mode="full",
    params=common_params(CONNECTORS),
    connectors=CONNECTORS,
    doc="""The initial / full sync cycle, triggered by hand: full import of AD and Entra ID, full sync of both,
export to Entra ID, report. Run it first, and after changing the configuration.""",
)
