"""InstanceLockSensor: the first task of a cycle takes the sync instance for its whole DAG run.

Two DAGs (``aadsync_cycle``, ``aadsync_full``) of one sync instance must never interleave their steps. The sensor
acquires the instance lock with the DAG run as holder and a hold (engine/store/lock.py); every step re-enters it as the
same holder (its fencing token fences off an older attempt), and the report, the cycle's teardown, releases it. While
another run holds the instance, the sensor waits in reschedule mode (no worker slot between pokes); when it gives up,
it fails without retries, naming who holds the instance and since when. Before it takes the instance it checks the
store's owner (engine/store/owner.py): a store owned by another instance, or whose recorded Entra tenant is not the
one of the cycle's Entra connection, fails the cycle here, before any import reads or writes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from airflow_provider_aadsync.engine.store import Store, StoreInstanceError, StoreLockedError, lock
from airflow_provider_aadsync.operators.base import StoreLocation, lock_holder, open_task_store
from airflow_provider_aadsync.operators.templated import templated_value

if TYPE_CHECKING:
    from airflow.sdk import Context


class InstanceLockSensor(StoreLocation, BaseSensorOperator):
    """Wait until the sync instance is free, then hold it for this DAG run until :func:`release_instance`.

    :param store_url: SQLAlchemy URL of the store (templated); empty or None: the embedded SQLite store.
    :param instance: sync instance name (templated).
    :param entra_conn_id: the cycle's Entra connection (templated; None: no tenant check here): its tenant must be
        the one the store recorded, so a cycle pointed at another tenant stops before its AD import runs too.
    :param hold: how long the instance stays held between two steps of this run (a crashed run blocks it at most
        this long); longer than the steps' retry backoff. Default 60 minutes.
    :param poke_interval: seconds between two attempts (default 30); ``timeout``: how long to wait in all (default
        2 hours) before failing with the holder's name.
    """

    template_fields: Sequence[str] = ("store_url", "store_conn_id", "instance", "entra_conn_id")

    def __init__(
        self,
        *,
        store_url: str | None = None,
        instance: str = "default",
        entra_conn_id: str | None = None,
        hold: dt.timedelta = lock.CYCLE_HOLD,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("poke_interval", 30.0)
        kwargs.setdefault("timeout", dt.timedelta(hours=2).total_seconds())
        super().__init__(**kwargs)
        self.store_url = store_url
        self.instance = instance
        self.entra_conn_id = entra_conn_id
        self.hold = hold

    def _store(self) -> Store:
        return open_task_store(self.store_location(), self.instance)

    def _check_tenant(self, store: Store) -> None:
        """Refuse (without retries) a store that recorded another Entra tenant than the cycle's connection names."""
        conn_id = templated_value(self.entra_conn_id)
        if not conn_id:
            return
        from airflow_provider_aadsync.hooks.entra import EntraHook

        try:
            tenant = EntraHook(conn_id).settings.tenant_id
        except Exception as error:  # a missing or invalid connection: the Entra import says so in its own words
            self.log.info("tenant check skipped: connection %r not usable here (%s)", conn_id, type(error).__name__)
            return
        try:
            store.check_tenant(tenant)
        except StoreInstanceError as error:
            raise AirflowFailException(str(error)) from None

    def poke(self, context: Context) -> bool:
        holder = lock_holder(context)
        with self._store() as store:
            self._check_tenant(store)
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
