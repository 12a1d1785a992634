"""Set questions a sync pass asks of the store, answered where the rows are.

Which rows point at a set of keys (:func:`holders_of`): index probes for a few keys, one ordered read of the rows for
many.

A sync pass asks "which groups hold one of these objects" of the reference tables: the groups holding a member it
just linked (their metaverse members resolve now), the groups holding a member it just provisioned (their member
rows can now be staged). A delta sync asks it of a few objects: an ``IN`` list over the target index answers at once.
A first full sync asks it of every object of the directory: 105,000 random reads of a GUID-keyed index (0.9 CPU
seconds for the connector-space references of 100,000 users) where one pass over the table's rows in stored order,
filtered against the set of keys, reads the same answer in a tenth of the time.

Which (holder, member) pairs are desired and not held, or held and no longer desired (:func:`set_differences`): the
store compares the two row sets and returns only the differences. A delta sync that moves one member of a
250,000-member group gets two rows back, where reading both sets into pandas to compare them held 500,000 rows in
memory at each of the pass's two reference steps.

Which objects member and manager changes leave alone while a match is refused (:func:`held_by_refusals`): the few
held adds, found through the pending exports' state index, and their links.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from airflow_provider_aadsync.engine.batching import chunks
from airflow_provider_aadsync.engine.runs.export_run import refusing_anchor
from airflow_provider_aadsync.engine.store import REFUSED, export_conflict, link, pending_export, sync_state
from airflow_provider_aadsync.engine.store.among import among
from airflow_provider_aadsync.engine.sync.frames import IN_CHUNK

#: Up to this many keys are always probed (a delta sync's): no row count is taken.
PROBE_ALWAYS = 2_000
#: More keys are read by one pass over the rows when the rows in scope are at most this many times the keys: a probe
#: costs about as much as reading ten rows in order, so this leaves room for a slower disk.
SCAN_RATIO = 4
#: Rows fetched at a time by the pass over the rows.
SCAN_ROWS = 50_000


def holders_of(
    connection: Connection,
    holder: sa.Column[Any],
    target: sa.Column[Any],
    targets: Collection[Any],
    *where: sa.ColumnElement[bool],
) -> set[Any]:
    """The distinct ``holder`` values of the rows of ``holder``'s table (those matching ``where``) whose ``target``
    is one of ``targets``: probed through the target's index for few targets, one pass over the rows for many."""
    if len(targets) > PROBE_ALWAYS:
        table = holder.table
        rows = connection.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()
        if rows <= SCAN_RATIO * len(targets):
            wanted = set(targets)
            found: set[Any] = set()
            result = connection.execute(sa.select(holder, target).where(*where).execution_options(yield_per=SCAN_ROWS))
            for part in result.partitions():
                found.update(value for value, pointed in part if pointed in wanted)
            return found
    found = set()
    for chunk in chunks(sorted(targets), IN_CHUNK):  # sorted: the probes walk the index in order
        found.update(connection.execute(sa.select(holder).where(*where, among(target, chunk)).distinct()).scalars())
    return found


@dataclass(frozen=True)
class Differences:
    """What :func:`set_differences` found: pairs to add, pairs to remove, and desired rows whose member is NULL (not
    resolvable yet, e.g. a member not linked yet), which are neither."""

    adds: list[tuple[Any, Any]]
    removes: list[tuple[Any, Any]]
    unresolved: int


def set_differences(connection: Connection, desired: sa.Select[Any], current: sa.Select[Any]) -> Differences:
    """The (holder, member) rows of ``desired`` that ``current`` lacks (adds) and those of ``current`` that
    ``desired`` lacks (removes), as sets (duplicates count once); each query selects exactly those two columns.

    One grouped read of both sets, tagged by side: a pair found on one side only is a difference."""
    # Literal columns, not bound parameters: a driver that sends parameters untyped would give the side back as text.
    sides = sa.union_all(
        desired.add_columns(sa.literal_column("1").label("side")),
        current.add_columns(sa.literal_column("2").label("side")),
    ).subquery()
    holder, member, side = list(sides.c)
    query = (
        sa.select(holder, member, sa.func.min(side), sa.func.count())
        .group_by(holder, member)
        .having(sa.func.min(side) == sa.func.max(side))
    )
    adds: list[tuple[Any, Any]] = []
    removes: list[tuple[Any, Any]] = []
    unresolved = 0
    for found_holder, found_member, found_side, count in connection.execute(query):
        if found_member is None:
            unresolved += count
        elif found_side == 1:
            adds.append((found_holder, found_member))
        else:
            removes.append((found_holder, found_member))
    return Differences(adds, removes, unresolved)


def quarantined(connection: sa.Connection) -> set[int]:
    """The metaverse objects whose account in a target holds a quarantined value (an unreleased UPN or SMTP
    conflict of the export, ``export_conflict``): evaluated by the outbound rules in every pass, so the wanted
    value is staged and tried once each cycle and the conflict released as soon as the other holder lets the value
    go. Entra ID's duplicate attribute resiliency does so on the service side (a timer task adds the value to the
    right object once the conflict is resolved); a pass waiting for a change of the object would keep the
    placeholder until the next full sync."""
    # The conflicts first (a few rows), then their links by key: a join would scan every link (SQLite drives it
    # from the big table when the small one has no statistics).
    held: dict[str, list[str]] = defaultdict(list)
    query = sa.select(export_conflict.c.connector, export_conflict.c.anchor).where(
        export_conflict.c.released_at.is_(None)
    )
    for connector, anchor in connection.execute(query):
        held[connector].append(anchor)
    found: set[int] = set()
    for connector, anchors in held.items():
        for chunk in chunks(sorted(set(anchors)), IN_CHUNK):
            rows = sa.select(link.c.mv_id).where(link.c.connector == connector, among(link.c.anchor, chunk))
            found.update(int(mv_id) for mv_id in connection.execute(rows).scalars())
    return found


def held_by_refusals(connection: sa.Connection, connector: str, pass_connector: str) -> set[str]:
    """The objects of ``connector`` that member and manager changes leave alone while a match is refused (an add held
    in state ``refused``, joins.py): the cloud object that refused the match, and the held person's objects there (its
    held create; its AD user, in a group written back from the cloud). Unjoined, the cloud object is no member any
    metaverse group resolves to: a store rebuilt after its AD user's anchor changed would remove it from every group it
    is in, and clear its reports' manager, because of the refusal alone. Its groups and reports keep it, and no change
    names the held create, until the match is resolved: the cloud object joins, and the compared references agree.

    Holds are looked up in the connectors that have synced (their sync state) and the pass's own, through the index
    on (connector, state): a first full sync's 100,000 pending adds are not read."""
    synced = set(connection.execute(sa.select(sync_state.c.connector)).scalars()) | {pass_connector}
    holds = connection.execute(
        sa.select(pending_export.c.connector, pending_export.c.anchor, pending_export.c.last_error).where(
            among(pending_export.c.connector, sorted(synced)), pending_export.c.state == REFUSED
        )
    ).all()
    held = {refusing_anchor(hold.last_error) or "" for hold in holds if hold.connector == connector} - {""}
    by_connector: dict[str, list[str]] = defaultdict(list)
    for hold in holds:
        by_connector[hold.connector].append(hold.anchor)
    persons: set[int] = set()
    for holder, anchors in by_connector.items():
        for chunk in chunks(sorted(anchors), IN_CHUNK):
            query = sa.select(link.c.mv_id).where(link.c.connector == holder, among(link.c.anchor, chunk))
            persons.update(connection.execute(query).scalars())
    for chunk in chunks(sorted(persons), IN_CHUNK):
        query = sa.select(link.c.anchor).where(link.c.connector == connector, among(link.c.mv_id, chunk))
        held.update(connection.execute(query).scalars())
    return held
