"""Attribute recall after an outbound deprovision: the object's link goes, and what it contributed goes with it.

When the outbound half deprovisions a linked object (its metaverse object left the scope of every outbound rule of
its connector: the link is removed and its delete staged), that connector's inbound contributions to the metaverse
object are recalled, as on any disconnection (joins.py): another contributor's value takes their place, or the
attribute is cleared, and a reference attribute whose winning contribution goes takes the rows of the next winner
(rebuilt from that connector's references in this pass, references.follow_reference_winners), or loses them. Before,
the link went and the values stayed: a cloud-filtered person kept the ``cloudAnchor`` of a cloud user no longer joined
to it.

The object stays a disconnector while its delete is pending (unjoined.py); if it is joined again (the outbound half
rejoins it when its metaverse object is back in scope before the export), its connector's next sync of it brings
its values back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_aadsync.engine.sync.contributions import (
    SHARED_JOIN_TYPE,
    contributor_key,
    drop_slots,
    owned_slots,
)
from airflow_provider_aadsync.engine.sync.metaverse import Metaverse
from airflow_provider_aadsync.engine.sync.references import dropped_reference_winners, follow_reference_winners
from airflow_provider_aadsync.engine.sync.state import SyncPass


def recall(state: SyncPass, metaverse: Metaverse, connector: str, unlinked: Sequence[tuple[str, int, str]]) -> set[int]:
    """Drop from the metaverse objects of ``unlinked`` (anchor, metaverse id, the object's type) what those objects
    of ``connector`` contributed, write the metaverse objects that change, and return their ids.

    A foreign security principal owns only the contributions of its type's rules, any other object every other
    contribution of its connector (contributions.owned_slots): recalling the one leaves the other's."""
    if not unlinked:
        return set()
    shared_keys = frozenset(
        contributor_key(connector, compiled.rule.name)
        for compiled in state.rules.inbound(connector, source_object_type=SHARED_JOIN_TYPE)
    )
    loaded = metaverse.load_mv(sorted({mv_id for _anchor, mv_id, _type in unlinked}))
    updates: dict[int, dict[str, Any]] = {}
    followed: list[tuple[int, str]] = []  # (metaverse id, reference attribute) whose winning contribution goes
    for _anchor, mv_id, object_type in unlinked:
        entry = loaded.get(mv_id)
        if entry is None:
            continue
        contributions = entry["contributions"]
        shared = object_type.casefold() == SHARED_JOIN_TYPE.casefold()
        slots = owned_slots(contributions, connector, shared_keys, shared=shared)
        if not slots:
            continue
        followed += [(mv_id, name) for name in sorted(dropped_reference_winners(contributions, slots))]
        drop_slots(contributions, slots)
        entry["dirty"] = True
        updates[mv_id] = entry
    metaverse.write_metaverse(updates)
    # After the inbound reference step: the rows follow the new winner now, before the outbound rules read them.
    follow_reference_winners(state, followed, {mv_id: entry["contributions"] for mv_id, entry in updates.items()})
    if updates:
        state.note("metaverse", f"{connector}: deprovisioned, its contributions recalled")
    return set(updates)
