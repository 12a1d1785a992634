"""The secrets a store URL can carry, and the URL as logs and reports may show it.

A password is not only the URL's own (``postgresql://user:secret@host/db``): libpq also takes it as a query parameter
(``postgresql://user@host/db?password=secret``), and ``sslpassword`` unlocks the client key. SQLAlchemy's
``hide_password`` masks only the first, so a URL written the second way showed its password in every report that named
the store.
"""

from __future__ import annotations

import os
from urllib.parse import quote

import sqlalchemy as sa

from airflow_provider_aadsync.engine.secrets import MASK

#: Query parameters of a store URL whose value is a secret (compared case-insensitively).
SECRET_QUERY_PARAMETERS = frozenset({"password", "sslpassword"})

#: The Airflow connection each store URL of this process was read from (hooks/store.py): a guard's CLI advice names
#: the connection, never the URL and its password.
_CONNECTIONS: dict[str, str] = {}


def remember_connection(url: str, conn_id: str) -> None:
    """Note that ``url`` is the store of the Airflow connection ``conn_id`` (for :func:`connection_of`)."""
    _CONNECTIONS[url] = conn_id


def connection_of(url: str) -> str | None:
    """The Airflow connection ``url`` was read from in this process, None for a URL given as it is."""
    return _CONNECTIONS.get(url)


def url_secrets(url: str | sa.URL) -> list[str]:
    """Every secret ``url`` carries: its password and the values of :data:`SECRET_QUERY_PARAMETERS`."""
    parsed = sa.engine.make_url(url)
    found = [parsed.password] if parsed.password else []
    for name, value in parsed.query.items():
        if name.lower() in SECRET_QUERY_PARAMETERS:
            found += [value] if isinstance(value, str) else list(value)
    return [str(secret) for secret in found if secret]


def masked_url(url: str | sa.URL) -> str:
    """``url`` with every secret it carries replaced by ``***``, for logs and reports."""
    parsed = sa.engine.make_url(url)
    query = {name: MASK if name.lower() in SECRET_QUERY_PARAMETERS else value for name, value in parsed.query.items()}
    return parsed.set(query=query).render_as_string(hide_password=True)


def sqlite_file(url: str | sa.URL) -> str:
    """The file of a SQLite store URL (``sqlite:///path``); empty for another database, an in-memory one or a URL
    already in SQLite's URI form (``sqlite:///file:...``), whose file SQLite resolves itself."""
    parsed = sa.engine.make_url(url)
    file = parsed.database or "" if parsed.get_backend_name() == "sqlite" else ""
    return "" if file == ":memory:" or file.startswith("file:") else file


def existing_file_url(url: str | sa.URL) -> sa.URL:
    """``url`` of a SQLite file in SQLite's URI form with ``mode=rw``: read and written as usual, but never created.
    A plain file URL creates a missing file at the first connection, so a missing store (also one removed while a
    handle's pool reconnects) would come back as a new empty file."""
    parsed = sa.engine.make_url(url)
    path = quote(os.path.abspath(str(parsed.database)), safe="/")  # SQLite decodes %XX; "?" and "#" end the path
    return parsed.set(database=f"file:{path}", query={**parsed.query, "mode": "rw", "uri": "true"})
