"""Steps of a sync cycle of one instance in an OS process of their own, for the concurrency tests.

``python -m tests.support.cycle_process CONFIG.json`` reads the store URL, the instance, the lock holder, the
connection fields of the DC and the emulator and the steps to run; it holds the instance for the whole cycle (as the
DAGs do with their first task and their report) unless ``"cycle": false``, runs the steps through the same glue the
operators and the CLI use, and prints one JSON line per step (its run id and result).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import faulthandler
import json
import signal
import sys
from pathlib import Path
from typing import Any

from airflow.sdk import Connection

from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings
from airflow_provider_aadsync.engine.store import Store, lock
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from airflow_provider_aadsync.hooks.active_directory import ActiveDirectoryHook
from airflow_provider_aadsync.hooks.active_directory_settings import ADConnectionSettings
from airflow_provider_aadsync.hooks.entra import EntraHook
from airflow_provider_aadsync.hooks.entra_settings import EntraConnectionSettings
from airflow_provider_aadsync.steps import (
    ad_export_settings,
    export_to_ad,
    export_to_entra,
    run_ad_import,
    run_entra_import,
)

STEPS = ("import_ad", "import_entra", "sync_ad", "sync_entra", "export_entra", "export_ad")


def run_steps(config: dict[str, Any]) -> None:
    if config.get("lease_seconds"):
        lock.STEP_LEASE = dt.timedelta(seconds=config["lease_seconds"])
    holder = config["holder"]

    def ad() -> ActiveDirectoryHook:
        return ActiveDirectoryHook(settings=ADConnectionSettings.from_fields(name="of the test DC", **config["ad"]))

    def entra() -> EntraHook:
        fields = {**config["entra"], "extra": json.dumps(config["entra"].get("extra") or {})}
        connection = Connection(conn_id="aadsync_entra", **fields)
        return EntraHook(settings=EntraConnectionSettings.from_connection(connection))

    rules = load_sync_rules([], mode="v2")
    with Store.open(config["store_url"], instance=config["instance"]) as store:
        held = (
            lock.cycle(store, holder, wait=dt.timedelta(seconds=config.get("wait_seconds", 300)), poll_seconds=0.2)
            if config.get("cycle", True)
            else contextlib.nullcontext()
        )
        with held:
            for step in config.get("steps", STEPS):
                if step == "import_ad":
                    summary = run_ad_import(ad(), store, mode="full", lock_holder=holder)
                elif step == "import_entra":
                    summary = run_entra_import(entra(), store, mode="full", lock_holder=holder)
                elif step in ("sync_ad", "sync_entra"):
                    connector = step.removeprefix("sync_")
                    summary = run_sync(store, rules, connector=connector, mode="full", lock_holder=holder).summary()
                elif step == "export_entra":
                    settings = ExportSettings(**config.get("export_settings", {}))
                    summary = export_to_entra(entra(), store, settings=settings, lock_holder=holder)
                else:
                    summary = export_to_ad(ad(), store, settings=ad_export_settings(), lock_holder=holder)
                print(json.dumps({"step": step, "run_id": summary["run_id"], "result": summary["result"]}), flush=True)


if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: where a stuck process stands
    run_steps(json.loads(Path(sys.argv[1]).read_text()))
