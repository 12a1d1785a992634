"""``aadsync status``: who holds a sync instance now: the instance lock (a cycle or a CLI step) and its scope rows,
i.e. the imports of a run that run in parallel (``import:<connector>``) and a running sync or export step (``step``).
A row whose lease ended is shown as stale: the next acquisition takes it over, so nothing needs unlocking by hand."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from airflow_provider_aadsync.cli_store import echo_json, open_store_to_read, store_options


def _when(value: dt.datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S} UTC" if value else "-"


def _line(name: str, row: dict[str, Any]) -> str:
    if row["state"] == "free":
        return f"{name}: free (token {row['token']})"
    stale = " (stale: its lease ended; the next acquisition takes it over)" if row["state"] == "stale" else ""
    return (
        f"{name}: {row['state']} by {row['holder']!r} since {_when(row['since'])}, lease ends "
        f"{_when(row['lease_ends'])}, token {row['token']}{stale}"
    )


@click.command("status")
@store_options
@click.option("--instance", default="default", show_default=True, help="Sync instance name.")
@click.option("--json", "as_json", is_flag=True, help="The instance lock and its scope rows as JSON.")
def status_command(store_url: str | None, instance: str, as_json: bool) -> None:
    """Show who holds the sync instance: the instance lock (holder, since, lease end, fencing token, cycle hold)
    and, under it, the imports of the holder's run that run in parallel (import:<connector>) and a running sync or
    export step (step)."""
    from airflow_provider_aadsync.engine.store import scopes, utcnow

    with open_store_to_read(store_url, instance) as store:
        overview = scopes.lock_overview(store.engine, instance, utcnow())
        if as_json:
            echo_json({"store": store.display_url, **overview})
            return
        click.echo(f"Store: {store.display_url}")
    row = overview["lock"]
    if row is None:
        click.echo(f"instance {instance!r}: never locked")
        return
    hold = (
        f", cycle hold {row['cycle_hold_seconds'] // 60} min"
        if row["state"] != "free" and row["cycle_hold_seconds"]
        else ""
    )
    click.echo(_line(f"instance {instance!r}", row) + hold)
    for scoped in overview["scopes"]:
        click.echo("  " + _line(scoped["scope"], scoped))
