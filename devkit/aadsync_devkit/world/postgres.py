"""A throw-away PostgreSQL server bound to 127.0.0.1, for integration tests and developers.

Why: the store runs on PostgreSQL when a deployment's tasks run on several workers, and SQLite hides the
differences that matter there (timestamptz, bytea, JSON, row locks, concurrent transactions). This starts a
real server in seconds without touching the system cluster: data, socket, config and log all live under one
HOME directory, authentication is ``trust`` on 127.0.0.1 only, and durability is switched off
(``fsync=off``, ``synchronous_commit=off``) because the data is disposable.

PostgreSQL refuses to run as root, so when this process is root the HOME is handed to the ``postgres`` OS user
and the binaries run as that user (its parent directories must be searchable by it: pytest's ``tmp_path`` is
not when running as root, so use a directory under ``/tmp``).

Measured on a 2-core VM (PostgreSQL 15): ``initdb`` ~0.6 s, start to first ``SELECT 1`` ~0.07 s,
``CREATE DATABASE`` ~0.05 s, stop ~0.05 s.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aadsync_devkit.processes import HOST, free_port, group_members, port_in_use, proc_state

SUPERUSER = "postgres"
OS_USER = "postgres"
DEBIAN_PACKAGE = "postgresql"

_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_CONF_NAME = "aadsync.conf"
_HBA = f"""# Written by aadsync_devkit.world.postgres: a disposable test server, trust on 127.0.0.1 only.
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 trust
host    all       all   {HOST}/32  trust
"""


class PostgresError(RuntimeError):
    """Raised when the local PostgreSQL server cannot be initialised, started or reached."""


class PostgresNotInstalledError(PostgresError):
    """Raised when the PostgreSQL server binaries (initdb, postgres) are not installed."""


def find_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` (Debian's layout), else wherever ``postgres`` is on PATH."""
    candidates = []
    for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb"):
        version = initdb.parent.parent.name
        with contextlib.suppress(ValueError):
            candidates.append((tuple(int(part) for part in version.split(".")), initdb.parent))
    if candidates:
        return max(candidates)[1]
    found = shutil.which("postgres")
    if found and (Path(found).parent / "initdb").exists():
        return Path(found).parent
    raise PostgresNotInstalledError(
        f"PostgreSQL server binaries (initdb, postgres) not found; install the Debian package {DEBIAN_PACKAGE!r} "
        f"(apt-get install {DEBIAN_PACKAGE})"
    )


class LocalPostgres:
    """One PostgreSQL server whose whole state lives under *home* (``data/``, ``run/`` socket, ``log/``)."""

    def __init__(self, home: Path, *, port: int | None = None, bin_dir: Path | None = None) -> None:
        self.home = Path(home).absolute()
        self._bin_dir = Path(bin_dir) if bin_dir else None
        self._auto_port = port is None
        self._proc: subprocess.Popen[bytes] | None = None
        # A server already running from this HOME (e.g. started by an earlier process) keeps its port.
        self.port: int = port or self._running_port() or free_port()

    # ------------------------------------------------------------------ layout
    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_path(self) -> Path:
        return self.home / "log" / "postgres.log"

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = find_bin_dir()
        return self._bin_dir

    def _binary(self, name: str) -> str:
        path = self.bin_dir / name
        if not path.exists():
            raise PostgresNotInstalledError(f"{path} not found; install the Debian package {DEBIAN_PACKAGE!r}")
        return str(path)

    def url(self, database: str = "aadsync") -> str:
        """SQLAlchemy URL of *database* on this server (trust auth: no password)."""
        return f"postgresql+psycopg2://{SUPERUSER}@{HOST}:{self.port}/{database}"

    def is_initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists() and (self.data_dir / "global" / "pg_control").exists()

    # ------------------------------------------------------------------ running as the postgres user
    def _run_as(self) -> dict[str, Any]:
        """Popen arguments that drop to the ``postgres`` OS user when we are root (postgres refuses root)."""
        if os.geteuid() != 0:
            return {}
        try:
            entry = pwd.getpwnam(OS_USER)
        except KeyError as error:
            raise PostgresNotInstalledError(
                f"running as root needs the {OS_USER!r} OS user, created by the Debian package {DEBIAN_PACKAGE!r}"
            ) from error
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _env(self) -> dict[str, str]:
        """A clean environment: a developer's PGDATA/PGPORT/PGHOST must not redirect the throw-away server."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        env["HOME"] = str(self.home)
        return env

    def _prepare_home(self) -> None:
        """Create HOME's directories and, as root, hand them to the postgres user and check it can reach them."""
        for sub in (self.home, self.socket_dir, self.log_path.parent):
            sub.mkdir(parents=True, exist_ok=True)
        run_as = self._run_as()
        if not run_as:
            return
        for path in (self.home, self.socket_dir, self.log_path.parent):
            os.chown(path, run_as["user"], run_as["group"])
        probe = subprocess.run(
            ["test", "-w", str(self.home), "-a", "-x", str(self.home)], cwd="/", check=False, **run_as
        )
        if probe.returncode != 0:
            raise PostgresError(
                f"the {OS_USER!r} OS user cannot reach {self.home}: a parent directory is not searchable by it "
                "(pytest's tmp_path is private to root); use e.g. tempfile.mkdtemp() itself as the home"
            )

    # ------------------------------------------------------------------ lifecycle
    def init(self) -> float:
        """``initdb`` into HOME/data (idempotent: no-op if already initialised). Returns seconds spent."""
        if self.is_initialized():
            return 0.0
        if self.is_running():
            raise PostgresError(f"a server is running from {self.data_dir} but it is not initialised; stop it")
        t0 = time.monotonic()
        initdb = self._binary("initdb")  # fail on a missing installation before touching HOME
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)  # a half-finished initdb: initdb refuses a non-empty directory
        self._prepare_home()
        result = subprocess.run(
            [
                initdb,
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            cwd=self.home,
            env=self._env(),
            capture_output=True,
            text=True,
            check=False,
            **self._run_as(),
        )
        if result.returncode != 0:
            raise PostgresError(
                f"initdb failed (exit {result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        (self.data_dir / "pg_hba.conf").write_text(_HBA)
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(f"\ninclude_if_exists = '{_CONF_NAME}'\n")
        return time.monotonic() - t0

    def write_config(self) -> Path:
        """(Re)write the settings this class owns; rewritten on every start so the port and paths follow HOME."""
        path = self.data_dir / _CONF_NAME
        path.write_text(
            "# Written by aadsync_devkit.world.postgres on every start; a disposable test server.\n"
            f"listen_addresses = '{HOST}'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self.socket_dir}'\n"
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
            "logging_collector = off\n"
            "timezone = 'UTC'\n"
        )
        if run_as := self._run_as():
            os.chown(path, run_as["user"], run_as["group"])
        return path

    def _running_pid(self) -> int | None:
        """PID of the postmaster running from this HOME, from our child or from ``data/postmaster.pid``."""
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        state = proc_state(pid)
        if state is None or state == "Z":
            return None
        try:
            if b"postgres" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                return None
        except OSError:
            return None
        return pid

    def _running_port(self) -> int | None:
        if self._running_pid() is None:
            return None
        try:
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[3])
        except (OSError, ValueError, IndexError):
            return None

    @property
    def pid(self) -> int | None:
        return self._running_pid()

    def is_running(self) -> bool:
        """True if the postmaster of this HOME is alive (zombies and stale pid files count as stopped)."""
        return self._running_pid() is not None

    def start(self, *, timeout: float = 30.0) -> float:
        """Initialise if needed, start the postmaster in its own session, wait for ``SELECT 1``. Returns seconds.

        No-op (returns 0) if this server is already running. When the port was picked automatically and was
        taken in the meantime, a new one is picked and the start retried.
        """
        if self.is_running():
            return 0.0
        t0 = time.monotonic()
        self.init()
        for attempt in range(3):
            if port_in_use(self.port):
                if not self._auto_port:
                    raise PostgresError(f"port {self.port} on {HOST} is already in use by another server")
                self.port = free_port()
            try:
                self._start_once(timeout)
                return time.monotonic() - t0
            except PostgresError as error:
                if not (self._auto_port and "could not bind" in str(error) and attempt < 2):
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> None:
        self._prepare_home()
        self.write_config()
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [self._binary("postgres"), "-D", str(self.data_dir)],
                cwd=self.home,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # setsid: the server gets its own process group we can kill as a whole
                close_fds=True,
                **self._run_as(),
            )
        try:
            self.wait_ready(timeout=timeout)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll until a TCP connection to 127.0.0.1 runs ``SELECT 1`` (the socket alone may be up too early)."""
        psycopg2 = _psycopg2()
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise PostgresError(
                    f"postgres exited with {self._proc.returncode}; see {self.log_path}:\n" + self._log_tail(log_offset)
                )
            try:
                with contextlib.closing(self.connect("postgres", connect_timeout=2)) as connection:
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT 1")
                        cursor.fetchone()
                return
            except psycopg2.Error as error:
                last = error
            time.sleep(0.05)
        raise PostgresError(
            f"postgres did not answer within {timeout:.0f}s (last error: {last}):\n" + self._log_tail(log_offset)
        )

    def _log_tail(self, offset: int = 0, n: int = 2000) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, *, timeout: float = 15.0) -> None:
        """SIGINT (fast shutdown) the postmaster, wait, SIGKILL its process group as a fallback. No-op if stopped."""
        pid = self._running_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGINT)
            if not self._wait_gone(pid, timeout):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    if os.getpgid(pid) == pid:
                        os.killpg(pid, signal.SIGKILL)
                    else:
                        os.kill(pid, signal.SIGKILL)
                self._wait_gone(pid, 5.0)
                (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            self._proc = None

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        """Wait until the postmaster and its children are gone; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.pid == pid:
                self._proc.poll()  # reap our child so it does not linger as a zombie
            state = proc_state(pid)
            if (state is None or state == "Z") and not group_members(pid):
                return True
            time.sleep(0.02)
        return False

    def __enter__(self) -> LocalPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ databases
    def connect(self, database: str = "postgres", **options: Any) -> Any:
        """A psycopg2 connection as the superuser over TCP, autocommitting: CREATE DATABASE refuses transactions.

        Close it yourself (``contextlib.closing``): psycopg2's ``with connection`` only ends a transaction.
        """
        connection = _psycopg2().connect(host=HOST, port=self.port, user=SUPERUSER, dbname=database, **options)
        connection.autocommit = True
        return connection

    def create_database(self, name: str = "aadsync") -> str:
        """Create *name* unless it exists; returns its SQLAlchemy URL."""
        _check_name(name)
        with contextlib.closing(self.connect()) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def create_password_role(self, role: str, password: str, database: str) -> str:
        """A login role that must give its password over TCP (scram-sha-256), owning a new *database*; returns the
        database's SQLAlchemy URL with that password in it.

        The server trusts every other role (a disposable test server): one HBA line for this role goes above the
        ``trust`` lines, and the server reloads its HBA file.
        """
        _check_name(role)
        hba = self.data_dir / "pg_hba.conf"
        line = f"host    all       {role}   {HOST}/32  scram-sha-256\n"
        lines = hba.read_text().splitlines(keepends=True)
        if line not in lines:
            first_rule = next(index for index, text in enumerate(lines) if text.strip() and not text.startswith("#"))
            hba.write_text("".join([*lines[:first_rule], line, *lines[first_rule:]]))
        self.create_database(database)
        with contextlib.closing(self.connect()) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
            verb = "ALTER" if cursor.fetchone() else "CREATE"
            cursor.execute(f'{verb} ROLE "{role}" LOGIN PASSWORD %s', (password,))
            cursor.execute(f'ALTER DATABASE "{database}" OWNER TO "{role}"')
            cursor.execute("SELECT pg_reload_conf()")
        return f"postgresql+psycopg2://{role}:{quote(password, safe='')}@{HOST}:{self.port}/{database}"

    def drop_database(self, name: str) -> None:
        """Drop *name* if it exists, disconnecting its sessions (so a test's leftover pool cannot block it)."""
        _check_name(name)
        with contextlib.closing(self.connect()) as connection, connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _check_name(name: str) -> None:
    """Database names are interpolated into DDL, so only plain identifiers are accepted."""
    if not _DB_NAME.match(name):
        raise ValueError(f"database name {name!r} must match {_DB_NAME.pattern}")


def _psycopg2() -> Any:
    try:
        import psycopg2
    except ImportError as error:
        raise PostgresError(
            "psycopg2 is needed to talk to PostgreSQL: pip install 'airflow-provider-aadsync[postgres]'"
        ) from error
    return psycopg2
