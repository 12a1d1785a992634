"""The Airflow glue of the instance lock and of deterministic stops, called directly (no scheduler): the sensor takes
the instance for its DAG run or waits, gives up naming the holder, the report releases the instance; a threshold stop
or a refused configuration fails without retries, a transient stop is retried."""

from __future__ import annotations

import datetime as dt
import re
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_aadsync.engine.rules import RuleIssue, RuleLoadError
from airflow_provider_aadsync.engine.store import Store, StoreLockedError, lock
from airflow_provider_aadsync.operators.base import check_summary, run_recorded_step
from airflow_provider_aadsync.operators.instance_lock import InstanceLockSensor, release_instance
from airflow_provider_aadsync.operators.report import SyncReportOperator


class _TaskInstance:
    def __init__(self) -> None:
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value

    def xcom_pull(self, **_kwargs: object) -> None:
        return None

    def get_task_states(self, **_kwargs: object) -> dict:
        return {}


def context_of(dag_id: str, run_id: str) -> dict:
    return {"dag": SimpleNamespace(dag_id=dag_id), "run_id": run_id, "ti": _TaskInstance()}


@pytest.fixture
def store_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


def sensor(store_url: str, **kwargs) -> InstanceLockSensor:
    return InstanceLockSensor(task_id="acquire_instance", store_url=store_url, instance="main", **kwargs)


def test_the_sensor_takes_the_instance_for_its_run_and_the_other_dag_waits(store_url):
    full, cycle = context_of("aadsync_full", "manual__1"), context_of("aadsync_cycle", "scheduled__2")
    assert sensor(store_url).poke(full)
    assert not sensor(store_url).poke(cycle)  # held by the other DAG's run: wait, no error
    assert sensor(store_url).poke(full)  # a cleared and re-run first task of the same run takes it back
    with Store.open(store_url, instance="main") as store:
        with pytest.raises(StoreLockedError, match="locked by 'aadsync_full:manual__1'"):
            store.acquire_lock("aadsync_cycle:scheduled__2")
        with store.locked("aadsync_full:manual__1"):  # a step of the holding run re-enters
            pass
    waiting = sensor(store_url)
    told: list[str] = []
    waiting.log.info = lambda message, *args: told.append(message % args)  # type: ignore[method-assign]
    assert not waiting.poke(cycle)  # the step left it held for the cycle
    assert re.fullmatch(
        r"waiting for the run lock of sync instance 'main' held by 'aadsync_full:manual__1' "
        r"\(since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\); next try in 30 s",
        told[0],
    ), told
    assert release_instance(full, store_url, "main")
    assert sensor(store_url).poke(cycle)


def test_the_sensor_gives_up_without_retries_naming_the_holder(store_url):
    assert sensor(store_url).poke(context_of("aadsync_cycle", "scheduled__1"))
    waiting = sensor(store_url, mode="poke", poke_interval=0.01, timeout=0.05)
    with pytest.raises(AirflowFailException, match=r"locked by 'aadsync_cycle:scheduled__1' since .* gave up"):
        waiting.execute(context_of("aadsync_full", "manual__2"))


def test_the_report_releases_the_instance_even_when_nothing_ran(store_url, tmp_path):
    context = context_of("aadsync_cycle", "scheduled__1")
    assert sensor(store_url, hold=dt.timedelta(minutes=5)).poke(context)
    report = SyncReportOperator(task_id="report", store_url=store_url, instance="main", step_task_ids=[])
    with pytest.raises(Exception, match="nothing to report"):  # skipped: no step ran
        report.execute(context)
    with Store.open(store_url, instance="main") as store:
        store.acquire_lock("aadsync_full:manual__2")  # free again


@pytest.mark.parametrize(
    "result",
    [
        "stopped-deletion-threshold-exceeded",
        "stopped-disable-threshold-exceeded",
        "stopped-member-removal-threshold-exceeded",
        "stopped-error-limit",
    ],
)
def test_a_deterministic_stop_fails_the_task_without_retries(result):
    context = context_of("aadsync_cycle", "r")
    summary = {"result": result, "run_id": 7, "detail": "run again with a higher threshold to confirm"}
    with pytest.raises(AirflowFailException, match=f"export stopped: {result} \\(run 7\\): run again"):
        check_summary(context, summary, ("success",), "export")
    assert context["ti"].pushed["stopped_summary"] == summary  # the report still shows it


@pytest.mark.parametrize("result", ["stopped-server-down", "stopped-lock-lost"])
def test_a_transient_stop_is_left_to_airflow_retries(result):
    with pytest.raises(RuntimeError) as raised:
        check_summary(context_of("aadsync_cycle", "r"), {"result": result, "run_id": 1}, ("success",), "import")
    assert not isinstance(raised.value, AirflowFailException)


def test_a_refused_configuration_fails_without_retries(store_url):
    def step(store: Store, holder: str) -> dict:
        raise RuleLoadError([RuleIssue("rules/in.yaml", None, "", "the rule set is empty", 1, 1)])

    refused = r"(?s)sync of ad: refused configuration, not retried: .*rules/in.yaml"
    with pytest.raises(AirflowFailException, match=refused):
        run_recorded_step(
            SimpleNamespace(log=None),
            context_of("aadsync_cycle", "r"),
            store_url=store_url,
            instance="main",
            connector="ad",
            step_name="sync of ad",
            completed=("success",),
            step=step,
        )


def test_a_task_of_another_instance_on_the_store_fails_without_retries_and_runs_nothing(store_url):
    Store.open(store_url, instance="main").close()  # the store of instance "main"
    ran: list[str] = []
    with pytest.raises(AirflowFailException, match="belongs to sync instance 'main', not to sync instance 'apac'"):
        run_recorded_step(
            SimpleNamespace(log=None),
            context_of("aadsync_apac_cycle", "r"),
            store_url=store_url,
            instance="apac",
            connector="ad",
            step_name="AD import",
            completed=("success",),
            step=lambda store, holder: ran.append(holder) or {},
        )
    with pytest.raises(AirflowFailException, match="not to sync instance 'apac'"):
        InstanceLockSensor(task_id="acquire_instance", store_url=store_url, instance="apac").poke(
            context_of("aadsync_apac_cycle", "r")
        )
    assert ran == []


def test_the_sensor_stops_a_cycle_whose_entra_connection_names_another_tenant(store_url, monkeypatch):
    """The cycle's first task checks the tenant of its Entra connection against the store's, before it takes the
    instance: another tenant fails the cycle without retries before any import runs."""
    import json

    def entra(conn_id: str, tenant: str) -> str:
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}",
            json.dumps(
                {"conn_type": "aadsync_entra", "login": "client", "password": "s", "extra": {"tenant_id": tenant}}
            ),
        )
        return conn_id

    first, other = "11111111-0000-0000-0000-000000000001", "22222222-0000-0000-0000-000000000002"
    with Store.open(store_url, instance="main") as store:
        store.check_tenant(first)
    assert sensor(store_url, entra_conn_id=entra("own_entra", first)).poke(context_of("aadsync_cycle", "r1"))
    with Store.open(store_url, instance="main") as store:
        store.release_lock("aadsync_cycle:r1")
    with pytest.raises(AirflowFailException, match=f"syncs Entra tenant {first}, and this step's Entra connection"):
        sensor(store_url, entra_conn_id=entra("wrong_entra", other)).poke(context_of("aadsync_cycle", "r2"))
    with Store.open(store_url, instance="main") as store:
        assert lock.lock_state(store) is None or not lock.lock_state(store).held()  # the instance was not taken
    # a connection the sensor cannot read is left to the Entra import, which says what is wrong with it
    assert sensor(store_url, entra_conn_id="no_such_connection").poke(context_of("aadsync_cycle", "r3"))
