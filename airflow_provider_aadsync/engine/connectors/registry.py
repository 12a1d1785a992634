"""Which connector a connector space belongs to: its schema (for sync) and its plan counting (for reports).

Connector spaces are named ``ad`` and ``entra`` by default; a name is found as itself, else by its kind
(``ad_fabrikam`` is an AD connector, ``connectors/kinds.py``). A deployment naming a connector space otherwise passes
its own schemas to sync (``schemas``); a report on a name of no kind counts the plan generically (by operation and
type, no write estimate). Kept out of the packages' ``__init__``
files so importing one connector never imports the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from airflow_provider_aadsync.engine.connectors.ad.connector import CONNECTOR as ACTIVE_DIRECTORY
from airflow_provider_aadsync.engine.connectors.entra.connector import CONNECTOR as ENTRA_ID
from airflow_provider_aadsync.engine.connectors.kinds import connector_kind
from airflow_provider_aadsync.engine.connectors.schema import Connector, ConnectorSchema
from airflow_provider_aadsync.engine.runs.export_run import generic_plan_counts

if TYPE_CHECKING:
    from airflow_provider_aadsync.engine.store import Store

#: Connectors by connector-space name. A third connector: its folder under ``connectors/`` and one line here.
CONNECTORS: dict[str, Connector] = {"ad": ACTIVE_DIRECTORY, "entra": ENTRA_ID}

#: Schemas by connector name; a deployment naming its connectors differently passes its own mapping.
DEFAULT_SCHEMAS: dict[str, ConnectorSchema] = {name: connector.schema for name, connector in CONNECTORS.items()}


def connector_for(name: str) -> Connector | None:
    """The connector of the connector space ``name`` (by name, else by kind), or None for a name of no kind."""
    found = CONNECTORS.get(name)
    if found is None and (kind := connector_kind(name)) is not None:
        found = CONNECTORS.get(kind)
    return found


def schema_for(connector: str, schemas: Mapping[str, ConnectorSchema] | None = None) -> ConnectorSchema:
    """The schema sync reads ``connector`` by: from ``schemas`` (default: the registry's), by its name, else by its
    kind (``ad_fabrikam`` is read as ``ad``); a name of no kind has no references and no typed attributes."""
    known = schemas or DEFAULT_SCHEMAS
    found = known.get(connector)
    if found is None and (kind := connector_kind(connector)) is not None:
        found = known.get(kind)
    if found is None:
        return ConnectorSchema(reference_attributes=frozenset())
    return found


def plan_counts(store: Store, connector: str) -> dict[str, int]:
    """The open export plan of ``connector`` counted as its connector counts it (with its least number of writes),
    or generically for an unknown name."""
    found = connector_for(connector)
    if found is None:
        return generic_plan_counts(store, connector)
    return found.plan_counts(store, connector)
