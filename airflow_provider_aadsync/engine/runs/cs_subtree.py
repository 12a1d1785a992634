"""The objects of a connector space under a DN, found and renamed set-based in the store.

Why: in a hierarchical directory, renaming or moving a container changes the DN of everything below it, yet the
directory reports only the container. AD's ModifyDN changes the moved entry alone (MS-ADTS 3.1.1.5.4.1.3: the
descendants' DNs change implicitly, as they are computed from their parent), and DirSync returns only that entry.
The import therefore carries the change down itself: every object stored under the container's old DN gets the new
DN as its suffix. A large OU holds 100,000 users, so this is one UPDATE in the store, never an object at a time.

How a DN is matched in SQL: the directory spells a child's DN as its own RDN, a comma, and its parent's DN exactly as
it spells the parent's (both come from the same server, and a delta keeps them in step), so the children of
``OU=Sales,DC=corp`` are the rows whose DN ends in ``,OU=Sales,DC=corp``, compared with the database's ``lower()``
on both sides (a DN's attribute types and, in AD, its values compare case-insensitively). The comma must be an RDN
boundary: ``OU=Sales2`` does not end that way, but ``CN=a\\,OU=Sales,DC=corp`` (one RDN whose value holds a comma)
does, textually. Rows with a backslash before the matched comma are therefore left to :mod:`engine.dn`, which parses
them (ldap3's parser) and decides; those are rare, so only they are handled one by one.

Only objects an import read are renamed (``attrs_hash`` set): an object sync plans to create (group writeback) has
the DN the sync's rules gave it, which the next sync computes again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from airflow_provider_aadsync.engine.dn import DnError, DnScope
from airflow_provider_aadsync.engine.store import cs_object, cs_reference, utcnow

__all__ = ["ContainerMove", "SubtreeRow", "rename_subtree", "subtree_rows"]


class ConnectorSpaceWriter(Protocol):
    """What these functions need of the writer (engine.runs.cs_writer, which imports this module): its transaction,
    connector space, run and counters."""

    connection: Connection
    connector: str
    run_id: int
    counters: Counter[str]


@dataclass(frozen=True)
class ContainerMove:
    """A container whose DN a delta changed (``deleted``: it left the connector space, a tombstone or moved out of
    the scope), recorded by the writer for the connector to carry down to the objects under ``old_dn``."""

    anchor: str
    old_dn: str
    new_dn: str
    deleted: bool = False


@dataclass(frozen=True)
class SubtreeRow:
    anchor: str
    dn: str
    pending_import: str | None


def _under(column: sa.ColumnElement[Any], base: str) -> tuple[sa.ColumnElement[bool], sa.ColumnElement[bool]]:
    """(below ``base`` on a plain RDN boundary, below it after a backslash: to be parsed) for a DN-valued column."""
    suffix = "," + base
    length = sa.func.length(column)
    tail = sa.func.substr(column, length - len(base))  # the last len(suffix) characters
    textual = sa.and_(length > len(suffix), sa.func.lower(tail) == sa.func.lower(sa.literal(suffix)))
    escaped = sa.func.substr(column, length - len(suffix), 1) == "\\"
    return sa.and_(textual, ~escaped), sa.and_(textual, escaped)


def _imported_alive(writer: ConnectorSpaceWriter) -> sa.ColumnElement[bool]:
    return sa.and_(
        cs_object.c.connector == writer.connector, cs_object.c.is_deleted == sa.false(), cs_object.c.attrs_hash != ""
    )


def subtree_rows(writer: ConnectorSpaceWriter, base: str) -> list[SubtreeRow]:
    """The live imported objects of ``writer``'s connector space strictly under ``base`` (as stored)."""
    plain, escaped = _under(cs_object.c.dn, base)
    columns = (cs_object.c.anchor, cs_object.c.dn, cs_object.c.pending_import)
    rows = [
        SubtreeRow(*row) for row in writer.connection.execute(sa.select(*columns).where(_imported_alive(writer), plain))
    ]
    doubtful = writer.connection.execute(sa.select(*columns).where(_imported_alive(writer), escaped))
    return rows + [SubtreeRow(*row) for row in doubtful if _parsed_under(row.dn, base)]


def rename_subtree(writer: ConnectorSpaceWriter, old_dn: str, new_dn: str) -> int:
    """Give every live imported object under ``old_dn`` the suffix ``new_dn`` (a pending import update, so the sync
    evaluates its DN-based rules and scope again), and every reference to one of them its target's new DN; the
    number of objects renamed (counted as ``renames`` and ``updates``)."""
    connection, now = writer.connection, utcnow()
    plain, escaped = _under(cs_object.c.dn, old_dn)
    kept = sa.func.substr(cs_object.c.dn, 1, sa.func.length(cs_object.c.dn) - len(old_dn), type_=sa.Text)
    values = {
        "dn": kept + new_dn,
        "pending_import": sa.case((cs_object.c.pending_import == "add", "add"), else_="update"),
        "last_run_id": writer.run_id,
        "updated_at": now,
    }
    renamed = connection.execute(sa.update(cs_object).where(_imported_alive(writer), plain).values(**values)).rowcount
    doubtful = connection.execute(sa.select(cs_object.c.anchor, cs_object.c.dn).where(_imported_alive(writer), escaped))
    anchors = [row.anchor for row in doubtful if _parsed_under(row.dn, old_dn)]
    if anchors:
        renamed += connection.execute(
            sa.update(cs_object).where(_imported_alive(writer), cs_object.c.anchor.in_(anchors)).values(**values)
        ).rowcount
    _rename_reference_targets(writer, old_dn, new_dn)
    writer.counters["renames"] += renamed
    writer.counters["updates"] += renamed
    return renamed


def _rename_reference_targets(writer: ConnectorSpaceWriter, old_dn: str, new_dn: str) -> None:
    """References name their target by anchor and, for reading, by DN: the DNs of the targets under ``old_dn``
    follow them (the anchors, and so each object's ``refs_hash``, do not change)."""
    column = cs_reference.c.target_dn
    plain, escaped = _under(column, old_dn)
    kept = sa.func.substr(column, 1, sa.func.length(column) - len(old_dn), type_=sa.Text)
    mine = cs_reference.c.connector == writer.connector
    writer.connection.execute(sa.update(cs_reference).where(mine, plain).values(target_dn=kept + new_dn))
    doubtful = writer.connection.execute(
        sa.select(cs_reference.c.anchor, cs_reference.c.attribute, cs_reference.c.target_anchor, column).where(
            mine, escaped
        )
    )
    for anchor, attribute, target, dn in doubtful:
        if _parsed_under(dn, old_dn):
            key = (cs_reference.c.anchor == anchor, cs_reference.c.attribute == attribute)
            writer.connection.execute(
                sa.update(cs_reference)
                .where(mine, *key, cs_reference.c.target_anchor == target)
                .values(target_dn=dn[: len(dn) - len(old_dn)] + new_dn)
            )


def _parsed_under(dn: str, base: str) -> bool:
    """Is ``dn`` strictly below ``base``, by parsing (engine.dn, RDN by RDN)? A DN that does not parse is not."""
    try:
        return DnScope(base).contains(dn) and not DnScope(base).is_base(dn)
    except DnError:
        return False
