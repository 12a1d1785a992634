"""The scope rows of the instance lock (lock.py): what lets the imports of one run hold the instance together.

Next to the instance row (named after the instance) the ``store_lock`` table holds, per instance, one row per scope:
``<instance>#import:<connector>`` for a running import of that connector, and ``<instance>#step`` marking a running
whole-instance step (a sync or an export). They need no schema change: same table, same columns.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from airflow_provider_aadsync.engine.store.errors import StoreLockedError
from airflow_provider_aadsync.engine.store.tables import as_utc, store_lock

log = logging.getLogger("airflow_provider_aadsync.engine.store.lock")


def scope_row(instance: str, scope: str) -> str:
    """The name of a scope's lock row: ``<instance>#<scope>`` (the instance row is named ``<instance>``)."""
    return f"{instance}#{scope}"


def import_scope(connector: str) -> str:
    """The scope of the import of ``connector``: it writes that connector space and its watermarks only."""
    return f"import:{connector}"


#: The scope row marking a running whole-instance step (sync, export): an import of the same run waits for it.
STEP_MARK = "step"


class Turn(Exception):
    """Internal: on SQLite another import of the same run is running; wait for the turn."""


def ensure_row(connection: sa.Connection, name: str, now: dt.datetime) -> None:
    """Create a lock row once and keep it (on SQLite this first write takes the write lock for the transaction)."""
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    connection.execute(
        insert(store_lock)
        .values(name=name, holder="", token=0, acquired_at=now, expires_at=now)
        .on_conflict_do_nothing(index_elements=["name"])
    )


def scope_rows(instance: str) -> sa.ColumnElement[bool]:
    return store_lock.c.name.startswith(f"{instance}#", autoescape=True)


def live_scopes(connection: sa.Connection, instance: str, now: dt.datetime) -> list[Any]:
    """The scope rows of ``instance`` held now (running imports, a running whole-instance step)."""
    return list(
        connection.execute(
            sa.select(store_lock).where(scope_rows(instance), store_lock.c.holder != "", store_lock.c.expires_at > now)
        )
    )


def take_row(
    connection: sa.Connection, name: str, holder: str, token: int, now: dt.datetime, expiry: dt.timedelta
) -> None:
    ensure_row(connection, name, now)
    connection.execute(
        sa.update(store_lock)
        .where(store_lock.c.name == name)
        .values(holder=holder, token=token, acquired_at=now, expires_at=now + expiry, renewed_at=now)
    )


def check_turn(
    connection: sa.Connection,
    instance: str,
    holder: str,
    scope: str,
    generation: int,
    now: dt.datetime,
    postgres: bool,
) -> None:
    """An import joining its run's instance: refused while a whole-instance step of the run runs; on SQLite it
    waits (:class:`Turn`) while another import of the run runs."""
    for row in live_scopes(connection, instance, now):
        if row.name == scope_row(instance, STEP_MARK):
            if row.holder == holder and row.token == generation:
                raise StoreLockedError(
                    f"sync instance {instance!r}: a sync or export step of {holder!r} runs since "
                    f"{as_utc(row.acquired_at):%Y-%m-%d %H:%M:%S} UTC; an import of the same run waits until it ends"
                )
        elif not postgres and row.name != scope_row(instance, scope) and row.holder == holder:
            raise Turn()


def clear_scopes(connection: sa.Connection, instance: str, holder: str, now: dt.datetime) -> None:
    """A whole-instance acquisition: the scope rows of the generation it replaces are free (their leases are fenced
    off by the new instance token)."""
    for row in live_scopes(connection, instance, now):
        if row.name != scope_row(instance, STEP_MARK):
            log.warning(
                "sync instance %r: %s of %r (token %d) is fenced off by a new acquisition of %r",
                instance,
                row.name.removeprefix(f"{instance}#"),
                row.holder,
                row.token,
                holder,
            )
    connection.execute(
        sa.update(store_lock)
        .where(scope_rows(instance), store_lock.c.holder != "")
        .values(holder="", expires_at=now, hold_seconds=None)
    )


def step_mark(instance: str, holder: str, token: int) -> sa.Update:
    """An update of the marker row of a whole-instance step of ``holder`` (it matches nothing for a cycle's lease)."""
    return sa.update(store_lock).where(
        store_lock.c.name == scope_row(instance, STEP_MARK), store_lock.c.holder == holder, store_lock.c.token == token
    )


def lock_overview(engine: sa.Engine, instance: str, now: dt.datetime) -> dict[str, Any]:
    """The instance lock as ``aadsync status`` shows it: the instance row and every scope row with a holder (the
    running imports and the running sync or export step; a row whose lease ended is ``stale``: the next acquisition
    of its scope or of the instance takes it over, the cycle's release frees it)."""

    def describe(row: Any) -> dict[str, Any]:
        expires = as_utc(row.expires_at)
        state = "free" if not row.holder else "held" if expires > now else "stale"
        return {
            "state": state,
            "holder": row.holder or None,
            "since": as_utc(row.acquired_at) if row.holder else None,
            "lease_ends": expires if row.holder else None,
            "token": int(row.token),
        }

    with engine.connect() as connection:
        found = list(
            connection.execute(
                sa.select(store_lock)
                .where(sa.or_(store_lock.c.name == instance, scope_rows(instance)))
                .order_by(store_lock.c.name)
            )
        )
    overview: dict[str, Any] = {"instance": instance, "lock": None, "scopes": []}
    for row in found:
        if row.name == instance:
            overview["lock"] = describe(row) | {"cycle_hold_seconds": row.hold_seconds}
        elif row.holder:
            overview["scopes"].append({"scope": row.name.removeprefix(f"{instance}#")} | describe(row))
    return overview
