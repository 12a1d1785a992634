"""Outbound: every metaverse object the pass touched through the outbound rules of the other connectors:
provisioning, attribute updates, deprovisioning and reference (member) changes, handed to staging.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

import pandas as pd
import sqlalchemy as sa

from airflow_provider_aadsync.engine import progress
from airflow_provider_aadsync.engine.batching import chunks
from airflow_provider_aadsync.engine.connectors.kinds import outbound_rule_targets
from airflow_provider_aadsync.engine.connectors.registry import schema_for
from airflow_provider_aadsync.engine.connectors.schema import PROVISIONAL_PREFIX, ConnectorSchema
from airflow_provider_aadsync.engine.expressions import AuthoritativeNull, IgnoreThisFlow, ReferenceValues
from airflow_provider_aadsync.engine.rules import CompiledRule, frame_from_records
from airflow_provider_aadsync.engine.store import (
    cs_object,
    link,
    mv_reference,
    utcnow,
)
from airflow_provider_aadsync.engine.store.among import among
from airflow_provider_aadsync.engine.sync.frames import (
    IN_CHUNK,
    collect_batch_garbage,
    load_json,
    members_by_rule,
    same_values,
    stored_rows_by_label,
    time_ordered_uuids,
    write_rows,
)
from airflow_provider_aadsync.engine.sync.joins import Joins
from airflow_provider_aadsync.engine.sync.lookups import holders_of
from airflow_provider_aadsync.engine.sync.metaverse import Metaverse
from airflow_provider_aadsync.engine.sync.recall import recall
from airflow_provider_aadsync.engine.sync.schema import METAVERSE, cell_texts, cell_values
from airflow_provider_aadsync.engine.sync.staging import Staging
from airflow_provider_aadsync.engine.sync.state import SyncPass
from airflow_provider_aadsync.engine.sync.unjoined import Unjoined

#: Target attributes that hold an exported anchor (lower case): once set, a normal sync never rewrites them.
IMMUTABLE_ANCHORS = ("onpremisesimmutableid",)
#: Target attributes only ever filled when empty (lower case): a set value is kept. The ConsistencyGuid writeback
#: fills an empty mS-DS-ConsistencyGuid; a second forest's user joined to a person anchored in the first forest, which
#: carries a ConsistencyGuid of its own, keeps it (rewriting it would change that user's own anchor).
FILL_ONLY = ("ms-ds-consistencyguid",)


class Outbound:
    """Turns touched metaverse objects into pending exports for the other connectors in one sync pass."""

    def __init__(self, state: SyncPass, *, joins: Joins, metaverse: Metaverse, staging: Staging) -> None:
        self.state = state
        self.joins = joins
        self.metaverse = metaverse
        self.staging = staging
        self._plans: dict[str, list[tuple[str, str, bool]]] = {}
        self._single_plans: dict[str, tuple[list[str], list[tuple[str, str]], frozenset[str]] | None] = {}
        #: The random part of provisional anchors (frames.time_ordered_uuids).
        self._uuids = time_ordered_uuids()
        #: Metaverse objects whose values a deprovision's recall changed (recall.py): evaluated once more.
        self._recalled: set[int] = set()

    def outbound(self, mv_ids: Sequence[int]) -> None:
        if not self.state.outbound_rules or not mv_ids:
            return
        reference_work: dict[tuple[str, str, str], dict[int, str]] = defaultdict(dict)
        #: Per connector: the metaverse objects whose object there the pass linked or unlinked (outbound).
        moved: dict[str, set[int]] = defaultdict(set)
        report = progress.current()
        for chunk in chunks(list(mv_ids), self.state.batch_rows):
            self._outbound_batch(chunk, reference_work, moved)
            report.advance(len(chunk))
            collect_batch_garbage()
        self.state.analyze()  # the links and objects the batches provisioned, before the member steps read them
        # Groups already exported whose members got or lost their object in a connector in this pass (provisioned,
        # rejoined before their delete was exported, deprovisioned): their member rows resolve otherwise now, whether or
        # not the pass evaluated the groups (a user come into or gone out of scope alone in a delta sync). Those it did
        # not evaluate go through the outbound rules now, as the touched ones did: a group the rules refuse (over the
        # member limit since an earlier pass) is refused again, instead of getting the new member's add. Only those:
        # whether an object has reference work is no test of it (a user has manager work and no member work, a group
        # the target refused has none), and a first full sync, which evaluates every object, evaluates none twice.
        evaluated = set(mv_ids)
        holders: set[int] = set()
        for connector, new_ids in moved.items():
            pairs = self._reference_flows(connector)
            if not pairs:
                continue
            # Two indexed lookups, not one join: SQLite, without statistics on freshly written links, would scan
            # every link of the connector per chunk (46 s of a 100k-user full sync).
            referencing = holders_of(self.state.connection, mv_reference.c.mv_id, mv_reference.c.target_mv_id, new_ids)
            holders.update(m for m in referencing if m not in evaluated)
        # Those a deprovision's recall changed go through the other connectors' rules again, with their values now.
        holders |= self._recalled
        for chunk in chunks(sorted(holders), self.state.batch_rows):
            self._outbound_batch(chunk, reference_work, defaultdict(set))
        for (connector, mv_attribute, cs_attribute), groups in reference_work.items():
            self.staging.stage_references(connector, mv_attribute, cs_attribute, groups)

    def holders_of_joined(self) -> set[int]:
        """The metaverse objects (groups, managers' reports) holding a reference to an object joined in this pass, or
        disconnected from its object of this connector (``state.relinked``): evaluated by the outbound rules like the
        touched ones, their reference rows in the target name the joined object (and no longer the object gone) instead
        of waiting for a change of their own (a full sync's memo skips them)."""
        if not self.state.relinked or not self.state.outbound_rules:
            return set()
        return holders_of(self.state.connection, mv_reference.c.mv_id, mv_reference.c.target_mv_id, self.state.relinked)

    def _reference_flows(self, connector: str) -> list[tuple[str, str, str]]:
        """(connector, metaverse attribute, target attribute) of each Direct reference flow of the outbound rules that
        write to ``connector`` (the keys of the pass's reference work)."""
        found = {
            (connector, source, target)
            for compiled in self.state.outbound_rules
            if connector in outbound_rule_targets(compiled.rule.connector, compiled.rule.link_type, [connector])
            for target, source, is_reference in self._flow_plan(compiled)
            if is_reference
        }
        return sorted(found)

    def _outbound_batch(
        self,
        mv_ids: Sequence[int],
        reference_work: dict[tuple[str, str, str], dict[int, str]],
        moved: dict[str, set[int]],
    ) -> None:
        loaded = self.metaverse.load_mv(mv_ids, contributions=False)
        links: dict[tuple[int, str], tuple[str, str]] = {}
        for chunk in chunks(list(loaded), IN_CHUNK):
            for mv_id, connector, anchor, link_type in self.state.connection.execute(
                sa.select(link.c.mv_id, link.c.connector, link.c.anchor, link.c.link_type).where(
                    among(link.c.mv_id, chunk)
                )
            ):
                links[(mv_id, connector)] = (anchor, link_type)
        by_type: dict[str, list[int]] = defaultdict(list)
        for mv_id, row in loaded.items():
            by_type[row["type"]].append(mv_id)
        joined = {connector for _mv_id, connector in links}
        for mv_type, ids in sorted(by_type.items()):
            # A Join rule written for a kind (the ConsistencyGuid writeback to "ad") updates every AD connector's
            # joined objects (kinds.py); other rules write to their one connector. Rules stay in precedence order.
            targets: dict[str, list[CompiledRule]] = defaultdict(list)
            for compiled in self.state.outbound_rules:
                if compiled.rule.source_object_type == mv_type:
                    for connector in outbound_rule_targets(compiled.rule.connector, compiled.rule.link_type, joined):
                        targets[connector].append(compiled)
            for connector, rules in sorted(targets.items()):
                self._outbound_rules(connector, rules, ids, loaded, links, reference_work, moved)

    def _outbound_rules(
        self,
        connector: str,
        rules: Sequence[CompiledRule],
        mv_ids: Sequence[int],
        loaded: Mapping[int, dict[str, Any]],
        links: Mapping[tuple[int, str], tuple[str, str]],
        reference_work: dict[tuple[str, str, str], dict[int, str]],
        moved: dict[str, set[int]],
    ) -> None:
        target_schema = schema_for(connector, self.state.schemas)
        # In precedence order (the pass's rules are already; stable, so equal ones keep theirs), as _desired needs
        # each object's list of rules in scope.
        rules = sorted(rules, key=lambda r: r.rule.precedence)
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
        suspects: set[object] = set()  # objects with a value the target's limits may refuse: checked exactly
        for compiled in rules:
            rows = index[scope[compiled.rule.name].to_numpy()]
            if len(rows) == 0:
                continue
            outcome = compiled.evaluate_flows(frame.loc[rows])
            for mv_id, error in outcome.errors.items():
                failed.add(mv_id)
                self.state.error(
                    links.get((mv_id, connector), (f"metaverse:{mv_id}", ""))[0],
                    _metaverse_label(loaded, mv_id),
                    getattr(error, "code", "expression-error"),
                    f"outbound rule {compiled.rule.name!r} to {connector}: {getattr(error, 'message', str(error))}",
                )
            outcomes[compiled.rule.name] = stored_rows_by_label(outcome.values)
            suspects |= target_schema.possibly_invalid(outcome.values)
        provisioning = [r for r in rules if r.rule.link_type == "Provision"]
        widened = all(r.rule.connector != connector for r in rules)  # rules written for a kind, not this connector
        widened_types = {r.rule.target_object_type.casefold() for r in rules}
        current = self._load_cs(connector, [links[(m, connector)][0] for m in mv_ids if (m, connector) in links])
        in_scope_of = members_by_rule(scope)
        unjoined = Unjoined(
            self.state, connector, self.joins.hard_match(connector)[1], self.joins.soft_pairs(connector)
        )
        staged: list[tuple[str, str, str, str, dict[str, list[Any]]]] = []
        provisioned_adds: list[tuple[str, str, str, str, dict[str, list[Any]]]] = []  # anchors made just now
        new_objects: list[dict[str, Any]] = []
        new_links: list[dict[str, Any]] = []
        withdrawn: list[str] = []  # joined objects out of every rule's scope: their pending updates go
        unlinked: list[tuple[str, int, str]] = []  # deprovisioned: what they contributed is recalled (recall.py)
        now = utcnow()  # one timestamp for the new rows: the store formats one object once
        for mv_id in mv_ids:
            in_scope = [r for r in rules if mv_id in in_scope_of[r.rule.name]]
            existing = links.get((mv_id, connector))
            provision_rule = next((r for r in provisioning if mv_id in in_scope_of[r.rule.name]), None)
            if self.state.trace is not None:
                self.state.trace.setdefault("outbound", {})[connector] = {
                    "rules_in_scope": [r.rule.name for r in in_scope]
                }
            if mv_id in failed:  # an outbound rule failed on it (a group over the member limit): nothing is staged
                continue
            if existing is None:
                if provision_rule is None:
                    continue
                # A create writes only the values: the targets without one matter to an update (a rejoin, below),
                # to a preview and to the limit check's message, which take them all.
                values_only = self.state.trace is None and mv_id not in suspects
                desired, dn, references = self._desired(in_scope, outcomes, mv_id, values_only=values_only)
                if mv_id in suspects and _refused(self.state, connector, target_schema, mv_id, loaded, links, desired):
                    continue
                found = self._rejoinable(connector, provision_rule, desired, unjoined)
                kind = "provision"
                if found is None:
                    # Deprovisioned (its delete staged, not yet exported) and back in scope: the object it left,
                    # found by its hard-match anchor, is joined again and its delete withdrawn, never a second one made.
                    found = unjoined.take_deleted(provision_rule.rule.target_object_type, desired)
                    kind = "join"
                if found is None and unjoined.holding(
                    provision_rule.rule.target_object_type, desired, loaded[mv_id]["attrs"]
                ):
                    # An unjoined object already holds its hard-match anchor (restored in the target directory while
                    # the source was gone), or the UPN or mail a soft match compares (a cloud-only user): its
                    # connector's next sync, a delta one too, evaluates its join again and joins it in place of the
                    # create staged now, or refuses it and holds the create.
                    self.state.note("exports", f"{connector}: an unjoined object holds its anchor, UPN or mail")
                    self.state.counters["joins_due"] += 1
                if found is not None:
                    anchor, stored = found
                    if values_only:  # an update of the object found: it clears the targets without a value too
                        desired, dn, references = self._desired(in_scope, outcomes, mv_id)
                    if mv_id in suspects:  # converted as the check above did (its errors are recorded once)
                        target_schema.settle(desired)
                    new_links.append(
                        {
                            **self.joins.link_row(anchor, mv_id, provision_rule, kind, now=now),
                            "connector": connector,
                        }
                    )
                    self.state.note(
                        "exports", f"{connector}: rejoined the existing {stored['object_type']} {stored['dn']!r}"
                    )
                    self.state.counters["rejoined"] += 1
                    changes = self._changes(desired, stored)
                    if dn and dn != stored["dn"]:
                        changes["dn"] = [dn]
                    staged.append((anchor, stored["object_type"], stored["dn"], "update", changes))
                    for mv_attribute, cs_attribute in references:
                        reference_work[(connector, mv_attribute, cs_attribute)][mv_id] = anchor
                    # Linked again in this pass as a provisioned object is: the groups holding it name it now.
                    moved[connector].add(mv_id)
                    continue
                anchor = f"{PROVISIONAL_PREFIX}{next(self._uuids)}"
                object_type = provision_rule.rule.target_object_type
                dn = dn or target_schema.default_dn(object_type, anchor)
                new_objects.append(_provisional_object(connector, anchor, object_type, dn, self.state.run_id, now))
                new_links.append(
                    {**self.joins.link_row(anchor, mv_id, provision_rule, "provision", now=now), "connector": connector}
                )
                self.state.note(
                    "exports", f"{connector}: provision a new {object_type} by rule {provision_rule.rule.name!r}"
                )
                moved[connector].add(mv_id)
                added = desired if values_only else {k: v for k, v in desired.items() if v}
                provisioned_adds.append((anchor, object_type, dn, "add", added))
                for mv_attribute, cs_attribute in references:
                    reference_work[(connector, mv_attribute, cs_attribute)][mv_id] = anchor
                continue
            anchor, link_type = existing
            # Out of scope of every rule: deprovisioned when sync made the object, or when it joined it and a Provision
            # rule writes to this connector (a hard-matched cloud user is deleted as a created one); a source object
            # (projection, sticky join) never is.
            # A joined object only when sync took it over (it holds a hard-match anchor): a cloud-only object
            # soft-matched to a person no rule has in scope was never written, and is left alone.
            deprovisions = self.joins.deletes(
                connector,
                anchor,
                link_type,
                provisioned=bool(provisioning) and anchor in current,
                attrs=current[anchor]["attrs"] if anchor in current else None,
            )
            kept = not anchor.startswith(PROVISIONAL_PREFIX)  # a create not yet exported is withdrawn all the same
            if deprovisions and not in_scope and kept and any(r.rule.keep_when_out_of_scope for r in provisioning):
                # Kept (the rule's keep_when_out_of_scope: a group disabled for writeback stays in AD): linked, no
                # longer updated below; deleted with its metaverse object (joins.py _delete_metaverse).
                self.state.note("exports", f"{connector}: out of scope, kept (keep_when_out_of_scope)")
                deprovisions = False
            if provision_rule is None and not in_scope and deprovisions:
                self.state.note("exports", f"{connector}: out of scope of every outbound rule, deprovision")
                self.state.connection.execute(
                    sa.delete(link).where(link.c.connector == connector, link.c.anchor == anchor)
                )
                self.joins.deprovision(connector, anchor)
                moved[connector].add(mv_id)  # the groups holding it stop naming it (a member remove, if exported)
                unlinked.append((anchor, mv_id, current[anchor]["object_type"] if anchor in current else ""))
                continue
            if not in_scope:
                withdrawn.append(anchor)  # an update staged while it was in scope is not exported now
                continue
            desired, dn, references = self._desired(in_scope, outcomes, mv_id)
            if mv_id in suspects and _refused(self.state, connector, target_schema, mv_id, loaded, links, desired):
                continue
            stored = current.get(anchor)
            if stored is None or (widened and stored["object_type"].casefold() not in widened_types):
                continue  # a kind's Join rule updates only its own object type (a user, never a joined FSP)
            if anchor.startswith(PROVISIONAL_PREFIX):
                staged.append(
                    (anchor, stored["object_type"], dn or stored["dn"], "add", {k: v for k, v in desired.items() if v})
                )
            else:
                lowered = {name.lower(): values for name, values in stored["attrs"].items()}
                changes = self._changes(desired, stored, lowered)
                if self._anchor_changed(connector, anchor, stored["dn"], (loaded, mv_id), lowered, changes):
                    continue
                for name in [key for key in changes if key.lower() in FILL_ONLY]:
                    if cell_texts(lowered.get(name.lower())):
                        del changes[name]  # set already: kept as it is
                if dn and dn != stored["dn"]:
                    changes["dn"] = [dn]
                staged.append((anchor, stored["object_type"], stored["dn"], "update", changes))
            for mv_attribute, cs_attribute in references:
                reference_work[(connector, mv_attribute, cs_attribute)][mv_id] = anchor
        # In key order: provisional anchors are random, and rows written in the order of their key index each land
        # next to the one before instead of on a random page of it.
        new_objects.sort(key=itemgetter("anchor"))
        new_links.sort(key=itemgetter("anchor"))
        write_rows(self.state.store, self.state.connection, cs_object, new_objects)
        write_rows(self.state.store, self.state.connection, link, new_links)
        unjoined.flush()
        self.state.counters["provisioned"] += len(new_objects)
        self.staging.withdraw_updates(connector, withdrawn)
        self.staging.stage_many(connector, staged)
        self.staging.stage_many(connector, provisioned_adds, new=True)
        self._recalled |= recall(self.state, self.metaverse, connector, unlinked)

    @staticmethod
    def _changes(
        desired: Mapping[str, list[Any]], stored: Mapping[str, Any], lowered: Mapping[str, Any] | None = None
    ) -> dict[str, list[Any]]:
        """The desired values that differ from what the connector space holds (compared as the store's values);
        ``lowered``: the stored values by lower-cased name, when the caller has them already."""
        if lowered is None:
            lowered = {name.lower(): values for name, values in stored["attrs"].items()}
        return {
            name: values
            for name, values in desired.items()
            if not same_values(values, cell_values(lowered.get(name.lower())))
        }

    def _rejoinable(
        self,
        connector: str,
        rule: CompiledRule,
        desired: Mapping[str, list[Any]],
        unjoined: Unjoined,
    ) -> tuple[str, dict[str, Any]] | None:
        """An unjoined object of ``connector`` holding the value the provisioning rule's ``rejoin_on`` attribute
        would write (the writeback mark an earlier export stamped): it is joined, not created a second time."""
        attribute = rule.rule.rejoin_on
        if attribute is None:
            return None
        wanted = next((values for name, values in desired.items() if name.lower() == attribute.lower()), [])
        if len(wanted) != 1 or not str(wanted[0]):
            return None
        return unjoined.take(rule.rule.target_object_type, attribute, str(wanted[0]))

    def _anchor_changed(
        self,
        connector: str,
        anchor: str,
        dn: str,
        subject: tuple[Mapping[int, dict[str, Any]], int],
        stored: Mapping[str, Any],
        changes: Mapping[str, list[Any]],
    ) -> bool:
        """An exported anchor is immutable: a change of a joined object's computed sourceAnchor (a new
        ms-DS-ConsistencyGuid) is the product's per-object error "sourceAnchor attribute has changed", and the object
        stops syncing outbound (nothing staged) until an admin resolves it; the cloud ImmutableId is never rewritten.
        ``subject`` (the loaded metaverse objects and this one's id) names the object in the message."""
        for name in IMMUTABLE_ANCHORS:
            if name not in {key.lower() for key in changes}:
                continue
            exported = cell_texts(stored.get(name))
            if not exported:
                continue  # never set (a soft-matched cloud object): setting it is the join's purpose
            wanted = next(values for key, values in changes.items() if key.lower() == name)
            self.state.error(
                anchor,
                dn,
                "source-anchor-changed",
                f"sourceAnchor attribute has changed for {_metaverse_label(*subject)}: {connector} holds "
                f"{exported[0]!r}, the AD object now gives {(wanted or [''])[0]!r}; the object is not exported until "
                "resolved: restore the AD object's previous anchor (ms-DS-ConsistencyGuid), or, if it really is "
                "another object, clear the cloud object's onPremisesImmutableId by hand",
            )
            self.state.note("exports", f"{connector}: not exported, its sourceAnchor has changed")
            return True
        return False

    def _flow_plan(self, compiled: CompiledRule) -> list[tuple[str, str, bool]]:
        """Per flow of an outbound rule: target, source, and whether it is a Direct flow of a metaverse reference
        (its members are staged as reference rows); worked out once per rule, not once per object."""
        plan = self._plans.get(compiled.rule.name)
        if plan is None:
            plan = self._plans[compiled.rule.name] = [
                (
                    spec.target,
                    spec.source,
                    spec.type == "Direct" and spec.source.lower() in METAVERSE.reference_attributes,
                )
                for spec in compiled.flow_specs
            ]
        return plan

    def _single_plan(self, compiled: CompiledRule) -> tuple[list[str], list[tuple[str, str]], frozenset[str]] | None:
        """An outbound rule's value targets (as a list, in flow order, and as a set) and its reference flows (source,
        target), when each target has one flow: then, the only rule in scope of an object (the common case), its
        values need no precedence bookkeeping."""
        name = compiled.rule.name
        if name not in self._single_plans:
            plan = self._flow_plan(compiled)
            unique = len({target for target, _source, _is_reference in plan}) == len(plan)
            targets = [target for target, _source, is_reference in plan if not is_reference]
            references = [(source, target) for target, source, is_reference in plan if is_reference]
            self._single_plans[name] = (targets, references, frozenset(targets)) if unique else None
        return self._single_plans[name]

    def _desired(
        self,
        in_scope: Sequence[CompiledRule],
        outcomes: Mapping[str, dict[int, dict[str, Any]]],
        mv_id: int,
        *,
        values_only: bool = False,
    ) -> tuple[dict[str, list[Any]], str | None, list[tuple[str, str]]]:
        """Per target attribute, the value of the lowest-precedence rule that contributes one (``in_scope`` is in
        precedence order); a target without a value gets ``[]`` (an update clears it). ``values_only``: only the
        targets with a value, when one rule is in scope: what a create writes, found from the object's cells (its
        outcome row holds no NULL) instead of every target of the rule (the shipped user rule has 60, a user about 15
        values; a first full sync provisions every object)."""
        desired: dict[str, list[Any]] = {}
        references: list[tuple[str, str]] = []
        single = self._single_plan(in_scope[0]) if len(in_scope) == 1 else None
        if single is not None and values_only:
            target_set, references = single[2], list(single[1])
            for target, cell in outcomes.get(in_scope[0].rule.name, {}).get(mv_id, {}).items():
                if cell and target in target_set and cell is not IgnoreThisFlow and cell is not AuthoritativeNull:
                    desired[target] = cell
        elif single is not None:  # one rule, one flow per target: what the loop below gives, without its bookkeeping
            targets, references = single[0], list(single[1])
            values = outcomes.get(in_scope[0].rule.name, {}).get(mv_id, {})
            for target in targets:
                cell = values.get(target)  # stored form (frames.stored_rows_by_label): NULL is None
                if cell is not IgnoreThisFlow:
                    desired[target] = [] if cell is None or cell is AuthoritativeNull else cell
        else:
            self._merge_by_precedence(in_scope, outcomes, mv_id, desired, references)
            if values_only:
                desired = {target: values for target, values in desired.items() if values}
        dn = None
        if "dn" in desired:
            dn_values = desired.pop("dn")
            dn = str(dn_values[0]) if dn_values else None
        if self.state.trace is not None:
            self.state.trace.setdefault("outbound_values", {}).update(desired)
        return desired, dn, references

    def _merge_by_precedence(
        self,
        in_scope: Sequence[CompiledRule],
        outcomes: Mapping[str, dict[int, dict[str, Any]]],
        mv_id: int,
        desired: dict[str, list[Any]],
        references: list[tuple[str, str]],
    ) -> None:
        """:meth:`_desired` of several rules: per target, the first rule (in precedence order) that gives a value."""
        decided: set[str] = set()
        for compiled in in_scope:
            values = outcomes.get(compiled.rule.name, {}).get(mv_id, {})
            for target, source, is_reference in self._flow_plan(compiled):
                if target in decided:
                    continue
                if is_reference:
                    references.append((source, target))
                    decided.add(target)
                    continue
                cell = values.get(target)  # stored form (frames.stored_rows_by_label): NULL is None
                if cell is IgnoreThisFlow:
                    continue
                if cell is None:
                    desired.setdefault(target, [])
                    continue
                decided.add(target)
                desired[target] = [] if cell is AuthoritativeNull else cell

    def _reference_counts(self, mv_ids: Sequence[int], attribute: str) -> dict[int, int]:
        counts: dict[int, int] = {}
        for chunk in chunks(list(mv_ids), IN_CHUNK):
            query = (
                sa.select(mv_reference.c.mv_id, sa.func.count())
                .where(mv_reference.c.attribute == attribute.lower(), among(mv_reference.c.mv_id, chunk))
                .group_by(mv_reference.c.mv_id)
            )
            counts.update(dict(self.state.connection.execute(query).all()))
        return counts

    def _load_cs(self, connector: str, anchors: Sequence[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for chunk in chunks(list(anchors), IN_CHUNK):
            query = sa.select(cs_object.c.anchor, cs_object.c.dn, cs_object.c.object_type, cs_object.c.attrs).where(
                cs_object.c.connector == connector, among(cs_object.c.anchor, chunk)
            )
            for anchor, dn, object_type, attrs in self.state.connection.execute(query).all():
                found[anchor] = {"dn": dn, "object_type": object_type, "attrs": load_json(attrs)}
        return found


def _refused(
    state: SyncPass,
    connector: str,
    target_schema: ConnectorSchema,
    mv_id: int,
    loaded: Mapping[int, dict[str, Any]],
    links: Mapping[tuple[int, str], tuple[str, str]],
    desired: dict[str, list[Any]],
) -> bool:
    """Whether a value of *desired* is one the target directory refuses (its catalog's limits: Graph's lengths
    and formats). Then the object gets one per-object error naming each such attribute and nothing is staged
    for it, instead of a write the server would answer 400 (or a value silently cut). First, in place, values in
    a documented spelling are converted and a refused value of an attribute whose limit says so is left out
    (``ConnectorSchema.settle``: employeeHireDate), with its own per-object error: only that attribute is lost."""
    dropped = target_schema.settle(desired)
    if dropped:
        state.error(
            links.get((mv_id, connector), (f"metaverse:{mv_id}", ""))[0],
            _metaverse_label(loaded, mv_id),
            "attribute-value-left-out",
            f"{_metaverse_label(loaded, mv_id)}: not written to {connector}, which would refuse it: "
            + "; ".join(dropped)
            + "; the object's other values are staged",
        )
    problems = target_schema.invalid_values(desired)
    if not problems:
        return False
    state.error(
        links.get((mv_id, connector), (f"metaverse:{mv_id}", ""))[0],
        _metaverse_label(loaded, mv_id),
        "invalid-attribute-value",
        f"not exported to {connector}, which would refuse it: " + "; ".join(problems),
    )
    return True


def _metaverse_label(loaded: Mapping[int, dict[str, Any]], mv_id: int) -> str:
    """How an error names the metaverse object it is about (the record's DN is the target's, e.g. a cloud id)."""
    name = (loaded[mv_id]["attrs"].get("displayName") or [f"#{mv_id}"])[0]
    return f"metaverse {loaded[mv_id]['type']} {name!r} (id {mv_id})"


def _provisional_object(
    connector: str, anchor: str, object_type: str, dn: str, run_id: int, now: dt.datetime
) -> dict[str, Any]:
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
        "last_run_id": run_id,
        "updated_at": now,
    }
