"""What every import operator shares: templated mode/store/instance, the store lock holder, the summary check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_aadsync.engine.store import Store

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Step results after which the task succeeds; anything else (stopped-*) fails it with the result in the message.
COMPLETED_RESULTS = ("success", "completed-import-errors")


class ImportOperator(BaseOperator):
    """Base of the import operators: opens the store, runs one import, returns its small summary for XCom.

    :param mode: ``full`` or ``delta`` (templated); a delta without a usable watermark becomes a full import.
    :param store_url: SQLAlchemy URL of the store (templated); default: the embedded SQLite store.
    :param instance: sync instance name (templated).
    :param connector: connector space name.
    """

    template_fields: Sequence[str] = ("mode", "store_url", "instance")
    #: Named in logs and errors ("AD import", "Entra import").
    step_name = "import"

    def __init__(
        self,
        *,
        mode: str = "delta",
        store_url: str | None = None,
        instance: str = "default",
        connector: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.mode = mode
        self.store_url = store_url
        self.instance = instance
        self.connector = connector

    def run_import(self, store: Store, lock_holder: str) -> dict[str, Any]:
        """Run the import into ``store``; return its summary."""
        raise NotImplementedError

    def execute(self, context: Context) -> dict[str, Any]:
        if self.mode not in ("full", "delta"):
            raise ValueError(f"mode must be 'full' or 'delta', not {self.mode!r}")
        # A retry of the same DAG run takes its own store lock back; any other run is kept out.
        holder = f"{context['dag'].dag_id}:{context['run_id']}"
        with Store.open(self.store_url, instance=self.instance) as store:
            summary = self.run_import(store, holder)
        self.log.info("%s %s", self.step_name, summary)
        if summary["result"] not in COMPLETED_RESULTS:
            raise RuntimeError(f"{self.step_name} stopped: {summary['result']} (run {summary['run_id']})")
        return summary
