"""The Celery deployment's plan, without starting it: the services of docker/compose.yaml, two workers that name
themselves and their queues, the settings every component shares, and the dev CLI's flag."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from aadsync_devkit.cli import main
from aadsync_devkit.world.airflow_celery import STORE_CONN_ID, WORKER_NAME_ENV, CeleryAirflow, worker_hostname
from aadsync_devkit.world.airflow_runs import LocalAirflow
from aadsync_devkit.world.postgres import LocalPostgres


def deployment(tmp_path: Path) -> CeleryAirflow:
    postgres = LocalPostgres(tmp_path / "pg", port=54329, bin_dir=tmp_path)
    return CeleryAirflow(LocalAirflow(tmp_path / "airflow", dags_folder=tmp_path), postgres, port=18080)


def test_the_services_are_compose_s_with_two_named_workers_on_their_queues(tmp_path):
    services = {service.name: service for service in deployment(tmp_path).services()}
    assert list(services) == ["redis", "api-server", "scheduler", "dag-processor", "triggerer", "worker1", "worker2"]
    assert "--save" in services["redis"].args and "127.0.0.1" in services["redis"].args
    for number, queues in ((1, "default"), (2, "default,aadsync")):
        worker = services[f"worker{number}"]
        name = worker.env[WORKER_NAME_ENV]
        assert name.startswith(f"worker{number}@") and worker.args[-5:-2] == (name, "-q", queues)
    assert (
        services["worker1"].env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"]
        != services["worker2"].env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"]
    )


def test_every_component_shares_the_executor_broker_secrets_and_the_postgres_store(tmp_path):
    celery = deployment(tmp_path)
    env = celery.environment()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == celery.broker_url
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith(":54329/airflow")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    assert json.loads(env[f"AIRFLOW_CONN_{STORE_CONN_ID.upper()}"])["schema"] == "aadsync_store"
    assert celery.environment()["AIRFLOW__API_AUTH__JWT_SECRET"] == env["AIRFLOW__API_AUTH__JWT_SECRET"]  # kept
    assert (celery.world.home / "secrets.json").stat().st_mode & 0o077 == 0


def test_a_worker_names_its_task_instances(monkeypatch):
    monkeypatch.setenv(WORKER_NAME_ENV, "worker2@vm")
    assert worker_hostname() == "worker2@vm"


def test_the_dev_cli_offers_the_celery_deployment():
    assert "--airflow [none|celery]" in CliRunner().invoke(main, ["up", "--help"]).output
