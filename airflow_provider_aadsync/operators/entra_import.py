"""EntraImportOperator: import Entra ID users and groups into the store as one Airflow task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_aadsync.engine.entra_import import import_entra
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.hooks.entra import EntraHook

if TYPE_CHECKING:
    from airflow.sdk import Context


def run_entra_import(
    hook: EntraHook, store: Store, *, mode: str, connector: str = "entra", lock_holder: str | None = None
) -> dict[str, Any]:
    """Glue shared by the operator and the CLI: hook in, engine run, small summary out."""
    try:
        result = import_entra(hook, store, connector=connector, mode=mode, lock_holder=lock_holder)  # type: ignore[arg-type]
    finally:
        hook.close()
    summary = result.summary()
    summary["graph"] = {name: round(value, 3) for name, value in hook.counters.items()}
    return summary


class EntraImportOperator(BaseOperator):
    """Import Entra ID (Graph delta query, full or delta) into the sync store.

    :param mode: ``full`` or ``delta`` (templated); a delta without a usable delta link becomes a full import.
    :param entra_conn_id: the ``aadsync_entra`` connection (templated).
    :param store_url: SQLAlchemy URL of the store (templated); default: the embedded SQLite store.
    :param instance: sync instance name (templated).
    :param connector: connector space name.
    :return: a small run summary (run id, counters, Graph request counters, result) for XCom.
    """

    template_fields: Sequence[str] = ("mode", "entra_conn_id", "store_url", "instance")

    def __init__(
        self,
        *,
        mode: str = "delta",
        entra_conn_id: str = EntraHook.default_conn_name,
        store_url: str | None = None,
        instance: str = "default",
        connector: str = "entra",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.mode = mode
        self.entra_conn_id = entra_conn_id
        self.store_url = store_url
        self.instance = instance
        self.connector = connector

    def execute(self, context: Context) -> dict[str, Any]:
        if self.mode not in ("full", "delta"):
            raise ValueError(f"mode must be 'full' or 'delta', not {self.mode!r}")
        holder = f"{context['dag'].dag_id}:{context['run_id']}"
        with Store.open(self.store_url, instance=self.instance) as store:
            summary = run_entra_import(
                EntraHook(self.entra_conn_id), store, mode=self.mode, connector=self.connector, lock_holder=holder
            )
        self.log.info("Entra import %s", summary)
        if summary["result"] not in ("success", "completed-import-errors"):
            raise RuntimeError(f"Entra import stopped: {summary['result']} (run {summary['run_id']})")
        return summary
