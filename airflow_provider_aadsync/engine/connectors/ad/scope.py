"""What an AD connector reads: its partitions, per partition the OUs included and excluded, and an optional pilot
group (only its direct members), as the product's "Configure filtering" describes, applied object by object.

Why in the engine and not in the search base: DirSync always reads a whole naming context, so a delta must be
scoped by DN after reading; a full import is scoped the same way so both agree. An object whose DN leaves the scope
(moved into an excluded OU, out of an included one, or out of the pilot group) is, for the connector space, deleted:
it goes through the import's and the export's deletion guards like any other deletion. The scope's fingerprint is
saved with the watermarks (engine.runs.import_attributes): a changed scope makes the next delta a full import.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from airflow_provider_aadsync.engine.connectors.config import PartitionConfig
from airflow_provider_aadsync.engine.dn import DnScope, canonical_dn, same_dn

__all__ = ["SCOPE_PARTITION", "ADScope", "PartitionFilter"]

#: The watermark pseudo-partition that records the scope an import read with; its name says why a new one runs fully.
SCOPE_PARTITION = "scope "

#: Object types a pilot group limits; containers and foreign security principals (which only stand for members of
#: groups in scope) are kept whatever the group holds.
GROUP_FILTERED_TYPES = frozenset({"user", "group", "contact"})


class PartitionFilter:
    """One partition's OU filter, compiled once (each test parses only the object's parent, cached by engine.dn).

    ``key`` names the partition's watermark; ``base`` is the search base to read it with (None: the connection's own
    base, for the partition that is its naming context).
    """

    def __init__(
        self, key: str, base: str | None, root: str, includes: Sequence[str] = (), excludes: Sequence[str] = ()
    ):
        self.key = key
        self.base = base
        self.root = DnScope(root)
        self.includes = [DnScope(ou) for ou in includes]
        self.excludes = [DnScope(ou) for ou in excludes]

    def contains(self, dn: str) -> bool:
        """In the partition, in an included OU when some are listed, in no excluded OU (children follow their
        parent unless excluded themselves).

        :raise DnError: ``dn`` is not a valid DN.
        """
        if not self.root.contains(dn):
            return False
        if self.includes and not any(scope.contains(dn) for scope in self.includes):
            return False
        return not any(scope.contains(dn) for scope in self.excludes)

    def is_root(self, dn: str) -> bool:
        """Is ``dn`` the scope's own entry (the base OU, or an included OU), not an object in it?"""
        roots = self.includes or [self.root]
        return any(scope.is_base(dn) for scope in roots)


@dataclass(frozen=True)
class ADScope:
    """A connector's configured scope: ``partitions`` (None: the connection's naming context, limited to the
    connection's ``base_dn``) and ``pilot_group`` (a group DN: only its direct members, of the group-filtered types)."""

    partitions: tuple[PartitionConfig, ...] | None = None
    pilot_group: str | None = None
    #: The pilot group's direct members (anchors), read at the start of the import.
    pilot_members: frozenset[str] | None = field(default=None, compare=False)

    def filters(self, naming_context: str, base_dn: str | None) -> list[PartitionFilter]:
        """One filter per partition; the default partition is the naming context scoped to ``base_dn``.

        :raise ValueError: a configured partition is the naming context while the connection's ``base_dn`` lies
            below it: the full read of that partition searches under ``base_dn`` and DirSync the whole naming context,
            so a delta would add what the next full import deletes (an include OU outside ``base_dn``).
        """
        if not self.partitions:
            return [PartitionFilter(naming_context, None, base_dn or naming_context)]
        if base_dn and not same_dn(base_dn, naming_context):
            for partition in self.partitions:
                if same_dn(partition.dn, naming_context):
                    raise ValueError(
                        f"the partition {partition.dn!r} is the naming context, but the connection's base_dn "
                        f"{base_dn!r} lies below it: its full imports would read only under the base DN and its delta "
                        "imports the whole partition. Set the connection's base_dn to the naming context and limit "
                        "the partition with include_ous"
                    )
        return [
            PartitionFilter(
                partition.dn,
                None if same_dn(partition.dn, naming_context) else partition.dn,
                partition.dn,
                partition.include_ous,
                partition.exclude_ous,
            )
            for partition in self.partitions
        ]

    def admits(self, object_type: str | None, anchor: str) -> bool:
        """Does the pilot group (if any) let this object in?"""
        if self.pilot_members is None or object_type not in GROUP_FILTERED_TYPES:
            return True
        return anchor in self.pilot_members

    def fingerprint(self, base_dn: str | None) -> tuple[str, bytes]:
        """The watermark partition naming this scope (a changed scope has no saved row: the next import is full),
        and its readable description saved as the row's value."""
        lines = [f"base_dn {canonical_dn(base_dn) if base_dn else '-'}"]
        for partition in self.partitions or ():
            lines.append(f"partition {canonical_dn(partition.dn)}")
            lines += [f"  include {ou}" for ou in _canonical(partition.include_ous)]
            lines += [f"  exclude {ou}" for ou in _canonical(partition.exclude_ous)]
        if self.pilot_group:
            lines.append(f"pilot group {canonical_dn(self.pilot_group)}")
            # Members added since the last import were never read, members removed must leave: a full import.
            members = "\n".join(sorted(self.pilot_members or ()))
            lines.append(f"  members {len(self.pilot_members or ())} {hashlib.sha256(members.encode()).hexdigest()}")
        text = "\n".join(lines)
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        return f"{SCOPE_PARTITION}{digest} (a changed partition, OU or pilot group imports fully)", text.encode()


def _canonical(values: Iterable[str]) -> list[str]:
    return sorted(canonical_dn(value) for value in values)
