"""One sync pass of one connector: connector space → metaverse (inbound), then metaverse → pending exports (outbound).

The pass works in batches of connector-space rows. Per batch, rules run as column operations (scoping, Direct and
Constant flows; expressions per row only), joins are indexed lookups in ``mv_join_key``, and precedence merges the
flows into each metaverse object's contributions. References (group members) are resolved afterwards with set
operations over whole reference tables, so a member imported later than its group is picked up in the same pass,
and a 250,000-member group is a pandas merge, not a Python loop. The outbound half then turns every metaverse object
the pass touched into pending exports for the other connectors: provisioning, updates with attribute deltas,
deprovisioning, and member add/remove rows.

The pass is cut along its stages: ``Inbound`` (batches, flows), ``Joins`` (join / project / disconnect),
``Metaverse`` (metaverse writes), ``References`` (inbound references), ``Outbound`` and ``Staging`` (pending
exports), sharing one explicit ``SyncPass`` state; ``Synchronizer`` wires them and runs the stages in order.

Everything happens inside the caller's transaction; ``trace`` (used by preview) records every decision.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from airflow_provider_aadsync.engine import progress
from airflow_provider_aadsync.engine.batching import chunks
from airflow_provider_aadsync.engine.connectors.schema import PROVISIONAL_PREFIX, ConnectorSchema
from airflow_provider_aadsync.engine.rules import RuleSet
from airflow_provider_aadsync.engine.runs.import_run import ErrorSink
from airflow_provider_aadsync.engine.store import Store, cs_object, cs_reference, link
from airflow_provider_aadsync.engine.store.among import among
from airflow_provider_aadsync.engine.sync.frames import (
    BATCH_ROWS,
    IN_CHUNK,
    collect_batch_garbage,
    collections_between_batches,
    frame_of_rows,
)
from airflow_provider_aadsync.engine.sync.inbound import Inbound
from airflow_provider_aadsync.engine.sync.joins import Joins
from airflow_provider_aadsync.engine.sync.lookups import quarantined
from airflow_provider_aadsync.engine.sync.memo import SyncMemo, forget_memo, pass_digest
from airflow_provider_aadsync.engine.sync.metaverse import Metaverse
from airflow_provider_aadsync.engine.sync.outbound import Outbound
from airflow_provider_aadsync.engine.sync.references import References
from airflow_provider_aadsync.engine.sync.staging import Staging
from airflow_provider_aadsync.engine.sync.state import SyncPass

__all__ = ["BATCH_ROWS", "IN_CHUNK", "PROVISIONAL_PREFIX", "Synchronizer"]


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
        self.state = SyncPass(
            store, connection, rules, connector, run_id, errors, schemas=schemas, trace=trace, batch_rows=batch_rows
        )
        self.staging = Staging(self.state)
        self.metaverse = Metaverse(self.state)
        self.joins = Joins(self.state, metaverse=self.metaverse, staging=self.staging)
        self.inbound = Inbound(self.state, joins=self.joins, metaverse=self.metaverse)
        self.references = References(self.state)
        self.outbound = Outbound(self.state, joins=self.joins, metaverse=self.metaverse, staging=self.staging)
        #: The sync memo (memo.py); None when previewing or when the rules read Now, GUID or RandomNum.
        digest = pass_digest(rules, connector, schemas) if trace is None else None
        self.memo = SyncMemo(self.state, digest) if digest is not None else None

    @property
    def counters(self) -> Counter[str]:
        """What the pass did (objects evaluated, projections, exports staged …), for the run's report."""
        return self.state.counters

    # ================================================================================================ the pass
    def run(self, mode: str, *, anchors: Sequence[str] | None = None, reevaluate: bool = False) -> None:
        """Sync every object (full), the objects with pending imports (delta), or the given ``anchors``.

        A full sync skips the objects the sync memo shows unchanged since a pass evaluated them without error (memo.py);
        ``reevaluate`` evaluates every object all the same (and memoizes them again)."""
        report = progress.current()
        # PostgreSQL plans the pass's reads from statistics autovacuum refreshes a minute or more after a commit: a
        # pass straight after a bulk write (an import, a first sync) would plan on stale ones (bulk.py).
        self.state.analyze(stale=True)
        self.metaverse.follow_join_targets()  # before any join looks a key up
        memo = self.memo if anchors is None else None
        skipping = memo is not None and mode == "full" and not reevaluate
        with collections_between_batches():
            report.start_phase("inbound", self._count(mode) if anchors is None else len(anchors))
            for batch in self._batches(mode, anchors):
                read = len(batch)
                if skipping:
                    batch = self._without_unchanged(batch)
                if len(batch):
                    self.inbound.inbound_batch(batch)
                report.advance(read)
                collect_batch_garbage()
            self.state.analyze()  # the tables the batches filled (a first sync's metaverse), before they are read
            self.references.inbound_references()  # part of the inbound phase (its final line comes after them)
            self.state.touched_mv |= self.outbound.holders_of_joined()
            if anchors is None and self.state.outbound_rules:
                self.state.touched_mv |= quarantined(self.state.connection)
            report.start_phase("outbound", len(self.state.touched_mv), unit="metaverse objects")
            self.outbound.outbound(sorted(self.state.touched_mv))  # advances the phase once per batch
            self.metaverse.waiting.flush()  # other connectors' unjoined objects a written join key may join now
            self._finish_connector_space()
            if memo is not None:
                self.state.analyze()
                memo.remember(self.state.evaluated_mv, full=mode == "full")
            elif anchors is None:
                forget_memo(self.state.connection, self.state.connector)
            report.end_phase()

    def _without_unchanged(self, batch: pd.DataFrame) -> pd.DataFrame:
        """The batch less the live linked objects whose metaverse object the memo shows unchanged: those are counted
        and their pending imports cleared, as a delta sync leaves an object without changes."""
        assert self.memo is not None
        linked = batch["mv_id"].notna() & ~batch["is_deleted"].astype(bool)
        if not linked.any():
            return batch
        # A full sync's batches come in the store's anchor order: its first and last anchors bound the batch there.
        anchors = batch["anchor"]
        first, last = anchors.iloc[0], anchors.iloc[-1]
        unchanged = self.memo.unchanged(first, last, (int(v) for v in batch.loc[linked, "mv_id"]))
        skipped = linked & batch["mv_id"].isin(unchanged)
        count = int(skipped.sum())
        if not count:
            return batch
        for counter in ("objects_evaluated", "connectors", "objects_unchanged"):
            self.state.counters[counter] += count
        self.state.processed += batch.loc[skipped & batch["pending_import"].notna(), "anchor"].tolist()
        return batch[~skipped].reset_index(drop=True)

    def _count(self, mode: str) -> int:
        """How many connector-space objects the pass reads (the inbound phase's total): one count query."""
        query = sa.select(sa.func.count()).where(
            cs_object.c.connector == self.state.connector, cs_object.c.attrs_hash != ""
        )
        if mode == "delta":
            query = query.where(cs_object.c.pending_import.is_not(None))
        return int(self.state.connection.execute(query).scalar_one())

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
            cs_object.c.pending_import,
        ]
        base = (
            sa.select(*columns)
            .select_from(
                cs_object.outerjoin(
                    link, sa.and_(link.c.connector == cs_object.c.connector, link.c.anchor == cs_object.c.anchor)
                )
            )
            .where(cs_object.c.connector == self.state.connector, cs_object.c.attrs_hash != "")
        )
        names = [
            "anchor",
            "dn",
            "object_type",
            "attrs",
            "is_deleted",
            "mv_id",
            "link_type",
            "link_rule",
            "pending_import",
        ]
        if anchors is not None:
            for chunk in chunks(list(anchors), self.state.batch_rows):
                rows = []
                for part in chunks(chunk, IN_CHUNK):
                    rows += self.state.connection.execute(base.where(among(cs_object.c.anchor, part))).all()
                yield frame_of_rows(rows, names)
            return
        if mode == "delta":
            base = base.where(cs_object.c.pending_import.is_not(None))
        last = None
        while True:
            query = base.order_by(cs_object.c.anchor).limit(self.state.batch_rows)
            if last is not None:
                query = query.where(cs_object.c.anchor > last)
            rows = self.state.connection.execute(query).all()
            if not rows:
                return
            last = rows[-1].anchor
            yield frame_of_rows(rows, names)

    # ============================================================================================ finish
    def _finish_connector_space(self) -> None:
        """Clear the pending imports sync has processed; forget deleted objects it has disconnected, and what was
        pending to export to them."""
        for chunk in chunks(self.state.processed, IN_CHUNK):
            self.state.connection.execute(
                sa.update(cs_object)
                .where(cs_object.c.connector == self.state.connector, among(cs_object.c.anchor, chunk))
                .values(pending_import=None)
            )
        self.staging.forget_deleted(self.state.tombstones)
        for chunk in chunks(self.state.tombstones, IN_CHUNK):
            for table in (cs_reference, cs_object):
                self.state.connection.execute(
                    sa.delete(table).where(table.c.connector == self.state.connector, among(table.c.anchor, chunk))
                )
