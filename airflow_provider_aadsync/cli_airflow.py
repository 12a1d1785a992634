"""``aadsync airflow trigger|status``: run the DAGs of a deployment through Airflow's REST API from a shell, e.g.
the Celery deployment of ``aadsync-dev up --airflow celery`` (``aadsync-dev env`` exports its address and user).

The address, user and password come from ``AADSYNC_AIRFLOW_API_URL``, ``AADSYNC_AIRFLOW_USER`` and
``AADSYNC_AIRFLOW_PASSWORD`` (hooks/airflow_api.py); the password is never printed. Exit code 0 when the run
succeeded (or, without ``--wait``, was created), 1 when it failed or the API refused.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click

from airflow_provider_aadsync.cli_store import echo_json
from airflow_provider_aadsync.hooks.airflow_api import AirflowApiClient, AirflowApiError, AirflowApiSettings


def _client() -> AirflowApiClient:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per poll
    try:
        return AirflowApiClient(AirflowApiSettings.from_env())
    except AirflowApiError as error:
        raise click.ClickException(str(error)) from None


def _conf(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="--conf") from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object ({...}): the DAG run's params", param_hint="--conf")
    return value


def _tasks(instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The task instances as the output shows them (mapped tasks: one row per map index)."""
    keys = ("task_id", "map_index", "state", "try_number", "hostname", "start_date", "end_date", "duration")
    rows = [{key: ti.get(key) for key in keys} for ti in instances]
    return sorted(rows, key=lambda row: (row["start_date"] or "~", row["task_id"], row["map_index"] or -1))


def _summary(run: dict[str, Any], instances: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("dag_id", "dag_run_id", "state", "run_type", "logical_date", "start_date", "end_date", "conf")
    return {key: run.get(key) for key in keys} | {"tasks": _tasks(instances)}


def _echo_run(summary: dict[str, Any]) -> None:
    click.echo(
        f"{summary['dag_id']} run {summary['dag_run_id']}: {summary['state']} "
        f"(started {summary['start_date'] or '-'}, ended {summary['end_date'] or '-'})"
    )
    for task in summary["tasks"]:
        index = f"[{task['map_index']}]" if task["map_index"] not in (None, -1) else ""
        seconds = f"{task['duration']:.1f} s" if isinstance(task["duration"], int | float) else "-"
        where = f" on {task['hostname']}" if task["hostname"] else ""
        click.echo(
            f"  {task['task_id']}{index}: {task['state'] or 'none'} (try {task['try_number']}, {seconds}){where}"
        )


def _exit_for(summary: dict[str, Any]) -> None:
    if summary["state"] == "failed":
        failed = [task["task_id"] for task in summary["tasks"] if task["state"] in ("failed", "upstream_failed")]
        click.echo(f"Error: run {summary['dag_run_id']} failed (tasks: {', '.join(failed) or '-'})", err=True)
        sys.exit(1)


@click.group("airflow")
def airflow_group() -> None:
    """Trigger and follow DAG runs through Airflow's REST API (AADSYNC_AIRFLOW_API_URL, AADSYNC_AIRFLOW_USER,
    AADSYNC_AIRFLOW_PASSWORD)."""


@airflow_group.command("trigger")
@click.argument("dag_id")
@click.option(
    "--conf", "conf_text", default=None, help="The run's params as a JSON object, e.g. '{\"staging\": true}'."
)
@click.option("--unpause", is_flag=True, help="Unpause the DAG first (a paused DAG's run stays queued).")
@click.option("--wait", is_flag=True, help="Follow the run until it ends (task states as they change).")
@click.option("--timeout", type=float, default=7200, show_default=True, help="With --wait: give up after seconds.")
@click.option("--poll", type=float, default=2.0, show_default=True, help="With --wait: seconds between polls.")
@click.option("--json", "as_json", is_flag=True, help="The run (with --wait: when it ended, with its tasks) as JSON.")
def trigger_command(
    dag_id: str, conf_text: str | None, unpause: bool, wait: bool, timeout: float, poll: float, as_json: bool
) -> None:
    """Trigger a run of DAG_ID (POST /api/v2/dags/{DAG_ID}/dagRuns); with --wait, follow it and exit 1 if it
    failed."""
    conf = _conf(conf_text)
    with _client() as client:
        try:
            dag = client.dag(dag_id)
            if unpause and dag.get("is_paused"):
                client.unpause(dag_id)
            elif dag.get("is_paused"):
                click.echo(
                    f"Warning: DAG {dag_id} is paused: the run stays queued until it is unpaused (--unpause)", err=True
                )
            run = client.trigger(dag_id, conf)
            run_id = run["dag_run_id"]
            if not as_json:
                click.echo(f"triggered {dag_id} run {run_id} ({run.get('state')})")
            if not wait:
                if as_json:
                    echo_json(_summary(run, []))
                return
            seen: dict[tuple[str, Any], str | None] = {}

            def show(_run: dict[str, Any], instances: list[dict[str, Any]]) -> None:
                for ti in instances:
                    key = (ti["task_id"], ti.get("map_index"))
                    if not as_json and ti.get("state") and seen.get(key) != ti["state"]:
                        click.echo(f"  {ti['task_id']}: {ti['state']}")
                    seen[key] = ti.get("state")

            run = client.wait(dag_id, run_id, timeout=timeout, poll_seconds=poll, on_poll=show)
            summary = _summary(run, client.task_instances(dag_id, run_id))
        except AirflowApiError as error:
            raise click.ClickException(str(error)) from None
    echo_json(summary) if as_json else _echo_run(summary)
    _exit_for(summary)


@airflow_group.command("status")
@click.argument("dag_id", required=False)
@click.option("--run-id", default=None, help="The run (default: the DAG's newest run).")
@click.option("--limit", type=int, default=20, show_default=True, help="Without DAG_ID: how many recent runs.")
@click.option("--json", "as_json", is_flag=True, help="The run with its tasks (without DAG_ID: the runs) as JSON.")
def status_command(dag_id: str | None, run_id: str | None, limit: int, as_json: bool) -> None:
    """The state of a DAG run and of its tasks (default: DAG_ID's newest run; without DAG_ID: the newest runs of
    every DAG); exit 1 when the run failed."""
    if run_id and not dag_id:
        raise click.UsageError("--run-id needs the DAG_ID")
    with _client() as client:
        try:
            if not dag_id:
                runs = [_summary(run, []) | {"tasks": None} for run in client.latest_runs(limit)]
                if as_json:
                    echo_json({"dag_runs": runs})
                for run in [] if as_json else runs:
                    click.echo(f"{run['dag_id']}  {run['dag_run_id']}  {run['state']}  {run['start_date'] or '-'}")
                if not runs and not as_json:
                    click.echo("no DAG run yet (trigger one: aadsync airflow trigger DAG_ID)")
                return
            run = client.run(dag_id, run_id) if run_id else client.latest_run(dag_id)
            if run is None:
                client.dag(dag_id)  # an unknown DAG is an error; a known one has no run yet
                raise click.ClickException(f"DAG {dag_id} has no run yet")
            summary = _summary(run, client.task_instances(dag_id, run["dag_run_id"]))
        except AirflowApiError as error:
            raise click.ClickException(str(error)) from None
    echo_json(summary) if as_json else _echo_run(summary)
    _exit_for(summary)
