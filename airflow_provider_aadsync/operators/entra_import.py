"""EntraImportOperator: import Entra ID users and groups into the store as one Airflow task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.hooks.entra import EntraHook
from airflow_provider_aadsync.operators.base import ImportOperator
from airflow_provider_aadsync.operators.templated import templated_value
from airflow_provider_aadsync.steps import load_rules_for, run_entra_import


class EntraImportOperator(ImportOperator):
    """Import Entra ID (Graph delta query, full or delta) into the sync store.

    :param entra_conn_id: the ``aadsync_entra`` connection (templated).
    :param mode: ``full`` or ``delta`` (templated); a delta without a usable delta link becomes a full import.
    :param store_url: SQLAlchemy URL of the store (templated); empty or None: the embedded SQLite store.
    :param instance: sync instance name (templated).
    :param connector: connector space name (default ``entra``).
    :param rules: the rule files or folders sync uses (templated; empty: the shipped rules): every property their
        inbound rules read is in ``$select``.
    :param confirm_mass_removal: / ``import_deletion_threshold`` / ``import_deletion_share``: the import guard
        (templated; see :class:`ImportOperator`).
    :return: a small run summary (run id, counters, Graph request counters, result) for XCom.
    """

    template_fields: Sequence[str] = (*ImportOperator.template_fields, "entra_conn_id", "rules", "directory_extensions")
    step_name = "Entra import"

    def __init__(
        self,
        *,
        entra_conn_id: str = EntraHook.default_conn_name,
        connector: str = "entra",
        rules: str | Sequence[str] | None = None,
        directory_extensions: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(connector=connector, **kwargs)
        self.entra_conn_id = entra_conn_id
        self.rules = rules
        self.directory_extensions = directory_extensions

    def run_import(self, store: Store, lock_holder: str) -> dict[str, Any]:
        return run_entra_import(
            EntraHook(self.entra_conn_id),
            store,
            mode=self.mode,
            connector=self.connector,
            lock_holder=lock_holder,
            guard=self.import_guard(),
            rules=load_rules_for(self.rules, directory_extensions=templated_value(self.directory_extensions)),
        )
