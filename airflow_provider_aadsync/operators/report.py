"""SyncReportOperator: the Markdown report of one DAG run's sync cycle, in the task log and saved as a file."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, ObjectStoragePath
from airflow.sdk.exceptions import AirflowSkipException

from airflow_provider_aadsync.engine.report import render_cycle_report
from airflow_provider_aadsync.engine.runs import preflight as cutover
from airflow_provider_aadsync.engine.runs.unconfigured import UnconfiguredSpace, unconfigured_spaces
from airflow_provider_aadsync.engine.store import create_private_file
from airflow_provider_aadsync.operators.base import (
    STOPPED_SUMMARY_KEY,
    StoreLocation,
    StoreStepOperator,
    open_task_store,
)
from airflow_provider_aadsync.operators.instance_lock import release_instance
from airflow_provider_aadsync.operators.templated import templated_flag

if TYPE_CHECKING:
    from airflow.sdk import Context


#: Task states of steps that did not complete (the report of a failed cycle lists them).
_FAILED_STATES = ("failed", "upstream_failed")


def default_report_dir() -> Path:
    """``$AIRFLOW_HOME/aadsync/reports`` (Airflow's own default home is ``~/airflow``)."""
    return Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow").expanduser() / "aadsync" / "reports"


def is_url(location: str | Path | None) -> bool:
    """Whether a report location is a URL (``scheme://...``) rather than a local folder."""
    return location is not None and "://" in str(location)


def report_path(dag_id: str, run_id: str, report_dir: str | Path | None = None) -> Path:
    """Where the report of one DAG run is saved on this machine: ``<report_dir>/<dag_id>/<run_id>.md`` (a
    ``file://`` URL is its local path)."""
    text = str(report_dir).strip() if report_dir else ""
    if text.startswith("file://"):
        text = text.removeprefix("file://")
    folder = Path(text) if text else default_report_dir()
    return folder / dag_id / _safe_name(run_id)


def report_location(
    dag_id: str, run_id: str, report_dir: str | Path | None = None, suffix: str = ".md"
) -> Path | ObjectStoragePath:
    """Where the report of one DAG run is saved: a local :class:`~pathlib.Path` (an empty ``report_dir``, a folder,
    a ``file://`` URL), else an Airflow :class:`~airflow.sdk.ObjectStoragePath` of any fsspec URL (``s3://``,
    ``gs://``, ``abfs://``, ``memory://``; ``s3://CONN_ID@bucket/path`` names the Airflow connection), so every
    worker and the api-server can read the reports."""
    text = str(report_dir).strip() if report_dir else ""
    if not is_url(text) or text.startswith("file://"):
        path = report_path(dag_id, run_id, text or None)
        return path.with_name(path.name.removesuffix(".md") + suffix)
    return ObjectStoragePath(text.rstrip("/")) / dag_id / _safe_name(run_id, suffix)


def _safe_name(run_id: str, suffix: str = ".md") -> str:
    return re.sub(r"[^A-Za-z0-9._+:-]", "_", run_id) + suffix


def save_report(
    text: str, context: Context, report_dir: str | Path | None = None, suffix: str = ".md"
) -> Path | ObjectStoragePath:
    """Save a report (or, with another ``suffix``, an artifact beside it) through Airflow's object storage:
    owner-only (0600, folders 0700) when local, as the store, since it names identities; written as one object
    otherwise (the bucket's access rules then apply)."""
    path = report_location(context["dag"].dag_id, context["run_id"], report_dir, suffix)
    if isinstance(path, Path):
        create_private_file(path, "report")  # run details: owner-only, as the store
        path.write_text(text, encoding="utf-8")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)  # object stores have no folders; a no-op there
    path.write_text(text, encoding="utf-8")
    return path


class SyncReportOperator(StoreLocation, BaseOperator):
    """Render the report of this DAG run's steps (imports, syncs, exports) as Markdown: into the task log and into
    ``<report_dir>/<dag_id>/<run_id>.md``.

    The run ids come from the steps' XCom summaries (a step that stopped leaves its summary under the
    ``stopped_summary`` key); the report then reads the runs from the store: a line per step, which deltas ran as full
    runs and why, each run's counters and top errors, and the export plan that is left. Used as the cycle's
    teardown, it reports failed cycles too without changing the DAG run's state; with no step summary at all (a
    preview run) it skips itself.

    :param step_task_ids: the tasks to report, in order; default: every upstream import, sync and export task.
    :param store_url: SQLAlchemy URL of the store (templated); empty or None: the embedded SQLite store.
    :param instance: sync instance name (templated).
    :param plan_connector: whose export plan to show (default ``entra``).
    :param report_dir: folder or fsspec URL of the report files (templated; saved through Airflow's object storage,
        see :func:`report_location`); empty: ``$AIRFLOW_HOME/aadsync/reports``.
    :param release_instance: release the sync instance this DAG run holds (taken by its InstanceLockSensor) when the
        report is done, whatever happened (default True).
    :param preflight: add the cutover preflight (templated; default false; the DAGs set it on a staging or
        preflight run, which writes nothing): how each in-scope AD object meets the tenant, the counts first in the
        report, every row saved beside it as ``<run>.preflight.csv`` and ``<run>.preflight.json``.
    :param block_soft_match: the preflight's matching follows BlockSoftMatch (templated; default false).
    :param block_cloud_object_takeover: the preflight's hard match follows BlockCloudObjectTakeover (templated;
        default false).
    :param configured_connectors: the connectors the connectors configuration names (its AD connectors and Entra; the
        DAGs set it): a connector space in the store holding imported objects of any other connector (removed or
        renamed in the file: never imported nor synced again) is shown first in the report and logged as a warning,
        with how to resolve it (engine/runs/unconfigured.py). None (default): not checked.
    :return: the report's path, the reported run ids (and the preflight's files and counts, the unconfigured
        connector spaces).
    """

    template_fields: Sequence[str] = (
        "store_url", "store_conn_id", "instance", "report_dir", "preflight", "block_soft_match",
        "block_cloud_object_takeover",
    )  # fmt: skip

    def __init__(
        self,
        *,
        step_task_ids: Sequence[str] | None = None,
        store_url: str | None = None,
        instance: str = "default",
        plan_connector: str = "entra",
        report_dir: str | None = None,
        release_instance: bool = True,
        preflight: bool | str = False,
        block_soft_match: bool | str = False,
        block_cloud_object_takeover: bool | str = False,
        configured_connectors: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.configured_connectors = list(configured_connectors) if configured_connectors is not None else None
        self.preflight = preflight
        self.block_soft_match = block_soft_match
        self.block_cloud_object_takeover = block_cloud_object_takeover
        self.release_instance = release_instance
        self.step_task_ids = list(step_task_ids) if step_task_ids is not None else None
        self.store_url = store_url
        self.instance = instance
        self.plan_connector = plan_connector
        self.report_dir = report_dir

    def _steps(self) -> list[str]:
        if self.step_task_ids is not None:
            return self.step_task_ids
        upstream = self.get_flat_relative_ids(upstream=True)
        steps = [task for task in _in_order(self.dag) if task.task_id in upstream]
        return [task.task_id for task in steps if isinstance(task, StoreStepOperator)]

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            return self._report(context)
        finally:
            if self.release_instance:
                # The cycle's teardown: the instance its first task took is free for the next cycle.
                release_instance(context, self.store_location(), self.instance)

    def _report(self, context: Context) -> dict[str, Any]:
        ti = context["ti"]
        task_ids = self._steps()
        states = _task_states(context, task_ids)
        steps = []
        for task_id in task_ids:
            summary = ti.xcom_pull(task_ids=task_id) or ti.xcom_pull(task_ids=task_id, key=STOPPED_SUMMARY_KEY)
            steps.append({"task": task_id, "state": states.get(task_id), "summary": summary})
        if not any(step["summary"] or step["state"] in _FAILED_STATES for step in steps):
            raise AirflowSkipException("no step of this DAG run ran (a preview run?): nothing to report")
        title = f"{context['dag'].dag_id} / {context['run_id']}"
        rows = None
        spaces: list[UnconfiguredSpace] = []
        with open_task_store(self.store_location(), self.instance) as store:
            if self.configured_connectors is not None:
                spaces = unconfigured_spaces(store, self.configured_connectors, entra_connector=self.plan_connector)
            for space in spaces:
                self.log.warning("%s", space.message())
            text = render_cycle_report(
                store, steps, title=title, plan_connector=self.plan_connector, unconfigured=spaces
            )
            if templated_flag(self.preflight):
                rows = cutover.preflight(
                    store,
                    entra_connector=self.plan_connector,
                    block_soft_match=templated_flag(self.block_soft_match),
                    block_cloud_object_takeover=templated_flag(self.block_cloud_object_takeover),
                )
        result: dict[str, Any] = {}
        if spaces:
            result["unconfigured_connectors"] = [asdict(space) for space in spaces]
        if rows is not None:
            # counts first, right under the title; every row as CSV and JSON beside the report
            files = {suffix: str(save_report(render(rows), context, self.report_dir, suffix))
                     for suffix, render in ((".preflight.csv", cutover.render_csv),
                                            (".preflight.json", cutover.render_json))}  # fmt: skip
            title_line, _, rest = text.partition("\n")
            summary = cutover.counts(rows)
            lines = [f"- {name}: {summary[name]:,}" for name in sorted(summary)] or ["- no in-scope AD object"]
            section = "\n".join(["## Cutover preflight (before any write)", "", *lines, "",
                                  f"Every row: {', '.join(files.values())}"])  # fmt: skip
            text = f"{title_line}\n\n{section}\n{rest}"
            result["preflight"] = {"counts": cutover.counts(rows), "files": files}
        self.log.info("AADSync cycle report:\n%s", text)
        path = save_report(text, context, self.report_dir)
        self.log.info("report saved to %s", path)
        return {
            "report": str(path),
            "runs": {step["task"]: step["summary"]["run_id"] for step in steps if step["summary"]},
            **result,
        }


def _in_order(dag: Any) -> Iterator[Any]:
    """The DAG's tasks, each after its upstream tasks (task groups flattened)."""

    def nested(group: Any) -> Iterator[Any]:
        for node in group.topological_sort():
            if hasattr(node, "topological_sort"):
                yield from nested(node)
            else:
                yield node

    return nested(dag.task_group)


def _task_states(context: Context, task_ids: list[str]) -> dict[str, str | None]:
    """Each step task's state in this DAG run (failed, skipped, ...), for the steps that left no summary."""
    try:
        found = context["ti"].get_task_states(
            dag_id=context["dag"].dag_id, task_ids=task_ids, run_ids=[context["run_id"]]
        )
    except Exception:  # a report without states is still a report
        return {}
    return dict(found.get(context["run_id"], {}))
