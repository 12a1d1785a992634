"""``aadsync status``: the instance lock and its scope rows (the parallel imports of a run, a running sync or export
step), held or stale, as text and as JSON."""

from __future__ import annotations

import datetime as dt
import json

from click.testing import CliRunner

from airflow_provider_aadsync.cli import main
from airflow_provider_aadsync.engine.store import Store, lock

RUN = "aadsync_cycle:manual__1"


def test_status_shows_the_cycle_and_its_running_and_stale_imports(tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    with Store.open(url, instance="prod") as store:
        result = CliRunner().invoke(main, ["status", "--store", url, "--instance", "prod"])
        assert result.exit_code == 0 and "instance 'prod': never locked" in result.output
        cycle = store.acquire_lock(RUN, hold=lock.CYCLE_HOLD)
        lock.acquire(store, RUN, lease=dt.timedelta(0), scope="import:entra", step=True)  # killed, lease over
        lock.acquire(store, RUN, scope="import:ad", step=True)  # running (SQLite: after the other, in turn)

        result = CliRunner().invoke(main, ["status", "--store", url, "--instance", "prod"])
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[1].startswith(f"instance 'prod': held by '{RUN}' since ") and "cycle hold 60 min" in lines[1]
        assert lines[2].startswith(f"  import:ad: held by '{RUN}'") and "token 1" in lines[2]
        assert lines[3].startswith(f"  import:entra: stale by '{RUN}'") and "next acquisition takes it over" in lines[3]

        document = json.loads(
            CliRunner().invoke(main, ["status", "--store", url, "--instance", "prod", "--json"]).output
        )
        assert document["lock"]["state"] == "held" and document["lock"]["token"] == cycle.token
        assert document["lock"]["cycle_hold_seconds"] == 3600
        assert [(s["scope"], s["state"], s["holder"]) for s in document["scopes"]] == [
            ("import:ad", "held", RUN),
            ("import:entra", "stale", RUN),
        ]
        with store.locked(RUN):  # a sync step: fences the imports off, its marker row shows
            document = json.loads(
                CliRunner().invoke(main, ["status", "--store", url, "--instance", "prod", "--json"]).output
            )
            assert [(s["scope"], s["state"]) for s in document["scopes"]] == [("step", "held")]
        store.release_lock(RUN)
        document = json.loads(
            CliRunner().invoke(main, ["status", "--store", url, "--instance", "prod", "--json"]).output
        )
        assert document["lock"]["state"] == "free" and document["scopes"] == []
