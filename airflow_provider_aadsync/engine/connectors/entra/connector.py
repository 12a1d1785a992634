"""The Entra ID connector as the registry hands it out: its schema and its plan counting in Graph ``$batch`` calls."""

from __future__ import annotations

from airflow_provider_aadsync.engine.connectors.entra.planning import plan_counts
from airflow_provider_aadsync.engine.connectors.entra.schema import SCHEMA, target_problem
from airflow_provider_aadsync.engine.connectors.schema import Connector

CONNECTOR = Connector(
    kind="entra",
    schema=SCHEMA,
    plan_counts=plan_counts,
    cost_counter="batch_calls_minimum",
    cost_label="Graph $batch calls",
    target_problem=target_problem,
)
