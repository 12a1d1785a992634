"""The local Graph emulator as a background process for ``aadsync-dev up``: start/stop by PID, a dev tenant.

The emulator keeps its state in a SQLite file under its home (``state.sqlite``; an older ``state.json`` is ignored),
so the dev tenant and what was written to it survive a ``dev down`` / ``dev up``. The dev tenant has verified the
seeded directory's mail domain, so the seeded AD users' UPNs can be exported to it as they are. The port the
emulator was started on is remembered next to its PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from aadsync_devkit.processes import HOST, group_members, port_in_use
from aadsync_devkit.world.seed import MAIL_DOMAIN

if TYPE_CHECKING:
    from airflow_provider_aadsync.hooks.entra import EntraHook

#: The dev tenant and app registration (the local world only; real tenants come from Airflow connections).
DEV_TENANT_ID = "00000000-0000-4000-8000-0000000dec0d"
DEV_TENANT_NAME = "contosodev"
DEV_CLIENT_ID = "00000000-0000-4000-8000-00000000a9e5"
DEV_CLIENT_SECRET = "dev-graph-emulator-secret"
DEFAULT_PORT = 8443


class GraphEmulatorError(RuntimeError):
    """Raised when the local Graph emulator cannot be started or reached."""


class LocalGraphEmulator:
    """One emulator process serving ``https://127.0.0.1:PORT`` with its state under *home*."""

    def __init__(self, home: Path, *, port: int | None = None):
        """``port``: default, the port it was last started on, else :data:`DEFAULT_PORT`."""
        self.home = Path(home)
        self.port = port or self._saved_port() or DEFAULT_PORT

    @property
    def port_path(self) -> Path:
        return self.home / "emulator.port"

    def _saved_port(self) -> int | None:
        try:
            return int(self.port_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    @property
    def pid_path(self) -> Path:
        return self.home / "emulator.pid"

    @property
    def state_file(self) -> Path:
        return self.home / "state.sqlite"

    @property
    def ca_cert(self) -> Path:
        return self.home / "tls" / "ca.pem"

    @property
    def base_url(self) -> str:
        return f"https://{HOST}:{self.port}"

    def _pid(self) -> int | None:
        try:
            return int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def is_running(self) -> bool:
        pid = self._pid()
        return pid is not None and bool(group_members(pid))

    def start(self, *, timeout: float = 30.0) -> None:
        """Start in its own session (stopped by PID), wait until it answers, make sure the dev tenant exists."""
        if self.is_running():
            return
        if port_in_use(self.port):
            raise GraphEmulatorError(f"port {self.port} on {HOST} is already in use: stop what listens there first")
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.home / "emulator.log", "ab")  # noqa: SIM115 - handed to the child process
        command = [sys.executable, "-m", "aadsync_devkit.graph_emulator", "--home", str(self.home),
                   "--port", str(self.port), "--state-file", str(self.state_file)]  # fmt: skip
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.pid_path.write_text(f"{process.pid}\n")
        self.port_path.write_text(f"{self.port}\n")
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise GraphEmulatorError(
                    f"the emulator exited ({process.returncode}); see {self.home / 'emulator.log'}"
                )
            try:
                self.admin("GET", "/_emulator/tenants")
                break
            except (httpx.TransportError, FileNotFoundError, ssl.SSLError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise GraphEmulatorError(f"the emulator did not answer within {timeout:.0f} s") from None
                time.sleep(0.1)
        self.ensure_dev_tenant()

    def stop(self, *, timeout: float = 10.0) -> None:
        pid = self._pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while group_members(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if group_members(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
        self.pid_path.unlink(missing_ok=True)

    def admin(self, method: str, path: str, *, timeout: float = 5, **kwargs: Any) -> httpx.Response:
        """A call to the emulator's admin API (``/_emulator/...``)."""
        context = ssl.create_default_context(cafile=str(self.ca_cert))
        return httpx.request(method, f"{self.base_url}{path}", verify=context, timeout=timeout, **kwargs)

    def seed(self, objects: list[dict[str, Any]], *, chunk: int = 5_000) -> list[dict[str, Any]]:
        """Create ``objects`` (each with its ``@odata.type``) in the dev tenant through the admin API, in order and
        ``chunk`` per call; return what the emulator created (ids included)."""
        created: list[dict[str, Any]] = []
        for start in range(0, len(objects), chunk):
            response = self.admin(
                "POST", f"/_emulator/tenants/{DEV_TENANT_ID}/objects", json=objects[start : start + chunk], timeout=600
            )
            if response.status_code != 201:
                raise GraphEmulatorError(f"seeding failed: {response.status_code} {response.text[:300]}")
            created += response.json()["value"]
        return created

    def entra_hook(self, conn_id: str = "aadsync_dev_entra") -> EntraHook:
        """An EntraHook on the dev tenant of this emulator, for tools in this process (benchmarks)."""
        from airflow.sdk import Connection

        from airflow_provider_aadsync.hooks.entra import EntraHook
        from airflow_provider_aadsync.hooks.entra_settings import EntraConnectionSettings

        info = self.connection_info()
        connection = Connection(conn_id=conn_id, **{**info, "extra": json.dumps(info["extra"])})
        return EntraHook(settings=EntraConnectionSettings.from_connection(connection))

    def ensure_dev_tenant(self) -> None:
        """Create the dev tenant if it is missing (or recreate it empty if it predates its verified domain)."""
        found = self.admin("GET", f"/_emulator/tenants/{DEV_TENANT_ID}")
        if found.status_code == 200 and MAIL_DOMAIN in found.json().get("verifiedDomains", []):
            return
        self.reset_dev_tenant()

    def reset_dev_tenant(self) -> None:
        """Replace the dev tenant with an empty one (same id, app and secret)."""
        self.admin("DELETE", f"/_emulator/tenants/{DEV_TENANT_ID}")
        response = self.admin("POST", "/_emulator/tenants", json={
            "id": DEV_TENANT_ID, "name": DEV_TENANT_NAME, "displayName": "Contoso (dev)",
            "verifiedDomains": [MAIL_DOMAIN],
            "apps": [{"clientId": DEV_CLIENT_ID, "clientSecret": DEV_CLIENT_SECRET}],
        })  # fmt: skip
        if response.status_code != 201:
            raise GraphEmulatorError(f"creating the dev tenant failed: {response.status_code} {response.text[:300]}")

    def status(self) -> dict[str, Any]:
        running = self.is_running()
        return {"running": running, "pid": self._pid() if running else None, "home": str(self.home),
                "url": self.base_url, "tenant_id": DEV_TENANT_ID}  # fmt: skip

    def connection_info(self) -> dict[str, Any]:
        """The fields of an Airflow ``aadsync_entra`` connection (JSON form) pointing at this emulator."""
        return {
            "conn_type": "aadsync_entra",
            "login": DEV_CLIENT_ID,
            "password": DEV_CLIENT_SECRET,
            "extra": {
                "tenant_id": DEV_TENANT_ID,
                "cloud": "global",
                "authority_host": self.base_url,
                "graph_url": self.base_url,
                "ca_bundle": str(self.ca_cert),
            },
        }
