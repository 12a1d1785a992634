"""``aadsync-dev emulator serve --port P --state FILE`` as its own process: TLS with the CA it prints, msal tokens,
Graph writes, a stop by PID (SIGTERM) and a restart on the same state file that still has what was written.

The state file is only ever named, never read: its format is the emulator's business.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import msal
import pytest
import requests

from aadsync_devkit.processes import HOST, free_port, port_in_use, proc_state

pytestmark = pytest.mark.integration

TENANT_ID = "00000000-0000-4000-8000-0000000c11e5"
CLIENT_ID = "6a7b8c9d-0000-4000-8000-00000000c115"
SECRET = "cli-serve-secret"
SCOPES = ["https://graph.microsoft.com/.default"]
UPN = "grace@cliserve.example.test"
#: The line ``serve`` prints once it listens (see EmulatorServer.serve_forever).
_BANNER = re.compile(r"Graph emulator on (?P<url>https://\S+) \(CA: (?P<ca>.+)\)")


def aadsync_command() -> list[str]:
    """The venv's ``aadsync-dev`` console script next to this interpreter, else the dev kit module (same entry
    point)."""
    script = Path(sys.executable).parent / "aadsync-dev"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "aadsync_devkit"]


@dataclass
class Served:
    process: subprocess.Popen
    log: Path
    base_url: str
    ca_cert: Path

    def trust(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_cert))

    def admin(self, method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(method, f"{self.base_url}{path}", verify=self.trust(), timeout=10, **kwargs)


def _wait_until_served(process: subprocess.Popen, log: Path, port: int, timeout: float = 30.0) -> Served:
    """Wait for the banner naming the URL and CA, then for a TLS answer (an admin call) verified by that CA."""
    deadline = time.monotonic() + timeout
    banner = None
    while True:
        if process.poll() is not None:
            pytest.fail(f"`aadsync-dev emulator serve` exited ({process.returncode}):\n{log.read_text()}")
        if banner is None:
            banner = _BANNER.search(log.read_text())
        if banner is not None:
            served = Served(process, log, banner["url"], Path(banner["ca"].strip()))
            assert served.base_url == f"https://{HOST}:{port}"
            with contextlib.suppress(httpx.TransportError, ssl.SSLError, FileNotFoundError):
                if served.admin("GET", "/_emulator/tenants").status_code == 200:
                    return served
        if time.monotonic() > deadline:
            pytest.fail(
                f"`aadsync-dev emulator serve` did not answer over TLS within {timeout:.0f} s:\n{log.read_text()}"
            )
        time.sleep(0.1)


def _stop_by_pid(process: subprocess.Popen, timeout: float = 15.0) -> int:
    """SIGTERM to the server's PID; its exit status once it is gone (SIGKILL only if it ignored the signal)."""
    os.kill(process.pid, signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
        pytest.fail(f"the emulator (PID {process.pid}) ignored SIGTERM for {timeout:.0f} s")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    """Start ``aadsync-dev emulator serve --port P --state FILE`` (own session, stdout/stderr to a log); any process
    still running at the end is stopped by its PID."""
    started: list[subprocess.Popen] = []

    def start(port: int, state_file: Path) -> Served:
        log = tmp_path / f"serve-{len(started)}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [*aadsync_command(), "emulator", "serve", "--port", str(port), "--state", str(state_file)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        started.append(process)
        return _wait_until_served(process, log, port)

    yield start
    for process in started:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def _token(served: Served) -> str:
    """A client-credentials token from msal; its HTTP session is closed afterwards, so no idle keep-alive
    connection is left to hold up the server's shutdown."""
    with requests.Session() as session:
        session.verify = str(served.ca_cert)
        app = msal.ConfidentialClientApplication(
            CLIENT_ID,
            client_credential=SECRET,
            authority=f"{served.base_url}/{TENANT_ID}",
            validate_authority=False,
            instance_discovery=False,
            http_client=session,
        )
        result = app.acquire_token_for_client(scopes=SCOPES)
    assert "access_token" in result, result
    assert result["token_type"] == "Bearer"
    return result["access_token"]


def _graph(served: Served, method: str, path: str, token: str, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=f"{served.base_url}/v1.0", verify=served.trust(), timeout=10) as graph:
        return graph.request(method, path, headers=headers, **kwargs)


def _users(served: Served, token: str) -> list[dict]:
    response = _graph(served, "GET", "/users", token, params={"$select": "id,displayName,userPrincipalName"})
    assert response.status_code == 200, response.text
    return response.json()["value"]


def _tenant_and_user(served: Served) -> tuple[str, dict]:
    """Create the tenant with its app through the admin API (``serve`` creates none), then a user through Graph."""
    assert served.admin("GET", "/_emulator/tenants").json()["value"] == []
    created = served.admin("POST", "/_emulator/tenants", json={
        "id": TENANT_ID, "name": "cliserve", "verifiedDomains": ["cliserve.example.test"],
        "apps": [{"clientId": CLIENT_ID, "clientSecret": SECRET}],
    })  # fmt: skip
    assert created.status_code == 201, created.text
    token = _token(served)
    user = _graph(served, "POST", "/users", token, json={
        "accountEnabled": True, "displayName": "Grace", "mailNickname": "grace", "userPrincipalName": UPN,
        "passwordProfile": {"password": "Xy!12345678"},
    })  # fmt: skip
    assert user.status_code == 201, user.text
    return token, user.json()


def _stop_and_check_gone(served: Served, port: int) -> None:
    pid = served.process.pid
    status = _stop_by_pid(served.process)
    assert status in (0, -signal.SIGTERM), f"exit status {status}:\n{served.log.read_text()}"
    assert proc_state(pid) is None  # reaped: no such process any more
    assert not port_in_use(port)


@pytest.fixture
def no_ca_env(monkeypatch):
    """requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's verify: only the printed CA counts."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def test_serve_keeps_graph_writes_across_a_stop_by_pid_and_a_restart(serve, tmp_path, no_ca_env):
    state_file = tmp_path / "emulator" / "state"  # no suffix: nothing here assumes the file's format
    state_file.parent.mkdir()
    port = free_port()

    first = serve(port, state_file)
    assert first.ca_cert.is_file()
    with pytest.raises(httpx.ConnectError):  # not publicly trusted: the printed CA is what verifies the server
        httpx.get(f"{first.base_url}/_emulator/tenants", timeout=5)
    token, user = _tenant_and_user(first)
    assert [u["userPrincipalName"] for u in _users(first, token)] == [UPN]
    # The documented way to have pending writes saved now (saves are coalesced to about one a second).
    assert first.admin("POST", "/_emulator/flush").status_code == 204

    _stop_and_check_gone(first, port)
    assert state_file.exists()

    second = serve(port, state_file)
    assert second.process.pid != first.process.pid
    assert [t["id"] for t in second.admin("GET", "/_emulator/tenants").json()["value"]] == [TENANT_ID]
    users = _users(second, _token(second))  # the app and its secret came back too
    assert users == [{"id": user["id"], "displayName": "Grace", "userPrincipalName": UPN}]


def test_a_write_right_before_sigterm_survives_the_restart(serve, tmp_path, no_ca_env):
    """No flush and no idle connection delaying the shutdown: SIGTERM right after the last write."""
    state_file = tmp_path / "emulator" / "state"
    state_file.parent.mkdir()
    port = free_port()

    first = serve(port, state_file)
    token, user = _tenant_and_user(first)
    # Within a second of the user's save (or of the tenant's, which deferred the user's): this save is deferred.
    renamed = _graph(first, "PATCH", f"/users/{user['id']}", token, json={"displayName": "Grace Hopper"})
    assert renamed.status_code == 204, renamed.text
    _stop_and_check_gone(first, port)

    second = serve(port, state_file)
    users = _users(second, _token(second))
    assert users == [{"id": user["id"], "displayName": "Grace Hopper", "userPrincipalName": UPN}]
