"""The failure hook of the shipped DAGs: it logs the failure, with secrets scrubbed.

To page someone or open a ticket, give the DAG factory Airflow notifiers (``SmtpNotifier``, ``SlackNotifier``, any
``BaseNotifier``) or callables: ``sync_cycle_dag(..., on_failure_callback=[...])`` in your copy of
``dags/aadsync.py``. Nothing here imports code named by configuration: an Airflow Variable that named a callable to
run in the worker (``aadsync_on_failure_callback``) let anyone who may edit Variables run code on the workers, and is
no longer read.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from airflow_provider_aadsync.engine.secrets import scrub

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)


def on_task_failure(context: Context) -> None:
    """Task ``on_failure_callback`` of the shipped DAGs: log the DAG, task, run and error (never raises)."""
    ti = context.get("ti")
    where = f"{getattr(ti, 'dag_id', '?')}.{getattr(ti, 'task_id', '?')} (run {context.get('run_id')})"
    log.error("AADSync task %s failed: %s", where, scrub(str(context.get("exception"))))
