from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from aadsync_devkit.world.airflow_runs import LocalAirflow
from aadsync_devkit.world.airflow_standalone import StandaloneAirflow, _processes_below, _still_running


class TestStandaloneAirflow:
    def test_environment_binds_the_api_server_to_loopback_on_its_port(self, tmp_path: Path) -> None:
        world = LocalAirflow(tmp_path / "home", dags_folder=tmp_path / "dags", connections={"x": {"conn_type": "y"}})
        env = StandaloneAirflow(world, port=18080, env={"AIRFLOW__CORE__PARALLELISM": "2"}).environment()

        assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)  # standalone runs `airflow` from PATH
        assert (env["AIRFLOW__API__HOST"], env["AIRFLOW__API__PORT"]) == ("127.0.0.1", "18080")
        assert env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:18080"
        assert env["AIRFLOW_HOME"] == str(tmp_path / "home") and env["AIRFLOW__CORE__DAGS_FOLDER"] == str(
            tmp_path / "dags"
        )
        assert env["AIRFLOW_CONN_X"] == '{"conn_type": "y"}' and env["AIRFLOW__CORE__PARALLELISM"] == "2"

    def test_stop_when_never_started_does_nothing(self, tmp_path: Path) -> None:
        StandaloneAirflow(LocalAirflow(tmp_path), port=18080).stop()

    def test_stop_ends_the_process_group_and_children_that_left_it(self, tmp_path: Path) -> None:
        """Airflow's task processes get process groups of their own: stop() must end them too."""
        server = StandaloneAirflow(LocalAirflow(tmp_path), port=18080)
        server.process = subprocess.Popen(
            ["sh", "-c", "setsid sleep 300 & sleep 300 & wait"], start_new_session=True, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while len(below := _processes_below(server.process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(below) == 2, below

        server.stop(timeout=10)

        assert server.process is None and _still_running(below) == []
