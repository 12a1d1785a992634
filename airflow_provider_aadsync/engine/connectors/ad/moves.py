"""An AD delta's renamed and moved OUs, carried down to the objects under them.

Why: AD's ModifyDN (MS-ADTS 3.1.1.5.4.1.3) changes the moved entry only; its descendants' DNs change implicitly, and
DirSync returns only the moved entry. Entra Connect's AD connector follows such a container rename or move with
its children; so does this import, after each page of a delta:

- an OU renamed or moved within the scope: every object stored under its old DN gets the new DN as its suffix, in
  one statement (engine.runs.cs_subtree), as a pending update so the sync evaluates DN-based rules again. The scope
  (partition, included and excluded OUs) is then evaluated again for those objects: one now outside it (moved into
  an excluded child OU's DN, or out of an included one) becomes a delete, exactly as one object moved out of the
  scope does. When an excluded OU lay under the old DN, the objects under it are now in the scope (the exclusion
  names a DN that no longer exists there): the subtree under the new DN is read and what is missing added.
- an OU that left the connector space (moved out of the scope, or deleted): every live object under its old DN is
  deleted with it, whatever the directory reports of them (nothing: their DNs changed implicitly).
- an OU that came into the scope (reported without its objectClass and read whole, reader._whole_when_new): its
  subtree is read with a paged search under its new DN, as a full import reads, and every object in the scope
  there is added.

Deletes go through the writer's delete path and are counted in ``deletes``, which the import guard checks before
the run commits: an OU of many users moved out of the scope stops the delta (nothing written, the cookie kept) until
the admin confirms that number, like any other mass delete.

Moves are applied deepest old DN first: an OU and an OU below it both renamed in one page each carry their own
objects down (each with the DN DirSync reported for it) before the upper one carries down what remains.

Limit: a container the connector space does not hold (a ``container`` object, or an OU outside the scope above an
included OU) has no old DN to start from; objects under it follow at the next full import.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from airflow_provider_aadsync.engine.connectors.ad.scope import PartitionFilter
from airflow_provider_aadsync.engine.dn import DnError, DnScope, normalize_dn
from airflow_provider_aadsync.engine.runs.cs_subtree import ContainerMove, SubtreeRow, rename_subtree, subtree_rows
from airflow_provider_aadsync.engine.runs.cs_writer import ConnectorSpaceWriter
from airflow_provider_aadsync.engine.runs.source import SourceObject

__all__ = ["CONTAINER_TYPES", "arrived_containers", "follow_container_moves"]

log = logging.getLogger(__name__)

#: The connector-space object types of an AD connector that hold other imported objects (users, groups, contacts
#: and foreign security principals hold none the import reads).
CONTAINER_TYPES = frozenset({"organizationalUnit"})


def arrived_containers(objects: Iterable[SourceObject]) -> list[str]:
    """The DNs of the containers among ``objects`` (read whole because they came into the scope) to read below."""
    return [obj.dn for obj in objects if not obj.deleted and obj.object_type in CONTAINER_TYPES]


def follow_container_moves(
    writer: ConnectorSpaceWriter, partition: PartitionFilter, read_subtree: Callable[[str], None] | None
) -> None:
    """Carry the moves ``writer`` recorded (then forgets) down the connector space; ``read_subtree(dn)`` reads and
    adds what lies under ``dn`` (None: a source that cannot read a subtree)."""
    moves, writer.moves = writer.moves, []
    for move in sorted(moves, key=_depth, reverse=True):
        if move.deleted:
            # An OU moved out of the scope takes its objects out with it: AD still holds them, and the groups that
            # name them keep those references; an OU deleted in AD (a tombstone) has its objects deleted too.
            _delete(writer, subtree_rows(writer, move.old_dn), left_scope=move.anchor in writer.references.kept_targets)
            continue
        renamed = rename_subtree(writer, move.old_dn, move.new_dn)
        log.info("%s renamed or moved to %s: %d object(s) under it follow", move.old_dn, move.new_dn, renamed)
        if renamed and (partition.includes or partition.excludes):
            out = [row for row in subtree_rows(writer, move.new_dn) if not _in_scope(partition, row)]
            _delete(writer, out, left_scope=True)
        if read_subtree is not None and _excluded_below(partition, move.old_dn):
            read_subtree(move.new_dn)


def _delete(writer: ConnectorSpaceWriter, rows: list[SubtreeRow], *, left_scope: bool) -> None:
    """Delete ``rows``; ``left_scope``: they left the scope (not deleted in AD), the references to them are kept."""
    if left_scope:
        writer.references.kept_targets.update(row.anchor for row in rows)
    if rows:
        writer.delete([row.anchor for row in rows], [row.pending_import for row in rows])


def _in_scope(partition: PartitionFilter, row: SubtreeRow) -> bool:
    try:
        return partition.contains(row.dn)
    except DnError:  # the DC's own DN with our suffix: kept as it is rather than deleted on a parse doubt
        log.warning("cannot place %s (%s) in the scope after its OU moved; kept", row.dn, row.anchor)
        return True


def _excluded_below(partition: PartitionFilter, dn: str) -> bool:
    """Does an excluded OU lie strictly under ``dn``?"""
    try:
        scope = DnScope(dn)
        return any(scope.contains(ou.base_text) and not scope.is_base(ou.base_text) for ou in partition.excludes)
    except DnError:
        return False


def _depth(move: ContainerMove) -> int:
    try:
        return len(normalize_dn(move.old_dn))
    except DnError:
        return 0
