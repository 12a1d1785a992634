"""``airflow standalone`` on this machine, for the tests: the api-server (REST API and UI), scheduler, dag processor
and triggerer of one :class:`~aadsync_devkit.world.airflow_runs.LocalAirflow` world, on a free loopback
port, driven through the REST API (``POST /auth/token``, then ``/api/v2/...``) and stopped by its process group."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from aadsync_devkit.processes import HOST, free_port, group_members
from aadsync_devkit.world.airflow_runs import AirflowRunError, LocalAirflow, airflow_command

#: the components ``/api/v2/monitor/health`` reports on; all of them must be healthy before a run can start
COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
FINISHED_STATES = frozenset({"success", "failed"})


class StandaloneAirflow:
    """``airflow standalone`` for one :class:`LocalAirflow` world (its ``AIRFLOW_HOME``, DAG folder, connections,
    Variables and environment), the api-server bound to ``127.0.0.1:port``.

    Standalone runs ``airflow`` subcommands found on ``PATH``, so this interpreter's ``bin`` goes first on it. The
    admin password is the one the simple auth manager generates into ``AIRFLOW_HOME`` at the first start.
    Use it as a context manager, or call :meth:`start` and :meth:`stop` (which is safe to call whatever happened).

    :param world: the Airflow world to serve (its metadata DB is created by standalone if missing).
    :param port: the api-server port; default: a free one.
    :param env: more environment for the standalone process (overrides the world's).
    """

    def __init__(self, world: LocalAirflow, *, port: int | None = None, env: Mapping[str, str] | None = None) -> None:
        self.world = world
        self.port = port or free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self.log_path = world.home / "standalone.log"
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self._token: str | None = None

    # ---------------------------------------------------------------------------------------------- lifecycle
    def environment(self) -> dict[str, str]:
        bin_dir = str(Path(airflow_command()).parent)
        ours = {
            "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
            "AIRFLOW__API__HOST": HOST,
            "AIRFLOW__API__PORT": str(self.port),
            # the UI's links and the tasks' execution API URL ({base_url}/execution/) follow it
            "AIRFLOW__API__BASE_URL": self.base_url,
            # a small machine: one api-server worker, a few task processes at a time
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__PARALLELISM": "4",
        }
        return self.world.environment(**{**ours, **self.extra_env})

    def start(self, *, timeout: float = 240) -> StandaloneAirflow:
        """Start ``airflow standalone`` in its own process group and wait until every component is healthy."""
        self.world.home.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [airflow_command(), "standalone"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.environment(),
                cwd=self.world.home,
                start_new_session=True,  # setsid: standalone and the components it starts form one process group
            )
        try:
            self.wait_healthy(timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_healthy(self, *, timeout: float = 240) -> dict[str, Any]:
        """Poll ``/api/v2/monitor/health`` until the metadata DB, scheduler, triggerer and dag processor are healthy."""
        deadline = time.monotonic() + timeout
        last: object = "no answer yet"
        while time.monotonic() < deadline:
            self._check_running("while starting")
            try:
                health = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=10).json()
                if all(health.get(name, {}).get("status") == "healthy" for name in COMPONENTS):
                    return health
                last = health
            except (httpx.HTTPError, ValueError) as exc:
                last = repr(exc)
            time.sleep(0.5)
        raise AirflowRunError(f"airflow standalone not healthy after {timeout:.0f} s (last: {last}){self.log_tail()}")

    def stop(self, *, timeout: float = 30) -> None:
        """SIGTERM standalone's process group and every process it started (task processes get process groups of
        their own), wait, then SIGKILL what is left. Safe to call twice or after a failed start."""
        process, self.process = self.process, None
        if process is None:
            return
        pgid = process.pid
        # Until we reap it, the leader's PID (a zombie at most) cannot be reused, so its group id stays ours.
        leader_held = process.returncode is None
        ours = _processes_below(pgid) | {pid: _start_time(pid) for pid in group_members(pgid)}
        if leader_held:
            ours[pgid] = _start_time(pgid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
        _signal(ours, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _still_running(ours):
            if leader_held:  # a process started while the others shut down is ours too
                started = {pid: at for pid, at in _processes_below(pgid).items() if pid not in ours}
                ours.update(started)
                _signal(started, signal.SIGTERM)
            time.sleep(0.1)
        _signal(ours, signal.SIGKILL)
        if leader_held:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)

    def __enter__(self) -> StandaloneAirflow:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _check_running(self, doing: str) -> None:
        if self.process is None:
            raise AirflowRunError("airflow standalone is not running (never started or already stopped)")
        if self.process.poll() is not None:
            raise AirflowRunError(f"airflow standalone exited with {self.process.returncode} {doing}{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        """The end of standalone's combined output, for failure messages."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return f"\n(no log at {self.log_path})"
        return f"\n--- last {lines} lines of {self.log_path} ---\n" + "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------------------------------------------- REST API
    def admin_password(self) -> str:
        """The admin password that the simple auth manager generated into ``AIRFLOW_HOME``."""
        path = self.world.home / "simple_auth_manager_passwords.json.generated"
        return json.loads(path.read_text(encoding="utf-8"))["admin"]

    def token(self) -> str:
        """A JWT for the admin user (``POST /auth/token``), fetched once."""
        if self._token is None:
            response = httpx.post(
                f"{self.base_url}/auth/token",
                json={"username": "admin", "password": self.admin_password()},
                timeout=30,
            )
            if response.status_code not in (200, 201):
                raise AirflowRunError(f"POST /auth/token: {response.status_code} {response.text}{self.log_tail()}")
            self._token = response.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, *, expect: Sequence[int] = (200,), **kwargs: Any) -> Any:
        """One REST call under ``/api/v2`` as admin; the JSON answer. Raises with the body and the log tail when the
        status is not one of *expect*."""
        self._check_running(f"before {method} {path}")
        response = httpx.request(
            method,
            f"{self.base_url}/api/v2{path}",
            headers={"Authorization": f"Bearer {self.token()}"},
            timeout=60,
            **kwargs,
        )
        if response.status_code not in expect:
            raise AirflowRunError(
                f"{method} /api/v2{path}: {response.status_code} {response.text[:2000]}{self.log_tail()}"
            )
        return response.json() if response.content else None

    def wait_for_dag(self, dag_id: str, *, timeout: float = 180) -> dict[str, Any]:
        """Wait until the dag processor has parsed and stored *dag_id*; its ``/dags/{id}`` answer."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.api("GET", f"/dags/{dag_id}", expect=(200, 404))
            if found.get("dag_id") == dag_id:
                return found
            if time.monotonic() > deadline:
                raise AirflowRunError(f"DAG {dag_id} not parsed after {timeout:.0f} s: {found}{self.log_tail()}")
            time.sleep(1)

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """``POST /dags/{id}/dagRuns`` with a logical date of now and *conf*; the new run's id."""
        run = self.api(
            "POST",
            f"/dags/{dag_id}/dagRuns",
            json={"logical_date": dt.datetime.now(dt.UTC).isoformat(), "conf": dict(conf or {})},
        )
        return run["dag_run_id"]

    def wait_for_run(self, dag_id: str, run_id: str, *, timeout: float = 600) -> dict[str, Any]:
        """Poll the DAG run until it is ``success`` or ``failed``; its last ``/dagRuns/{id}`` answer."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in FINISHED_STATES:
                return run
            if time.monotonic() > deadline:
                raise AirflowRunError(
                    f"DAG run {dag_id}/{run_id} still {run['state']} after {timeout:.0f} s; tasks: "
                    f"{self.task_states(dag_id, run_id)}{self.log_tail()}"
                )
            time.sleep(1)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, tuple[str | None, int]]:
        """``{task_id: (state, try_number)}`` of one DAG run, through the REST API."""
        answer = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {ti["task_id"]: (ti["state"], ti["try_number"]) for ti in answer["task_instances"]}


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None if there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _start_time(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[19] if fields else None  # field 22 of stat: start time in clock ticks since boot


def _processes_below(pid: int) -> dict[int, str | None]:
    """Every live process below *pid* (children, grandchildren, ...) with its start time, from /proc."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in os.listdir("/proc"):
        fields = _stat(int(entry)) if entry.isdigit() else None
        if fields and fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append((int(entry), fields[19]))
    found: dict[int, str | None] = {}
    todo = [pid]
    while todo:
        for child, started in children.get(todo.pop(), []):
            found[child] = started
            todo.append(child)
    return found


def _still_running(processes: Mapping[int, str | None]) -> list[int]:
    """Those of *processes* still alive and still the same process (a PID reused since has another start time)."""
    alive = []
    for pid, started in processes.items():
        fields = _stat(pid)
        if fields and fields[0] != "Z" and fields[19] == started:
            alive.append(pid)
    return alive


def _signal(processes: Mapping[int, str | None], signum: int) -> None:
    for pid in _still_running(processes):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


__all__: Sequence[str] = ["COMPONENTS", "FINISHED_STATES", "StandaloneAirflow"]
