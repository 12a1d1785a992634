"""Connector spaces the connectors configuration no longer names, and their deliberate removal.

An AD connector taken out of the connectors file (or renamed there) leaves its connector space, its links and what it
contributed to the metaverse in the store; no task imports or syncs it any more, so the cloud objects it feeds are
frozen: never updated, never deleted. Every cycle's report says so (:func:`unconfigured_spaces`, one line per space:
its objects and the cloud objects they feed, and the ways out). A slip is undone by putting the name back; a rename
is carried into the store (rename_connector.py, ``aadsync store rename-connector``). A
forest removed for good is dropped with :func:`drop_connector_space` (``aadsync store drop-connector``): every object
of the space is deleted as if its forest had emptied, and one sync of the connector disconnects them as it
disconnects any object deleted in AD, so what only they fed is deprovisioned by the next export, through its guards
(the deletion threshold stops a big one until confirmed). Objects sync provisioned into the space (group writeback)
are not counted nor dropped: that space is written by an export, not read by an import.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from airflow_provider_aadsync.engine.connectors.kinds import AD_KIND, connector_kind
from airflow_provider_aadsync.engine.connectors.schema import ConnectorSchema
from airflow_provider_aadsync.engine.rules import RuleSet
from airflow_provider_aadsync.engine.runs.import_run import StepResult, process_holder
from airflow_provider_aadsync.engine.store import (
    Store,
    cs_object,
    cs_reference,
    export_conflict,
    link,
    pending_export,
    pending_export_reference,
    sync_memo,
    sync_state,
    watermark,
)

#: The bookkeeping a dropped connector leaves once its sync has disconnected and forgotten its objects.
_LEFT_BEHIND = (
    cs_reference, pending_export, pending_export_reference, export_conflict, watermark, sync_state, sync_memo,
)  # fmt: skip


class DropRefused(ValueError):
    """The connector space cannot be dropped (the message says why and, for the count, the exact confirmation)."""


@dataclass(frozen=True)
class UnconfiguredSpace:
    """A connector space no configured connector reads: its imported objects and the cloud objects they feed."""

    connector: str
    objects: int
    cloud_objects: int
    entra_connector: str = "entra"

    def message(self) -> str:
        return (
            f"connector space {self.connector!r} holds {self.objects:,} objects feeding {self.cloud_objects:,} "
            f"objects of {self.entra_connector!r}, but the connectors configuration names no connector "
            f"{self.connector!r}: it is neither imported nor synced, so what it feeds is never updated nor deleted. "
            "Removed or renamed by mistake: put the name back in the connectors file. Renamed on purpose: aadsync "
            f"store rename-connector --connector {self.connector} --to <the new name> --confirm-rename (the space "
            "goes on under it). Removed for good: "
            f"aadsync store drop-connector --connector {self.connector} --confirm-drop {self.objects} (the next "
            "export deprovisions what only it fed, through the deletion threshold)"
        )


def _imported_objects(connection: sa.Connection, connector: str) -> int:
    """How many objects an import put in ``connector``'s space (sync's own provisioned ones left out)."""
    provisioned = (
        sa.select(link.c.anchor)
        .where(link.c.connector == cs_object.c.connector, link.c.anchor == cs_object.c.anchor)
        .where(link.c.link_type == "provision")
    )
    query = sa.select(sa.func.count()).where(
        cs_object.c.connector == connector, cs_object.c.attrs_hash != "", ~provisioned.exists()
    )
    return int(connection.execute(query).scalar_one())


def _known_connectors(connection: sa.Connection) -> list[str]:
    """The connectors any import or sync ran for (their watermarks and sync state: small tables, where a scan of
    every connector-space row for its connector would read the whole space each cycle)."""
    query = sa.union(sa.select(watermark.c.connector), sa.select(sync_state.c.connector))
    return sorted(connection.execute(query).scalars())


def _cloud_objects(connection: sa.Connection, connector: str, entra_connector: str) -> int:
    """Objects of the Entra connector space joined to a metaverse object an object of ``connector`` is linked to."""
    fed = sa.select(link.c.mv_id).where(link.c.connector == connector)
    query = sa.select(sa.func.count(sa.distinct(link.c.anchor))).where(
        link.c.connector == entra_connector, link.c.mv_id.in_(fed)
    )
    return int(connection.execute(query).scalar_one())


def unconfigured_spaces(
    store: Store, configured: Collection[str], *, entra_connector: str = "entra"
) -> list[UnconfiguredSpace]:
    """The connector spaces holding imported objects whose connector ``configured`` does not name (the connectors
    configuration's AD connectors and its Entra connector), by name; nothing is written."""
    spaces = []
    with store.engine.connect() as connection:
        for name in _known_connectors(connection):
            count = _imported_objects(connection, name) if name not in configured else 0
            if count:
                cloud = _cloud_objects(connection, name, entra_connector)
                spaces.append(UnconfiguredSpace(name, count, cloud, entra_connector))
    return spaces


def render_unconfigured(spaces: Collection[UnconfiguredSpace]) -> list[str]:
    """The cycle report's section (Markdown lines), empty when every connector space is configured."""
    if not spaces:
        return []
    lines = ["## Connector spaces no configured connector reads", ""]
    lines += [f"- **{space.connector}**: {space.message()}" for space in spaces]
    return [*lines, ""]


def drop_connector_space(
    store: Store,
    rules: RuleSet,
    connector: str,
    *,
    confirm_drop: int | None,
    entra_connector: str = "entra",
    configured: Collection[str] = (),
    lock_holder: str | None = None,
    schemas: Mapping[str, ConnectorSchema] | None = None,
) -> StepResult:
    """Drop an AD connector space deliberately: every object it holds is deleted as an import deletes an object gone
    from AD, then one sync of ``connector`` (a recorded run) disconnects them and stages the deprovisioning of what
    only they fed; the connector's watermarks and bookkeeping go once that sync has forgotten its objects. Other
    connectors' spaces are not touched.

    :param confirm_drop: the exact number of objects the space holds (as the cycle report shows it).
    :param configured: the connectors the connectors configuration names: one of them is refused (the next cycle
        would import its whole forest again as new objects).
    :raise DropRefused: not an AD connector, still configured, no such space, objects sync provisioned there, or a
        confirmation that is missing or names another count; nothing is changed then.
    """
    from airflow_provider_aadsync.engine.sync import run_sync

    if connector_kind(connector) != AD_KIND:
        raise DropRefused(f"{connector!r} is not an AD connector: only an AD connector's space can be dropped")
    if connector in configured:
        raise DropRefused(
            f"the connectors configuration still names {connector!r}: take it out of the connectors file first (the "
            "next cycle would import its whole forest again as new objects)"
        )
    rules.require_inbound(connector)
    holder = lock_holder or process_holder()
    with store.locked(holder), store.transaction() as connection:
        objects = _imported_objects(connection, connector)
        provisioned = int(
            connection.execute(
                sa.select(sa.func.count()).where(link.c.connector == connector, link.c.link_type == "provision")
            ).scalar_one()
        )
        if provisioned:
            raise DropRefused(
                f"connector space {connector!r} holds {provisioned:,} objects sync provisioned there (group "
                "writeback): it is written by an export, so it is not dropped"
            )
        if not objects:
            names = ", ".join(_known_connectors(connection)) or "none"
            raise DropRefused(f"no connector space {connector!r} in the store (connectors: {names})")
        if confirm_drop != objects:
            given = "" if confirm_drop is None else f"the confirmation names {confirm_drop:,}, but "
            space = UnconfiguredSpace(connector, objects, _cloud_objects(connection, connector, entra_connector))
            raise DropRefused(
                f"{given}connector space {connector!r} holds {objects:,} objects feeding {space.cloud_objects:,} "
                f"objects of {entra_connector!r}: give --confirm-drop {objects} to drop them all; the next export "
                "then deprovisions what only they fed, through its deletion threshold (nothing was changed)"
            )
        connection.execute(
            sa.update(cs_object)
            .where(cs_object.c.connector == connector, cs_object.c.attrs_hash != "")
            .values(is_deleted=True, pending_import="delete")
        )
    result = run_sync(store, rules, connector=connector, mode="delta", lock_holder=holder, schemas=schemas)
    with store.locked(holder), store.transaction() as connection:
        if not _imported_objects(connection, connector):  # every object disconnected and forgotten
            for table in _LEFT_BEHIND:
                connection.execute(sa.delete(table).where(table.c.connector == connector))
    return result
