"""The parts of an AD connector's scope a full import found missing: what the import guard stops on whatever the
numbers (engine.runs.import_guard's ``gone``), because each deletes a small part of the scope under every threshold.

- an included OU with no entry on the DC (deleted, renamed or moved, mistyped in the connectors file, unreadable);
- a partition, of several, from which the import read no user, group or contact: the account lost its read rights
  there. The guard's "saw nothing" counts the whole import, so a child domain of 150 users read empty beside a
  naming context of 2,000 deleted its 150 under both thresholds. A real domain always holds built-in users and
  groups (Administrator, Domain Users, ...), so an empty read is never a real state of the partition.
"""

from __future__ import annotations

from collections.abc import Sequence

from airflow_provider_aadsync.engine.connectors.ad.scope import GROUP_FILTERED_TYPES, PartitionFilter
from airflow_provider_aadsync.engine.dn import DnScope, wire_dn
from airflow_provider_aadsync.engine.runs.import_guard import UnreadPartition
from airflow_provider_aadsync.engine.runs.source import SourceObject

__all__ = ["PartitionReads"]


class _OwnSubtree(DnScope):
    """A partition's subtree without the partitions nested in it: a child domain's DN lies under its parent's, but
    its objects are read (and lost) with its own partition, not with the parent's."""

    def __init__(self, base: str, nested: Sequence[DnScope]):
        super().__init__(base)
        self.nested = list(nested)

    def contains(self, dn: str) -> bool:
        return super().contains(dn) and not any(scope.contains(dn) for scope in self.nested)


class PartitionReads:
    """Which partitions one full import read a user, group or contact from, and what it found missing.

    A partition counts what its search returned, whatever the OU filter or the pilot group then keep: the question is
    whether the account can read the partition, not whether the scope holds anything (an included OU emptied on the
    DC, a pilot without members there, are real states; the whole-import rule and the thresholds see to them).
    """

    def __init__(self, filters: Sequence[PartitionFilter]):
        self.filters = list(filters)
        roots = [partition.root for partition in self.filters]
        self.subtrees = {
            partition.key: _OwnSubtree(partition.root.base_text, _nested(partition.root, roots))
            for partition in self.filters
        }
        self.read: set[str] = set()

    def note(self, key: str, obj: SourceObject) -> None:
        """Count ``obj``, read by the full import from partition ``key`` (the first one read settles it).

        :raise DnError: the object's DN is not valid.
        """
        if key in self.read or obj.deleted or obj.object_type not in GROUP_FILTERED_TYPES:
            return
        if self.subtrees[key].contains(obj.dn):
            self.read.add(key)

    def gone_roots(self, source: object) -> dict[str, DnScope]:
        """The included OUs with no entry on the DC (by their DN as configured) and, when the import reads several
        partitions, those it read nothing from (as :class:`UnreadPartition`), each with the subtree whose deletes
        the guard counts. One partition alone is the whole import, whose "saw nothing" rule stops it already."""
        gone = _missing_includes(source, self.filters)
        if len(self.filters) > 1:
            for partition in self.filters:
                if partition.key not in self.read:
                    gone[UnreadPartition(partition.root.base_text)] = self.subtrees[partition.key]
        return gone


def _nested(root: DnScope, roots: Sequence[DnScope]) -> list[DnScope]:
    """The other partitions' roots below ``root`` (child domains of the partition)."""
    return [other for other in roots if other.base != root.base and root.contains(other.base_text)]


def _missing_includes(source: object, filters: Sequence[PartitionFilter]) -> dict[str, DnScope]:
    """The included OUs with no entry on the DC (deleted, renamed or moved, mistyped in the connectors file, or
    unreadable by the account), by their DN as configured: what a full import read under them was nothing, and the
    objects it held there would be deleted. Unlike an OU merely emptied, that is a scope slip (one of several included
    OUs mistyped): the import guard stops it whatever its size (import_guard.py)."""
    probe = getattr(source, "object_guid", None)  # the hook's: None when there is no entry it can read
    includes = {scope.base_text: scope for partition in filters for scope in partition.includes}
    if probe is None or not includes:
        return {}
    return {dn: scope for dn, scope in includes.items() if probe(wire_dn(dn)) is None}
