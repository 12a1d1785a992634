"""Pending exports: the rows sync stages for the export steps (adds, updates with attribute deltas, deletes,
member add/remove rows), merged with what is already pending so a re-run stages nothing new.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

import msgspec
import pandas as pd
import sqlalchemy as sa

from airflow_provider_aadsync.engine.batching import chunks
from airflow_provider_aadsync.engine.connectors.schema import PROVISIONAL_PREFIX
from airflow_provider_aadsync.engine.runs.export_run import forget_empty_updates, release_conflicts
from airflow_provider_aadsync.engine.store import (
    READ_ONLY,
    REFUSED,
    cs_object,
    cs_reference,
    link,
    mv_reference,
    pending_export,
    pending_export_reference,
    utcnow,
)
from airflow_provider_aadsync.engine.store.among import among
from airflow_provider_aadsync.engine.sync.frames import (
    IN_CHUNK,
    export_key,
    frame_of_rows,
    same_object,
    write_rows,
)
from airflow_provider_aadsync.engine.sync.lookups import held_by_refusals, set_differences
from airflow_provider_aadsync.engine.sync.state import SyncPass

log = logging.getLogger(__name__)

#: Plan rows sync may replace or withdraw: not in flight, not held by a refused match. A READ_ONLY row (Graph cannot
#: write its object) stays settled while sync stages the same change, and is staged again when the change differs.
_SETTLED = ("pending", "failed", READ_ONLY)

#: How a pending export's changes are stored: ``json.dumps(changes, sort_keys=True, separators=(",", ":"),
#: default=str)``, with the encoder made once instead of once per staged object.
_CHANGES_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)
#: The same text, by msgspec, for the changes it writes alike (:func:`serialize_changes`).
_PLAIN_CHANGES_ENCODER = msgspec.json.Encoder(order="sorted")
#: Cell types msgspec writes as ``json.dumps`` does; others (a timestamp: ISO form, not ``str``) take json.
_PLAIN_CELLS = frozenset((str, int, bool, type(None)))


def serialize_changes(changes: Mapping[str, list[Any]]) -> str:
    """A pending export's changes as they are stored and compared (a plan identical to the pending one is left alone,
    text to text): ``_CHANGES_ENCODER``'s text. msgspec writes it about 14 times faster (a first full sync stages
    every object) when every value is a list of text, numbers, booleans and NULL and its output is ASCII without DEL:
    ``json.dumps`` escapes the rest, msgspec writes them as they are. Anything else takes json."""
    if all(
        type(name) is str and type(values) is list and all(type(cell) in _PLAIN_CELLS for cell in values)
        for name, values in changes.items()
    ):
        text = _PLAIN_CHANGES_ENCODER.encode(changes)
        if text.isascii() and b"\x7f" not in text:
            return text.decode()
    return _CHANGES_ENCODER.encode(changes)


class Staging:
    """Stages pending exports and pending reference changes for one sync pass."""

    def __init__(self, state: SyncPass) -> None:
        self.state = state

    def stage(
        self, connector: str, anchor: str, object_type: str, dn: str, operation: str, changes: Mapping[str, list[Any]]
    ) -> None:
        self.stage_many(connector, [(anchor, object_type, dn, operation, dict(changes))])

    def stage_many(
        self, connector: str, items: Sequence[tuple[str, str, str, str, dict[str, list[Any]]]], *, new: bool = False
    ) -> None:
        """Write (or withdraw) pending exports; a plan identical to the one already pending is left alone. ``new``: the
        anchors are ones this pass just made (provisional objects), so no pending export can hold them yet and none is
        read (a first full sync provisions every object)."""
        if not items:
            return
        existing: dict[str, Any] = {}
        for chunk in chunks([] if new else [item[0] for item in items], IN_CHUNK):
            query = sa.select(
                pending_export.c.anchor,
                pending_export.c.operation,
                pending_export.c.changes,
                pending_export.c.state,
                pending_export.c.dn,
            ).where(pending_export.c.connector == connector, among(pending_export.c.anchor, chunk))
            existing.update({row.anchor: row for row in self.state.connection.execute(query)})
        now = utcnow()
        inserts: list[dict[str, Any]] = []
        for anchor, object_type, dn, operation, changes in items:
            serialized = serialize_changes(changes)
            if self.state.trace is not None and (operation != "update" or changes):  # an empty update stages nothing
                self.state.trace.setdefault("pending_exports", []).append(
                    {"connector": connector, "anchor": anchor, "operation": operation, "dn": dn, "changes": changes}
                )
            current = existing.get(anchor)
            if current is not None and current.state == "sent":
                if current.operation == "update" and operation in ("update", "delete"):
                    self._replace_in_flight(connector, anchor, current, operation, serialized, dn, now)
                else:
                    log.info("the pending export of %s/%s is in flight; the export reconciles it", connector, anchor)
                continue
            if current is not None and current.state == REFUSED:
                if operation == "add":  # held: new values are kept for when the refusal is resolved, never sent
                    self.state.connection.execute(
                        sa.update(pending_export)
                        .where(export_key(connector, anchor))
                        .values(changes=serialized, dn=dn, run_id=self.state.run_id, updated_at=now)
                    )
                continue
            if operation == "update" and not changes:
                # Nothing to write: a settled update goes, and so does a settled delete of an object that is joined and
                # in scope again (scoped out by a slip and back before any export: the delete would remove it).
                if current is not None and current.state in _SETTLED and current.operation in ("update", "delete"):
                    if not self._has_reference_changes(connector, anchor):
                        self.state.connection.execute(sa.delete(pending_export).where(export_key(connector, anchor)))
                    # Its member changes need an update row instead, without the values staged before (the target holds
                    # them now: an attribute changed back would be written with its older value).
                    elif current.operation == "delete" or current.changes != "{}":
                        self.state.connection.execute(
                            sa.update(pending_export)
                            .where(export_key(connector, anchor))
                            .values(
                                operation="update",
                                changes="{}",
                                state="pending",
                                attempts=0,
                                last_error=None,
                                run_id=self.state.run_id,
                                updated_at=now,
                            )
                        )
                    if current.operation == "delete":
                        self.state.counters["export_deletes_withdrawn"] += 1
                        self.state.note("exports", f"{connector}: withdraw the pending delete of {anchor}")
                continue
            if current is not None and current.state in _SETTLED:
                # the same change again: left as it is (a read-only one stays settled, never sent)
                if (current.operation, current.changes, current.dn) == (operation, serialized, dn):
                    continue
            values = {
                "object_type": object_type,
                "dn": dn,
                "operation": operation,
                "changes": serialized,
                "state": "pending",
                "attempts": 0,
                "last_error": None,
                "run_id": self.state.run_id,
                "updated_at": now,
            }
            if current is None:
                inserts.append({"connector": connector, "anchor": anchor, "created_at": now, **values})
            else:
                self.state.connection.execute(
                    sa.update(pending_export).where(export_key(connector, anchor)).values(**values)
                )
            self.state.counters[f"export_{operation}s_staged"] += 1
        inserts.sort(key=itemgetter("anchor"))  # in key order, as the outbound writes its new objects
        write_rows(self.state.store, self.state.connection, pending_export, inserts)

    def _replace_in_flight(
        self, connector: str, anchor: str, current: Any, operation: str, serialized: str, dn: str, now: Any
    ) -> None:
        """An update an interrupted export sent (state ``sent``; the export sends it again, PATCH and modify being
        idempotent) takes the plan staged now, still ``sent``: a change made since (a leaver disabled, an object
        scoped out and deleted) is sent with it. Skipped, it was lost until a full sync: the export sent the older
        values, recorded them, and no delta sync evaluated the object again. An add in flight stays as it is (its
        object is looked up first, and read back by the next import), as does a delete."""
        if (current.operation, current.changes, current.dn) == (operation, serialized, dn):
            return
        self.state.connection.execute(
            sa.update(pending_export)
            .where(export_key(connector, anchor), pending_export.c.state == "sent")
            .values(operation=operation, changes=serialized, dn=dn, run_id=self.state.run_id, updated_at=now)
        )
        self.state.counters[f"export_{operation}s_staged"] += 1
        self.state.note("exports", f"{connector}: a change staged over an update in flight")

    def withdraw_updates(self, connector: str, anchors: Sequence[str]) -> None:
        """Joined objects no outbound rule of ``connector`` has in scope any more: a settled (unsent) update staged
        for them while they were, and its member changes, go; nothing else is staged for them."""
        for chunk in chunks([a for a in anchors if not a.startswith(PROVISIONAL_PREFIX)], IN_CHUNK):
            gone = list(
                self.state.connection.execute(
                    sa.select(pending_export.c.anchor).where(
                        pending_export.c.connector == connector,
                        among(pending_export.c.anchor, chunk),
                        pending_export.c.operation == "update",
                        pending_export.c.state.in_(_SETTLED),
                    )
                ).scalars()
            )
            if not gone:
                continue
            for table in (pending_export_reference, pending_export):
                query = sa.delete(table).where(table.c.connector == connector, among(table.c.anchor, gone))
                if table is pending_export_reference:
                    query = query.where(table.c.state.in_(("pending", "failed", READ_ONLY)))
                else:
                    query = query.where(table.c.operation == "update", table.c.state.in_(_SETTLED))
                self.state.connection.execute(query)
            self.state.counters["export_updates_withdrawn"] += len(gone)
            self.state.note("exports", f"{connector}: out of scope of every outbound rule, withdraw pending update")

    def withdraw_create(self, connector: str, anchor: str) -> None:
        """A planned object (provisional ``anchor``) is never created in the directory: it is forgotten instead of
        deleted there, with the member adds of groups that name it (they would name an object that is never made).

        Unless an export sent its add (state ``sent``: killed or unanswered while the write was on the wire): the
        directory may hold the object now, and forgetting the plan would leave it there for good (a leaver's
        account, enabled, that nothing deletes). That add becomes a delete of the provisional anchor
        (:meth:`_settle_sent_create`), which each export settles by looking the create up."""
        sent = self._settle_sent_create(connector, anchor)
        for table in (pending_export_reference,) if sent else (pending_export_reference, pending_export, cs_object):
            self.state.connection.execute(
                sa.delete(table).where(table.c.connector == connector, table.c.anchor == anchor)
            )
        self.state.connection.execute(
            sa.delete(pending_export_reference).where(
                pending_export_reference.c.connector == connector,
                pending_export_reference.c.target_anchor == anchor,
            )
        )
        # A conflict an export recorded for the create (its UPN held elsewhere, a retry that failed) ends with it: no
        # object will want the value, and an open conflict would stay in the plan and the sync manager for good.
        release_conflicts(self.state.connection, connector, [anchor])
        if sent:
            return
        self.state.counters["export_adds_withdrawn"] += 1
        self.state.note("exports", f"{connector}: withdraw the pending add of {anchor}")

    def _settle_sent_create(self, connector: str, anchor: str) -> bool:
        """Turn a withdrawn add an export sent into a delete of its provisional anchor (True), or say it was never
        sent (False: forgotten). The row keeps state ``sent``, its DN, its changes (the marks the add wrote, which
        the lookup compares) and when it was first sent (``sent_at``; the last send for rows older than that column,
        so the lookup still recognises the object the send made); the provisional connector-space object stays (no
        link: the metaverse object is gone). The deletion guard counts it like any delete, before the first write.
        The Entra export (reconcile.py settle_withdrawn_create) and the AD export (ad/withdrawn.py) look the create
        up by the same marks as a resumed create: ours and there, it is deleted; absent (or not ours), forgotten."""
        row = self.state.connection.execute(
            sa.select(pending_export.c.operation, pending_export.c.state).where(export_key(connector, anchor))
        ).first()
        if row is None or (row.state != "sent" and row.operation != "delete"):
            return False
        self.state.connection.execute(
            sa.update(pending_export)
            .where(export_key(connector, anchor))
            .values(
                operation="delete",
                state="sent",
                sent_at=sa.func.coalesce(pending_export.c.sent_at, pending_export.c.updated_at),
                run_id=self.state.run_id,
                updated_at=utcnow(),
            )
        )
        self.state.connection.execute(
            sa.update(cs_object)
            .where(cs_object.c.connector == connector, cs_object.c.anchor == anchor)
            .values(pending_export="delete")
        )
        self.state.counters["export_sent_adds_to_delete"] += 1
        self.state.note("exports", f"{connector}: a withdrawn add was sent; the export deletes it if it was made")
        return True

    def forget_deleted(self, anchors: Sequence[str]) -> None:
        """Objects of the pass's connector deleted in its directory (the import's tombstones): nothing is left to
        export to them. Their pending export and reference (member, manager) changes go, the reference adds naming
        them too, and their open conflicts end. Before, an update staged for a cloud user then deleted in Entra ID
        stayed beside the create of its successor: the export sent it to an object gone (404), a per-object error
        each cycle."""
        connector = self.state.connector
        for chunk in chunks(list(anchors), IN_CHUNK):
            self.state.connection.execute(
                sa.delete(pending_export_reference).where(
                    pending_export_reference.c.connector == connector, among(pending_export_reference.c.anchor, chunk)
                )
            )
            withdrawn = self.state.connection.execute(
                sa.delete(pending_export).where(
                    pending_export.c.connector == connector, among(pending_export.c.anchor, chunk)
                )
            ).rowcount
            if withdrawn:
                self.state.counters["export_to_deleted_withdrawn"] += withdrawn
                self.state.note("exports", f"{connector}: withdraw {withdrawn} pending exports to deleted objects")
            # sent ones too: an add naming an object gone has nothing to reconcile, it could only fail
            self.withdraw_member_adds(connector, chunk, states=(*_SETTLED, "sent"))
            release_conflicts(self.state.connection, connector, chunk)

    def withdraw_member_adds(
        self, connector: str, target_anchors: Sequence[str], *, states: Sequence[str] = _SETTLED
    ) -> None:
        """Withdraw the member (manager) adds in ``states`` (default: unsent) naming ``target_anchors`` (objects being
        deleted, or gone), and the empty update rows of their groups that carried nothing else."""
        adds = sa.and_(
            pending_export_reference.c.connector == connector,
            among(pending_export_reference.c.target_anchor, list(target_anchors)),
            pending_export_reference.c.operation == "add",
            pending_export_reference.c.state.in_(list(states)),
        )
        groups = list(self.state.connection.execute(sa.select(pending_export_reference.c.anchor).where(adds)).scalars())
        if not groups:
            return
        self.state.connection.execute(sa.delete(pending_export_reference).where(adds))
        for group in sorted(set(groups)):
            if not self._has_reference_changes(connector, group):
                self.state.connection.execute(
                    sa.delete(pending_export).where(
                        export_key(connector, group),
                        pending_export.c.operation == "update",
                        pending_export.c.changes == "{}",
                        pending_export.c.state.in_(_SETTLED),
                    )
                )
        self.state.counters["export_reference_adds_withdrawn"] += len(groups)

    def _has_reference_changes(self, connector: str, anchor: str) -> bool:
        query = sa.select(sa.func.count()).where(
            pending_export_reference.c.connector == connector,
            pending_export_reference.c.anchor == anchor,
            pending_export_reference.c.state != "confirmed",
        )
        return bool(self.state.connection.execute(query).scalar())

    def stage_references(self, connector: str, mv_attribute: str, cs_attribute: str, groups: Mapping[int, str]) -> None:
        """Member add/remove rows per target object: desired (metaverse, through links) minus what the target holds;
        none naming an object a refused match holds (lookups.held_by_refusals)."""
        group_link, target_link = link.alias("group_link"), link.alias("target_link")
        held = held_by_refusals(self.state.connection, connector, self.state.connector)
        for chunk in chunks(sorted(groups), IN_CHUNK):
            # Compared by the store, by metaverse id of the group: only the differences come back (a member moved in
            # a 250,000-member group is two rows, not two frames of 250,000).
            desired = (
                sa.select(mv_reference.c.mv_id, target_link.c.anchor)
                .select_from(
                    mv_reference.outerjoin(
                        target_link,
                        sa.and_(
                            target_link.c.connector == connector, target_link.c.mv_id == mv_reference.c.target_mv_id
                        ),
                    )
                )
                .where(mv_reference.c.attribute == mv_attribute.lower(), among(mv_reference.c.mv_id, chunk))
            )
            anchors = [groups[m] for m in chunk]
            current = (
                sa.select(group_link.c.mv_id, cs_reference.c.target_anchor)
                .select_from(cs_reference.join(group_link, same_object(group_link, cs_reference)))
                .where(
                    cs_reference.c.connector == connector,
                    cs_reference.c.attribute == cs_attribute,
                    among(cs_reference.c.anchor, anchors),
                    among(group_link.c.mv_id, chunk),
                )
            )
            found = set_differences(self.state.connection, desired, current)
            self.state.counters["export_references_unresolved"] += found.unresolved
            adds = [(m, target) for m, target in found.adds if target not in held]
            removes = [(m, target) for m, target in found.removes if target not in held]
            kept = len(found.adds) + len(found.removes) - len(adds) - len(removes)
            if kept:
                self.state.counters["export_references_held"] += kept
                self.state.note("exports", f"{connector}: {kept} {cs_attribute} changes kept: their match is refused")
            wanted = pd.DataFrame(
                [(groups[m], target, "add") for m, target in adds]
                + [(groups[m], target, "remove") for m, target in removes],
                columns=["anchor", "target_anchor", "operation"],
                dtype=object,
            )
            staged = frame_of_rows(
                self.state.connection.execute(
                    sa.select(
                        pending_export_reference.c.anchor,
                        pending_export_reference.c.target_anchor,
                        pending_export_reference.c.operation,
                        pending_export_reference.c.state,
                    ).where(
                        pending_export_reference.c.connector == connector,
                        pending_export_reference.c.attribute == cs_attribute,
                        among(pending_export_reference.c.anchor, anchors),
                    )
                ).all(),
                ["anchor", "target_anchor", "operation", "state"],
            )
            key = ["anchor", "target_anchor", "operation"]
            merged = wanted.merge(staged, on=key, how="outer", indicator=True)
            new_rows = merged[merged["_merge"] == "left_only"]
            stale = merged[
                (merged["_merge"] == "right_only") & merged["state"].isin(["pending", "failed", "confirmed", READ_ONLY])
            ]
            for anchor, targets in stale.groupby("anchor")["target_anchor"]:
                for part in chunks(targets.tolist(), IN_CHUNK):
                    self.state.connection.execute(
                        sa.delete(pending_export_reference).where(
                            pending_export_reference.c.connector == connector,
                            pending_export_reference.c.anchor == anchor,
                            pending_export_reference.c.attribute == cs_attribute,
                            among(pending_export_reference.c.target_anchor, part),
                        )
                    )
            rows = [
                {
                    "connector": connector,
                    "anchor": anchor,
                    "attribute": cs_attribute,
                    "target_anchor": target,
                    "operation": operation,
                    "state": "pending",
                    "run_id": self.state.run_id,
                }
                for anchor, target, operation in zip(
                    new_rows["anchor"], new_rows["target_anchor"], new_rows["operation"], strict=True
                )
            ]
            write_rows(
                self.state.store,
                self.state.connection,
                pending_export_reference,
                rows,
                update=["operation", "state", "run_id"],
            )
            self.state.counters["export_reference_adds_staged"] += int((new_rows["operation"] == "add").sum())
            self.state.counters["export_reference_removes_staged"] += int((new_rows["operation"] == "remove").sum())
            self._ensure_update_rows(connector, sorted(set(new_rows["anchor"])))
            # An update row that carried only the member changes just withdrawn goes with them (staged before them, it
            # was kept for them), as a full re-evaluation would not stage it.
            forget_empty_updates(
                self.state.connection,
                connector,
                anchors=sorted(set(stale["anchor"]) - set(new_rows["anchor"])),
                states=_SETTLED,
            )
            if self.state.trace is not None:
                self.state.trace.setdefault("pending_reference_changes", []).append(
                    {
                        "connector": connector,
                        "attribute": cs_attribute,
                        "adds": len(adds),
                        "removes": len(removes),
                    }
                )

    def _ensure_update_rows(self, connector: str, anchors: Sequence[str]) -> None:
        """Objects with member changes get a pending export row (an update with no attribute changes) if they
        have none, so the plan lists every object the export will touch."""
        for chunk in chunks(list(anchors), IN_CHUNK):
            present = set(
                self.state.connection.execute(
                    sa.select(pending_export.c.anchor).where(
                        pending_export.c.connector == connector, among(pending_export.c.anchor, chunk)
                    )
                ).scalars()
            )
            missing = [anchor for anchor in chunk if anchor not in present]
            if not missing:
                continue
            now = utcnow()
            rows = [
                {
                    "connector": connector,
                    "anchor": row.anchor,
                    "object_type": row.object_type,
                    "dn": row.dn,
                    "operation": "update",
                    "changes": "{}",
                    "state": "pending",
                    "attempts": 0,
                    "run_id": self.state.run_id,
                    "created_at": now,
                    "updated_at": now,
                }
                for row in self.state.connection.execute(
                    sa.select(cs_object.c.anchor, cs_object.c.dn, cs_object.c.object_type).where(
                        cs_object.c.connector == connector, among(cs_object.c.anchor, missing)
                    )
                )
            ]
            write_rows(self.state.store, self.state.connection, pending_export, rows)
            self.state.counters["export_updates_staged"] += len(rows)
