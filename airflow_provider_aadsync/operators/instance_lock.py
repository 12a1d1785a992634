"""InstanceLockSensor: the first task of a cycle takes the sync instance for its whole DAG run.

Two DAGs (``aadsync_cycle``, ``aadsync_full``) of one sync instance must never interleave their steps. The sensor
acquires the instance lock with the DAG run as holder and a hold (engine/store/lock.py); every step re-enters it as the
same holder (its fencing token fences off an older attempt), and the report, the cycle's teardown, releases it. While
another run holds the instance, the sensor waits in reschedule mode (no worker slot between pokes); when it gives up,
it fails without retries, naming who holds the instance and since when.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from airflow_provider_aadsync.engine.store import Store, StoreLockedError, lock
from airflow_provider_aadsync.operators.base import StoreLocation, lock_holder, open_task_store

if TYPE_CHECKING:
    from airflow.sdk import Context


class InstanceLockSensor(StoreLocation, BaseSensorOperator):
    """Wait until the sync instance is free, then hold it for this DAG run until :func:`release_instance`.

    :param store_url: SQLAlchemy URL of the store (templated); empty or None: the embedded SQLite store.
    :param instance: sync instance name (templated).
    :param hold: how long the instance stays held between two steps of this run (a crashed run blocks it at most
        this long); longer than the steps' retry backoff. Default 60 minutes.
    :param poke_interval: seconds between two attempts (default 30); ``timeout``: how long to wait in all (default
        2 hours) before failing with the holder's name.
    """

    template_fields: Sequence[str] = ("store_url", "store_conn_id", "instance")

    def __init__(
        self,
        *,
        store_url: str | None = None,
        instance: str = "default",
        hold: dt.timedelta = lock.CYCLE_HOLD,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("poke_interval", 30.0)
        kwargs.setdefault("timeout", dt.timedelta(hours=2).total_seconds())
        super().__init__(**kwargs)
        self.store_url = store_url
        self.instance = instance
        self.hold = hold

    def _store(self) -> Store:
        return open_task_store(self.store_location(), self.instance)

    def poke(self, context: Context) -> bool:
        holder = lock_holder(context)
        with self._store() as store:
            try:
                granted = store.acquire_lock(holder, lease=self.hold, hold=self.hold)
            except StoreLockedError:
                # who holds it, the run it is doing and since when: a long wait in the task log is visible as such
                self.log.info("waiting for %s; next try in %.0f s", lock.describe_holder(store), self.poke_interval)
                return False
        self.log.info("sync instance %r held by %s (token %d) until its report", self.instance, holder, granted.token)
        return True

    def execute(self, context: Context) -> Any:
        try:
            return super().execute(context)
        except AirflowSensorTimeout as timeout:
            with self._store() as store:
                state = lock.lock_state(store)
            who = state.describe(self.instance) if state and state.held() else f"sync instance {self.instance!r}"
            raise AirflowFailException(
                f"{who}: gave up after waiting {self.timeout:.0f} s for it. Another cycle (or a CLI run) still holds "
                "it; when that run is gone for good, its lease ends by itself"
            ) from timeout


def release_instance(context: Context, store_url: str | None, instance: str) -> bool:
    """Release the instance this DAG run holds (the cycle's teardown); a no-op when another run holds it."""
    with open_task_store(store_url, instance) as store:
        return store.release_lock(lock_holder(context))
