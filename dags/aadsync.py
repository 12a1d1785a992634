"""The shipped sync cycle DAGs, composed from the provider's DAG factory (airflow_provider_aadsync.dag_factory):

- ``aadsync_cycle``: a delta cycle every 30 minutes (one run at a time, no catch-up). A delta whose watermark is
  missing or too old, or a sync after the rule set changed, runs as a full one by itself, and the report says why.
- ``aadsync_full``: the initial / full cycle, triggered by hand: full imports and full syncs, then the export.
- ``aadsync_<name>_cycle`` and ``aadsync_<name>_full``: the same two for each named sync instance the Variable
  ``aadsync_instances`` lists (its own store and tenant; README "Several sync instances in one deployment").

Both take the same params in the trigger form and read their configuration from Airflow Variables; see the README's
"The DAGs" section. Copy this file to build your own DAGs from the same factory.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param

from airflow_provider_aadsync.dag_factory import (
    common_params,
    connectors_from_variable,
    instances_from_variable,
    sync_cycle_dag,
)


def cycle_dags(instance: str | None = None) -> tuple[DAG, DAG]:
    """The delta cycle and the full cycle of one sync instance (None: the default one)."""
    # Read when this file is parsed: it decides the DAGs' shape (one import and one sync task per AD connector).
    connectors = connectors_from_variable(instance)
    prefix = "aadsync" if instance is None else f"aadsync_{instance}"
    mode = Param(
        "delta",
        type="string",
        enum=["delta", "full"],
        title="Mode",
        description="delta: the changes since the last run (DirSync, Graph delta query, objects with pending imports); "
        "full: read and evaluate everything.",
    )
    cycle = sync_cycle_dag(
        f"{prefix}_cycle",
        schedule=dt.timedelta(minutes=30),
        mode="{{ params.mode }}",
        params={"mode": mode, **common_params(connectors, instance)},
        connectors=connectors,
        instance=instance,
        doc="""The delta sync cycle, every 30 minutes: import AD → import Entra ID → sync AD → sync Entra ID → export to
Entra ID → report. A delta without a usable watermark (none yet, older than its lifetime, rejected) or after a rule
set change runs as a full one, and the report says why. Trigger it with params for a full cycle, a staging run or
the preview of one object.""",
    )
    full = sync_cycle_dag(
        f"{prefix}_full",
        schedule=None,
        mode="full",
        params=common_params(connectors, instance),
        connectors=connectors,
        instance=instance,
        doc="""The initial / full sync cycle, triggered by hand: full import of AD and Entra ID, full sync of both,
export to Entra ID, report. Run it first, and after changing the configuration.""",
    )
    return cycle, full


aadsync_cycle, aadsync_full = cycle_dags()
for _name in instances_from_variable():
    globals()[f"aadsync_{_name}_cycle"], globals()[f"aadsync_{_name}_full"] = cycle_dags(_name)
