"""Airflow with the CeleryExecutor as local processes: the topology of docker/compose.yaml without containers.

Why: the provider claims multi-worker deployments (a PostgreSQL store shared by Celery workers), and docker/ cannot
run on a machine without a container registry. This starts the same components from Debian and PyPI packages, each
a process of its own on loopback, its PID kept in ``<home>/services.json`` so ``aadsync-dev status|down`` find it:

===================  ==================================  =============================================================
compose service      here                                settings in common
===================  ==================================  =============================================================
``redis``            ``redis-server`` (Debian)           the broker: ``AIRFLOW__CELERY__BROKER_URL=redis://...:port/0``;
                                                         here on a free loopback port, no persistence (``--save ""``)
``postgres``         :class:`LocalPostgres` (caller's)   databases ``airflow`` (metadata and Celery results) and
                                                         ``aadsync_store`` (the sync store, connection
                                                         ``aadsync_store``, Variable ``aadsync_store_conn_id``)
``airflow-init``     ``airflow db migrate``              run once before the services start
``airflow-apiserver````airflow api-server``              REST API and UI; ``EXECUTION_API_SERVER_URL`` points at it
``airflow-scheduler````airflow scheduler``               ``AIRFLOW__CORE__EXECUTOR=CeleryExecutor``
``airflow-dag-proc`` ``airflow dag-processor``           the repository's ``dags/``
``airflow-triggerer````airflow triggerer``
``airflow-worker``   ``airflow celery worker`` x 2       ``-H worker1@...``, ``-H worker2@...``: both serve queue
                                                         ``default``, the second also ``aadsync``
(pool)               ``POST /api/v2/pools`` once up      ``aadsync_graph_writers``, 1 slot, named by the Variable
                                                         ``aadsync_graph_writer_pool``: the README's cap on the tasks
                                                         writing to Graph at once, across DAGs and instances
===================  ==================================  =============================================================

``instances=("east", ...)`` deploys named sync instances next to the default one (README "Several sync instances in
one deployment"): the Variable ``aadsync_instances``, and per instance a store database ``aadsync_store_<name>`` with
its connection ``aadsync_store_<name>`` and Variable ``aadsync_<name>__store_conn_id``; the caller's world holds each
instance's Entra connection (``aadsync_entra_<name>``) and, for a scope of its own, its connectors file.

Shared by every component as in compose's ``x-airflow-common``: one JWT secret and one Fernet key (generated once,
kept in ``<home>/secrets.json``, mode 0600), the provider's connections and Variables as ``AIRFLOW_CONN_*`` /
``AIRFLOW_VAR_*``, ``AADSYNC_HOME``. Differences: the simple auth manager (one ``admin`` user, its password in
``simple_auth_manager_passwords.json.generated``) instead of FAB; and each worker names its task instances
``worker1@<host>`` / ``worker2@<host>`` (``[core] hostname_callable``), where compose's containers have host names
of their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aadsync_devkit.processes import HOST, free_port, port_in_use, proc_state
from aadsync_devkit.world.airflow_runs import AirflowRunError, LocalAirflow, airflow_command
from aadsync_devkit.world.airflow_standalone import StandaloneAirflow
from aadsync_devkit.world.postgres import LocalPostgres

REDIS_PACKAGE = "redis-server"
METADATA_DB = "airflow"
STORE_DB = "aadsync_store"
STORE_CONN_ID = "aadsync_store"
#: The pool the deployment creates for the tasks writing to Graph (the README's recommended name and size).
GRAPH_WRITER_POOL = "aadsync_graph_writers"
GRAPH_WRITER_SLOTS = 1
#: the second queue, served by worker2 only (tasks go to ``default`` unless an operator says ``queue=``)
SECOND_QUEUE = "aadsync"
#: the environment variable a worker's task processes read their host name from (see :func:`worker_hostname`)
WORKER_NAME_ENV = "AADSYNC_CELERY_WORKER_NAME"


def worker_hostname() -> str:
    """``[core] hostname_callable`` of the Celery workers: the worker's own name (``worker1@host``), so the task
    instances say which of two workers on one machine ran them; elsewhere the machine's FQDN, as Airflow's default."""
    return os.environ.get(WORKER_NAME_ENV) or socket.getfqdn()


@dataclass(frozen=True)
class Service:
    """One process of the deployment: its name, command and the extra environment it runs with."""

    name: str
    args: tuple[str, ...]
    env: Mapping[str, str]


class CeleryAirflow(StandaloneAirflow):
    """Redis, Airflow's api-server, scheduler, dag-processor, triggerer and two Celery workers as local processes,
    over a :class:`LocalAirflow` world (its ``AIRFLOW_HOME``, DAGs, connections, Variables) and a running
    :class:`LocalPostgres` server (metadata DB and the sync store). The REST helpers (``api``, ``trigger``,
    ``wait_for_run``...) are :class:`StandaloneAirflow`'s.

    :param world: the Airflow world (``home`` also holds ``services.json``, ``secrets.json``, ``logs/``, ``redis/``).
    :param postgres: a started PostgreSQL server; the ``airflow`` and ``aadsync_store`` databases are created in it.
    :param workers: how many Celery workers (1 or 2).
    :param concurrency: task slots per worker.
    :param instances: named sync instances deployed next to the default one, each with a store database of its own.
    """

    def __init__(
        self,
        world: LocalAirflow,
        postgres: LocalPostgres,
        *,
        port: int | None = None,
        workers: int = 2,
        concurrency: int = 2,
        env: Mapping[str, str] | None = None,
        instances: Sequence[str] = (),
    ) -> None:
        saved = _read_json(world.home / "services.json")
        super().__init__(world, port=port or saved.get("api_port"), env=env)
        self.postgres = postgres
        self.workers = workers
        self.concurrency = concurrency
        self.instances = tuple(instances)
        self.redis_port: int = saved.get("redis_port") or free_port()
        self.log_dir = world.home / "logs"
        self.log_path = self.log_dir / "api-server.log"

    # ------------------------------------------------------------------------------------------------ layout
    @property
    def services_path(self) -> Path:
        return self.world.home / "services.json"

    @property
    def broker_url(self) -> str:
        return f"redis://{HOST}:{self.redis_port}/0"

    def store_url(self, instance: str | None = None) -> str:
        """The sync store's URL: the default instance's, or a named instance's (its own database)."""
        return self.postgres.url(store_database(instance))

    def _secrets(self) -> dict[str, str]:
        """The JWT secret and Fernet key every component shares: generated once, kept in a 0600 file."""
        path = self.world.home / "secrets.json"
        found = _read_json(path)
        if not found:
            from cryptography.fernet import Fernet

            found = {"jwt_secret": secrets.token_urlsafe(32), "fernet_key": Fernet.generate_key().decode()}
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(json.dumps(found), encoding="utf-8")
        return found

    def environment(self) -> dict[str, str]:
        kept = self._secrets()
        metadata = self.postgres.url(METADATA_DB)
        ours = {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
            "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.concurrency),
            "AIRFLOW__CORE__FERNET_KEY": kept["fernet_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": kept["jwt_secret"],
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "true",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "true",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW_VAR_AADSYNC_STORE_CONN_ID": STORE_CONN_ID,
            "AIRFLOW_VAR_AADSYNC_GRAPH_WRITER_POOL": GRAPH_WRITER_POOL,
        }
        for instance in (None, *self.instances):
            store = {"conn_type": "postgres", "host": HOST, "port": self.postgres.port, "login": "postgres"}
            conn_id = STORE_CONN_ID if instance is None else f"{STORE_CONN_ID}_{instance}"
            ours[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps({**store, "schema": store_database(instance)})
            if instance is not None:
                ours[f"AIRFLOW_VAR_AADSYNC_{instance.upper()}__STORE_CONN_ID"] = conn_id
        if self.instances:
            ours["AIRFLOW_VAR_AADSYNC_INSTANCES"] = ",".join(self.instances)
        return {**super().environment(), **ours, **self.extra_env}

    def services(self) -> list[Service]:
        """The processes in start order (Redis first: the scheduler and the workers connect to it at start)."""
        redis_dir = self.world.home / "redis"
        redis = (
            _redis_binary(), "--bind", HOST, "--port", str(self.redis_port), "--dir", str(redis_dir),
            "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no",
        )  # fmt: skip
        airflow = airflow_command()
        found = [
            Service("redis", redis, {}),
            Service("api-server", (airflow, "api-server"), {}),
            Service("scheduler", (airflow, "scheduler"), {}),
            Service("dag-processor", (airflow, "dag-processor"), {}),
            Service("triggerer", (airflow, "triggerer"), {}),
        ]
        host = socket.gethostname()
        for number in range(1, self.workers + 1):
            name = f"worker{number}@{host}"
            queues = "default" if number == 1 else f"default,{SECOND_QUEUE}"
            args = (airflow, "celery", "worker", "-H", name, "-q", queues, "-c", str(self.concurrency))
            # no log server per worker (it would need a port each); task logs are files under AIRFLOW_HOME/logs
            env = {WORKER_NAME_ENV: name, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}
            found.append(Service(f"worker{number}", args, env))
        return found

    # --------------------------------------------------------------------------------------------- lifecycle
    def prepare(self) -> float:
        """Create the two databases and migrate Airflow's metadata DB; the seconds it took."""
        started = time.monotonic()
        self.postgres.create_database(METADATA_DB)
        for instance in (None, *self.instances):
            self.postgres.create_database(store_database(instance))
        self.world.home.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [airflow_command(), "db", "migrate"],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=600,
            cwd=self.world.home,
        )
        if done.returncode != 0:
            raise AirflowRunError(f"airflow db migrate failed:\n{(done.stdout + done.stderr)[-4000:]}")
        return time.monotonic() - started

    def start(self, *, timeout: float = 300) -> CeleryAirflow:
        """Start every service not running yet (each in its own session, so :meth:`stop` can end it and its
        children), then wait until the components are healthy and every worker answers."""
        if self.is_running():
            return self
        if port_in_use(self.port):
            raise AirflowRunError(f"port {self.port} on {HOST} is taken: the api-server cannot bind to it")
        self.prepare()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.world.home / "redis").mkdir(parents=True, exist_ok=True)
        base = self.environment()
        pids: dict[str, int] = {}
        try:
            for service in self.services():
                pids[service.name] = self._spawn(service, base)
                self._save(pids)
                if service.name == "redis":
                    _wait_port(self.redis_port, timeout=30, what="redis-server")
            self.wait_healthy(timeout=timeout)
            self.ensure_pool(GRAPH_WRITER_POOL, GRAPH_WRITER_SLOTS, "tasks writing to Microsoft Graph")
            self.wait_workers(timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, service: Service, base: Mapping[str, str]) -> int:
        """Start one service in its own session, its output appended to its log; its PID."""
        with (self.log_dir / f"{service.name}.log").open("ab") as log:
            process = subprocess.Popen(
                list(service.args),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**base, **service.env},
                cwd=self.world.home,
                start_new_session=True,
            )
        return process.pid

    def restart_worker(self, name: str, *, timeout: float = 300) -> int:
        """Start a worker again after :meth:`kill_worker` (the lost machine back) and wait until it is ready; its
        new PID."""
        service = next(found for found in self.services() if found.name == name)
        log = self.log_dir / f"{name}.log"
        ready_before = _read(log).count(" ready.")
        pids = self.pids()
        pids[name] = self._spawn(service, self.environment())
        self._save(pids)
        deadline = time.monotonic() + timeout
        while _read(log).count(" ready.") <= ready_before:
            if not _alive(pids[name]):
                raise AirflowRunError(f"Celery {name} exited while restarting{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AirflowRunError(f"Celery {name} not ready {timeout:.0f} s after its restart{self.log_tail()}")
            time.sleep(0.5)
        return pids[name]

    def ensure_pool(self, name: str, slots: int, description: str) -> dict[str, Any]:
        """Create the Airflow pool, or set its size when it exists (a restart); its ``/pools/{name}`` answer."""
        created = self.api("POST", "/pools", json={"name": name, "slots": slots, "description": description},
                           expect=(200, 201, 409))  # fmt: skip
        if created is None or created.get("name") != name:
            return self.api("PATCH", f"/pools/{name}", json={"slots": slots, "description": description})
        return created

    def _save(self, pids: Mapping[str, int]) -> None:
        record = {"api_port": self.port, "redis_port": self.redis_port, "base_url": self.base_url, "pids": dict(pids)}
        self.services_path.write_text(json.dumps(record, indent=2), encoding="utf-8")

    def pids(self) -> dict[str, int]:
        return dict(_read_json(self.services_path).get("pids", {}))

    def status(self) -> dict[str, Any]:
        """``{service: {"pid": n, "running": bool}}`` and the URLs: what ``aadsync-dev status`` prints."""
        services = {name: {"pid": pid, "running": _alive(pid)} for name, pid in self.pids().items()}
        return {"api_url": self.base_url, "broker_url": self.broker_url, "services": services}

    def is_running(self) -> bool:
        pids = self.pids()
        return bool(pids) and all(_alive(pid) for pid in pids.values())

    def wait_workers(self, *, timeout: float = 300) -> list[str]:
        """Wait until every worker's log says ``ready`` (it has joined the broker and consumes its queues)."""
        deadline = time.monotonic() + timeout
        names = [service.name for service in self.services() if service.name.startswith("worker")]
        while True:
            self._check_running("while the workers start")
            dead = [name for name in names if not _alive(self.pids()[name])]
            if dead:
                raise AirflowRunError(f"Celery workers {dead} exited while starting{self.log_tail()}")
            waiting = [name for name in names if " ready." not in _read(self.log_dir / f"{name}.log")]
            if not waiting:
                return names
            if time.monotonic() > deadline:
                raise AirflowRunError(f"Celery workers {waiting} not ready after {timeout:.0f} s{self.log_tail()}")
            time.sleep(0.5)

    def kill_worker(self, name: str, signum: int = signal.SIGKILL) -> int:
        """Send *signum* to a worker's whole session (the Celery main process, its pool and the task processes):
        a machine lost mid-task. Returns the worker's PID."""
        pid = self.pids()[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signum)
        return pid

    def stop(self, *, timeout: float = 30) -> None:
        """SIGTERM each service's session (workers first, Redis last), wait, SIGKILL what is left. By the PIDs in
        ``services.json``, so another process (``aadsync-dev down``) can stop what ``up`` started."""
        pids = self.pids()
        for name in sorted(pids, key=lambda n: (n == "redis", not n.startswith("worker"), n)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pids[name], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_group_alive(pid) for pid in pids.values()):
            time.sleep(0.2)
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError):
            self.services_path.unlink()
        self.process = None

    def _check_running(self, doing: str) -> None:
        dead = [name for name, pid in self.pids().items() if not _alive(pid) and not name.startswith("worker")]
        if not self.pids() or dead:
            raise AirflowRunError(f"the Celery deployment is not running {doing} (down: {dead}){self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The end of every service's log, for failure messages."""
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            parts.append(f"\n--- last {lines} lines of {path} ---\n" + "\n".join(_read(path).splitlines()[-lines:]))
        return "".join(parts) or f"\n(no logs in {self.log_dir})"


def store_database(instance: str | None = None) -> str:
    """The database of a sync instance's store: ``aadsync_store``, or ``aadsync_store_<name>`` for a named one."""
    return STORE_DB if instance is None else f"{STORE_DB}_{instance}"


def _redis_binary() -> str:
    found = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else "")
    if not found:
        raise AirflowRunError(f"redis-server not found: install the Debian package {REDIS_PACKAGE!r}")
    return found


def _wait_port(port: int, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not port_in_use(port):
        if time.monotonic() > deadline:
            raise AirflowRunError(f"{what} not listening on {HOST}:{port} after {timeout:.0f} s")
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    return proc_state(pid) not in (None, "Z")


def _group_alive(pgid: int) -> bool:
    from aadsync_devkit.processes import group_members

    return bool(group_members(pgid))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


__all__: Sequence[str] = ["CeleryAirflow", "Service", "store_database", "worker_hostname"]
