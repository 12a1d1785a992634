"""``aadsync airflow trigger|status`` when things go wrong: missing settings, a wrong password, an unreachable API,
bad --conf, a failed run. The API here is a small stdlib HTTP server on loopback answering like Airflow 3's
(``POST /auth/token``, ``/api/v2/dags/...``); the real Airflow is tests/integration/test_airflow_celery.py."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from airflow_provider_aadsync.cli import main

PASSWORD = "s3cret-Airflow-pw"
RUN_ID = "manual__2026-12-04T20:00:00+00:00"


class _Airflow(BaseHTTPRequestHandler):
    """Airflow 3's answers for one DAG ``aadsync_full`` whose runs fail in ``preview``."""

    def log_message(self, *_args: object) -> None:
        pass

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") != "Bearer token-1":
            self._answer(401, {"detail": "Not authenticated"})
            return False
        return True

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        if self.path == "/auth/token":
            if body.get("password") != PASSWORD:
                self._answer(401, {"detail": "Invalid credentials"})
            else:
                self._answer(201, {"access_token": "token-1"})
        elif self._authorized():
            self.server.triggered.append(body)  # type: ignore[attr-defined]
            self._answer(200, _run("queued", body.get("conf")))

    def do_GET(self) -> None:
        if not self._authorized():
            return
        path = self.path.split("?")[0]
        if path == "/api/v2/dags/aadsync_full":
            self._answer(200, {"dag_id": "aadsync_full", "is_paused": False})
        elif path.endswith("/taskInstances"):
            tasks = [("choose_path", "success"), ("preview", "failed"), ("acquire_instance", "skipped")]
            instances = [{"task_id": t, "state": s, "try_number": 1, "map_index": -1} for t, s in tasks]
            self._answer(200, {"task_instances": instances, "total_entries": 3})
        elif path.startswith("/api/v2/dags/aadsync_full/dagRuns/"):
            self._answer(200, _run("failed"))
        elif path == "/api/v2/dags/aadsync_full/dagRuns":
            self._answer(200, {"dag_runs": [_run("failed")], "total_entries": 1})
        elif path == "/api/v2/dags/~/dagRuns":  # a fresh deployment: no run of any DAG yet
            self._answer(200, {"dag_runs": [], "total_entries": 0})
        else:
            self._answer(404, {"detail": f"DAG not found: {path}"})


def _run(state: str, conf: dict | None = None) -> dict:
    return {"dag_id": "aadsync_full", "dag_run_id": RUN_ID, "state": state, "conf": conf or {}, "start_date": None}


@pytest.fixture
def api() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Airflow)
    server.triggered = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _env(server: ThreadingHTTPServer, password: str = PASSWORD) -> dict[str, str]:
    url = f"http://127.0.0.1:{server.server_address[1]}"
    return {"AADSYNC_AIRFLOW_API_URL": url, "AADSYNC_AIRFLOW_USER": "admin", "AADSYNC_AIRFLOW_PASSWORD": password}


def test_missing_settings_name_every_missing_variable():
    env = {"AADSYNC_AIRFLOW_API_URL": "http://127.0.0.1:1", "AADSYNC_AIRFLOW_USER": "", "AADSYNC_AIRFLOW_PASSWORD": ""}
    result = CliRunner().invoke(main, ["airflow", "status", "aadsync_full"], env=env)
    assert result.exit_code == 1
    assert "AADSYNC_AIRFLOW_USER, AADSYNC_AIRFLOW_PASSWORD not set" in result.output


def test_a_wrong_password_is_a_clear_error_naming_the_variable_and_never_printed(api):
    result = CliRunner().invoke(main, ["airflow", "trigger", "aadsync_full"], env=_env(api, "wrong-Password-42"))
    assert result.exit_code == 1
    assert "refused the user 'admin' (HTTP 401): check AADSYNC_AIRFLOW_USER and AADSYNC_AIRFLOW_PASSWORD" in (
        result.output
    )
    assert "wrong-Password-42" not in result.output and api.triggered == []


def test_an_unreachable_api_names_the_url_variable():
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        "AADSYNC_AIRFLOW_API_URL": f"http://127.0.0.1:{port}",
        "AADSYNC_AIRFLOW_USER": "admin",
        "AADSYNC_AIRFLOW_PASSWORD": PASSWORD,
    }
    result = CliRunner().invoke(main, ["airflow", "status"], env=env)
    assert result.exit_code == 1
    assert f"cannot reach the Airflow API at http://127.0.0.1:{port} (AADSYNC_AIRFLOW_API_URL): ConnectError" in (
        result.output
    )
    assert PASSWORD not in result.output


def test_bad_conf_and_a_run_id_without_dag_are_usage_errors(api):
    for conf in ("{not json", "[1, 2]"):
        result = CliRunner().invoke(main, ["airflow", "trigger", "aadsync_full", "--conf", conf], env=_env(api))
        assert result.exit_code == 2 and "--conf" in result.output
    assert api.triggered == []
    result = CliRunner().invoke(main, ["airflow", "status", "--run-id", RUN_ID], env=_env(api))
    assert result.exit_code == 2 and "--run-id needs the DAG_ID" in result.output


def test_a_failed_run_exits_1_naming_the_failed_task_and_json_has_the_tasks(api):
    args = ["airflow", "trigger", "aadsync_full", "--conf", '{"staging": true}', "--wait", "--poll", "0.1"]
    result = CliRunner().invoke(main, args, env=_env(api))
    assert result.exit_code == 1, result.output
    assert api.triggered[0]["conf"] == {"staging": True} and api.triggered[0]["logical_date"]
    assert f"aadsync_full run {RUN_ID}: failed" in result.output
    assert f"Error: run {RUN_ID} failed (tasks: preview)" in result.output
    result = CliRunner().invoke(main, ["airflow", "status", "aadsync_full", "--json"], env=_env(api))
    assert result.exit_code == 1
    document = json.loads(result.output[: result.output.rindex("}") + 1])
    assert document["state"] == "failed"
    assert {task["task_id"]: task["state"] for task in document["tasks"]}["preview"] == "failed"
    result = CliRunner().invoke(main, ["airflow", "status", "nope"], env=_env(api))
    assert result.exit_code == 1 and "HTTP 404" in result.output


def test_status_without_any_run_yet_says_so(api):
    result = CliRunner().invoke(main, ["airflow", "status"], env=_env(api))
    assert result.exit_code == 0 and "no DAG run yet" in result.output
    as_json = CliRunner().invoke(main, ["airflow", "status", "--json"], env=_env(api))
    assert json.loads(as_json.output) == {"dag_runs": []}
