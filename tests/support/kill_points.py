"""Run one step of the cycle in its own OS process and SIGKILL it at a chosen point of its progress.

Progress is counted in events the step cannot avoid: Graph requests answered (``httpx.Client.send``), LDAP
operations answered (ldap3 ``search``/``add``/``modify``/``delete``/``modify_dn``) and SQL statements executed in
the store. A run with ``kill_at=0`` counts them and prints the total, so a test can pick N evenly spaced points of
that one step; with ``kill_at=k`` the process sends itself SIGKILL right after the k-th event returned: the server
has done the work (a write is applied) and the process dies before it records the answer, or in the middle of a
store transaction. No sleeps: the same k always stops the step at the same place.

Invoked as ``python -m tests.support.kill_points '<json spec>'`` by :func:`run_killed`.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: The lock holder of every killed run and of its rerun: as an Airflow retry of one task instance.
HOLDER = "kill-test:run-1"
REPO = Path(__file__).resolve().parents[2]


class _Progress:
    def __init__(self, kill_at: int) -> None:
        self.kill_at = kill_at
        self.events = 0

    def tick(self) -> None:
        self.events += 1
        if self.events == self.kill_at:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def counting(kill_at: int = 0) -> Iterator[_Progress]:
    """Count Graph requests, LDAP operations and store statements; SIGKILL this process at event ``kill_at``."""
    import httpx
    import ldap3
    import sqlalchemy as sa

    progress = _Progress(kill_at)
    patched: list[tuple[Any, str, Any]] = []

    def after(owner: Any, name: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            progress.tick()
            return result

        patched.append((owner, name, original))
        setattr(owner, name, wrapper)

    after(httpx.Client, "send")
    for name in ("search", "add", "modify", "delete", "modify_dn"):
        after(ldap3.Connection, name)

    def statement(*_args: Any) -> None:
        progress.tick()

    sa.event.listen(sa.engine.Engine, "after_cursor_execute", statement)
    try:
        yield progress
    finally:
        sa.event.remove(sa.engine.Engine, "after_cursor_execute", statement)
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)


def run_step(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the step ``spec`` names against its store, AD and Graph; return its summary."""
    from airflow_provider_aadsync.engine.store import Store

    step = spec["step"]
    with Store.open(spec["store"], instance="test") as store:
        if step == "import-ad":
            from airflow_provider_aadsync.steps import run_ad_import

            return run_ad_import(_ad_hook(spec), store, mode=spec["mode"], lock_holder=HOLDER)
        if step == "import-entra":
            from airflow_provider_aadsync.engine.connectors.entra.reader import import_entra

            hook = _entra_hook(spec)
            return import_entra(hook, store, connector="entra", mode=spec["mode"], lock_holder=HOLDER).summary()
        if step == "sync":
            from airflow_provider_aadsync.engine.sync import run_sync
            from airflow_provider_aadsync.engine.sync.settings import load_sync_rules

            writeback_ou = spec.get("writeback_ou")  # group writeback is opt-in: on when the spec names its OU
            rules = load_sync_rules(writeback_enabled=bool(writeback_ou), writeback_ou=writeback_ou)
            return run_sync(store, rules, connector=spec["connector"], mode=spec["mode"], lock_holder=HOLDER).summary()
        if step == "export-entra":
            from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings, run_entra_export

            # a rerun looks up the creates a killed run had sent after this pause (5 s by default)
            settings = ExportSettings(resend_settle_seconds=0.2)
            return run_entra_export(store, _entra_hook(spec), settings=settings, lock_holder=HOLDER).summary()
        if step == "export-ad":
            from airflow_provider_aadsync.engine.connectors.ad.writer import run_ad_export

            hook = _ad_hook(spec)
            try:
                return run_ad_export(store, hook, lock_holder=HOLDER).summary()
            finally:
                hook.close()
    raise ValueError(f"unknown step {step!r}")


def _ad_hook(spec: dict[str, Any]):
    from airflow_provider_aadsync.hooks.active_directory import ActiveDirectoryHook
    from airflow_provider_aadsync.hooks.active_directory_settings import ADConnectionSettings

    return ActiveDirectoryHook(settings=ADConnectionSettings.from_fields(name="of the test DC", **spec["ad"]))


def _entra_hook(spec: dict[str, Any]):
    from airflow_provider_aadsync.hooks.entra import EntraHook
    from airflow_provider_aadsync.hooks.entra_settings import EntraConnectionSettings

    return EntraHook(settings=EntraConnectionSettings(**spec["entra"]))


def run_killed(spec: dict[str, Any], kill_at: int, *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``spec`` in a child process that SIGKILLs itself at event ``kill_at`` (0: never; it prints its count)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "tests.support.kill_points", json.dumps({**spec, "kill_at": kill_at})],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def main() -> None:
    spec = json.loads(sys.argv[1])
    with counting(spec["kill_at"]) as progress:
        summary = run_step(spec)
    print(json.dumps({"events": progress.events, "summary": summary}, default=str))


if __name__ == "__main__":
    main()
