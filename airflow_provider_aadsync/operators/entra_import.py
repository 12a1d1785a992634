"""EntraImportOperator: import Entra ID users and groups into the store as one Airflow task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_aadsync.engine.connectors.entra.reader import import_entra
from airflow_provider_aadsync.engine.connectors.entra.schema import DEFAULT_GROUP_PROPERTIES, DEFAULT_USER_PROPERTIES
from airflow_provider_aadsync.engine.rules import RuleSet
from airflow_provider_aadsync.engine.runs.import_attributes import complete_attribute_list
from airflow_provider_aadsync.engine.runs.import_guard import ImportGuard
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from airflow_provider_aadsync.hooks.entra import EntraHook
from airflow_provider_aadsync.operators.base import ImportOperator
from airflow_provider_aadsync.operators.sync import rule_paths


def run_entra_import(
    hook: EntraHook,
    store: Store,
    *,
    mode: str,
    connector: str = "entra",
    lock_holder: str | None = None,
    guard: ImportGuard | None = None,
    rules: RuleSet | None = None,
) -> dict[str, Any]:
    """Glue shared by the operator and the CLI: hook in, engine run, small summary out.

    ``$select`` holds the shipped properties plus every property the inbound rules of ``connector`` read, by
    object type: ``rules``, the rule set sync uses (default: the shipped rules)."""
    rules = rules or load_sync_rules()
    users, added = complete_attribute_list(
        DEFAULT_USER_PROPERTIES, rules, connector, object_types=["user"], what="$select of users"
    )
    groups, added_groups = complete_attribute_list(
        DEFAULT_GROUP_PROPERTIES, rules, connector, object_types=["group"], what="$select of groups"
    )
    try:
        result = import_entra(
            hook,
            store,
            connector=connector,
            mode=mode,  # type: ignore[arg-type]
            user_properties=users,
            group_properties=groups,
            lock_holder=lock_holder,
            guard=guard,
        )
    finally:
        hook.close()
    summary = result.summary()
    summary["graph"] = {name: round(value, 3) for name, value in hook.counters.items()}
    if added or added_groups:
        summary["attributes_added_for_rules"] = sorted({*added, *added_groups})
    return summary


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

    template_fields: Sequence[str] = (*ImportOperator.template_fields, "entra_conn_id", "rules")
    step_name = "Entra import"

    def __init__(
        self,
        *,
        entra_conn_id: str = EntraHook.default_conn_name,
        connector: str = "entra",
        rules: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(connector=connector, **kwargs)
        self.entra_conn_id = entra_conn_id
        self.rules = rules

    def run_import(self, store: Store, lock_holder: str) -> dict[str, Any]:
        return run_entra_import(
            EntraHook(self.entra_conn_id),
            store,
            mode=self.mode,
            connector=self.connector,
            lock_holder=lock_holder,
            guard=self.import_guard(),
            rules=load_sync_rules(rule_paths(self.rules)),
        )
