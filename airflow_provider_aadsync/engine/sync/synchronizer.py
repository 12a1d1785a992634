"""One sync pass of one connector: connector space → metaverse (inbound), then metaverse → pending exports (outbound).

The pass works in batches of connector-space rows. Per batch, rules run as column operations (scoping, Direct and
Constant flows; expressions per row only), joins are indexed lookups in ``mv_join_key``, and precedence merges the
flows into each metaverse object's contributions. References (group members) are resolved afterwards with set
operations over whole reference tables, so a member imported later than its group is picked up in the same pass,
and a 250,000-member group is a pandas merge, not a Python loop. The outbound half then turns every metaverse object
the pass touched into pending exports for the other connectors: provisioning, updates with attribute deltas,
deprovisioning, and member add/remove rows.

Everything happens inside the caller's transaction; ``trace`` (used by preview) records every decision.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from airflow_provider_aadsync.engine.dn import dn_key
from airflow_provider_aadsync.engine.expressions import AuthoritativeNull, IgnoreThisFlow, ReferenceValues
from airflow_provider_aadsync.engine.import_run import ErrorSink
from airflow_provider_aadsync.engine.importer import serialize_attrs
from airflow_provider_aadsync.engine.rules import CompiledRule, RuleSet, frame_from_records
from airflow_provider_aadsync.engine.store import (
    Store,
    cs_object,
    cs_reference,
    link,
    mv_join_key,
    mv_object,
    mv_reference,
    pending_export,
    pending_export_reference,
    utcnow,
)
from airflow_provider_aadsync.engine.sync.contributions import (
    REFERENCE_MARKER,
    Contributions,
    contributor_connector,
    contributor_key,
    drop_connector,
    resolve,
)
from airflow_provider_aadsync.engine.sync.schema import METAVERSE, ConnectorSchema, cell_values, schema_for

log = logging.getLogger(__name__)

#: Connector-space rows per batch: bounds memory whatever the directory size.
BATCH_ROWS = 20_000
#: Values per ``IN (...)`` list.
IN_CHUNK = 500
#: Anchors of objects sync has provisioned that no export has created yet start with this.
PROVISIONAL_PREFIX = "provisional:"

LINK_TYPES = {"Join": "join", "StickyJoin": "sticky-join", "Provision": "projection"}
#: Link types that keep a metaverse object alive (an inbound rule joined or projected it).
_SOURCE_LINKS = ("join", "sticky-join", "projection")


def chunks(values: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _cell_key(cell: Any) -> str:
    return json.dumps(cell_values(cell), sort_keys=True, default=str)


def _same_values(left: list[Any], right: list[Any]) -> bool:
    if len(left) != len(right):
        return False
    if len(left) <= 1:
        return left == right
    return sorted(map(repr, left)) == sorted(map(repr, right))


class Synchronizer:
    """Runs inbound and outbound sync for one connector inside one transaction, counting what it does."""

    def __init__(
        self,
        store: Store,
        connection: Connection,
        rules: RuleSet,
        connector: str,
        run_id: int | None,
        errors: ErrorSink,
        *,
        schemas: Mapping[str, ConnectorSchema] | None = None,
        trace: dict[str, Any] | None = None,
        batch_rows: int = BATCH_ROWS,
    ):
        self.store = store
        self.connection = connection
        self.rules = rules
        self.connector = connector
        self.run_id = run_id
        self.errors = errors
        self.schemas = schemas
        self.schema = schema_for(connector, schemas)
        self.trace = trace
        self.batch_rows = batch_rows
        self.counters: Counter[str] = Counter()
        self.inbound_rules: list[CompiledRule] = sorted(rules.inbound(connector), key=lambda r: r.rule.precedence)
        self.outbound_rules: list[CompiledRule] = sorted(rules.outbound(), key=lambda r: r.rule.precedence)
        self._rules_by_name = {compiled.rule.name: compiled for compiled in rules.rules}
        #: MV attributes some join rule looks up: their values are kept in mv_join_key.
        self.join_targets = sorted(
            {
                pair[1]
                for compiled in rules.rules
                if compiled.rule.direction == "inbound"
                for group in compiled.join_groups
                for pair in group
            }
        )
        #: MV object type → connectors whose inbound rules may project it (their links keep the object alive).
        self.authoritative: dict[str, set[str]] = defaultdict(set)
        for compiled in rules.rules:
            if compiled.rule.direction == "inbound" and compiled.rule.link_type == "Provision":
                self.authoritative[compiled.rule.target_object_type].add(compiled.rule.connector)
        self.touched_mv: set[int] = set()
        self.reference_dirty: set[str] = set()
        self.newly_linked: set[str] = set()
        self.processed: list[str] = []
        self.tombstones: list[str] = []
        self._batch_dns: dict[str, str] = {}

    # ================================================================================================ the pass
    def run(self, mode: str, *, anchors: Sequence[str] | None = None) -> None:
        """Sync every object (full), the objects with pending imports (delta), or the given ``anchors``."""
        self.mode = mode
        for batch in self._batches(mode, anchors):
            self._inbound_batch(batch)
        self._inbound_references()
        self._outbound(sorted(self.touched_mv))
        self._finish_connector_space()

    def _batches(self, mode: str, anchors: Sequence[str] | None) -> Iterator[pd.DataFrame]:
        columns = [
            cs_object.c.anchor,
            cs_object.c.dn,
            cs_object.c.object_type,
            cs_object.c.attrs,
            cs_object.c.is_deleted,
            link.c.mv_id,
            link.c.link_type,
            link.c.rule,
        ]
        base = (
            sa.select(*columns)
            .select_from(
                cs_object.outerjoin(
                    link, sa.and_(link.c.connector == cs_object.c.connector, link.c.anchor == cs_object.c.anchor)
                )
            )
            .where(cs_object.c.connector == self.connector, cs_object.c.attrs_hash != "")
        )
        names = ["anchor", "dn", "object_type", "attrs", "is_deleted", "mv_id", "link_type", "link_rule"]
        if anchors is not None:
            for chunk in chunks(list(anchors), self.batch_rows):
                rows = []
                for part in chunks(chunk):
                    rows += self.connection.execute(base.where(cs_object.c.anchor.in_(part))).all()
                yield pd.DataFrame(rows, columns=names)
            return
        if mode == "delta":
            base = base.where(cs_object.c.pending_import.is_not(None))
        last = None
        while True:
            query = base.order_by(cs_object.c.anchor).limit(self.batch_rows)
            if last is not None:
                query = query.where(cs_object.c.anchor > last)
            rows = self.connection.execute(query).all()
            if not rows:
                return
            last = rows[-1].anchor
            yield pd.DataFrame(rows, columns=names)

    # ============================================================================================= inbound
    def _inbound_batch(self, batch: pd.DataFrame) -> None:
        batch["mv_id"] = batch["mv_id"].astype("Int64")
        self.counters["objects_evaluated"] += len(batch)
        deleted = batch[batch["is_deleted"].astype(bool)]
        live = batch[~batch["is_deleted"].astype(bool)]
        disconnects: list[tuple[str, int]] = [
            (row.anchor, int(row.mv_id)) for row in deleted.itertuples() if not pd.isna(row.mv_id)
        ]
        self.tombstones += deleted["anchor"].tolist()
        self.counters["deletes"] += len(deleted)
        if self.trace is not None and len(deleted):
            self.trace["decision"] = "deleted in the connected directory: disconnect"
        self.processed += live["anchor"].tolist()
        self._batch_dns = dict(zip(batch["anchor"], batch["dn"], strict=True))

        records = {row.anchor: json.loads(row.attrs) for row in live.itertuples()}
        mv_updates: dict[int, dict[str, Any]] = {}  # mv_id → {"type", "contributions", "new"}
        flow_inputs: list[tuple[pd.DataFrame, list[CompiledRule], pd.DataFrame]] = []
        for object_type, part in live.groupby("object_type", sort=True):
            rules = [r for r in self.inbound_rules if r.rule.source_object_type == object_type]
            part = part.set_index("anchor", drop=False)
            if not rules:
                linked = part[part["mv_id"].notna() & part["link_type"].isin(["join", "projection"])]
                disconnects += [(anchor, int(mv)) for anchor, mv in zip(linked["anchor"], linked["mv_id"], strict=True)]
                self.counters["disconnectors"] += int(part["mv_id"].isna().sum())
                continue
            frame = self._frame([records[a] for a in part.index], rules, part.index)
            scope = pd.DataFrame({r.rule.name: r.in_scope(frame).astype(bool) for r in rules}, index=part.index)
            if self.trace is not None:
                self.trace["inbound_rules_in_scope"] = [name for name in scope.columns if bool(scope[name].iloc[0])]
            links = self._link(part, frame, rules, scope, disconnects, mv_updates)
            flow_inputs.append((frame, rules, scope.assign(mv_id=links)))

        self._disconnect(disconnects, mv_updates)
        for frame, rules, scope in flow_inputs:
            self._flow(frame, rules, scope, mv_updates)
        self._write_metaverse(mv_updates)

    def _frame(self, records: list[dict[str, Any]], rules: Sequence[CompiledRule], index: pd.Index) -> pd.DataFrame:
        attributes = sorted({name for r in rules for name in r.attributes})
        frame = frame_from_records(records, attributes)
        frame.index = index
        self.schema.type_columns(frame)
        if any(r.needs_member_of for r in rules):
            frame["memberOf"] = self._member_of(list(index))
        return frame

    def _member_of(self, anchors: list[str]) -> list[list[str] | None]:
        groups: dict[str, list[str]] = defaultdict(list)
        group = cs_object.alias("group_object")
        for chunk in chunks(anchors):
            query = (
                sa.select(cs_reference.c.target_anchor, group.c.dn)
                .join(
                    group,
                    sa.and_(group.c.connector == cs_reference.c.connector, group.c.anchor == cs_reference.c.anchor),
                )
                .where(cs_reference.c.connector == self.connector, cs_reference.c.target_anchor.in_(chunk))
            )
            for target, dn in self.connection.execute(query):
                groups[target].append(dn_key(dn))
        return [groups.get(anchor) or None for anchor in anchors]

    # ---------------------------------------------------------------------------------------- join / project
    def _link(
        self,
        part: pd.DataFrame,
        frame: pd.DataFrame,
        rules: Sequence[CompiledRule],
        scope: pd.DataFrame,
        disconnects: list[tuple[str, int]],
        mv_updates: dict[int, dict[str, Any]],
    ) -> pd.Series:
        """Keep, make or break each object's link; returns the metaverse id per object (NA for disconnectors)."""
        linking = [r for r in rules if r.rule.link_type in LINK_TYPES]
        in_scope = scope[[r.rule.name for r in linking]].any(axis=1) if linking else pd.Series(False, index=part.index)
        mv_ids = part["mv_id"].copy()

        linked = part["mv_id"].notna()
        out_of_scope = linked & ~in_scope & part["link_type"].isin(["join", "projection"])
        for anchor in part.index[out_of_scope]:
            disconnects.append((anchor, int(part.at[anchor, "mv_id"])))
            mv_ids[anchor] = pd.NA
            self.counters["disconnections_out_of_scope"] += 1
            self._note("decision", "out of scope of every joining/projecting rule: disconnect")
        if self.trace is not None and linked.any() and not out_of_scope.any():
            self._note("decision", f"already joined to metaverse object {int(part['mv_id'].iloc[0])}")

        pending = list(part.index[~linked & in_scope])
        in_scope_of = _members_by_rule(scope)
        new_links: list[dict[str, Any]] = []
        taken: dict[int, str] | None = None
        for compiled in linking:
            if len(pending) == 0:
                break
            candidates = [a for a in pending if a in in_scope_of[compiled.rule.name]]
            resolved: set[str] = set()
            for group in compiled.join_groups:
                if not candidates:
                    break
                matches = self._join_matches(frame.loc[candidates], group, compiled.rule.target_object_type)
                for anchor in candidates:
                    found = matches.get(anchor, set())
                    if not found:
                        continue
                    resolved.add(anchor)
                    dn = part.at[anchor, "dn"]
                    if len(found) > 1:
                        self._error(
                            anchor,
                            dn,
                            "ambiguous-join",
                            f"rule {compiled.rule.name!r} join matches "
                            f"{len(found)} metaverse objects ({sorted(found)[:5]})",
                        )
                        continue
                    target = next(iter(found))
                    if taken is None:
                        taken = self._mv_ids_linked_here()
                    holder = taken.get(target)
                    if holder is not None and holder.startswith(PROVISIONAL_PREFIX):
                        # Sync had planned to create this object; the directory already has it: join, don't create.
                        self.connection.execute(
                            sa.delete(link).where(link.c.connector == self.connector, link.c.anchor == holder)
                        )
                        self._deprovision(self.connector, holder)
                    elif holder is not None:
                        self._error(
                            anchor,
                            dn,
                            "join-conflict",
                            f"rule {compiled.rule.name!r} matches metaverse "
                            f"object {target}, already joined to {self.connector} object {holder}",
                        )
                        continue
                    taken[target] = anchor
                    mv_ids[anchor] = target
                    new_links.append(self._link_row(anchor, target, compiled, "join"))
                    self.counters["joins"] += 1
                    self._note("decision", f"joined by rule {compiled.rule.name!r} to metaverse object {target}")
                if resolved:
                    candidates = [a for a in candidates if a not in resolved]
            if resolved:
                pending = [a for a in pending if a not in resolved]
            if compiled.rule.link_type == "Provision":
                projected = [a for a in pending if a in in_scope_of[compiled.rule.name]]
                new_ids = self._allocate_mv_ids(len(projected))
                for anchor, mv_id in zip(projected, new_ids, strict=True):
                    mv_ids[anchor] = mv_id
                    mv_updates[mv_id] = {"type": compiled.rule.target_object_type, "contributions": {}, "new": True}
                    new_links.append(self._link_row(anchor, mv_id, compiled, "projection"))
                    self._note("decision", f"projected by rule {compiled.rule.name!r} as new metaverse object")
                self.counters["projections"] += len(projected)
                projected_set = set(projected)
                pending = [a for a in pending if a not in projected_set]
        self.counters["disconnectors"] += int((~linked & ~in_scope).sum()) + len(pending)
        if self.trace is not None and not linked.any() and "decision" not in self.trace:
            self._note("decision", "stays a disconnector: no joining or projecting rule applies")
        if new_links:
            self.newly_linked.update(row["anchor"] for row in new_links)
            self.store.insert_chunked(self.connection, link, new_links)
        self.counters["connectors"] += int(mv_ids.notna().sum())
        return mv_ids

    def _link_row(self, anchor: str, mv_id: int, compiled: CompiledRule, kind: str) -> dict[str, Any]:
        link_type = "sticky-join" if compiled.rule.link_type == "StickyJoin" else kind
        return {
            "connector": self.connector,
            "anchor": anchor,
            "mv_id": int(mv_id),
            "rule": compiled.rule.name,
            "link_type": link_type,
            "created_at": utcnow(),
        }

    def _mv_ids_linked_here(self) -> dict[int, str]:
        """Metaverse objects that already have a link from this connector, and the anchor linked."""
        query = sa.select(link.c.mv_id, link.c.anchor).where(link.c.connector == self.connector)
        return dict(self.connection.execute(query).all())

    def _allocate_mv_ids(self, count: int) -> list[int]:
        if count == 0:
            return []
        current = self.connection.execute(sa.select(sa.func.max(mv_object.c.id))).scalar() or 0
        current = max(current, getattr(self, "_last_allocated", 0))
        self._last_allocated = current + count
        # Reserve the ids at once, so a later batch's max() sees them even before their attributes are written.
        now = utcnow()
        rows = [
            {
                "id": current + 1 + i,
                "object_type": "",
                "attrs": "{}",
                "contributions": "{}",
                "created_at": now,
                "updated_at": now,
            }
            for i in range(count)
        ]
        self.store.insert_chunked(self.connection, mv_object, rows)
        return [row["id"] for row in rows]

    def _join_matches(self, frame: pd.DataFrame, group: Sequence[Any], mv_type: str) -> dict[str, set[int]]:
        """Metaverse ids matching every pair of one join group, per connector-space anchor."""
        result: dict[str, set[int]] | None = None
        for pair in group:
            source, target, case_sensitive = pair[0], pair[1], pair[2]
            column = _column(frame, source)
            keys: dict[str, list[str]] = defaultdict(list)
            for anchor, cell in zip(frame.index, column, strict=True):
                for value in cell_values(cell):
                    text = str(value)
                    keys[text if case_sensitive else text.casefold()].append(anchor)
            found: dict[str, set[int]] = defaultdict(set)
            value_column = mv_join_key.c.value if case_sensitive else mv_join_key.c.value_folded
            for chunk in chunks(list(keys)):
                query = (
                    sa.select(value_column, mv_join_key.c.mv_id)
                    .join(mv_object, mv_object.c.id == mv_join_key.c.mv_id)
                    .where(
                        mv_join_key.c.attribute == target.lower(),
                        value_column.in_(chunk),
                        mv_object.c.object_type == mv_type,
                    )
                )
                for value, mv_id in self.connection.execute(query):
                    for anchor in keys[value]:
                        found[anchor].add(mv_id)
            result = dict(found) if result is None else {a: ids & found.get(a, set()) for a, ids in result.items()}
        return {anchor: ids for anchor, ids in (result or {}).items() if ids}

    # ------------------------------------------------------------------------------------------ disconnect
    def _disconnect(self, pairs: Sequence[tuple[str, int]], mv_updates: dict[int, dict[str, Any]]) -> None:
        if not pairs:
            return
        for chunk in chunks([anchor for anchor, _ in pairs]):
            self.connection.execute(sa.delete(link).where(link.c.connector == self.connector, link.c.anchor.in_(chunk)))
        self.counters["disconnections"] += len(pairs)
        mv_ids = sorted({mv_id for _, mv_id in pairs})
        loaded = self._load_mv(mv_ids)
        orphans = []
        survivors = self._source_links(mv_ids)
        for mv_id in mv_ids:
            row = loaded.get(mv_id)
            if row is None:
                continue
            if not (survivors.get(mv_id, set()) & self.authoritative.get(row["type"], set())):
                orphans.append(mv_id)
                continue
            entry = mv_updates.setdefault(mv_id, row)
            drop_connector(entry["contributions"], self.connector)
            entry["dirty"] = True
            self.touched_mv.add(mv_id)
        self._delete_metaverse(orphans)
        for mv_id in orphans:
            mv_updates.pop(mv_id, None)

    def _source_links(self, mv_ids: Sequence[int]) -> dict[int, set[str]]:
        found: dict[int, set[str]] = defaultdict(set)
        for chunk in chunks(list(mv_ids)):
            query = sa.select(link.c.mv_id, link.c.connector).where(
                link.c.mv_id.in_(chunk), link.c.link_type.in_(_SOURCE_LINKS)
            )
            for mv_id, connector in self.connection.execute(query):
                found[mv_id].add(connector)
        return found

    def _delete_metaverse(self, mv_ids: Sequence[int]) -> None:
        """Delete metaverse objects with no source left, deprovisioning what outbound rules made of them."""
        if not mv_ids:
            return
        self.counters["metaverse_deletes"] += len(mv_ids)
        self._note("metaverse", "deleted: no joined or projecting connector-space object remains")
        remaining: list[tuple[str, str, str]] = []
        for chunk in chunks(list(mv_ids)):
            remaining += self.connection.execute(
                sa.select(link.c.connector, link.c.anchor, link.c.link_type).where(link.c.mv_id.in_(chunk))
            ).all()
            referencing = self.connection.execute(
                sa.select(mv_reference.c.mv_id).where(mv_reference.c.target_mv_id.in_(chunk)).distinct()
            ).scalars()
            self.touched_mv.update(referencing)
            for table, column in (
                (mv_reference, mv_reference.c.mv_id),
                (mv_reference, mv_reference.c.target_mv_id),
                (mv_join_key, mv_join_key.c.mv_id),
                (link, link.c.mv_id),
                (mv_object, mv_object.c.id),
            ):
                self.connection.execute(sa.delete(table).where(column.in_(chunk)))
        outbound_connectors = {r.rule.connector for r in self.outbound_rules}
        for connector, anchor, _link_type in remaining:
            if connector in outbound_connectors and connector != self.connector:
                self._deprovision(connector, anchor)
        self.touched_mv.difference_update(mv_ids)

    def _deprovision(self, connector: str, anchor: str) -> None:
        if anchor.startswith(PROVISIONAL_PREFIX):
            # Never created in the directory: forget it instead of deleting it there.
            for table in (pending_export_reference, pending_export, cs_object):
                self.connection.execute(
                    sa.delete(table).where(table.c.connector == connector, table.c.anchor == anchor)
                )
            self.counters["export_adds_withdrawn"] += 1
            self._note("exports", f"{connector}: withdraw the pending add of {anchor}")
            return
        row = self.connection.execute(
            sa.select(cs_object.c.dn, cs_object.c.object_type).where(
                cs_object.c.connector == connector, cs_object.c.anchor == anchor
            )
        ).first()
        if row is None:
            return
        self.connection.execute(
            sa.delete(pending_export_reference).where(
                pending_export_reference.c.connector == connector, pending_export_reference.c.anchor == anchor
            )
        )
        self._stage(connector, anchor, row.object_type, row.dn, "delete", {})

    # ------------------------------------------------------------------------------------------------ flows
    def _flow(
        self,
        frame: pd.DataFrame,
        rules: Sequence[CompiledRule],
        scope: pd.DataFrame,
        mv_updates: dict[int, dict[str, Any]],
    ) -> None:
        linked = scope[scope["mv_id"].notna()]
        if linked.empty:
            return
        mv_ids = sorted({int(v) for v in linked["mv_id"]})
        # Outbound rules run for every metaverse object whose connector-space object was synced, changed or not:
        # a change on the target side (an edit in the cloud) is corrected by the next export too.
        self.touched_mv.update(mv_ids)
        loaded = self._load_mv([m for m in mv_ids if m not in mv_updates])
        for mv_id, row in loaded.items():
            mv_updates[mv_id] = row
        results: dict[str, tuple[CompiledRule, dict[str, dict[str, Any]]]] = {}
        failed: set[str] = set()
        for compiled in rules:
            rows = linked.index[linked[compiled.rule.name].to_numpy(dtype=bool)]
            if len(rows) == 0:
                continue
            outcome = compiled.evaluate_flows(frame.loc[rows])
            for anchor, error in outcome.errors.items():
                failed.add(anchor)
                self._error(
                    anchor,
                    self._batch_dns.get(anchor),
                    getattr(error, "code", "expression-error"),
                    getattr(error, "message", str(error)),
                )
            results[compiled.rule.name] = (compiled, outcome.values.to_dict("index"))
        in_scope_of = _members_by_rule(linked[[r.rule.name for r in rules]])
        for anchor, mv_value in zip(linked.index, linked["mv_id"], strict=True):
            if anchor in failed:
                continue
            entry = mv_updates.get(int(mv_value))
            if entry is None:
                continue
            self._contribute(anchor, entry, rules, in_scope_of, results)

    def _contribute(
        self,
        anchor: str,
        entry: dict[str, Any],
        rules: Sequence[CompiledRule],
        in_scope_of: Mapping[str, set[Any]],
        results: Mapping[str, tuple[CompiledRule, dict[str, dict[str, Any]]]],
    ) -> None:
        contributions: Contributions = entry["contributions"]
        before = {a: dict(e) for a, e in contributions.items()}
        drop_connector(contributions, self.connector)
        for compiled in rules:
            if compiled.rule.target_object_type != entry["type"] or anchor not in in_scope_of[compiled.rule.name]:
                continue
            values = results.get(compiled.rule.name, (None, {}))[1].get(anchor)
            if values is None:
                continue
            key = contributor_key(self.connector, compiled.rule.name)
            for spec in compiled.flow_specs:
                previous = before.get(spec.target, {}).get(key)
                if spec.apply_once and previous is not None:
                    contributions.setdefault(spec.target, {})[key] = previous
                    continue
                cell = values.get(spec.target)
                if spec.type == "Direct" and self.schema.is_reference(spec.source):
                    contribution = [compiled.rule.precedence, spec.merge, REFERENCE_MARKER]
                    self.reference_dirty.add(anchor)
                elif cell is IgnoreThisFlow or cell is None or (isinstance(cell, float) and pd.isna(cell)):
                    self._trace_flow(compiled, spec.target, None)
                    continue
                elif cell is AuthoritativeNull:
                    contribution = [compiled.rule.precedence, spec.merge, None]
                else:
                    contribution = [compiled.rule.precedence, spec.merge, cell_values(cell)]
                self._trace_flow(compiled, spec.target, contribution[2])
                contributions.setdefault(spec.target, {})[key] = contribution
        if contributions != before:
            entry["dirty"] = True
            # A reference attribute this connector stops contributing must lose its rows.
            for attribute, entries in before.items():
                if any(
                    contributor_connector(k) == self.connector and v[2] == REFERENCE_MARKER for k, v in entries.items()
                ):
                    self.reference_dirty.add(anchor)
                    entry.setdefault("reference_recheck", set()).add(attribute)

    def _trace_flow(self, compiled: CompiledRule, target: str, values: Any) -> None:
        if self.trace is not None:
            self.trace.setdefault("inbound_flows", []).append(
                {"rule": compiled.rule.name, "precedence": compiled.rule.precedence, "target": target, "value": values}
            )

    # ------------------------------------------------------------------------------------- metaverse writes
    def _load_mv(self, mv_ids: Sequence[int], *, contributions: bool = True) -> dict[int, dict[str, Any]]:
        """Metaverse rows by id; outbound sync reads only the resolved values (``contributions=False``)."""
        loaded: dict[int, dict[str, Any]] = {}
        with_contributions = contributions
        columns = [mv_object.c.id, mv_object.c.object_type, mv_object.c.attrs]
        if with_contributions:
            columns.append(mv_object.c.contributions)
        for chunk in chunks(list(mv_ids)):
            for row in self.connection.execute(sa.select(*columns).where(mv_object.c.id.in_(chunk))):
                loaded[row.id] = {
                    "type": row.object_type,
                    "attrs": json.loads(row.attrs),
                    "contributions": json.loads(row.contributions) if with_contributions else {},
                    "new": False,
                }
        return loaded

    def _write_metaverse(self, mv_updates: dict[int, dict[str, Any]]) -> None:
        now = utcnow()
        rows, key_rows, changed_ids = [], [], []
        for mv_id, entry in mv_updates.items():
            if not entry.get("dirty") and not entry.get("new"):
                continue
            attrs, winners = resolve(entry["contributions"])
            if self.trace is not None:
                self.trace["metaverse_before"] = entry.get("attrs", {})
                self.trace["metaverse_after"] = attrs
                self.trace["winners"] = winners
            changed = entry.get("new") or attrs != entry.get("attrs")
            if changed:
                self.counters["metaverse_attribute_changes"] += _count_changes(entry.get("attrs", {}), attrs)
                self.touched_mv.add(mv_id)
            rows.append(
                {
                    "id": mv_id,
                    "object_type": entry["type"],
                    "attrs": serialize_attrs(attrs),
                    "contributions": json.dumps(entry["contributions"], sort_keys=True, separators=(",", ":")),
                    "created_at": now,
                    "updated_at": now,
                }
            )
            if changed:
                changed_ids.append(mv_id)
                key_rows += self._join_keys(mv_id, attrs)
        self.store.upsert(
            self.connection, mv_object, rows, update=["object_type", "attrs", "contributions", "updated_at"]
        )
        for chunk in chunks(changed_ids):
            self.connection.execute(sa.delete(mv_join_key).where(mv_join_key.c.mv_id.in_(chunk)))
        self.store.upsert(self.connection, mv_join_key, key_rows, update=["value_folded"])

    def _join_keys(self, mv_id: int, attrs: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
        lowered = {name.lower(): values for name, values in attrs.items()}
        rows = []
        for target in self.join_targets:
            for value in lowered.get(target.lower(), []):
                text = str(value)[:1024]
                rows.append(
                    {"mv_id": mv_id, "attribute": target.lower(), "value": text, "value_folded": text.casefold()}
                )
        return rows

    # ---------------------------------------------------------------------------------- inbound references
    def _inbound_references(self) -> None:
        """Recompute the metaverse reference rows of groups that changed, or whose members were just joined."""
        dirty = set(self.reference_dirty)
        newly = sorted(self.newly_linked)
        for chunk in chunks(newly):
            dirty.update(
                self.connection.execute(
                    sa.select(cs_reference.c.anchor)
                    .where(cs_reference.c.connector == self.connector, cs_reference.c.target_anchor.in_(chunk))
                    .distinct()
                ).scalars()
            )
        if not dirty:
            return
        plan: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)  # (cs attr, mv attr) → [(anchor, mv)]
        clears: list[tuple[int, str]] = []
        for chunk in chunks(sorted(dirty)):
            query = (
                sa.select(link.c.anchor, mv_object.c.id, mv_object.c.contributions)
                .join(mv_object, mv_object.c.id == link.c.mv_id)
                .where(link.c.connector == self.connector, link.c.anchor.in_(chunk))
            )
            for anchor, mv_id, contributions in self.connection.execute(query):
                for attribute, entries in json.loads(contributions).items():
                    winner = min(entries.items(), key=lambda item: (item[1][0], item[0]), default=None)
                    if winner is None or winner[1][2] != REFERENCE_MARKER:
                        continue
                    if contributor_connector(winner[0]) != self.connector:
                        continue
                    source = self._reference_source(winner[0].split("|", 1)[1], attribute)
                    if source:
                        plan[(source, attribute.lower())].append((anchor, mv_id))
                # reference attributes nobody contributes any more lose their rows
                for attribute in METAVERSE.reference_attributes:
                    if not any(name.lower() == attribute for name in json.loads(contributions)):
                        clears.append((mv_id, attribute))
        for (source, target), members in plan.items():
            self._sync_mv_references(source, target, members)
        self._clear_mv_references(clears)

    def _reference_source(self, rule_name: str, target: str) -> str | None:
        compiled = self._rules_by_name.get(rule_name)
        if compiled is None:
            return None
        for spec in compiled.flow_specs:
            if spec.target == target and spec.type == "Direct":
                return spec.source
        return None

    def _sync_mv_references(self, source: str, target: str, groups: Sequence[tuple[str, int]]) -> None:
        by_anchor = dict(groups)
        target_link = link.alias("target_link")
        for chunk in chunks(sorted(by_anchor)):
            desired_rows = self.connection.execute(
                sa.select(cs_reference.c.anchor, cs_reference.c.target_anchor, target_link.c.mv_id)
                .select_from(
                    cs_reference.outerjoin(
                        target_link,
                        sa.and_(
                            target_link.c.connector == cs_reference.c.connector,
                            target_link.c.anchor == cs_reference.c.target_anchor,
                        ),
                    )
                )
                .where(
                    cs_reference.c.connector == self.connector,
                    cs_reference.c.attribute == source,
                    cs_reference.c.anchor.in_(chunk),
                )
            ).all()
            desired = pd.DataFrame(desired_rows, columns=["anchor", "target_anchor", "target_mv_id"])
            self.counters["references_pending"] += int(desired["target_mv_id"].isna().sum())
            desired = desired.dropna(subset=["target_mv_id"])
            desired = pd.DataFrame(
                {
                    "mv_id": desired["anchor"].map(by_anchor).astype("int64"),
                    "target_mv_id": desired["target_mv_id"].astype("int64"),
                }
            ).drop_duplicates()
            mv_ids = [by_anchor[anchor] for anchor in chunk]
            current = pd.DataFrame(
                self.connection.execute(
                    sa.select(mv_reference.c.mv_id, mv_reference.c.target_mv_id).where(
                        mv_reference.c.attribute == target, mv_reference.c.mv_id.in_(mv_ids)
                    )
                ).all(),
                columns=["mv_id", "target_mv_id"],
            ).astype("int64")
            adds, removes = _set_difference(desired, current)
            self._apply_mv_reference_changes(target, adds, removes)

    def _apply_mv_reference_changes(self, attribute: str, adds: pd.DataFrame, removes: pd.DataFrame) -> None:
        if len(adds):
            rows = [
                {"mv_id": int(m), "attribute": attribute, "target_mv_id": int(t)}
                for m, t in zip(adds["mv_id"], adds["target_mv_id"], strict=True)
            ]
            self.store.insert_chunked(self.connection, mv_reference, rows)
        for mv_id, targets in removes.groupby("mv_id")["target_mv_id"]:
            for chunk in chunks(targets.tolist()):
                self.connection.execute(
                    sa.delete(mv_reference).where(
                        mv_reference.c.mv_id == int(mv_id),
                        mv_reference.c.attribute == attribute,
                        mv_reference.c.target_mv_id.in_([int(t) for t in chunk]),
                    )
                )
        self.counters["metaverse_reference_adds"] += len(adds)
        self.counters["metaverse_reference_removes"] += len(removes)
        changed = set(adds["mv_id"].astype(int)) | set(removes["mv_id"].astype(int))
        self.touched_mv.update(changed)
        if self.trace is not None and (len(adds) or len(removes)):
            self.trace.setdefault("metaverse_references", []).append(
                {"attribute": attribute, "adds": len(adds), "removes": len(removes)}
            )

    def _clear_mv_references(self, clears: Sequence[tuple[int, str]]) -> None:
        """Drop the reference rows of attributes nobody contributes any more (one statement per chunk)."""
        by_attribute: dict[str, list[int]] = defaultdict(list)
        for mv_id, attribute in clears:
            by_attribute[attribute].append(mv_id)
        for attribute, mv_ids in by_attribute.items():
            for chunk in chunks(mv_ids):
                condition = sa.and_(mv_reference.c.attribute == attribute, mv_reference.c.mv_id.in_(chunk))
                cleared = (
                    self.connection.execute(sa.select(mv_reference.c.mv_id).where(condition).distinct()).scalars().all()
                )
                if not cleared:
                    continue
                removed = self.connection.execute(sa.delete(mv_reference).where(condition)).rowcount
                self.counters["metaverse_reference_removes"] += removed
                self.touched_mv.update(cleared)

    # ============================================================================================ outbound
    def _outbound(self, mv_ids: Sequence[int]) -> None:
        if not self.outbound_rules or not mv_ids:
            return
        reference_work: dict[tuple[str, str, str], dict[int, str]] = defaultdict(dict)
        provisioned: dict[str, set[int]] = defaultdict(set)
        for chunk in chunks(list(mv_ids), self.batch_rows):
            self._outbound_batch(chunk, reference_work, provisioned)
        # Groups already exported whose members were provisioned in this pass: their member rows can now resolve.
        for connector, new_ids in provisioned.items():
            pairs = [(c, s, t) for (c, s, t) in list(reference_work) if c == connector]
            if not pairs:
                continue
            # Two indexed lookups, not one join: SQLite, without statistics on freshly written links, would scan
            # every link of the connector per chunk (46 s of a 100k-user full sync).
            referencing: set[int] = set()
            for chunk in chunks(sorted(new_ids)):
                referencing.update(
                    self.connection.execute(
                        sa.select(mv_reference.c.mv_id).where(mv_reference.c.target_mv_id.in_(chunk)).distinct()
                    ).scalars()
                )
            pending = sorted(m for m in referencing if any(m not in reference_work[key] for key in pairs))
            for chunk in chunks(pending):
                rows = self.connection.execute(
                    sa.select(link.c.mv_id, link.c.anchor).where(link.c.connector == connector, link.c.mv_id.in_(chunk))
                ).all()
                for mv_id, anchor in rows:
                    for key in pairs:
                        reference_work[key].setdefault(mv_id, anchor)
        for (connector, mv_attribute, cs_attribute), groups in reference_work.items():
            self._stage_references(connector, mv_attribute, cs_attribute, groups)

    def _outbound_batch(
        self,
        mv_ids: Sequence[int],
        reference_work: dict[tuple[str, str, str], dict[int, str]],
        provisioned: dict[str, set[int]],
    ) -> None:
        loaded = self._load_mv(mv_ids, contributions=False)
        links: dict[tuple[int, str], tuple[str, str]] = {}
        for chunk in chunks(list(loaded)):
            for mv_id, connector, anchor, link_type in self.connection.execute(
                sa.select(link.c.mv_id, link.c.connector, link.c.anchor, link.c.link_type).where(
                    link.c.mv_id.in_(chunk)
                )
            ):
                links[(mv_id, connector)] = (anchor, link_type)
        by_type: dict[str, list[int]] = defaultdict(list)
        for mv_id, row in loaded.items():
            by_type[row["type"]].append(mv_id)
        for mv_type, ids in sorted(by_type.items()):
            connectors = sorted({r.rule.connector for r in self.outbound_rules if r.rule.source_object_type == mv_type})
            for connector in connectors:
                rules = [
                    r
                    for r in self.outbound_rules
                    if r.rule.connector == connector and r.rule.source_object_type == mv_type
                ]
                self._outbound_rules(connector, rules, ids, loaded, links, reference_work, provisioned)

    def _outbound_rules(
        self,
        connector: str,
        rules: Sequence[CompiledRule],
        mv_ids: Sequence[int],
        loaded: Mapping[int, dict[str, Any]],
        links: Mapping[tuple[int, str], tuple[str, str]],
        reference_work: dict[tuple[str, str, str], dict[int, str]],
        provisioned: dict[str, set[int]],
    ) -> None:
        target_schema = schema_for(connector, self.schemas)
        index = pd.Index(mv_ids)
        attributes = sorted({name for r in rules for name in r.attributes})
        frame = frame_from_records([loaded[m]["attrs"] for m in mv_ids], attributes)
        frame.index = index
        for attribute in attributes:
            if METAVERSE.is_reference(attribute):
                counts = self._reference_counts(mv_ids, attribute)
                frame[attribute] = [ReferenceValues(counts.get(m, 0)) for m in mv_ids]
        scope = pd.DataFrame({r.rule.name: r.in_scope(frame).astype(bool) for r in rules}, index=index)
        outcomes = {}
        failed: set[int] = set()
        for compiled in rules:
            rows = index[scope[compiled.rule.name].to_numpy()]
            if len(rows) == 0:
                continue
            outcome = compiled.evaluate_flows(frame.loc[rows])
            for mv_id, error in outcome.errors.items():
                failed.add(mv_id)
                name = (loaded[mv_id]["attrs"].get("displayName") or [f"#{mv_id}"])[0]
                self._error(
                    links.get((mv_id, connector), (f"metaverse:{mv_id}", ""))[0],
                    f"metaverse {loaded[mv_id]['type']} {name!r} (id {mv_id})",
                    getattr(error, "code", "expression-error"),
                    f"outbound rule {compiled.rule.name!r} to {connector}: {getattr(error, 'message', str(error))}",
                )
            outcomes[compiled.rule.name] = outcome.values.to_dict("index")
        provisioning = [r for r in rules if r.rule.link_type == "Provision"]
        current = self._load_cs(connector, [links[(m, connector)][0] for m in mv_ids if (m, connector) in links])
        in_scope_of = _members_by_rule(scope)
        staged: list[tuple[str, str, str, str, dict[str, list[Any]]]] = []
        new_objects: list[dict[str, Any]] = []
        new_links: list[dict[str, Any]] = []
        for mv_id in mv_ids:
            in_scope = [r for r in rules if mv_id in in_scope_of[r.rule.name]]
            existing = links.get((mv_id, connector))
            provision_rule = next((r for r in provisioning if mv_id in in_scope_of[r.rule.name]), None)
            if self.trace is not None:
                self.trace.setdefault("outbound", {})[connector] = {"rules_in_scope": [r.rule.name for r in in_scope]}
            if mv_id in failed:
                continue
            if existing is None:
                if provision_rule is None:
                    continue
                desired, dn, references = self._desired(in_scope, outcomes, mv_id)
                anchor = f"{PROVISIONAL_PREFIX}{uuid.uuid4()}"
                object_type = provision_rule.rule.target_object_type
                dn = dn or target_schema.default_dn(object_type, anchor)
                new_objects.append(self._provisional_object(connector, anchor, object_type, dn))
                new_links.append({**self._link_row(anchor, mv_id, provision_rule, "provision"), "connector": connector})
                self._note(
                    "exports", f"{connector}: provision a new {object_type} by rule {provision_rule.rule.name!r}"
                )
                provisioned[connector].add(mv_id)
                staged.append((anchor, object_type, dn, "add", {k: v for k, v in desired.items() if v}))
                for mv_attribute, cs_attribute in references:
                    reference_work[(connector, mv_attribute, cs_attribute)][mv_id] = anchor
                continue
            anchor, link_type = existing
            if link_type == "provision" and provision_rule is None and not in_scope:
                self._note("exports", f"{connector}: out of scope of every outbound rule, deprovision")
                self.connection.execute(sa.delete(link).where(link.c.connector == connector, link.c.anchor == anchor))
                self._deprovision(connector, anchor)
                continue
            if not in_scope:
                continue
            desired, dn, references = self._desired(in_scope, outcomes, mv_id)
            stored = current.get(anchor)
            if stored is None:
                continue
            if anchor.startswith(PROVISIONAL_PREFIX):
                staged.append(
                    (anchor, stored["object_type"], dn or stored["dn"], "add", {k: v for k, v in desired.items() if v})
                )
            else:
                lowered = {name.lower(): values for name, values in stored["attrs"].items()}
                changes = {
                    name: values
                    for name, values in desired.items()
                    if not _same_values(values, cell_values(lowered.get(name.lower())))
                }
                if dn and dn != stored["dn"]:
                    changes["dn"] = [dn]
                staged.append((anchor, stored["object_type"], stored["dn"], "update", changes))
            for mv_attribute, cs_attribute in references:
                reference_work[(connector, mv_attribute, cs_attribute)][mv_id] = anchor
        self.store.insert_chunked(self.connection, cs_object, new_objects)
        self.store.insert_chunked(self.connection, link, new_links)
        self.counters["provisioned"] += len(new_objects)
        self._stage_many(connector, staged)

    def _desired(
        self, in_scope: Sequence[CompiledRule], outcomes: Mapping[str, dict[int, dict[str, Any]]], mv_id: int
    ) -> tuple[dict[str, list[Any]], str | None, list[tuple[str, str]]]:
        """Per target attribute, the value of the lowest-precedence rule that contributes one."""
        desired: dict[str, list[Any]] = {}
        decided: set[str] = set()
        references: list[tuple[str, str]] = []
        dn = None
        for compiled in sorted(in_scope, key=lambda r: r.rule.precedence):
            values = outcomes.get(compiled.rule.name, {}).get(mv_id, {})
            for spec in compiled.flow_specs:
                if spec.target in decided:
                    continue
                if spec.type == "Direct" and METAVERSE.is_reference(spec.source):
                    references.append((spec.source, spec.target))
                    decided.add(spec.target)
                    continue
                cell = values.get(spec.target)
                if cell is IgnoreThisFlow:
                    continue
                if cell is None or (isinstance(cell, float) and pd.isna(cell)):
                    desired.setdefault(spec.target, [])
                    continue
                decided.add(spec.target)
                desired[spec.target] = [] if cell is AuthoritativeNull else cell_values(cell)
        if "dn" in desired:
            dn_values = desired.pop("dn")
            dn = str(dn_values[0]) if dn_values else None
        if self.trace is not None:
            self.trace.setdefault("outbound_values", {}).update(desired)
        return desired, dn, references

    def _reference_counts(self, mv_ids: Sequence[int], attribute: str) -> dict[int, int]:
        counts: dict[int, int] = {}
        for chunk in chunks(list(mv_ids)):
            query = (
                sa.select(mv_reference.c.mv_id, sa.func.count())
                .where(mv_reference.c.attribute == attribute.lower(), mv_reference.c.mv_id.in_(chunk))
                .group_by(mv_reference.c.mv_id)
            )
            counts.update(dict(self.connection.execute(query).all()))
        return counts

    def _load_cs(self, connector: str, anchors: Sequence[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for chunk in chunks(list(anchors)):
            query = sa.select(cs_object.c.anchor, cs_object.c.dn, cs_object.c.object_type, cs_object.c.attrs).where(
                cs_object.c.connector == connector, cs_object.c.anchor.in_(chunk)
            )
            for anchor, dn, object_type, attrs in self.connection.execute(query):
                found[anchor] = {"dn": dn, "object_type": object_type, "attrs": json.loads(attrs)}
        return found

    def _provisional_object(self, connector: str, anchor: str, object_type: str, dn: str) -> dict[str, Any]:
        """A connector-space object sync wants created; its real anchor comes from the export that creates it."""
        return {
            "connector": connector,
            "anchor": anchor,
            "dn": dn,
            "object_type": object_type,
            "attrs": "{}",
            "attrs_hash": "",
            "refs_hash": "",
            "is_deleted": False,
            "pending_import": None,
            "pending_export": "add",
            "last_run_id": self.run_id,
            "updated_at": utcnow(),
        }

    # ------------------------------------------------------------------------------------- pending exports
    def _stage(
        self, connector: str, anchor: str, object_type: str, dn: str, operation: str, changes: Mapping[str, list[Any]]
    ) -> None:
        self._stage_many(connector, [(anchor, object_type, dn, operation, dict(changes))])

    def _stage_many(self, connector: str, items: Sequence[tuple[str, str, str, str, dict[str, list[Any]]]]) -> None:
        """Write (or withdraw) pending exports; a plan identical to the one already pending is left alone."""
        if not items:
            return
        existing: dict[str, Any] = {}
        for chunk in chunks([item[0] for item in items]):
            query = sa.select(
                pending_export.c.anchor,
                pending_export.c.operation,
                pending_export.c.changes,
                pending_export.c.state,
                pending_export.c.dn,
            ).where(pending_export.c.connector == connector, pending_export.c.anchor.in_(chunk))
            existing.update({row.anchor: row for row in self.connection.execute(query)})
        now = utcnow()
        inserts: list[dict[str, Any]] = []
        for anchor, object_type, dn, operation, changes in items:
            serialized = json.dumps(changes, sort_keys=True, separators=(",", ":"), default=str)
            if self.trace is not None:
                self.trace.setdefault("pending_exports", []).append(
                    {"connector": connector, "anchor": anchor, "operation": operation, "dn": dn, "changes": changes}
                )
            current = existing.get(anchor)
            if current is not None and current.state == "sent":
                log.info("the pending export of %s/%s is in flight; the export reconciles it", connector, anchor)
                continue
            if operation == "update" and not changes:
                if current is not None and current.state in ("pending", "failed") and current.operation == "update":
                    if not self._has_reference_changes(connector, anchor):
                        self.connection.execute(sa.delete(pending_export).where(_export_key(connector, anchor)))
                continue
            if current is not None and current.state in ("pending", "failed"):
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
                "run_id": self.run_id,
                "updated_at": now,
            }
            if current is None:
                inserts.append({"connector": connector, "anchor": anchor, "created_at": now, **values})
            else:
                self.connection.execute(
                    sa.update(pending_export).where(_export_key(connector, anchor)).values(**values)
                )
            self.counters[f"export_{operation}s_staged"] += 1
        self.store.insert_chunked(self.connection, pending_export, inserts)

    def _has_reference_changes(self, connector: str, anchor: str) -> bool:
        query = sa.select(sa.func.count()).where(
            pending_export_reference.c.connector == connector,
            pending_export_reference.c.anchor == anchor,
            pending_export_reference.c.state != "confirmed",
        )
        return bool(self.connection.execute(query).scalar())

    def _stage_references(
        self, connector: str, mv_attribute: str, cs_attribute: str, groups: Mapping[int, str]
    ) -> None:
        """Member add/remove rows per target object: desired (metaverse, through links) minus what the target holds."""
        target_link = link.alias("target_link")
        for chunk in chunks(sorted(groups)):
            desired_rows = self.connection.execute(
                sa.select(mv_reference.c.mv_id, mv_reference.c.target_mv_id, target_link.c.anchor)
                .select_from(
                    mv_reference.outerjoin(
                        target_link,
                        sa.and_(
                            target_link.c.connector == connector, target_link.c.mv_id == mv_reference.c.target_mv_id
                        ),
                    )
                )
                .where(mv_reference.c.attribute == mv_attribute.lower(), mv_reference.c.mv_id.in_(chunk))
            ).all()
            desired = pd.DataFrame(desired_rows, columns=["mv_id", "target_mv_id", "target_anchor"])
            self.counters["export_references_unresolved"] += int(desired["target_anchor"].isna().sum())
            desired = desired.dropna(subset=["target_anchor"])
            desired = pd.DataFrame(
                {"anchor": desired["mv_id"].map(groups), "target_anchor": desired["target_anchor"]}
            ).drop_duplicates()
            anchors = [groups[m] for m in chunk]
            current = pd.DataFrame(
                self.connection.execute(
                    sa.select(cs_reference.c.anchor, cs_reference.c.target_anchor).where(
                        cs_reference.c.connector == connector,
                        cs_reference.c.attribute == cs_attribute,
                        cs_reference.c.anchor.in_(anchors),
                    )
                ).all(),
                columns=["anchor", "target_anchor"],
            )
            adds, removes = _set_difference(desired, current)
            wanted = pd.concat([adds.assign(operation="add"), removes.assign(operation="remove")], ignore_index=True)
            staged = pd.DataFrame(
                self.connection.execute(
                    sa.select(
                        pending_export_reference.c.anchor,
                        pending_export_reference.c.target_anchor,
                        pending_export_reference.c.operation,
                        pending_export_reference.c.state,
                    ).where(
                        pending_export_reference.c.connector == connector,
                        pending_export_reference.c.attribute == cs_attribute,
                        pending_export_reference.c.anchor.in_(anchors),
                    )
                ).all(),
                columns=["anchor", "target_anchor", "operation", "state"],
            )
            key = ["anchor", "target_anchor", "operation"]
            merged = wanted.merge(staged, on=key, how="outer", indicator=True)
            new_rows = merged[merged["_merge"] == "left_only"]
            stale = merged[
                (merged["_merge"] == "right_only") & merged["state"].isin(["pending", "failed", "confirmed"])
            ]
            for anchor, targets in stale.groupby("anchor")["target_anchor"]:
                for part in chunks(targets.tolist()):
                    self.connection.execute(
                        sa.delete(pending_export_reference).where(
                            pending_export_reference.c.connector == connector,
                            pending_export_reference.c.anchor == anchor,
                            pending_export_reference.c.attribute == cs_attribute,
                            pending_export_reference.c.target_anchor.in_(part),
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
                    "run_id": self.run_id,
                }
                for anchor, target, operation in zip(
                    new_rows["anchor"], new_rows["target_anchor"], new_rows["operation"], strict=True
                )
            ]
            self.store.upsert(self.connection, pending_export_reference, rows, update=["operation", "state", "run_id"])
            self.counters["export_reference_adds_staged"] += int((new_rows["operation"] == "add").sum())
            self.counters["export_reference_removes_staged"] += int((new_rows["operation"] == "remove").sum())
            self._ensure_update_rows(connector, sorted(set(new_rows["anchor"])))
            if self.trace is not None:
                self.trace.setdefault("pending_reference_changes", []).append(
                    {"connector": connector, "attribute": cs_attribute, "adds": len(adds), "removes": len(removes)}
                )

    def _ensure_update_rows(self, connector: str, anchors: Sequence[str]) -> None:
        """Objects with member changes get a pending export row (an update with no attribute changes) if they
        have none, so the plan lists every object the export will touch."""
        for chunk in chunks(list(anchors)):
            present = set(
                self.connection.execute(
                    sa.select(pending_export.c.anchor).where(
                        pending_export.c.connector == connector, pending_export.c.anchor.in_(chunk)
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
                    "run_id": self.run_id,
                    "created_at": now,
                    "updated_at": now,
                }
                for row in self.connection.execute(
                    sa.select(cs_object.c.anchor, cs_object.c.dn, cs_object.c.object_type).where(
                        cs_object.c.connector == connector, cs_object.c.anchor.in_(missing)
                    )
                )
            ]
            self.store.insert_chunked(self.connection, pending_export, rows)
            self.counters["export_updates_staged"] += len(rows)

    # ============================================================================================ finish
    def _finish_connector_space(self) -> None:
        """Clear the pending imports sync has processed; forget deleted objects it has disconnected."""
        for chunk in chunks(self.processed):
            self.connection.execute(
                sa.update(cs_object)
                .where(cs_object.c.connector == self.connector, cs_object.c.anchor.in_(chunk))
                .values(pending_import=None)
            )
        for chunk in chunks(self.tombstones):
            for table in (cs_reference, cs_object):
                self.connection.execute(
                    sa.delete(table).where(table.c.connector == self.connector, table.c.anchor.in_(chunk))
                )

    # ============================================================================================ helpers
    def _error(self, anchor: str | None, dn: str | None, code: str, message: str) -> None:
        if self.trace is not None:
            self.trace.setdefault("errors", []).append({"code": code, "message": message})
        self.errors.record(anchor=anchor, dn=dn, code=code, message=message)

    def _note(self, key: str, text: str) -> None:
        if self.trace is not None:
            if key == "decision":
                self.trace[key] = text
            else:
                self.trace.setdefault(key, []).append(text)


def _column(frame: pd.DataFrame, name: str) -> Iterable[Any]:
    for column in frame.columns:
        if str(column).lower() == name.lower():
            return frame[column]
    return [None] * len(frame)


def _export_key(connector: str, anchor: str) -> sa.ColumnElement[bool]:
    return sa.and_(pending_export.c.connector == connector, pending_export.c.anchor == anchor)


def _members_by_rule(scope: pd.DataFrame) -> dict[str, set[Any]]:
    """Per rule column of a boolean scope frame, the set of index labels in scope (set lookups, not .at)."""
    return {str(name): set(scope.index[scope[name].to_numpy(dtype=bool)]) for name in scope.columns if name != "mv_id"}


def _count_changes(before: Mapping[str, list[Any]], after: Mapping[str, list[Any]]) -> int:
    return sum(1 for name in set(before) | set(after) if before.get(name) != after.get(name))


def _set_difference(desired: pd.DataFrame, current: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows only in ``desired`` (to add) and only in ``current`` (to remove): one merge, no Python loop."""
    columns = list(desired.columns)
    merged = desired.merge(current, on=columns, how="outer", indicator=True)
    adds = merged.loc[merged["_merge"] == "left_only", columns]
    removes = merged.loc[merged["_merge"] == "right_only", columns]
    return adds, removes
