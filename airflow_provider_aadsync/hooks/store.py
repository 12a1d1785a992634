"""The store's location from an Airflow connection (``store_conn_id``, ``--store-conn-id``, the Variable
``aadsync_store_conn_id``): the Airflow side of opening the store, so the password stays in the connection."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

#: Connection extras passed on to the PostgreSQL driver as URL query parameters.
STORE_URL_QUERY_EXTRAS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "application_name")


def store_url_from_connection(conn_id: str) -> str:
    """The SQLAlchemy URL of the store an Airflow connection describes (a ``postgres`` or ``sqlite`` connection).

    Resolved when the task runs, so the URL with its password never becomes a template field's value. The
    connection's extra ``sqlalchemy_scheme`` picks another driver (default ``postgresql+psycopg2``).
    """
    from airflow.sdk import BaseHook

    from airflow_provider_aadsync.engine.store.urls import remember_connection

    url = store_url_of(conn_id, BaseHook.get_connection(conn_id))
    remember_connection(url, conn_id)  # a guard's advice then says --store-conn-id, never the URL
    return url


def store_url_of(conn_id: str, connection: Any) -> str:
    """The store URL of a connection object already looked up (the task SDK's, or the api-server's
    ``airflow.models.Connection`` for the sync manager): the one place that turns a connection into a URL."""
    import sqlalchemy as sa

    extra = connection.extra_dejson
    kind = (connection.conn_type or "").lower()
    if kind == "sqlite":
        path = connection.host or connection.schema or ""
        if not path:
            raise AirflowFailException(f"store connection {conn_id!r}: a sqlite connection needs the file path as host")
        return f"sqlite:///{path}"
    if kind not in ("postgres", "postgresql"):
        raise AirflowFailException(
            f"store connection {conn_id!r} has type {connection.conn_type!r}: the store needs a postgres connection "
            "(or sqlite)"
        )
    query = {key: str(extra[key]) for key in STORE_URL_QUERY_EXTRAS if extra.get(key) not in (None, "")}
    url = sa.engine.URL.create(
        str(extra.get("sqlalchemy_scheme") or "postgresql+psycopg2"),
        username=connection.login or None,
        password=connection.password or None,
        host=connection.host or None,
        port=connection.port or None,
        database=connection.schema or None,
        query=query,
    )
    return url.render_as_string(hide_password=False)
