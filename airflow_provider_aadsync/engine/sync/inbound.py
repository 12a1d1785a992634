"""Inbound: one batch of connector-space rows through scoping, join/project and the attribute flows into the
metaverse contributions (precedence decides which contribution wins).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa

from airflow_provider_aadsync.engine.batching import chunks
from airflow_provider_aadsync.engine.dn import dn_key
from airflow_provider_aadsync.engine.expressions import AuthoritativeNull, IgnoreThisFlow
from airflow_provider_aadsync.engine.rules import CompiledRule, frame_from_records
from airflow_provider_aadsync.engine.store import (
    cs_object,
    cs_reference,
)
from airflow_provider_aadsync.engine.store.among import among
from airflow_provider_aadsync.engine.sync.contributions import (
    REFERENCE_MARKER,
    SHARED_JOIN_TYPE,
    Contributions,
    contributor_key,
    drop_slots,
    owned_slots,
)
from airflow_provider_aadsync.engine.sync.frames import (
    IN_CHUNK,
    load_json,
    members_by_rule,
    stored_rows_by_label,
)
from airflow_provider_aadsync.engine.sync.joins import Joins
from airflow_provider_aadsync.engine.sync.metaverse import Metaverse
from airflow_provider_aadsync.engine.sync.state import SyncPass

#: How a preview's trace shows the two sentinels (a plain NULL flow is traced as None and shown as NULL).
TRACE_AUTHORITATIVE_NULL = "AuthoritativeNull"
TRACE_IGNORED = "IgnoreThisFlow"


class Inbound:
    """Runs the inbound rules over batches of connector-space rows for one sync pass."""

    def __init__(self, state: SyncPass, *, joins: Joins, metaverse: Metaverse) -> None:
        self.state = state
        self.joins = joins
        self.metaverse = metaverse
        #: Source attribute → is it a reference attribute of this connector (asked once per name, not per object).
        self._reference_source: dict[str, bool] = {}
        #: Rule name → its flow plan (:meth:`_flow_plan`), worked out once per pass.
        self._plans: dict[str, list[tuple[str, str, bool, bool, int, str]]] = {}
        #: Rule name → its flows by target for the present-cells walk (:meth:`_sparse_plan`), or None where it does not
        #: apply; worked out once per pass.
        self._sparse_plans: dict[str, Any] = {}

    def _is_reference(self, source: str) -> bool:
        known = self._reference_source.get(source)
        if known is None:
            known = self._reference_source[source] = self.state.schema.is_reference(source)
        return known

    def inbound_batch(self, batch: pd.DataFrame) -> None:
        batch["mv_id"] = batch["mv_id"].astype("Int64")
        self.state.counters["objects_evaluated"] += len(batch)
        deleted = batch[batch["is_deleted"].astype(bool)]
        live = batch[~batch["is_deleted"].astype(bool)]
        disconnects: list[tuple[str, int]] = [
            (row.anchor, int(row.mv_id)) for row in deleted.itertuples() if not pd.isna(row.mv_id)
        ]
        self.state.tombstones += deleted["anchor"].tolist()
        self.state.counters["deletes"] += len(deleted)
        if self.state.trace is not None and len(deleted):
            self.state.trace["decision"] = "deleted in the connected directory: disconnect"
        # Only pending imports need clearing at the end (a full sync reads every object, most of them settled).
        self.state.processed += live.loc[live["pending_import"].notna(), "anchor"].tolist()
        self.state.evaluated_mv.update(int(mv_id) for mv_id in batch["mv_id"].dropna())
        self.state.batch_dns = dict(zip(batch["anchor"], batch["dn"], strict=True))

        # Two columns zipped, not itertuples: that builds a namedtuple of every column per row.
        records = {
            anchor: load_json(attrs)
            for anchor, attrs in zip(live["anchor"].tolist(), live["attrs"].tolist(), strict=True)
        }
        mv_updates: dict[int, dict[str, Any]] = {}  # mv_id → {"type", "contributions", "new"}
        withdrawn: list[tuple[str, int]] = []  # sticky-joined objects no rule reads any more
        flow_inputs: list[tuple[pd.DataFrame, list[CompiledRule], pd.DataFrame]] = []
        for object_type, part in live.groupby("object_type", sort=True):
            rules = [r for r in self.state.inbound_rules if r.rule.source_object_type == object_type]
            part = part.set_index("anchor", drop=False)
            if not rules:
                linked = part[part["mv_id"].notna() & part["link_type"].isin(["join", "projection"])]
                disconnects += [(anchor, int(mv)) for anchor, mv in zip(linked["anchor"], linked["mv_id"], strict=True)]
                # A sticky join stays, and what its rules (none now) contributed goes.
                sticky = part[part["mv_id"].notna() & (part["link_type"] == "sticky-join")]
                withdrawn += [(anchor, int(mv)) for anchor, mv in zip(sticky["anchor"], sticky["mv_id"], strict=True)]
                self.state.counters["disconnectors"] += int(part["mv_id"].isna().sum())
                continue
            frame = self._frame([records[a] for a in part.index], rules, part.index)
            scope = pd.DataFrame({r.rule.name: r.in_scope(frame).astype(bool) for r in rules}, index=part.index)
            if self.state.trace is not None:
                self.state.trace["inbound_rules_in_scope"] = [
                    name for name in scope.columns if bool(scope[name].iloc[0])
                ]
            links = self.joins.link(part, frame, rules, scope, disconnects, mv_updates)
            self.state.evaluated_mv.update(int(mv_id) for mv_id in links.dropna())
            flow_inputs.append((frame, rules, scope.assign(mv_id=links)))

        self.joins.disconnect(disconnects, mv_updates)
        self.joins.withdraw_contributions(withdrawn, mv_updates)
        for frame, rules, scope in flow_inputs:
            self._flow(frame, rules, scope, mv_updates)
        self.metaverse.write_metaverse(mv_updates)

    def _frame(self, records: list[dict[str, Any]], rules: Sequence[CompiledRule], index: pd.Index) -> pd.DataFrame:
        attributes = sorted({name for r in rules for name in r.attributes})
        frame = frame_from_records(records, attributes)
        frame.index = index
        self.state.schema.type_columns(frame)
        if any(r.needs_member_of for r in rules):
            frame["memberOf"] = self._member_of(list(index))
        return frame

    def _member_of(self, anchors: list[str]) -> list[list[str] | None]:
        groups: dict[str, list[str]] = defaultdict(list)
        group = cs_object.alias("group_object")
        for chunk in chunks(anchors, IN_CHUNK):
            query = (
                sa.select(cs_reference.c.target_anchor, group.c.dn)
                .join(
                    group,
                    sa.and_(group.c.connector == cs_reference.c.connector, group.c.anchor == cs_reference.c.anchor),
                )
                .where(cs_reference.c.connector == self.state.connector, among(cs_reference.c.target_anchor, chunk))
            )
            for target, dn in self.state.connection.execute(query):
                groups[target].append(dn_key(dn))
        return [groups.get(anchor) or None for anchor in anchors]

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
        self.state.touched_mv.update(mv_ids)
        loaded = self.metaverse.load_mv([m for m in mv_ids if m not in mv_updates], attrs=False)
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
                self.state.error(
                    anchor,
                    self.state.batch_dns.get(anchor),
                    getattr(error, "code", "expression-error"),
                    getattr(error, "message", str(error)),
                )
            results[compiled.rule.name] = (compiled, stored_rows_by_label(outcome.values))
        in_scope_of = members_by_rule(linked[[r.rule.name for r in rules]])
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
        connector = self.state.connector
        # Only what this object contributes is recomputed (its connector's, less a foreign security principal's or
        # more): compare those, not copies of every contribution.
        shared = bool(rules) and rules[0].rule.source_object_type.casefold() == SHARED_JOIN_TYPE.casefold()
        owned = owned_slots(contributions, connector, self.state.shared_keys, shared=shared)
        before = {(attribute, key): contributions[attribute][key] for attribute, key in owned}
        after: dict[tuple[str, str], Any] = {}
        tracing = self.state.trace is not None
        entry_type = entry["type"]
        for compiled in rules:
            name = compiled.rule.name
            if compiled.rule.target_object_type != entry_type or anchor not in in_scope_of[name]:
                continue
            values = results.get(name, (None, {}))[1].get(anchor)
            if values is None:
                continue
            sparse = None if tracing else self._sparse_plan(compiled)
            if sparse is not None:  # what the loop below gives, driven by the cells present instead of every flow
                by_target, references = sparse
                for target, cell in values.items():
                    flow = by_target.get(target)
                    if flow is not None and cell is not None and cell is not IgnoreThisFlow:
                        after[flow[0]] = [flow[1], flow[2], None if cell is AuthoritativeNull else cell]
                for slot, contribution in references:
                    after[slot] = list(contribution)
                if references:
                    self.state.reference_dirty.add(anchor)
                continue
            for target, key, apply_once, is_reference, precedence, merge in self._flow_plan(compiled):
                slot = (target, key)
                if apply_once:
                    previous = before.get(slot)
                    if previous is not None:  # the value stays; its precedence and merge type are the rule's now
                        after[slot] = [precedence, merge, previous[2]]
                        continue
                if is_reference:
                    contribution = [precedence, merge, REFERENCE_MARKER]
                    self.state.reference_dirty.add(anchor)
                else:
                    cell = values.get(target)  # stored form (frames.stored_rows_by_label): NULL is None
                    if cell is None or cell is IgnoreThisFlow:
                        # NULL and IgnoreThisFlow contribute nothing; the preview names which one it was.
                        if tracing:
                            self._trace_flow(compiled, target, TRACE_IGNORED if cell is IgnoreThisFlow else None)
                        continue
                    contribution = [precedence, merge, None if cell is AuthoritativeNull else cell]
                if tracing:
                    traced = TRACE_AUTHORITATIVE_NULL if contribution[2] is None else contribution[2]
                    self._trace_flow(compiled, target, traced)
                after[slot] = contribution
        if after == before:
            return
        drop_slots(contributions, owned)
        for (attribute, key), contribution in after.items():
            contributions.setdefault(attribute, {})[key] = contribution
        entry["dirty"] = True
        # A reference attribute this connector stops contributing must lose its rows.
        for (attribute, _key), value in before.items():
            if value[2] == REFERENCE_MARKER:
                self.state.reference_dirty.add(anchor)
                entry.setdefault("reference_recheck", set()).add(attribute)

    def _flow_plan(self, compiled: CompiledRule) -> list[tuple[str, str, bool, bool, int, str]]:
        """Per flow of an inbound rule: target, contributor key, apply-once, whether it is a Direct flow of a
        reference attribute, precedence and merge type; worked out once per rule, not once per object and flow."""
        plan = self._plans.get(compiled.rule.name)
        if plan is None:
            key = contributor_key(self.state.connector, compiled.rule.name)
            plan = self._plans[compiled.rule.name] = [
                (
                    spec.target,
                    key,
                    bool(spec.apply_once),
                    spec.type == "Direct" and self._is_reference(spec.source),
                    compiled.rule.precedence,
                    spec.merge,
                )
                for spec in compiled.flow_specs
            ]
        return plan

    def _sparse_plan(
        self, compiled: CompiledRule
    ) -> tuple[dict[str, tuple[tuple[str, str], int, str]], list[tuple[tuple[str, str], tuple[int, str, str]]]] | None:
        """An inbound rule's flows for :meth:`_contribute` to walk an object's present cells (its flow outcome row
        holds no NULL, frames.stored_rows_by_label) instead of every flow: value flows by target (slot, precedence,
        merge type) and the reference flows' contributions. None when a target has several flows (their order
        decides) or a flow applies once (it reads the contribution before): those rules take the flow-by-flow loop."""
        name = compiled.rule.name
        if name not in self._sparse_plans:
            plan = self._flow_plan(compiled)
            eligible = len({flow[0] for flow in plan}) == len(plan) and not any(flow[2] for flow in plan)
            self._sparse_plans[name] = (
                (
                    {
                        target: ((target, key), precedence, merge)
                        for target, key, _once, is_reference, precedence, merge in plan
                        if not is_reference
                    },
                    [
                        ((target, key), (precedence, merge, REFERENCE_MARKER))
                        for target, key, _once, is_reference, precedence, merge in plan
                        if is_reference
                    ],
                )
                if eligible
                else None
            )
        return self._sparse_plans[name]

    def _trace_flow(self, compiled: CompiledRule, target: str, values: Any) -> None:
        if self.state.trace is not None:
            self.state.trace.setdefault("inbound_flows", []).append(
                {"rule": compiled.rule.name, "precedence": compiled.rule.precedence, "target": target, "value": values}
            )
