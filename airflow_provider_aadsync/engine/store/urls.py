"""The secrets a store URL can carry, and the URL as logs and reports may show it.

A password is not only the URL's own (``postgresql://user:secret@host/db``): libpq also takes it as a query parameter
(``postgresql://user@host/db?password=secret``), and ``sslpassword`` unlocks the client key. SQLAlchemy's
``hide_password`` masks only the first, so a URL written the second way showed its password in every report that named
the store.

SQLAlchemy also ends the password at its first '@', so a password holding a raw '@' (``user:Pa55@word@host``) came out
cut short: only its head was registered as a secret (or none of it, under the secrets' minimum length), the masked URL
showed its tail, and the driver's error quoted the tail as a host name. A URL SQLAlchemy cannot parse at all (a port
that is not a number) had no password registered. Such a URL's password is read by hand (:data:`_PASSWORD_READINGS`),
registered and masked, and a raw '@' in it is refused (:func:`refuse_raw_at`).
"""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qsl, quote, unquote

import sqlalchemy as sa

from airflow_provider_aadsync.engine.secrets import MASK

#: Query parameters of a store URL whose value is a secret (compared case-insensitively).
SECRET_QUERY_PARAMETERS = frozenset({"password", "sslpassword"})
#: Why a store URL whose password holds a raw '@' is refused (never quoting the URL: it holds the password).
RAW_AT_REFUSAL = "the store URL's password holds a raw '@': percent-encode it as %40"

#: The password of ``scheme://user:password@host[:port]`` read by hand, as SQLAlchemy's grammar but letting the password
#: hold an '@'. The rule: the password starts after the first ':' following ``scheme://`` (a user name holds no ':' or
#: '/') and ends at an '@' followed by a host part, that is a host (no '@', '/', '?' or ':'; or a bracketed IPv6
#: address), an optional port (no '@', '/' or '?'), then '/', '?' or the end of the URL. A password may hold ':', '/'
#: and '?' (SQLAlchemy reads them) and a raw '@', so more than one '@' can end it; both readings are taken:
#: the shortest ends at the first such '@' (where SQLAlchemy and libpq end it when the URL parses), the longest at the
#: last '@' before the host part (an '@' in the database name or a query value can only make it longer, never cut the
#: password short). Registering both masks the password whichever way the driver reads it; a shortest reading that
#: still holds an '@' proves a raw '@' in the password.
_PASSWORD_READINGS = tuple(
    re.compile(rf"[\w+]+://[^:/]*:(?P<password>.*{lazy})@(?:\[[^\]/?@]*\]|[^@/?:]*)(?::[^@/?]*)?(?=[/?]|\Z)", re.DOTALL)
    for lazy in ("?", "")
)

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
    """Every secret ``url`` carries: its password and the values of :data:`SECRET_QUERY_PARAMETERS`. The password of a
    URL SQLAlchemy cannot parse, or cuts short at a raw '@', is read by hand (:data:`_PASSWORD_READINGS`): never an
    error, so a caller registering the secrets of a URL that is refused later registers them all the same."""
    parsed = _parsed(url)
    if parsed is None:
        return _secrets_by_hand(str(url))
    found = [parsed.password] if parsed.password else []
    for name, value in parsed.query.items():
        if name.lower() in SECRET_QUERY_PARAMETERS:
            found += [value] if isinstance(value, str) else list(value)
    if has_raw_at(url):
        found += _hand_passwords(str(url))
    return list(dict.fromkeys(str(secret) for secret in found if secret))


def masked_url(url: str | sa.URL) -> str:
    """``url`` with every secret it carries replaced by ``***``, for logs and reports (masked by hand when SQLAlchemy
    cannot parse it or would show the tail of a password holding a raw '@')."""
    parsed = _parsed(url)
    if parsed is None or has_raw_at(url):
        return _masked_by_hand(str(url))
    query = {name: MASK if name.lower() in SECRET_QUERY_PARAMETERS else value for name, value in parsed.query.items()}
    return parsed.set(query=query).render_as_string(hide_password=True)


def has_raw_at(url: str | sa.URL) -> bool:
    """Whether the password of ``url`` holds a raw '@': even its shortest reading by hand does."""
    reading = _PASSWORD_READINGS[0].match(url) if isinstance(url, str) else None
    return reading is not None and "@" in reading["password"]


def refuse_raw_at(url: str | sa.URL) -> None:
    """Refuse a store URL whose password holds a raw '@' (:data:`RAW_AT_REFUSAL`): its driver would take the
    password's tail for the host and quote it in its error. Register the URL's secrets first (:func:`url_secrets`).

    :raise ValueError: naming the problem and the fix, never the URL or the password.
    """
    if has_raw_at(url):
        raise ValueError(RAW_AT_REFUSAL)


def _parsed(url: str | sa.URL) -> sa.URL | None:
    """``url`` as SQLAlchemy reads it; None when it cannot (no URL, a port that is not a number)."""
    try:
        return sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        return None


def _hand_passwords(url: str) -> list[str]:
    """The shortest and the longest reading of the password of ``url`` (:data:`_PASSWORD_READINGS`), decoded as
    SQLAlchemy decodes a password, and as written when that differs."""
    readings = [match["password"] for pattern in _PASSWORD_READINGS if (match := pattern.match(url))]
    return list(dict.fromkeys(form for reading in readings for form in (unquote(reading), reading) if form))


def _query_by_hand(url: str) -> str:
    """The query of ``url`` SQLAlchemy could not parse: what follows the first '?' after the password's host part."""
    reading = _PASSWORD_READINGS[0].match(url)
    rest = url[reading.end() :] if reading else url
    return rest.partition("?")[2]


def _secrets_by_hand(url: str) -> list[str]:
    """:func:`url_secrets` of a URL SQLAlchemy cannot parse."""
    query = parse_qsl(_query_by_hand(url), keep_blank_values=False)
    found = _hand_passwords(url) + [value for name, value in query if name.lower() in SECRET_QUERY_PARAMETERS]
    return list(dict.fromkeys(secret for secret in found if secret))


def _masked_by_hand(url: str) -> str:
    """``url`` with its longest password reading and its secret query values replaced by ``***``."""
    reading = _PASSWORD_READINGS[1].match(url)
    if reading:
        url = url[: reading.start("password")] + MASK + url[reading.end("password") :]
    names = "|".join(re.escape(name) for name in sorted(SECRET_QUERY_PARAMETERS))
    return re.sub(rf"(?i)([?&](?:{names})=)[^&]*", rf"\g<1>{MASK}", url)


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
