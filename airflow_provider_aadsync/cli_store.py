"""The ``aadsync`` commands' store options (``--store URL``, ``--store-conn-id ID``), opening the store they name,
and the reading commands' ``--json`` output, shared by cli.py and the cli_* modules."""

from __future__ import annotations

import json
import logging

import click

from airflow_provider_aadsync.engine.store import Store

_STORE_CONN_KEY = "aadsync.store_conn_id"


def _remember_store_conn_id(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    ctx.meta[_STORE_CONN_KEY] = value


def store_options(command):
    """``--store URL`` and ``--store-conn-id ID`` (read by :func:`open_store`, so signatures stay as they are)."""
    command = click.option(
        "--store-conn-id",
        default=None,
        envvar="AADSYNC_STORE_CONN_ID",
        expose_value=False,
        callback=_remember_store_conn_id,
        help="Airflow connection (postgres) of the store: the password stays in the connection.",
    )(command)
    return click.option(
        "--store",
        "store_url",
        default=None,
        envvar="AADSYNC_STORE_URL",
        help="SQLAlchemy URL of the store (env AADSYNC_STORE_URL; default: embedded SQLite); one with a password: "
        "use --store-conn-id (env AADSYNC_STORE_CONN_ID).",
    )(command)


def _url_password(url: str) -> str | None:
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url).password  # type: ignore[return-value]
    except Exception:  # not a URL: Store.open says so
        return None


def open_store(store_url: str | None, instance: str) -> Store:
    """The store named by --store-conn-id (Airflow's connection lookup) or --store, else the embedded SQLite one."""
    conn_id = click.get_current_context().meta.get(_STORE_CONN_KEY)
    if conn_id:
        if store_url:
            raise click.UsageError("give --store or --store-conn-id, not both")
        from airflow_provider_aadsync.hooks.store import store_url_from_connection

        store_url = store_url_from_connection(conn_id)
    elif store_url and _url_password(store_url):
        logging.getLogger("airflow_provider_aadsync.cli").warning(
            "--store carries a password, which other local users can see in the process list: use --store-conn-id"
        )
    return Store.open(store_url, instance=instance)


def echo_json(value: object) -> None:
    """Reading commands' --json: one JSON document on stdout (dates as ISO text)."""
    click.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))
