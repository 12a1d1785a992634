"""Attribute recall after an outbound deprovision: the object's link goes, and what it contributed goes with it.

When the outbound half deprovisions a linked object (its metaverse object left the scope of every outbound rule of
its connector: the link is removed and its delete staged), that connector's inbound contributions to the metaverse
object are recalled, as on any disconnection (joins.py): another contributor's value takes their place, or the
attribute is cleared, and a reference attribute nobody contributes any more loses its rows. Before, the link went and
the values stayed: a cloud-filtered person kept the ``cloudAnchor`` of a cloud user no longer joined to it.

The object stays a disconnector while its delete is pending (unjoined.py); if it is joined again (the outbound half
rejoins it when its metaverse object is back in scope before the export), its connector's next sync of it brings
its values back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_aadsync.engine.sync.contributions import (
    REFERENCE_MARKER,
    SHARED_JOIN_TYPE,
    contributor_key,
    drop_slots,
    owned_slots,
)
from airflow_provider_aadsync.engine.sync.metaverse import Metaverse
from airflow_provider_aadsync.engine.sync.references import clear_mv_references
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
    clears: list[tuple[int, str]] = []
    for _anchor, mv_id, object_type in unlinked:
        entry = loaded.get(mv_id)
        if entry is None:
            continue
        contributions = entry["contributions"]
        shared = object_type.casefold() == SHARED_JOIN_TYPE.casefold()
        slots = owned_slots(contributions, connector, shared_keys, shared=shared)
        if not slots:
            continue
        references = {name for name, key in slots if contributions[name][key][2] == REFERENCE_MARKER}
        drop_slots(contributions, slots)
        clears += [(mv_id, name.lower()) for name in references if name not in contributions]
        entry["dirty"] = True
        updates[mv_id] = entry
    metaverse.write_metaverse(updates)
    clear_mv_references(state, clears)
    if updates:
        state.note("metaverse", f"{connector}: deprovisioned, its contributions recalled")
    return set(updates)
