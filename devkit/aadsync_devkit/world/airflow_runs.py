"""Airflow itself on this machine, for the demo and the tests: an embedded SQLite metadata DB under an
``AIRFLOW_HOME``, connections and Variables from the environment, and DAG runs through ``airflow dags test``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import airflow_provider_aadsync

_FINISHED = re.compile(r"DagRun Finished: dag_id=(?P<dag_id>[^,]+),.*?run_id=(?P<run_id>[^,]+),.*?state=(?P<state>\w+)")


class AirflowRunError(RuntimeError):
    """Raised when an Airflow command of the local world fails (its output tail is in the message)."""


def deployable_dags_folder() -> Path:
    """The repository's ``dags/`` folder (the deployable DAGs) next to the package."""
    folder = Path(airflow_provider_aadsync.__file__).resolve().parents[1] / "dags"
    if not (folder / "aadsync.py").exists():
        raise AirflowRunError(f"the DAG folder {folder} is missing: run from a clone of the repository")
    return folder


def airflow_command() -> str:
    """The ``airflow`` executable of this interpreter's environment."""
    return str(Path(sys.executable).with_name("airflow"))


@dataclass
class DagRunOutcome:
    dag_id: str
    run_id: str | None
    state: str | None
    returncode: int
    seconds: float
    output: str

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0 and self.state == "success"

    def tail(self, chars: int = 4000) -> str:
        return self.output[-chars:]


class LocalAirflow:
    """``AIRFLOW_HOME`` with an embedded SQLite metadata DB; runs DAGs with ``airflow dags test`` in subprocesses.

    :param home: the ``AIRFLOW_HOME`` (created; the metadata DB is ``airflow.db`` in it).
    :param connections: ``{conn_id: connection JSON dict}``, passed as ``AIRFLOW_CONN_<ID>``.
    :param variables: ``{name: value}``, passed as ``AIRFLOW_VAR_<NAME>``.
    :param env: more environment (e.g. ``AADSYNC_HOME``).
    """

    def __init__(
        self,
        home: Path,
        *,
        dags_folder: Path | None = None,
        connections: Mapping[str, Mapping[str, Any]] | None = None,
        variables: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.home = Path(home)
        self.dags_folder = dags_folder or deployable_dags_folder()
        self.connections = dict(connections or {})
        self.variables = dict(variables or {})
        self.extra_env = dict(env or {})

    def environment(self, **overrides: str) -> dict[str, str]:
        """This process's environment without any Airflow settings of its own (a self-contained world), plus ours."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRFLOW__"))
        }
        env.update(
            AIRFLOW_HOME=str(self.home),
            AIRFLOW__CORE__DAGS_FOLDER=str(self.dags_folder),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
        )
        env.update({f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn) for conn_id, conn in self.connections.items()})
        env.update({f"AIRFLOW_VAR_{name.upper()}": str(value) for name, value in self.variables.items()})
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def run(self, *args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [airflow_command(), *args],
            env=self.environment(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.home,
        )

    def migrate(self) -> float:
        """``airflow db migrate`` (creates the SQLite metadata DB the first time); return the seconds it took."""
        self.home.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        done = self.run("db", "migrate", timeout=300)
        if done.returncode != 0:
            raise AirflowRunError(f"airflow db migrate failed:\n{(done.stdout + done.stderr)[-4000:]}")
        return time.monotonic() - started

    def dags_test_command(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> list[str]:
        return [airflow_command(), "dags", "test", dag_id, *(["-c", json.dumps(conf)] if conf else [])]

    def dags_test(
        self, dag_id: str, conf: Mapping[str, Any] | None = None, *, timeout: float = 900, **env: str
    ) -> DagRunOutcome:
        """Run one DAG run with ``airflow dags test`` (tasks in this process's children, retries honoured)."""
        started = time.monotonic()
        done = subprocess.run(
            self.dags_test_command(dag_id, conf),
            env=self.environment(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.home,
        )
        return outcome(dag_id, done.returncode, done.stdout + done.stderr, time.monotonic() - started)

    def report_dir(self) -> Path:
        return self.home / "aadsync" / "reports"

    def report(self, run: DagRunOutcome) -> str:
        """The report file the run's report task saved."""
        if run.run_id is None:
            raise AirflowRunError(f"{run.dag_id}: no DAG run finished:\n{run.tail()}")
        from airflow_provider_aadsync.operators.report import report_path

        return report_path(run.dag_id, run.run_id, self.report_dir()).read_text(encoding="utf-8")


def outcome(dag_id: str, returncode: int, output: str, seconds: float) -> DagRunOutcome:
    found = [match for match in _FINISHED.finditer(output) if match["dag_id"] == dag_id]
    last = found[-1] if found else None
    return DagRunOutcome(
        dag_id, last["run_id"] if last else None, last["state"] if last else None, returncode, seconds, output
    )


def task_states(home: Path, dag_id: str, run_id: str) -> dict[str, tuple[str, int]]:
    """``{task_id: (state, try_number)}`` of one DAG run, read from the SQLite metadata DB."""
    import sqlite3

    with sqlite3.connect(home / "airflow.db") as connection:
        rows = connection.execute(
            "select task_id, state, try_number from task_instance where dag_id = ? and run_id = ?", (dag_id, run_id)
        ).fetchall()
    return {task_id: (state, tries) for task_id, state, tries in rows}


__all__: Sequence[str] = [
    "AirflowRunError",
    "DagRunOutcome",
    "LocalAirflow",
    "airflow_command",
    "deployable_dags_folder",
    "outcome",
    "task_states",
]
