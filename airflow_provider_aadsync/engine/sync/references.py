"""Inbound references: connector-space references (group members) resolved to metaverse references with set
operations over whole reference tables, so a member imported after its group is picked up in the same pass.

A metaverse object's reference rows are those of the connector whose reference contribution wins (contributions.py).
When a pass drops the winning one (a disconnection, a recall, a rule out of scope) and another connector's now wins,
:func:`follow_reference_winners` rebuilds the rows from that connector's connector-space references in the same pass:
they are in the store as that connector's own pass reads them, resolved through its links, so the result is what a
store built from scratch holds. Before, the rows were rebuilt only by a pass of the winning connector, and a delta
sync never evaluated that connector's unchanged objects: the person kept the manager of the forest it had left.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from airflow_provider_aadsync.engine.batching import chunks
from airflow_provider_aadsync.engine.store import (
    cs_object,
    cs_reference,
    link,
    mv_object,
    mv_reference,
)
from airflow_provider_aadsync.engine.store.among import among
from airflow_provider_aadsync.engine.sync.contributions import (
    REFERENCE_MARKER,
    Contributions,
    Slot,
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


def dropped_reference_winners(contributions: Contributions, slots: Iterable[Slot]) -> set[str]:
    """The reference attributes (lower case) whose winning contribution is one of ``slots``, read before the slots are
    dropped: their rows were that contribution's, so the caller hands them to :func:`follow_reference_winners` (the
    next winner's rows, or none). A losing contribution dropped leaves the rows as they are: they are the winner's."""
    keys_by_attribute: dict[str, set[str]] = defaultdict(set)
    for attribute, key in slots:
        if attribute.lower() in METAVERSE.reference_attributes:
            keys_by_attribute[attribute].add(key)
    dropped = set()
    for attribute, keys in keys_by_attribute.items():
        entries = contributions.get(attribute)
        if entries and min(entries.items(), key=contribution_order)[0] in keys:
            dropped.add(attribute.lower())
    return dropped


def contested(summary: ReferenceSummary) -> set[str]:
    """The reference attributes of a :data:`ReferenceSummary` someone contributes and this pass's connector does not
    win: another connector's contribution may have just taken them over (this connector's rule went out of scope)."""
    winners, missing = summary
    return set(METAVERSE.reference_attributes) - {attribute.lower() for attribute, _rule in winners} - set(missing)


class References:
    """Resolves connector-space references into metaverse references for one sync pass."""

    def __init__(self, state: SyncPass) -> None:
        self.state = state

    def inbound_references(self) -> None:
        """Recompute the metaverse reference rows of groups that changed, or whose members were just joined; those
        whose winning reference contribution went in this pass follow the new winner (follow_reference_winners)."""
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
        # (metaverse id, attribute) whose winning contribution a disconnection dropped (joins.py), and those of the
        # objects evaluated here whose winner is another connector's: their rows are the winner's now.
        followed: set[tuple[int, str]] = set(self.state.reference_clears)
        clears: list[tuple[int, str]] = []
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
                    source = reference_source(self.state, rule_name, attribute)
                    if source:
                        plan[(source, attribute.lower())].append((anchor, mv_id))
                # reference attributes nobody contributes any more lose their rows
                clears += [(mv_id, attribute) for attribute in missing]
                if len(winners) + len(missing) < len(METAVERSE.reference_attributes):  # most objects: no
                    followed.update((mv_id, attribute) for attribute in contested(summary))
        for (source, target), members in plan.items():
            sync_mv_references(self.state, self.state.connector, source, target, members)
        clear_mv_references(self.state, clears)
        follow_reference_winners(self.state, followed)


def reference_source(state: SyncPass, rule_name: str, target: str) -> str | None:
    """The connector-space attribute a rule's Direct flow to the reference attribute ``target`` reads."""
    compiled = state.rules_by_name.get(rule_name)
    if compiled is None:
        return None
    for spec in compiled.flow_specs:
        if spec.target.lower() == target.lower() and spec.type == "Direct":
            return spec.source
    return None


def follow_reference_winners(
    state: SyncPass, pairs: Iterable[tuple[int, str]], known: Mapping[int, Contributions] | None = None
) -> None:
    """Bring the rows of ``pairs`` (metaverse id, reference attribute in lower case) to the contribution winning each
    now: the winning connector's connector-space references, resolved through that connector's links, whichever
    connector the pass is of; no rows when no reference contribution wins (nobody contributes, or a value does).

    Why in this pass: a delta sync of the winning connector never evaluates its unchanged objects, so waiting for it
    kept the rows of the contribution that went until its next full sync. The connector-space references and links
    read are those that connector's own pass reads, so the rows are those a store built from scratch holds.
    ``known``: the contributions the caller holds (as written); the others are read as this pass wrote them. Set-based:
    the contributing objects are looked up and their rows compared per (connector, rule, attribute), in chunks."""
    wanted = sorted(set(pairs))
    if not wanted:
        return
    contributions = dict(known or {})
    unknown = sorted({mv_id for mv_id, _attribute in wanted if mv_id not in contributions})
    for part in chunks(unknown, IN_CHUNK):
        for mv_id, serialized in state.connection.execute(
            sa.select(mv_object.c.id, mv_object.c.contributions).where(among(mv_object.c.id, part))
        ):
            contributions[mv_id] = load_json(serialized)
    clears: list[tuple[int, str]] = []
    plan: dict[tuple[str, str, str], list[int]] = defaultdict(list)  # (connector, rule, mv attr) → metaverse ids
    for mv_id, attribute in wanted:
        entries = _entries(contributions.get(mv_id, {}), attribute)
        winner = min(entries.items(), key=contribution_order) if entries else None
        if winner is None or winner[1][2] != REFERENCE_MARKER:
            clears.append((mv_id, attribute))
            continue
        key = winner[0]
        plan[(contributor_connector(key), key.split("|", 1)[1], attribute)].append(mv_id)
    for (connector, rule_name, attribute), mv_ids in plan.items():
        compiled = state.rules_by_name.get(rule_name)
        source = reference_source(state, rule_name, attribute)
        groups: list[tuple[str, int]] = []
        if compiled is not None and source is not None:
            groups = _contributing_objects(state, connector, compiled.rule.source_object_type, mv_ids)
        found = {mv_id for _anchor, mv_id in groups}
        clears += [(mv_id, attribute) for mv_id in mv_ids if mv_id not in found]  # nothing left to read them from
        if source is not None and groups:
            sync_mv_references(state, connector, source, attribute, groups)
    clear_mv_references(state, clears)


def _entries(contributions: Contributions, attribute: str) -> Mapping[str, Any]:
    """The contributions to ``attribute`` (lower case; rules may spell the metaverse attribute otherwise)."""
    entries = contributions.get(attribute)
    if entries is None:
        entries = next((found for name, found in contributions.items() if name.lower() == attribute), None)
    return entries or {}


def _contributing_objects(
    state: SyncPass, connector: str, object_type: str, mv_ids: Sequence[int]
) -> list[tuple[str, int]]:
    """The (anchor, metaverse id) of the objects of ``connector`` and ``object_type`` linked to ``mv_ids``: those the
    winning rule read (one per connector and type; a foreign security principal is of another type)."""
    found: list[tuple[str, int]] = []
    for chunk in chunks(sorted(set(mv_ids)), IN_CHUNK):
        found += [
            (anchor, int(mv_id))
            for anchor, mv_id in state.connection.execute(
                sa.select(link.c.anchor, link.c.mv_id)
                .join(cs_object, same_object(cs_object, link))
                .where(
                    link.c.connector == connector, cs_object.c.object_type == object_type, among(link.c.mv_id, chunk)
                )
            )
        ]
    return found


def sync_mv_references(
    state: SyncPass, connector: str, source: str, target: str, groups: Sequence[tuple[str, int]]
) -> None:
    """The metaverse reference rows of ``groups`` (their anchors in ``connector`` and metaverse ids, as linked) made
    those their connector-space references resolve to: compared by the store, only the differences come back (a member
    moved in a 250,000-member group is two rows, not two frames of 250,000). ``connector``: the pass's own, or another
    whose contribution now wins (:func:`follow_reference_winners`)."""
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
                cs_reference.c.connector == connector,
                cs_reference.c.attribute == source,
                among(cs_reference.c.anchor, chunk),
            )
        )
        current = sa.select(mv_reference.c.mv_id, mv_reference.c.target_mv_id).where(
            mv_reference.c.attribute == target, among(mv_reference.c.mv_id, [by_anchor[anchor] for anchor in chunk])
        )
        found = set_differences(state.connection, desired, current)
        state.counters["references_pending"] += found.unresolved
        _apply_mv_reference_changes(state, target, found.adds, found.removes)


def _apply_mv_reference_changes(
    state: SyncPass, attribute: str, adds: Sequence[tuple[int, int]], removes: Sequence[tuple[int, int]]
) -> None:
    """Write the (group, member) metaverse ids to add, delete those to remove."""
    if adds:
        rows = [{"mv_id": int(m), "attribute": attribute, "target_mv_id": int(t)} for m, t in adds]
        write_rows(state.store, state.connection, mv_reference, rows)
    removed: dict[int, list[int]] = defaultdict(list)
    for mv_id, target_mv_id in removes:
        removed[int(mv_id)].append(int(target_mv_id))
    for mv_id, targets in removed.items():
        for chunk in chunks(targets, IN_CHUNK):
            state.connection.execute(
                sa.delete(mv_reference).where(
                    mv_reference.c.mv_id == mv_id,
                    mv_reference.c.attribute == attribute,
                    among(mv_reference.c.target_mv_id, chunk),
                )
            )
    state.counters["metaverse_reference_adds"] += len(adds)
    state.counters["metaverse_reference_removes"] += len(removes)
    state.touched_mv.update({int(m) for m, _ in adds} | set(removed))
    if state.trace is not None and (len(adds) or len(removes)):
        state.trace.setdefault("metaverse_references", []).append(
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
