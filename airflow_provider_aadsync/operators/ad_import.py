"""ADImportOperator: import Active Directory into the store as one Airflow task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_aadsync.engine.ad_entries import (
    DEFAULT_AD_ATTRIBUTES,
    DEFAULT_BINARY_ATTRIBUTES,
    EntryDecoder,
)
from airflow_provider_aadsync.engine.ad_import import import_active_directory
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.hooks.active_directory import ActiveDirectoryHook

if TYPE_CHECKING:
    from airflow.sdk import Context


def run_ad_import(
    hook: ActiveDirectoryHook, store: Store, *, mode: str, connector: str = "ad", lock_holder: str | None = None
) -> dict[str, Any]:
    """Glue shared by the operator and the CLI: hook in, engine run, small summary out."""
    settings = hook.settings
    decoder = EntryDecoder(binary_attributes=DEFAULT_BINARY_ATTRIBUTES | frozenset(settings.binary_attributes or ()))
    try:
        result = import_active_directory(
            hook,
            store,
            connector=connector,
            mode=mode,  # type: ignore[arg-type]
            attributes=settings.attributes or DEFAULT_AD_ATTRIBUTES,
            decoder=decoder,
            scope_dn=settings.base_dn,
            lock_holder=lock_holder,
        )
    finally:
        hook.close()
    return result.summary()


class ADImportOperator(BaseOperator):
    """Import Active Directory (full or DirSync delta) into the sync store.

    :param mode: ``full`` or ``delta`` (templated); a delta without a usable cookie becomes a full import.
    :param ad_conn_id: the ``aadsync_ad`` connection (templated).
    :param store_url: SQLAlchemy URL of the store (templated); default: the embedded SQLite store.
    :param instance: sync instance name (templated).
    :param connector: connector space name.
    :return: a small run summary (run id, counters, result) for XCom; the data stays in the store.
    """

    template_fields: Sequence[str] = ("mode", "ad_conn_id", "store_url", "instance")

    def __init__(
        self,
        *,
        mode: str = "delta",
        ad_conn_id: str = ActiveDirectoryHook.default_conn_name,
        store_url: str | None = None,
        instance: str = "default",
        connector: str = "ad",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.mode = mode
        self.ad_conn_id = ad_conn_id
        self.store_url = store_url
        self.instance = instance
        self.connector = connector

    def execute(self, context: Context) -> dict[str, Any]:
        if self.mode not in ("full", "delta"):
            raise ValueError(f"mode must be 'full' or 'delta', not {self.mode!r}")
        holder = f"{context['dag'].dag_id}:{context['run_id']}"
        with Store.open(self.store_url, instance=self.instance) as store:
            summary = run_ad_import(
                ActiveDirectoryHook(self.ad_conn_id),
                store,
                mode=self.mode,
                connector=self.connector,
                lock_holder=holder,
            )
        self.log.info("AD import %s", summary)
        if summary["result"] not in ("success", "completed-import-errors"):
            raise RuntimeError(f"AD import stopped: {summary['result']} (run {summary['run_id']})")
        return summary
