"""ADImportOperator: import Active Directory into the store as one Airflow task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_aadsync.engine.connectors.config import ADConnectorConfig
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.hooks.active_directory import ActiveDirectoryHook
from airflow_provider_aadsync.operators.base import ImportOperator
from airflow_provider_aadsync.operators.templated import templated_value
from airflow_provider_aadsync.steps import load_rules_for, run_ad_import


class ADImportOperator(ImportOperator):
    """Import Active Directory (full or DirSync delta) into the sync store.

    :param ad_conn_id: the ``aadsync_ad`` connection (templated).
    :param mode: ``full`` or ``delta`` (templated); a delta without a usable cookie becomes a full import.
    :param store_url: SQLAlchemy URL of the store (templated); empty or None: the embedded SQLite store.
    :param instance: sync instance name (templated).
    :param connector: connector space name (default ``ad``; ``ad_<name>`` for another forest).
    :param scope: the connector's entry in the connectors configuration (an :class:`ADConnectorConfig` or its
        dict): its partitions, OUs to include and exclude, and pilot group. None: the connection's base DN, unfiltered.
    :param rules: the rule files or folders sync uses (templated; empty: the shipped rules): every attribute their
        inbound rules read is imported, whatever the connection's ``attributes`` extra leaves out.
    :param confirm_mass_removal: / ``import_deletion_threshold`` / ``import_deletion_share``: the import guard
        (templated; see :class:`ImportOperator`).
    :return: a small run summary (run id, counters, result) for XCom; the data stays in the store.
    """

    template_fields: Sequence[str] = (*ImportOperator.template_fields, "ad_conn_id", "rules", "directory_extensions")
    step_name = "AD import"

    def __init__(
        self,
        *,
        ad_conn_id: str = ActiveDirectoryHook.default_conn_name,
        connector: str = "ad",
        rules: str | Sequence[str] | None = None,
        scope: ADConnectorConfig | Mapping[str, Any] | None = None,
        directory_extensions: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(connector=connector, **kwargs)
        self.ad_conn_id = ad_conn_id
        self.rules = rules
        self.directory_extensions = directory_extensions
        # Validated when the DAG is built, so a bad scope is a DAG import error rather than a failed run.
        self.scope = ADConnectorConfig.of(scope)

    def run_import(self, store: Store, lock_holder: str) -> dict[str, Any]:
        return run_ad_import(
            ActiveDirectoryHook(self.ad_conn_id),
            store,
            mode=self.mode,
            connector=self.connector,
            lock_holder=lock_holder,
            guard=self.import_guard(),
            rules=load_rules_for(self.rules, directory_extensions=templated_value(self.directory_extensions)),
            scope=self.scope,
        )
