"""Metaverse writes: loading metaverse objects with their contributions, writing the merged objects back and
keeping ``mv_join_key`` in step for the join rules.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from airflow_provider_aadsync.engine.batching import chunks
from airflow_provider_aadsync.engine.runs.cs_writer import serialize_attrs
from airflow_provider_aadsync.engine.store import (
    mv_join_key,
    mv_join_key_target,
    mv_object,
    utcnow,
)
from airflow_provider_aadsync.engine.store.among import among
from airflow_provider_aadsync.engine.sync.contributions import resolve
from airflow_provider_aadsync.engine.sync.frames import (
    IN_CHUNK,
    count_changes,
    load_json,
    write_rows,
)
from airflow_provider_aadsync.engine.sync.references import reference_summary
from airflow_provider_aadsync.engine.sync.state import SyncPass
from airflow_provider_aadsync.engine.sync.waiting_joins import WaitingJoins

log = logging.getLogger(__name__)

#: Metaverse objects read at a time while the keys of a new join target are filled.
KEY_FILL_ROWS = 20_000


def stored_attrs(entry: Mapping[str, Any]) -> dict[str, list[Any]] | None:
    """The values a loaded metaverse entry held when it was read (None for an object this pass created)."""
    if "attrs" in entry:
        return entry["attrs"]
    if "attrs_json" in entry:
        return load_json(entry["attrs_json"])
    return None


class Metaverse:
    """Reads and writes metaverse objects (and their join keys) for one sync pass."""

    def __init__(self, state: SyncPass) -> None:
        self.state = state
        #: The join key values this pass wrote that other connectors' join rules match on (waiting_joins.py).
        self.waiting = WaitingJoins(state)

    def load_mv(
        self, mv_ids: Sequence[int], *, contributions: bool = True, attrs: bool = True
    ) -> dict[int, dict[str, Any]]:
        """Metaverse rows by id; outbound sync reads only the resolved values (``contributions=False``). Inbound
        sync needs the stored values only of the objects whose contributions change (``attrs=False`` keeps them
        as JSON text under ``attrs_json``; :func:`stored_attrs` decodes them then)."""
        loaded: dict[int, dict[str, Any]] = {}
        with_contributions = contributions
        columns = [mv_object.c.id, mv_object.c.object_type, mv_object.c.attrs]
        if with_contributions:
            columns.append(mv_object.c.contributions)
        for chunk in chunks(list(mv_ids), IN_CHUNK):
            # fetchall and positional unpacking: iterating a result fetches row by row, and a Row's attribute
            # access goes through its key map (both per object of a full sync).
            for mv_id, object_type, stored, *rest in self.state.connection.execute(
                sa.select(*columns).where(among(mv_object.c.id, chunk))
            ).all():
                loaded[mv_id] = {
                    "type": object_type,
                    "contributions": load_json(rest[0]) if with_contributions else {},
                    "new": False,
                }
                if attrs:
                    loaded[mv_id]["attrs"] = load_json(stored)
                else:
                    loaded[mv_id]["attrs_json"] = stored
        return loaded

    def follow_join_targets(self) -> None:
        """Bring ``mv_join_key`` to the join targets of this pass's rules (``tables.mv_join_key_target``): a target no
        rule joined on when the keys were last kept gets the keys of every metaverse object, so a join rule added on
        it finds the objects that did not change since; a target no rule joins on any more loses its keys.

        Not in a preview: it is rolled back, so a preview would fill the keys again each time (seconds at 100,000
        objects, in a web request), and it takes no instance lock to write with. A preview looks keys up as the syncs
        keep them."""
        if self.state.trace is not None:
            return
        connection = self.state.connection
        wanted = {target.lower() for target in self.state.join_targets}
        kept = set(connection.execute(sa.select(mv_join_key_target.c.attribute)).scalars())
        gone, added = sorted(kept - wanted), sorted(wanted - kept)
        if gone:
            connection.execute(sa.delete(mv_join_key).where(among(mv_join_key.c.attribute, gone)))
            connection.execute(sa.delete(mv_join_key_target).where(among(mv_join_key_target.c.attribute, gone)))
        if not added:
            return
        # Keys written before the target was kept for every object are only some objects' (a store of schema 11).
        connection.execute(sa.delete(mv_join_key).where(among(mv_join_key.c.attribute, added)))
        filled, after = 0, 0
        while True:  # by id ranges, not a cursor held open while the keys are written on the same connection
            rows = connection.execute(
                sa.select(mv_object.c.id, mv_object.c.attrs)
                .where(mv_object.c.id > after)
                .order_by(mv_object.c.id)
                .limit(KEY_FILL_ROWS)
            ).all()
            if not rows:
                break
            key_rows = [row for mv_id, attrs in rows for row in self._join_keys(mv_id, load_json(attrs), added)]
            write_rows(self.state.store, connection, mv_join_key, key_rows, update=["value_folded"])
            filled += len(key_rows)
            after = rows[-1][0]
        write_rows(self.state.store, connection, mv_join_key_target, [{"attribute": name} for name in added])
        if filled:
            log.info("join keys of %s filled from every metaverse object: %d values", ", ".join(added), filled)
            self.state.analyze()  # PostgreSQL: the lookups of the pass's joins plan on the filled keys

    def write_metaverse(self, mv_updates: dict[int, dict[str, Any]]) -> None:
        """Write the changed metaverse objects and replace their join keys, so the joins of this pass's next batches
        and of later passes find them; the key values other connectors' join rules match on are noted, so that their
        unjoined objects waiting for such a value are evaluated again (waiting_joins.py)."""
        now = utcnow()
        rows, key_rows, changed_ids = [], [], []
        summaries = self.state.reference_summaries
        for mv_id, entry in mv_updates.items():
            summaries[mv_id] = reference_summary(entry["contributions"], self.state.connector)
            if not entry.get("dirty") and not entry.get("new"):
                continue
            attrs, winners = resolve(entry["contributions"])
            stored = stored_attrs(entry)
            if self.state.trace is not None:
                self.state.trace["metaverse_before"] = stored or {}
                self.state.trace["metaverse_after"] = attrs
                self.state.trace["winners"] = winners
            changed = entry.get("new") or attrs != stored
            if changed:
                self.state.counters["metaverse_attribute_changes"] += count_changes(stored or {}, attrs)
                self.state.touched_mv.add(mv_id)
            rows.append(
                {
                    "id": mv_id,
                    "object_type": entry["type"],
                    "attrs": serialize_attrs(attrs),
                    "contributions": serialize_attrs(entry["contributions"]),
                    "created_at": now,
                    "updated_at": now,
                }
            )
            if changed:
                if not entry.get("new"):  # a new object has no join keys to replace
                    changed_ids.append(mv_id)
                keys = self._join_keys(mv_id, attrs, self.state.join_targets)
                key_rows += keys
                if self.waiting.watched:  # an unjoined object of another connector may wait for a value written here
                    self.waiting.note(self._join_keys(mv_id, stored, self.waiting.watched) if stored else [], keys)
        write_rows(
            self.state.store,
            self.state.connection,
            mv_object,
            rows,
            update=["object_type", "attrs", "contributions", "updated_at"],
        )
        for chunk in chunks(changed_ids, IN_CHUNK):
            self.state.connection.execute(sa.delete(mv_join_key).where(among(mv_join_key.c.mv_id, chunk)))
        write_rows(self.state.store, self.state.connection, mv_join_key, key_rows, update=["value_folded"])

    @staticmethod
    def _join_keys(mv_id: int, attrs: Mapping[str, list[Any]], targets: Sequence[str]) -> list[dict[str, Any]]:
        lowered = {name.lower(): values for name, values in attrs.items()}
        rows = []
        for target in targets:
            for value in lowered.get(target.lower(), []):
                text = str(value)[:1024]
                rows.append(
                    {"mv_id": mv_id, "attribute": target.lower(), "value": text, "value_folded": text.casefold()}
                )
        return rows
