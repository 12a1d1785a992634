"""Export plans staged by hand, in the shapes sync stages them, for exporter tests that need a shape sync would take
long to build (a group of a thousand members) or cannot build on its own (an object already in the directory).

Sync stages a ``pending_export`` row per object (``add``, ``update`` with the changed values, ``delete``; an update
with no values announces member changes only) and a ``pending_export_reference`` row per member added or removed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from airflow_provider_aadsync.engine.store import (
    Store,
    cs_object,
    cs_reference,
    pending_export,
    pending_export_reference,
    utcnow,
)


def cs_row(
    store: Store,
    connector: str,
    anchor: str,
    dn: str,
    *,
    object_type: str = "group",
    attrs: Mapping[str, list[Any]] | None = None,
    members: Iterable[str] = (),
    attribute: str = "member",
) -> None:
    """An object of the connector space (as an import or a confirmed export left it), with its member rows."""
    with store.transaction() as connection:
        connection.execute(
            sa.insert(cs_object).values(
                connector=connector, anchor=anchor, dn=dn, object_type=object_type,
                attrs=json.dumps(dict(attrs or {})), attrs_hash="x", refs_hash="0", is_deleted=False,
                updated_at=utcnow(),
            )
        )  # fmt: skip
        store.insert_chunked(
            connection,
            cs_reference,
            [{"connector": connector, "anchor": anchor, "attribute": attribute, "target_anchor": target}
             for target in members],
        )  # fmt: skip


def plan_row(
    store: Store,
    connector: str,
    anchor: str,
    dn: str,
    *,
    operation: str,
    object_type: str = "group",
    changes: Mapping[str, list[Any]] | None = None,
    state: str = "pending",
) -> None:
    """One object's pending export (``add`` / ``update`` / ``delete``)."""
    now = utcnow()
    with store.transaction() as connection:
        connection.execute(
            sa.insert(pending_export).values(
                connector=connector, anchor=anchor, object_type=object_type, dn=dn, operation=operation,
                changes=json.dumps(dict(changes or {})), state=state, attempts=0, created_at=now, updated_at=now,
                sent_at=now if state == "sent" else None,
            )
        )  # fmt: skip


def plan_references(
    store: Store, connector: str, anchor: str, attribute: str, targets: Iterable[str], *, operation: str = "add"
) -> None:
    """Member adds or removes of one group."""
    with store.transaction() as connection:
        store.insert_chunked(
            connection,
            pending_export_reference,
            [{"connector": connector, "anchor": anchor, "attribute": attribute, "target_anchor": target,
              "operation": operation, "state": "pending"} for target in targets],
        )  # fmt: skip


def cs_attrs(store: Store, connector: str, anchor: str) -> dict[str, Any] | None:
    """The connector-space values of one object (``@dn`` holds its DN), or None when it is gone."""
    with store.engine.connect() as connection:
        row = connection.execute(
            sa.select(cs_object.c.dn, cs_object.c.attrs).where(
                cs_object.c.connector == connector, cs_object.c.anchor == anchor
            )
        ).first()
    return None if row is None else {**json.loads(row.attrs), "@dn": row.dn}


def cs_references(store: Store, connector: str, anchor: str) -> set[str]:
    with store.engine.connect() as connection:
        return set(
            connection.execute(
                sa.select(cs_reference.c.target_anchor).where(
                    cs_reference.c.connector == connector, cs_reference.c.anchor == anchor
                )
            ).scalars()
        )


def open_plan(store: Store, connector: str) -> tuple[dict[str, dict[str, Any]], int]:
    """What is left of the plan: object rows by anchor (operation, state, last_error) and open member rows."""
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(pending_export).where(pending_export.c.connector == connector)).all()
        references = connection.execute(
            sa.select(sa.func.count())
            .select_from(pending_export_reference)
            .where(pending_export_reference.c.connector == connector)
        ).scalar()
    objects = {
        row.anchor: {"operation": row.operation, "state": row.state, "last_error": row.last_error} for row in rows
    }
    return objects, references


# ------------------------------------------------------------------------- groups for the mass-change guards
def add_group(store: Store, connector: str, anchor: str, name: str, members: int, attribute: str) -> None:
    """A group in the connector space with ``members`` member rows (m0 … m<members-1>)."""
    now = utcnow()
    with store.transaction() as connection:
        connection.execute(
            sa.insert(cs_object).values(
                connector=connector, anchor=anchor, dn=f"CN={name},OU=Groups,DC=corp,DC=example",
                object_type="group", attrs=json.dumps({"displayName": [name]}), attrs_hash="x", refs_hash="0",
                is_deleted=False, updated_at=now,
            )
        )  # fmt: skip
        store.insert_chunked(
            connection,
            cs_reference,
            [{"connector": connector, "anchor": anchor, "attribute": attribute, "target_anchor": f"m{i}"}
             for i in range(members)],
        )  # fmt: skip


def stage_removes(store: Store, connector: str, anchor: str, count: int, attribute: str, first: int = 0) -> None:
    now = utcnow()
    with store.transaction() as connection:
        connection.execute(
            sa.insert(pending_export).values(
                connector=connector, anchor=anchor, object_type="group", dn=anchor, operation="update",
                changes="{}", state="pending", attempts=0, created_at=now, updated_at=now,
            )
        )  # fmt: skip
        store.insert_chunked(
            connection,
            pending_export_reference,
            [{"connector": connector, "anchor": anchor, "attribute": attribute, "target_anchor": f"m{i}",
              "operation": "remove", "state": "pending"} for i in range(first, first + count)],
        )  # fmt: skip


class RecordingExporter:
    """Stands in for a connector's exporter in guard tests: notes whether the run got as far as writing."""

    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []
        self.ran = False

    def run(self) -> None:
        self.ran = True

    def final_counters(self, planned):
        return dict(planned)
