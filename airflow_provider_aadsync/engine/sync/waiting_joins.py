"""Unjoined objects of other connectors whose join a metaverse key written by this pass may now make.

A join rule of one connector can match a value that another connector's objects bring into the metaverse: a foreign
security principal of the resource forest (``ad_fabrikam``) joins the person of the account forest (``ad``) with its
objectSid, a linked mailbox joins its owner by objectSid, the optional same-person rule joins a user by mail. When the
person appears after its FSP was read (moved into a synced OU, or deleted and restored in AD), a sync of ``ad`` writes
the join key, but the FSP is an unjoined object its connector's last sync already evaluated: it has no pending import,
so the next delta sync of ``ad_fabrikam`` never reads it and the resource group's member stays missing (in the
metaverse and in Entra ID) until a full sync of that connector. The unjoined objects of an outbound target that hold
a new object's hard-match key get a pending import from the outbound half (unjoined.py); this does the same for every
other connector whose join rules match on the key, source connectors included, so that a delta cycle ends where a full
one would.

What a pass wrote is gathered by :meth:`WaitingJoins.note` (the join key values metaverse writes added or removed: a
removed value can end an ambiguous match, too), and :meth:`WaitingJoins.flush` marks the holders once, at the end of
the pass: only the connectors that have synced (an object of a connector never synced still has the pending import
its import gave it), never the pass's own (it has just evaluated its objects), and only their unjoined, live objects of
the types those join rules read, with no pending import yet. The connector space keeps values as JSON text with no
index on them, so the holders are found by one scan of those objects per connector and pass, and only when a watched
key was written; the values are typed and compared exactly as a join compares them (joins.py ``_join_matches``), which
a SQL comparison of the JSON text could not do (SIDs are compared in their binary form, case folding is Python's)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from airflow_provider_aadsync.engine.batching import chunks
from airflow_provider_aadsync.engine.connectors.kinds import KINDS
from airflow_provider_aadsync.engine.connectors.registry import schema_for
from airflow_provider_aadsync.engine.connectors.schema import PROVISIONAL_PREFIX, ConnectorSchema
from airflow_provider_aadsync.engine.rules import frame_from_records
from airflow_provider_aadsync.engine.runs.cs_writer import PENDING_UPDATE
from airflow_provider_aadsync.engine.store import cs_object, link, sync_state
from airflow_provider_aadsync.engine.store.among import among
from airflow_provider_aadsync.engine.sync.frames import BATCH_ROWS, IN_CHUNK, column_of, load_json, same_object
from airflow_provider_aadsync.engine.sync.schema import cell_values
from airflow_provider_aadsync.engine.sync.state import SyncPass

log = logging.getLogger(__name__)

#: A join pair of another connector's rule: its source attribute, the metaverse attribute (lower case) and whether the
#: values compare case-sensitively.
Pair = tuple[str, str, bool]


class WaitingJoins:
    """The join key values one pass wrote that other connectors' join rules match on, and the unjoined objects of
    those connectors holding them, given a pending import at the end of the pass."""

    def __init__(self, state: SyncPass) -> None:
        self.state = state
        #: Metaverse attributes (lower case) a join rule that may read another connector matches on: only their
        #: values are gathered. A rule naming a kind (``ad``) reads the pass's connector and the others of its kind.
        # Only for connectors that have synced (flush's): a first sync of the first connector watches nothing, so its
        # 100,000 new objects' keys are not gathered for no one (40 MiB at a first full sync of 100,000 users).
        others = set(state.connection.execute(sa.select(sync_state.c.connector)).scalars()) - {state.connector}
        self.watched: list[str] = sorted(
            {
                pair.target.lower()
                for compiled in state.rules.rules
                if compiled.rule.direction == "inbound"
                and compiled.rule.enabled
                and (
                    compiled.rule.connector.casefold() != state.connector.casefold()
                    or compiled.rule.connector.casefold() in KINDS
                )
                for group in compiled.join_groups
                for pair in group
            }
            if others
            else ()
        )
        self._written: dict[str, set[str]] = defaultdict(set)

    def note(self, before: Iterable[Mapping[str, Any]], after: Iterable[Mapping[str, Any]]) -> None:
        """Gather the watched key values one metaverse object gained or lost (``mv_join_key`` rows before and after
        its write): a gained value may be the one an unjoined object waits for, and a lost one may leave a single
        candidate where a match was ambiguous."""
        if not self.watched or self.state.trace is not None:  # a preview is rolled back: nothing to mark
            return
        old = {(row["attribute"], row["value"]) for row in before}
        new = {(row["attribute"], row["value"]) for row in after}
        watched = self.watched
        for attribute, value in old ^ new:
            if attribute in watched:
                self._written[attribute].add(value)

    def flush(self) -> None:
        """Give the unjoined objects of other connectors holding a value :meth:`note` gathered a pending import, so
        their connector's next sync, a delta one too, evaluates their join again. Once per pass (after its outbound
        half, whose recalls write metaverse objects too)."""
        written, self._written = {name: values for name, values in self._written.items() if values}, defaultdict(set)
        if not written:
            return
        connection = self.state.connection
        synced = sorted(set(connection.execute(sa.select(sync_state.c.connector)).scalars()) - {self.state.connector})
        for connector in synced:
            pairs = self._pairs(connector, written)
            if not pairs:
                continue
            due = self._holders(connector, pairs, written)
            for part in chunks(sorted(due), IN_CHUNK):
                connection.execute(
                    sa.update(cs_object)
                    .where(
                        cs_object.c.connector == connector,
                        among(cs_object.c.anchor, part),
                        cs_object.c.pending_import.is_(None),
                    )
                    .values(pending_import=PENDING_UPDATE)
                )
            if due:
                log.info(
                    "%d unjoined objects of %s hold a join key this sync of %s wrote: its next sync evaluates their "
                    "join again",
                    len(due),
                    connector,
                    self.state.connector,
                )

    def _pairs(self, connector: str, written: Mapping[str, set[str]]) -> dict[str, list[Pair]]:
        """Per source object type, the join pairs of ``connector``'s enabled inbound rules on a written attribute."""
        pairs: dict[str, list[Pair]] = defaultdict(list)
        for compiled in self.state.rules.inbound(connector):
            for group in compiled.join_groups:
                for pair in group:
                    target = pair.target.lower()
                    if (
                        target in written
                        and (pair.source, target, pair.case_sensitive) not in pairs[compiled.rule.source_object_type]
                    ):
                        pairs[compiled.rule.source_object_type].append((pair.source, target, pair.case_sensitive))
        return {object_type: found for object_type, found in pairs.items() if found}

    def _holders(self, connector: str, pairs: Mapping[str, list[Pair]], written: Mapping[str, set[str]]) -> set[str]:
        """The unjoined, live, imported objects of ``connector`` with no pending import holding a written value in a
        join pair's source attribute: one scan of those objects, a page at a time in anchor order (the primary key)."""
        folded = {name: {value.casefold() for value in values} for name, values in written.items()}
        schema = schema_for(connector, self.state.schemas)
        base = (
            sa.select(cs_object.c.anchor, cs_object.c.object_type, cs_object.c.attrs)
            .select_from(cs_object.outerjoin(link, same_object(link, cs_object)))
            .where(
                cs_object.c.connector == connector,
                cs_object.c.object_type.in_(sorted(pairs)),
                cs_object.c.is_deleted.is_(False),
                cs_object.c.pending_import.is_(None),
                cs_object.c.attrs_hash != "",  # imported, not a create sync planned
                ~cs_object.c.anchor.startswith(PROVISIONAL_PREFIX),
                link.c.anchor.is_(None),
            )
            .order_by(cs_object.c.anchor)
            .limit(BATCH_ROWS)
        )
        due: set[str] = set()
        last: str | None = None
        while True:  # by anchor ranges, not a cursor held open while other statements run on the connection
            query = base if last is None else base.where(cs_object.c.anchor > last)
            rows = self.state.connection.execute(query).all()
            if not rows:
                return due
            last = rows[-1][0]
            by_type: dict[str, list[tuple[str, str]]] = defaultdict(list)
            for anchor, object_type, attrs in rows:
                by_type[object_type].append((anchor, attrs))
            for object_type, found in by_type.items():
                due.update(_matching(found, pairs[object_type], schema, written, folded))


def _matching(
    found: Sequence[tuple[str, str]],
    pairs: Sequence[Pair],
    schema: ConnectorSchema,
    written: Mapping[str, set[str]],
    folded: Mapping[str, set[str]],
) -> list[str]:
    """The anchors of ``found`` (anchor, attributes as JSON) holding a written value in a pair's source attribute,
    its values typed by the connector's schema as the join's frame types them (an objectSid compares in its binary
    form, as the metaverse keeps it)."""
    anchors = [anchor for anchor, _ in found]
    frame = frame_from_records([load_json(attrs) for _, attrs in found], sorted({source for source, _, _ in pairs}))
    schema.type_columns(frame)
    matched: list[str] = []
    for source, target, case_sensitive in pairs:
        wanted = written[target] if case_sensitive else folded[target]
        for anchor, cell in zip(anchors, column_of(frame, source), strict=True):
            for value in cell_values(cell):
                text = str(value)
                if (text if case_sensitive else text.casefold()) in wanted:
                    matched.append(anchor)
                    break
    return matched
