"""Inbound references: connector-space references (group members) resolved to metaverse references with set
operations over whole reference tables, so a member imported after its group is picked up in the same pass.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa

from airflow_provider_aadsync.engine.batching import chunks
from airflow_provider_aadsync.engine.store import (
    cs_reference,
    link,
    mv_object,
    mv_reference,
)
from airflow_provider_aadsync.engine.store.among import among
from airflow_provider_aadsync.engine.sync.contributions import (
    REFERENCE_MARKER,
    Contributions,
    contribution_order,
    contributor_connector,
)
from airflow_provider_aadsync.engine.sync.frames import (
    IN_CHUNK,
    load_json,
    same_object,
    write_rows,
)
from airflow_provider_aadsync.engine.sync.lookups import holders_of, set_differences
from airflow_provider_aadsync.engine.sync.schema import METAVERSE
from airflow_provider_aadsync.engine.sync.state import SyncPass

#: What the inbound reference step needs of a metaverse object's contributions: the attributes whose winning
#: contribution is this connector's reference marker (with the rule), and the reference attributes nobody contributes.
ReferenceSummary = tuple[tuple[tuple[str, str], ...], tuple[str, ...]]
_NOTHING: ReferenceSummary = ((), ())


def reference_summary(contributions: Contributions, connector: str) -> ReferenceSummary:
    """The :data:`ReferenceSummary` of one metaverse object's contributions, for ``connector``'s sync pass."""
    winners = []
    for attribute, entries in contributions.items():
        if len(entries) == 1:  # the common case: one contributor, no generator and no ordering per attribute
            ((key, entry),) = entries.items()
            if entry[2] != REFERENCE_MARKER:
                continue
            winner = (key, entry)
        elif not any(entry[2] == REFERENCE_MARKER for entry in entries.values()):
            continue  # no reference contribution can win
        else:
            winner = min(entries.items(), key=contribution_order)
        if winner[1][2] == REFERENCE_MARKER and contributor_connector(winner[0]) == connector:
            winners.append((attribute, winner[0].split("|", 1)[1]))
    contributed = {name.lower() for name in contributions}
    missing = tuple(attribute for attribute in METAVERSE.reference_attributes if attribute not in contributed)
    if not winners and not missing:
        return _NOTHING
    return tuple(winners), missing


class References:
    """Resolves connector-space references into metaverse references for one sync pass."""

    def __init__(self, state: SyncPass) -> None:
        self.state = state

    def inbound_references(self) -> None:
        """Recompute the metaverse reference rows of groups that changed, or whose members were just joined."""
        dirty = set(self.state.reference_dirty)
        # The groups holding a member linked or unlinked in this pass: the member resolves to another object now.
        moved = self.state.newly_linked | self.state.unlinked
        if moved:
            dirty |= holders_of(
                self.state.connection,
                cs_reference.c.anchor,
                cs_reference.c.target_anchor,
                moved,
                cs_reference.c.connector == self.state.connector,
            )
        clears: list[tuple[int, str]] = list(self.state.reference_clears)
        if not dirty:
            clear_mv_references(self.state, clears)
            return
        plan: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)  # (cs attr, mv attr) → [(anchor, mv)]
        summaries = self.state.reference_summaries
        for chunk in chunks(sorted(dirty), IN_CHUNK):
            linked = self.state.connection.execute(
                sa.select(link.c.anchor, link.c.mv_id).where(
                    link.c.connector == self.state.connector, among(link.c.anchor, chunk)
                )
            ).all()
            # The summaries of the metaverse objects this pass wrote are kept; the others are read (rare: a group
            # whose member was just linked).
            unknown = sorted({mv_id for _, mv_id in linked if mv_id not in summaries})
            for part in chunks(unknown, IN_CHUNK):
                for mv_id, serialized in self.state.connection.execute(
                    sa.select(mv_object.c.id, mv_object.c.contributions).where(among(mv_object.c.id, part))
                ):
                    summaries[mv_id] = reference_summary(load_json(serialized), self.state.connector)
            for anchor, mv_id in linked:
                summary = summaries.get(mv_id)
                if summary is None:
                    continue  # no metaverse object behind the link
                winners, missing = summary
                for attribute, rule_name in winners:
                    source = self._reference_source(rule_name, attribute)
                    if source:
                        plan[(source, attribute.lower())].append((anchor, mv_id))
                # reference attributes nobody contributes any more lose their rows
                clears += [(mv_id, attribute) for attribute in missing]
        for (source, target), members in plan.items():
            self._sync_mv_references(source, target, members)
        clear_mv_references(self.state, clears)

    def _reference_source(self, rule_name: str, target: str) -> str | None:
        compiled = self.state.rules_by_name.get(rule_name)
        if compiled is None:
            return None
        for spec in compiled.flow_specs:
            if spec.target == target and spec.type == "Direct":
                return spec.source
        return None

    def _sync_mv_references(self, source: str, target: str, groups: Sequence[tuple[str, int]]) -> None:
        """The metaverse reference rows of ``groups`` (their anchors here and metaverse ids, as linked) made those their
        connector-space references resolve to: compared by the store, only the differences come back (a member moved
        in a 250,000-member group is two rows, not two frames of 250,000)."""
        by_anchor = dict(groups)
        group_link, target_link = link.alias("group_link"), link.alias("target_link")
        for chunk in chunks(sorted(by_anchor), IN_CHUNK):
            desired = (
                sa.select(group_link.c.mv_id, target_link.c.mv_id)
                .select_from(
                    cs_reference.join(group_link, same_object(group_link, cs_reference)).outerjoin(
                        target_link,
                        sa.and_(
                            target_link.c.connector == cs_reference.c.connector,
                            target_link.c.anchor == cs_reference.c.target_anchor,
                        ),
                    )
                )
                .where(
                    cs_reference.c.connector == self.state.connector,
                    cs_reference.c.attribute == source,
                    among(cs_reference.c.anchor, chunk),
                )
            )
            current = sa.select(mv_reference.c.mv_id, mv_reference.c.target_mv_id).where(
                mv_reference.c.attribute == target, among(mv_reference.c.mv_id, [by_anchor[anchor] for anchor in chunk])
            )
            found = set_differences(self.state.connection, desired, current)
            self.state.counters["references_pending"] += found.unresolved
            self._apply_mv_reference_changes(target, found.adds, found.removes)

    def _apply_mv_reference_changes(
        self, attribute: str, adds: Sequence[tuple[int, int]], removes: Sequence[tuple[int, int]]
    ) -> None:
        """Write the (group, member) metaverse ids to add, delete those to remove."""
        if adds:
            rows = [{"mv_id": int(m), "attribute": attribute, "target_mv_id": int(t)} for m, t in adds]
            write_rows(self.state.store, self.state.connection, mv_reference, rows)
        removed: dict[int, list[int]] = defaultdict(list)
        for mv_id, target_mv_id in removes:
            removed[int(mv_id)].append(int(target_mv_id))
        for mv_id, targets in removed.items():
            for chunk in chunks(targets, IN_CHUNK):
                self.state.connection.execute(
                    sa.delete(mv_reference).where(
                        mv_reference.c.mv_id == mv_id,
                        mv_reference.c.attribute == attribute,
                        among(mv_reference.c.target_mv_id, chunk),
                    )
                )
        self.state.counters["metaverse_reference_adds"] += len(adds)
        self.state.counters["metaverse_reference_removes"] += len(removes)
        self.state.touched_mv.update({int(m) for m, _ in adds} | set(removed))
        if self.state.trace is not None and (len(adds) or len(removes)):
            self.state.trace.setdefault("metaverse_references", []).append(
                {"attribute": attribute, "adds": len(adds), "removes": len(removes)}
            )


def clear_mv_references(state: SyncPass, clears: Sequence[tuple[int, str]]) -> None:
    """Drop the reference rows of attributes nobody contributes any more (one statement per chunk)."""
    by_attribute: dict[str, list[int]] = defaultdict(list)
    for mv_id, attribute in clears:
        by_attribute[attribute].append(mv_id)
    for attribute, mv_ids in by_attribute.items():
        for chunk in chunks(mv_ids, IN_CHUNK):
            condition = sa.and_(mv_reference.c.attribute == attribute, among(mv_reference.c.mv_id, chunk))
            cleared = (
                state.connection.execute(sa.select(mv_reference.c.mv_id).where(condition).distinct()).scalars().all()
            )
            if not cleared:
                continue
            removed = state.connection.execute(sa.delete(mv_reference).where(condition)).rowcount
            state.counters["metaverse_reference_removes"] += removed
            state.touched_mv.update(cleared)
