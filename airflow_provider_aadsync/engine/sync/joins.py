"""Join / project and disconnect: links connector-space objects to metaverse objects (join rules, projection,
metaverse id allocation), and undoes links when an object leaves scope or is deleted (deleting a metaverse object
no source keeps alive and deprovisioning what it provisioned).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa

from airflow_provider_aadsync.engine.batching import chunks
from airflow_provider_aadsync.engine.connectors.kinds import inbound_rule_applies
from airflow_provider_aadsync.engine.connectors.schema import PROVISIONAL_PREFIX
from airflow_provider_aadsync.engine.rules import CompiledRule
from airflow_provider_aadsync.engine.store import (
    REFUSED,
    cs_object,
    link,
    mv_join_key,
    mv_object,
    mv_reference,
    pending_export,
    pending_export_reference,
    utcnow,
)
from airflow_provider_aadsync.engine.store.among import among
from airflow_provider_aadsync.engine.sync.contributions import SHARED_JOIN_TYPE, drop_slots, owned_slots
from airflow_provider_aadsync.engine.sync.frames import (
    _SOURCE_LINKS,
    IN_CHUNK,
    LINK_TYPES,
    column_of,
    load_json,
    members_by_rule,
    write_rows,
)
from airflow_provider_aadsync.engine.sync.metaverse import Metaverse
from airflow_provider_aadsync.engine.sync.references import dropped_reference_winners
from airflow_provider_aadsync.engine.sync.schema import cell_texts, cell_values
from airflow_provider_aadsync.engine.sync.staging import Staging
from airflow_provider_aadsync.engine.sync.state import SyncPass
from airflow_provider_aadsync.engine.sync.unjoined import SoftPair, staged_deletes


class Joins:
    """Links and unlinks connector-space objects and metaverse objects for one sync pass."""

    def __init__(self, state: SyncPass, *, metaverse: Metaverse, staging: Staging) -> None:
        self.state = state
        self.metaverse = metaverse
        self.staging = staging
        self._last_allocated = 0
        #: Per connector: whether its join rules soft match, and their hard-match attributes (hard_match).
        self._hard_match: dict[str, tuple[bool, set[str]]] = {}
        self._soft_pairs: dict[str, frozenset[SoftPair]] = {}

    def link(
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
            self.state.counters["disconnections_out_of_scope"] += 1
            self.state.note("decision", "out of scope of every joining/projecting rule: disconnect")
        if self.state.trace is not None and linked.any() and not out_of_scope.any():
            self.state.note("decision", f"already joined to metaverse object {int(part['mv_id'].iloc[0])}")

        pending = list(part.index[~linked & in_scope])
        if pending:
            # Deprovisioned, its delete not exported yet: it stays a disconnector. Joined again, the outbound half would
            # deprovision it again, each pass; back in the outbound scope, the outbound half joins it (unjoined.py).
            deleting = staged_deletes(self.state)
            kept = [anchor for anchor in pending if anchor not in deleting]
            if len(kept) < len(pending):
                self.state.counters["disconnectors"] += len(pending) - len(kept)
                self.state.note("decision", "stays a disconnector: deprovisioned, its delete is not exported yet")
            pending = kept
        in_scope_of = members_by_rule(scope)
        pending = self._refuse_several_join_rules(part, pending, linking, in_scope_of)
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
                refusals = match_refusals(frame.loc[[a for a in candidates if a in matches]], compiled, group)
                for anchor in candidates:
                    found = matches.get(anchor, set())
                    if not found:
                        continue
                    resolved.add(anchor)
                    dn = part.at[anchor, "dn"]
                    if anchor in refusals and len(found) == 1:
                        if taken is None:
                            taken = self._mv_ids_linked_here()
                        self._refuse(anchor, dn, next(iter(found)), refusals[anchor], taken)
                        continue
                    if len(found) > 1:
                        self.state.error(
                            anchor,
                            dn,
                            "ambiguous-join",
                            f"rule {compiled.rule.name!r} join matches "
                            f"{len(found)} metaverse objects ({sorted(found)[:5]})",
                        )
                        # Several objects claim this one (a copied anchor): none of them creates a second one beside it.
                        if taken is None:
                            taken = self._mv_ids_linked_here()
                        for target in sorted(found):
                            self._hold(anchor, dn, target, "ambiguous-join", "several metaverse objects match", taken)
                        continue
                    target = next(iter(found))
                    if compiled.rule.source_object_type.casefold() == SHARED_JOIN_TYPE.casefold():
                        # A foreign security principal only stands for a member from another forest: it may join a
                        # person this forest also has (same-person rules), so it neither takes nor needs the slot.
                        mv_ids[anchor] = target
                        new_links.append(self.link_row(anchor, target, compiled, "join"))
                        self.state.counters["joins"] += 1
                        continue
                    if taken is None:
                        taken = self._mv_ids_linked_here()
                    holder = taken.get(target)
                    if holder is not None and holder.startswith(PROVISIONAL_PREFIX):
                        # Sync had planned to create this object; the directory already has it: join, don't create.
                        self.state.connection.execute(
                            sa.delete(link).where(link.c.connector == self.state.connector, link.c.anchor == holder)
                        )
                        self.deprovision(self.state.connector, holder)
                    elif holder is not None:
                        self.state.error(
                            anchor,
                            dn,
                            "join-conflict",
                            f"rule {compiled.rule.name!r} matches metaverse "
                            f"object {target}, already joined to {self.state.connector} object {holder}",
                        )
                        continue
                    taken[target] = anchor
                    mv_ids[anchor] = target
                    new_links.append(self.link_row(anchor, target, compiled, "join"))
                    self.state.counters["joins"] += 1
                    self.state.note("decision", f"joined by rule {compiled.rule.name!r} to metaverse object {target}")
                if resolved:
                    candidates = [a for a in candidates if a not in resolved]
            if resolved:
                pending = [a for a in pending if a not in resolved]
            if compiled.rule.link_type == "Provision":
                projected = [a for a in pending if a in in_scope_of[compiled.rule.name]]
                new_ids = self._allocate_mv_ids(len(projected))
                if projected:  # one assignment, not one per object (a Series item set costs microseconds)
                    mv_ids.loc[projected] = new_ids
                now = utcnow()  # one timestamp for the batch's rows: formatted once when written
                for anchor, mv_id in zip(projected, new_ids, strict=True):
                    mv_updates[mv_id] = {"type": compiled.rule.target_object_type, "contributions": {}, "new": True}
                    new_links.append(self.link_row(anchor, mv_id, compiled, "projection", now=now))
                    self.state.note("decision", f"projected by rule {compiled.rule.name!r} as new metaverse object")
                self.state.counters["projections"] += len(projected)
                projected_set = set(projected)
                pending = [a for a in pending if a not in projected_set]
        self.state.counters["disconnectors"] += int((~linked & ~in_scope).sum()) + len(pending)
        if self.state.trace is not None and not linked.any() and "decision" not in self.state.trace:
            self.state.note("decision", "stays a disconnector: no joining or projecting rule applies")
        if new_links:
            self.state.newly_linked.update(row["anchor"] for row in new_links)
            # Objects joined here: the groups holding them resolve their members in this connector to them now.
            self.state.relinked.update(row["mv_id"] for row in new_links if row["link_type"] != "projection")
            write_rows(self.state.store, self.state.connection, link, new_links)
        self.state.counters["connectors"] += int(mv_ids.notna().sum())
        return mv_ids

    def _refuse_several_join_rules(
        self,
        part: pd.DataFrame,
        pending: list[str],
        linking: Sequence[CompiledRule],
        in_scope_of: dict[str, set[str]],
    ) -> list[str]:
        """Objects in scope of two or more rules with join criteria are an error, not "the first by precedence".

        "Understanding Declarative Provisioning": only one sync rule with join criteria may be in scope for an
        object; when several are found an error is thrown. Rules that look for different metaverse object types
        do not compete (a foreign security principal looks for a person or a group with its objectSid). The object
        stays unjoined (and unprojected) until the rules are fixed, so its error is reported on every pass.
        """
        joining = [r for r in linking if r.join_groups]
        if len(joining) < 2 or not pending:
            return pending
        kept = []
        for anchor in pending:
            by_type: dict[str, list[str]] = defaultdict(list)
            for r in joining:
                if anchor in in_scope_of[r.rule.name]:
                    by_type[r.rule.target_object_type.casefold()].append(r.rule.name)
            names = max(by_type.values(), key=len, default=[])
            if len(names) < 2:
                kept.append(anchor)
                continue
            self.state.error(
                anchor,
                part.at[anchor, "dn"],
                "several-join-rules",
                f"{len(names)} sync rules with join criteria are in scope ({', '.join(repr(n) for n in names)}); "
                "only one may be: narrow their scoping filters",
            )
            self.state.note("decision", "not joined: several rules with join criteria are in scope")
        return kept

    def _refuse(self, anchor: str, dn: str, target: int, refusal: tuple[str, str], taken: dict[int, str]) -> None:
        """A per-object error for a refused match. A create sync had planned for the matched object is held as
        ``refused`` (see :data:`REFUSED`), so no write makes a second object beside this one, in this cycle or a
        later one: the metaverse object keeps its provisional link, so a later sync never provisions it again, and
        every export reports it as still refused until a sync joins the cloud object (the admin resolved it)."""
        code, message = refusal
        self.state.error(anchor, dn, code, f"matches metaverse object {target}: {message}")
        self.state.counters["joins_refused"] += 1
        self.state.note("decision", f"not joined ({code})")
        self._hold(anchor, dn, target, code, message, taken)

    def _hold(self, anchor: str, dn: str, target: int, code: str, message: str, taken: dict[int, str]) -> None:
        """The create sync planned for ``target`` in this connector is held as ``refused``."""
        holder = taken.get(target)
        if holder is not None and holder.startswith(PROVISIONAL_PREFIX):
            self.state.connection.execute(
                sa.update(pending_export)
                .where(pending_export.c.connector == self.state.connector, pending_export.c.anchor == holder)
                .values(state=REFUSED, last_error=f"{code}: cloud object {anchor} ({dn}): {message}"[:2000])
            )
            self.state.note("exports", f"{self.state.connector}: the pending add of {holder} is held, refused")

    def link_row(
        self, anchor: str, mv_id: int, compiled: CompiledRule, kind: str, *, now: dt.datetime | None = None
    ) -> dict[str, Any]:
        """A link row to write; ``now``: the time the caller's rows share (the store formats one object once)."""
        link_type = "sticky-join" if compiled.rule.link_type == "StickyJoin" else kind
        return {
            "connector": self.state.connector,
            "anchor": anchor,
            "mv_id": int(mv_id),
            "rule": compiled.rule.name,
            "link_type": link_type,
            "created_at": now or utcnow(),
        }

    def _mv_ids_linked_here(self) -> dict[int, str]:
        """Metaverse objects that already have a link from this connector, and the anchor linked."""
        query = (
            sa.select(link.c.mv_id, link.c.anchor)
            .join(cs_object, sa.and_(cs_object.c.connector == link.c.connector, cs_object.c.anchor == link.c.anchor))
            .where(link.c.connector == self.state.connector, cs_object.c.object_type != SHARED_JOIN_TYPE)
        )
        return dict(self.state.connection.execute(query).all())

    def _allocate_mv_ids(self, count: int) -> list[int]:
        """Ids for ``count`` new metaverse objects. Nothing is written: the batch's metaverse write inserts them
        (an empty row written first, to reserve the id, was written twice and moved in the type index); the ids this
        pass handed out are remembered, so the next allocation starts after them whatever is written yet."""
        if count == 0:
            return []
        current = self.state.connection.execute(sa.select(sa.func.max(mv_object.c.id))).scalar() or 0
        current = max(current, self._last_allocated)
        self._last_allocated = current + count
        return list(range(current + 1, current + 1 + count))

    def _join_matches(self, frame: pd.DataFrame, group: Sequence[Any], mv_type: str) -> dict[str, set[int]]:
        """Metaverse ids matching every pair of one join group, per connector-space anchor."""
        result: dict[str, set[int]] | None = None
        for pair in group:
            source, target, case_sensitive = pair[0], pair[1], pair[2]
            column = column_of(frame, source)
            keys: dict[str, list[str]] = defaultdict(list)
            for anchor, cell in zip(frame.index, column, strict=True):
                for value in cell_values(cell):
                    text = str(value)
                    keys[text if case_sensitive else text.casefold()].append(anchor)
            found: dict[str, set[int]] = defaultdict(set)
            # Looked up by the folded value, the one indexed (tables.mv_join_key); a case-sensitive pair then keeps
            # the rows whose value is exactly one looked for.
            value_column = mv_join_key.c.value if case_sensitive else mv_join_key.c.value_folded
            for chunk in chunks(list(keys), IN_CHUNK):
                folded = sorted({key.casefold() for key in chunk}) if case_sensitive else chunk
                query = (
                    sa.select(value_column, mv_join_key.c.mv_id)
                    .join(mv_object, mv_object.c.id == mv_join_key.c.mv_id)
                    .where(
                        mv_join_key.c.attribute == target.lower(),
                        among(mv_join_key.c.value_folded, folded),
                        mv_object.c.object_type == mv_type,
                    )
                )
                for value, mv_id in self.state.connection.execute(query):
                    for anchor in keys.get(value, ()):
                        found[anchor].add(mv_id)
            result = dict(found) if result is None else {a: ids & found.get(a, set()) for a, ids in result.items()}
        return {anchor: ids for anchor, ids in (result or {}).items() if ids}

    def disconnect(self, pairs: Sequence[tuple[str, int]], mv_updates: dict[int, dict[str, Any]]) -> None:
        if not pairs:
            return
        for chunk in chunks([anchor for anchor, _ in pairs], IN_CHUNK):
            self.state.connection.execute(
                sa.delete(link).where(link.c.connector == self.state.connector, among(link.c.anchor, chunk))
            )
        self.state.counters["disconnections"] += len(pairs)
        self.state.unlinked.update(anchor for anchor, _ in pairs)
        kinds = self._kinds_by_metaverse_id(pairs)
        mv_ids = sorted(kinds)
        loaded = self.metaverse.load_mv(mv_ids)
        orphans = []
        survivors = self._source_links(mv_ids)
        for mv_id in mv_ids:
            row = loaded.get(mv_id)
            if row is None:
                continue
            if not self.state.keeps_alive(row["type"], survivors.get(mv_id, set())):
                orphans.append(mv_id)
                continue
            self._withdraw(mv_id, mv_updates.setdefault(mv_id, row), kinds[mv_id])
            self.state.relinked.add(mv_id)  # it stays: the groups holding it no longer name its object gone from here
        self._delete_metaverse(orphans)
        for mv_id in orphans:
            mv_updates.pop(mv_id, None)

    def withdraw_contributions(self, pairs: Sequence[tuple[str, int]], mv_updates: dict[int, dict[str, Any]]) -> None:
        """Objects that stay linked (a sticky join) but that no rule reads any more: what they contributed goes, as on
        a disconnection, and the link stays."""
        if not pairs:
            return
        kinds = self._kinds_by_metaverse_id(pairs)
        loaded = self.metaverse.load_mv(sorted(mv_id for mv_id in kinds if mv_id not in mv_updates))
        for mv_id, object_kinds in kinds.items():
            entry = mv_updates.get(mv_id) or loaded.get(mv_id)
            if entry is not None:
                # Withdrawn once: a later pass finds nothing of this connector left and leaves the object alone.
                self._withdraw(mv_id, mv_updates.setdefault(mv_id, entry), object_kinds, only_if_owned=True)

    def _kinds_by_metaverse_id(self, pairs: Sequence[tuple[str, int]]) -> dict[int, set[bool]]:
        """Per metaverse id of ``pairs`` (anchor, metaverse id): whether the objects of this connector leaving it are
        foreign security principals (True), other objects (False) or both (contributions.owned_slots)."""
        shared: set[str] = set()
        for chunk in chunks([anchor for anchor, _ in pairs], IN_CHUNK):
            shared.update(
                self.state.connection.execute(
                    sa.select(cs_object.c.anchor).where(
                        cs_object.c.connector == self.state.connector,
                        among(cs_object.c.anchor, chunk),
                        cs_object.c.object_type == SHARED_JOIN_TYPE,
                    )
                ).scalars()
            )
        kinds: dict[int, set[bool]] = defaultdict(set)
        for anchor, mv_id in pairs:
            kinds[mv_id].add(anchor in shared)
        return kinds

    def _withdraw(self, mv_id: int, entry: dict[str, Any], kinds: set[bool], *, only_if_owned: bool = False) -> None:
        """Drop from ``entry`` what this connector's objects of ``kinds`` contributed; a reference attribute whose
        winning contribution goes takes the rows of the next winner, another forest's manager for a person in two
        (the inbound reference step rebuilds them, references.follow_reference_winners), or loses them."""
        contributions = entry["contributions"]
        dropped = False
        for is_shared in kinds:
            slots = owned_slots(contributions, self.state.connector, self.state.shared_keys, shared=is_shared)
            references = dropped_reference_winners(contributions, slots)
            drop_slots(contributions, slots)
            dropped = dropped or bool(slots)
            self.state.reference_clears += [(mv_id, name) for name in sorted(references)]
        if only_if_owned and not dropped:
            return
        entry["dirty"] = True
        self.state.touched_mv.add(mv_id)

    def _source_links(self, mv_ids: Sequence[int]) -> dict[int, set[str]]:
        found: dict[int, set[str]] = defaultdict(set)
        for chunk in chunks(list(mv_ids), IN_CHUNK):
            query = sa.select(link.c.mv_id, link.c.connector).where(
                among(link.c.mv_id, chunk), link.c.link_type.in_(_SOURCE_LINKS)
            )
            for mv_id, connector in self.state.connection.execute(query):
                found[mv_id].add(connector)
        return found

    def _delete_metaverse(self, mv_ids: Sequence[int]) -> None:
        """Delete metaverse objects with no source left, deprovisioning what outbound rules made of them."""
        if not mv_ids:
            return
        self.state.counters["metaverse_deletes"] += len(mv_ids)
        self.state.note("metaverse", "deleted: no joined or projecting connector-space object remains")
        remaining: list[tuple[str, str, str, str]] = []
        for chunk in chunks(list(mv_ids), IN_CHUNK):
            remaining += self.state.connection.execute(
                sa.select(link.c.connector, link.c.anchor, link.c.link_type, mv_object.c.object_type)
                .join(mv_object, mv_object.c.id == link.c.mv_id)
                .where(among(link.c.mv_id, chunk))
            ).all()
            referencing = self.state.connection.execute(
                sa.select(mv_reference.c.mv_id).where(among(mv_reference.c.target_mv_id, chunk)).distinct()
            ).scalars()
            self.state.touched_mv.update(referencing)
            for table, column in (
                (mv_reference, mv_reference.c.mv_id),
                (mv_reference, mv_reference.c.target_mv_id),
                (mv_join_key, mv_join_key.c.mv_id),
                (link, link.c.mv_id),
                (mv_object, mv_object.c.id),
            ):
                self.state.connection.execute(sa.delete(table).where(among(column, chunk)))
        # Deprovisioned: what sync made (a provision link), and what it joined where a Provision rule writes (a joined
        # cloud user is deleted as a created one is). An object only Join rules update, or a source object, is
        # disconnected: sync never made it.
        outbound_connectors = {r.rule.connector for r in self.state.outbound_rules}
        provisioned_to = {
            (r.rule.connector, r.rule.source_object_type)
            for r in self.state.outbound_rules
            if r.rule.link_type == "Provision"
        }
        disconnected: dict[str, list[str]] = defaultdict(list)
        for connector, anchor, link_type, mv_type in remaining:
            if connector == self.state.connector:
                continue
            if connector in outbound_connectors and self.deletes(
                connector, anchor, link_type, provisioned=(connector, mv_type) in provisioned_to
            ):
                self.deprovision(connector, anchor)
            else:
                disconnected[connector].append(anchor)
        # Disconnected, not deleted: an update staged for it while the metaverse object was there is not sent.
        for connector, anchors in disconnected.items():
            self.staging.withdraw_updates(connector, anchors)
        self.state.touched_mv.difference_update(mv_ids)
        for mv_id in mv_ids:
            self.state.reference_summaries.pop(mv_id, None)

    def deletes(
        self, connector: str, anchor: str, link_type: str, *, provisioned: bool, attrs: dict[str, Any] | None = None
    ) -> bool:
        """Whether deprovisioning the linked object deletes it: sync made it (a ``provision`` link), or joined it where
        a Provision rule writes (``provisioned``) and took it over (:meth:`taken_over`); anything else is only
        disconnected. The one rule for an object leaving every rule's scope and for a deleted metaverse object."""
        return link_type == "provision" or (
            link_type == "join" and provisioned and self.taken_over(connector, anchor, attrs)
        )

    def taken_over(self, connector: str, anchor: str, attrs: dict[str, Any] | None = None) -> bool:
        """Whether a joined object of ``connector`` is sync's to delete: it holds a value in a hard-match attribute of
        the connector's join rules (the anchor an export stamped, or matched on), or no join rule there soft matches.
        A cloud-only object soft-matched (by UPN or mail) and never written holds none: it is disconnected, never
        deleted (the product soft matches only an object it provisions). ``attrs``: its stored values, if read."""
        soft, hard = self.hard_match(connector)
        if not soft:
            return True
        if attrs is None:
            stored = self.state.connection.execute(
                sa.select(cs_object.c.attrs).where(cs_object.c.connector == connector, cs_object.c.anchor == anchor)
            ).scalar()
            attrs = load_json(stored) if stored else {}
        lowered = {name.lower(): values for name, values in attrs.items()}
        return any(cell_texts(lowered.get(name)) for name in hard)

    def hard_match(self, connector: str) -> tuple[bool, set[str]]:
        """Whether a join rule reading ``connector`` soft matches, and its hard-match attributes (lower case)."""
        if connector not in self._hard_match:
            groups = [
                group
                for compiled in self.state.rules.rules
                if compiled.rule.direction == "inbound" and inbound_rule_applies(compiled.rule.connector, connector)
                for group in compiled.join_groups
            ]
            soft = any(pair.soft_match for group in groups for pair in group)
            hard = {pair.source.lower() for group in groups if not any(p.soft_match for p in group) for pair in group}
            self._hard_match[connector] = (soft, hard)
        return self._hard_match[connector]

    def soft_pairs(self, connector: str) -> frozenset[SoftPair]:
        """The soft-match pairs of the join rules reading ``connector`` (none when soft matching is blocked: the rule
        set has no soft group then), for the outbound half to find an unjoined object a create would duplicate."""
        if connector not in self._soft_pairs:
            self._soft_pairs[connector] = frozenset(
                (compiled.rule.source_object_type.casefold(), pair.source.lower(), pair.target.lower())
                for compiled in self.state.rules.rules
                if compiled.rule.direction == "inbound" and inbound_rule_applies(compiled.rule.connector, connector)
                for group in compiled.join_groups
                for pair in group
                if pair.soft_match
            )
        return self._soft_pairs[connector]

    def deprovision(self, connector: str, anchor: str) -> None:
        if anchor.startswith(PROVISIONAL_PREFIX):
            self.staging.withdraw_create(connector, anchor)
            return
        row = self.state.connection.execute(
            sa.select(cs_object.c.dn, cs_object.c.object_type).where(
                cs_object.c.connector == connector, cs_object.c.anchor == anchor
            )
        ).first()
        if row is None:
            return
        self.state.connection.execute(
            sa.delete(pending_export_reference).where(
                pending_export_reference.c.connector == connector, pending_export_reference.c.anchor == anchor
            )
        )
        # Groups' unsent member adds naming the object being deleted go too (their groups may not be evaluated again).
        self.staging.withdraw_member_adds(connector, [anchor])
        self.staging.stage(connector, anchor, row.object_type, row.dn, "delete", {})


def match_refusals(frame: pd.DataFrame, compiled: CompiledRule, group: Sequence[Any]) -> dict[str, tuple[str, str]]:
    """Objects a match must not join, with the error code and message: held by another engine (the rule's
    ``held_by_other_engine`` attribute is True), holding an administrator role (the rule's ``admin_roles``
    attribute has a value: Entra ID "won't match on-premises users with cloud users that have an admin role", by a
    hard match either), hard-matched while no sync engine made or adopted it (the rule's ``hard_match_proof``, kept
    only with BlockCloudObjectTakeover on), or soft-matched while holding another anchor (a value in a hard-match
    attribute, e.g. a different onPremisesImmutableId: never overwritten)."""
    refused: dict[str, tuple[str, str]] = {}
    if frame.empty:
        return refused
    if compiled.rule.admin_roles:
        for anchor, cell in zip(frame.index, column_of(frame, compiled.rule.admin_roles), strict=True):
            roles = cell_texts(cell)
            if roles:
                refused[anchor] = (
                    "admin-role",
                    f"it holds the administrator role {', '.join(roles)}: an on-premises object never takes over a "
                    "cloud administrator. To adopt it on purpose, remove its role assignments, let a sync join it, "
                    "then assign them again",
                )
    held = compiled.rule.held_by_other_engine
    if held:
        for anchor, cell in zip(frame.index, column_of(frame, held), strict=True):
            if anchor not in refused and any(str(value).casefold() == "true" for value in cell_values(cell)):
                refused[anchor] = (
                    "held-by-other-engine",
                    f"{held} is true: another sync engine still masters this object; turn off the other "
                    "engine's directory synchronization first (the object becomes cloud-managed), then sync again",
                )
    soft = any(pair.soft_match for pair in group)
    proof = compiled.rule.hard_match_proof
    if proof and not soft:
        rows = zip(frame.index, *(column_of(frame, name) for name in proof), strict=True)
        for anchor, *cells in rows:
            if anchor not in refused and not any(cell_texts(cell) for cell in cells):
                refused[anchor] = (
                    "invalid-hard-match",
                    "Another cloud created object with the same source anchor already exists in Microsoft Entra ID: "
                    f"no sync engine made or adopted it (none of {', '.join(proof)} holds a value) and "
                    "BlockCloudObjectTakeover refuses its hard match. To adopt it on purpose, turn the setting "
                    "off for one cycle (aadsync_block_cloud_object_takeover, --allow-cloud-object-takeover)",
                )
    if soft:
        hard = [p.source for g in compiled.join_groups if not any(q.soft_match for q in g) for p in g]
        for source in hard:
            for anchor, cell in zip(frame.index, column_of(frame, source), strict=True):
                values = cell_texts(cell)
                if values and anchor not in refused:
                    matched_on = ", ".join(p.source for p in group)
                    refused[anchor] = (
                        "anchor-mismatch",
                        f"soft match on {matched_on}, but this object's {source} holds {values[0]!r}, another "
                        "anchor: it is never overwritten; clear it in the tenant if the object is this one",
                    )
    return refused
