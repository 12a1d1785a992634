"""How a guard's stop names the sync instance it stopped in, so that following its advice changes that instance.

A named instance (README "Several sync instances in one deployment") reads its settings from the Variables
``aadsync_<instance>__<setting>`` first, then the shared ``aadsync_<setting>`` (dag_settings.py), and the CLI opens
its store with ``--instance NAME``. The engine knows only the store's instance name, which does not say whether it is
a named instance or the default one renamed by the Variable ``aadsync_instance``: an instance not called "default" is
given both Variables. The default instance's wording has no instance in it.

The CLI opens an instance's embedded SQLite store unless told which store to open, so the advice of a run on another
store names it too (:func:`cli_store`): its Airflow connection, or its URL when that has no password. Without it, an
administrator following the advice of a PostgreSQL instance would confirm the change in an empty SQLite store.
"""

from __future__ import annotations

import shlex

__all__ = ["DEFAULT", "cli_instance", "cli_store", "variable_advice"]

#: The default sync instance's store name (Store.open's default, the CLI's --instance default): its Variables have
#: no instance in their names.
DEFAULT = "default"


def variable_advice(setting: str, instance: str) -> str:
    """The Variable that keeps ``setting`` (without ``aadsync_``) for ``instance``, as the advice names it (in
    backquotes): ``aadsync_<setting>`` for the default instance, the instance's own ``aadsync_<instance>__<setting>``
    (read before the shared one) for another, with the shared one for a default instance not called "default"."""
    if instance == DEFAULT:
        return f"`aadsync_{setting}`"
    return (
        f"`aadsync_{instance}__{setting}` (the named instance's own; `aadsync_{setting}` when {instance} is the "
        "default instance, named by the Variable aadsync_instance)"
    )


def cli_instance(instance: str, store: str = "") -> str:
    """The CLI options that open ``instance``'s store, followed by a space ("" for the default instance on its
    embedded store, which the CLI opens without options), to put after the command's name; ``store``: the options
    naming the store itself (:func:`cli_store`)."""
    return ("" if instance == DEFAULT else f"--instance {shlex.quote(instance)} ") + store


def cli_store(url: str, instance: str) -> str:
    """The CLI option that names the store at ``url`` for ``instance``, followed by a space: the Airflow connection it
    was read from (``--store-conn-id``), "" for the instance's embedded store, ``--store URL`` for a URL without a
    password, and a placeholder for the connection of one with a password (never the URL: advice is logged)."""
    from airflow_provider_aadsync.engine.store import default_store_url
    from airflow_provider_aadsync.engine.store.urls import connection_of, url_secrets

    conn_id = connection_of(url)
    if conn_id:
        return f"--store-conn-id {shlex.quote(conn_id)} "
    if url == default_store_url(instance):
        return ""
    try:
        secret = bool(url_secrets(url))
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy parses: the store opened it, so it is one; say nothing
        return ""
    return "--store-conn-id STORE_CONNECTION " if secret else f"--store {shlex.quote(url)} "
