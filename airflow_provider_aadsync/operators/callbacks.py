"""The failure hook point of the shipped DAGs: log, or hand over to a callable named by an Airflow Variable."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

#: Airflow Variable naming a callable (``package.module.function``) that receives the failed task's context.
ON_FAILURE_VARIABLE = "aadsync_on_failure_callback"


def on_task_failure(context: Context) -> None:
    """Task ``on_failure_callback`` of the shipped DAGs.

    When the Variable ``aadsync_on_failure_callback`` names a callable (``package.module.function``), it is imported
    and called with the context (page someone, open a ticket, post to a chat). Otherwise the failure is logged with
    the DAG, task, run and error. A failing hook is logged, never raised: it must not hide the task's own error.
    """
    from airflow.sdk import Variable
    from airflow.sdk.module_loading import import_string

    ti = context.get("ti")
    where = f"{getattr(ti, 'dag_id', '?')}.{getattr(ti, 'task_id', '?')} (run {context.get('run_id')})"
    try:
        path = (Variable.get(ON_FAILURE_VARIABLE, default="") or "").strip()
        if path:
            import_string(path)(context)
            return
    except Exception:
        log.exception("the on-failure callback named by the Variable %s failed for %s", ON_FAILURE_VARIABLE, where)
        return
    log.error("AADSync task %s failed: %s", where, context.get("exception"))
