"""The Active Directory connector as the registry hands it out: its schema and its plan counting in LDAP writes."""

from __future__ import annotations

from functools import partial

from airflow_provider_aadsync.engine.connectors.ad.schema import SCHEMA, target_problem
from airflow_provider_aadsync.engine.connectors.ad.writer import ADExportSettings, plan_counts
from airflow_provider_aadsync.engine.connectors.schema import Connector

CONNECTOR = Connector(
    kind="ad",
    schema=SCHEMA,
    # Counted with the export's default member chunk (values per modify operation), as an export would write it.
    plan_counts=partial(plan_counts, member_chunk=ADExportSettings.model_fields["member_chunk"].default),
    cost_counter="ldap_writes_minimum",
    cost_label="LDAP writes",
    target_problem=target_problem,
)
