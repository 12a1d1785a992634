"""The shared state of one sync pass: what every part of the pass (inbound, joins, metaverse, references, outbound,
staging) reads and writes, made explicit in one object instead of attributes spread over one large class."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Connection

from airflow_provider_aadsync.engine.connectors.kinds import inbound_rule_applies
from airflow_provider_aadsync.engine.connectors.registry import schema_for
from airflow_provider_aadsync.engine.connectors.schema import ConnectorSchema
from airflow_provider_aadsync.engine.rules import CompiledRule, RuleSet
from airflow_provider_aadsync.engine.runs.import_run import ErrorSink
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
    sync_memo,
)
from airflow_provider_aadsync.engine.store.bulk import analyze_written, refresh_statistics
from airflow_provider_aadsync.engine.sync.contributions import SHARED_JOIN_TYPE, contributor_key

#: The tables a sync pass reads and writes (PostgreSQL's statistics of them are kept fresh, :meth:`SyncPass.analyze`).
PASS_TABLES = (
    cs_object,
    cs_reference,
    link,
    mv_object,
    mv_reference,
    mv_join_key,
    pending_export,
    pending_export_reference,
    sync_memo,
)


class SyncPass:
    """Inputs, derived rule views, counters and the working sets of one sync pass of one connector."""

    def __init__(
        self,
        store: Store,
        connection: Connection,
        rules: RuleSet,
        connector: str,
        run_id: int | None,
        errors: ErrorSink,
        *,
        schemas: Mapping[str, ConnectorSchema] | None,
        trace: dict[str, Any] | None,
        batch_rows: int,
    ):
        self.store = store
        self.connection = connection
        self.rules = rules
        self.connector = connector
        self.run_id = run_id
        self.errors = errors
        self.schemas = schemas
        self.schema = schema_for(connector, schemas)
        #: Every decision of the pass when preview asks for it (None in a normal run).
        self.trace = trace
        self.batch_rows = batch_rows
        self.counters: Counter[str] = Counter()
        self.inbound_rules: list[CompiledRule] = sorted(rules.inbound(connector), key=lambda r: r.rule.precedence)
        self.outbound_rules: list[CompiledRule] = sorted(rules.outbound(), key=lambda r: r.rule.precedence)
        self.rules_by_name = {compiled.rule.name: compiled for compiled in rules.rules}
        #: The contributor keys of this connector's rules for foreign security principals (contributions.owned_slots).
        self.shared_keys = frozenset(
            contributor_key(connector, compiled.rule.name)
            for compiled in self.inbound_rules
            if compiled.rule.source_object_type.casefold() == SHARED_JOIN_TYPE.casefold()
        )
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
        #: Metaverse objects the pass changed: the outbound half runs over them.
        self.touched_mv: set[int] = set()
        #: Connector-space anchors whose references the inbound references step must resolve again.
        self.reference_dirty: set[str] = set()
        #: Anchors linked during this pass (their references are resolved even when unchanged).
        self.newly_linked: set[str] = set()
        #: Anchors unlinked during this pass: the groups holding them resolve their references again (a member that
        #: left resolves to nothing now).
        self.unlinked: set[str] = set()
        #: Metaverse objects joined to an object of this connector in this pass (a cloud user matched, a planned
        #: creation replaced by the object found), or that lost theirs and stay (a cloud user deleted): the groups
        #: holding them go through the outbound rules too, so their member rows in this connector name it, or no
        #: longer name the object gone (synchronizer.py).
        self.relinked: set[int] = set()
        #: Per target connector: its unjoined objects with an unsent delete, and the anchors of those with no export
        #: pending, by hard-match value (unjoined.py), read once per pass at the first create that may rejoin one.
        self.unjoined_deletes: dict[
            str, tuple[dict[tuple[str, str, str], Any], dict[tuple[str, str, str], set[str]]]
        ] = {}
        #: The objects of this connector with a staged delete (unjoined.staged_deletes), read once per pass at the
        #: first unjoined object a rule might join.
        self.staged_deletes: set[str] | None = None
        #: (metaverse id, reference attribute) whose winning contribution went in this pass: their rows are rebuilt
        #: from the next winner's connector, or go (references.follow_reference_winners).
        self.reference_clears: list[tuple[int, str]] = []
        #: Live anchors processed (their pending import is cleared at the end).
        self.processed: list[str] = []
        #: Deleted anchors processed (their connector-space rows are forgotten at the end).
        self.tombstones: list[str] = []
        #: Metaverse id → what the inbound reference step needs of its contributions (references.reference_summary),
        #: kept for every object the pass loaded or wrote so that step does not read the contributions again.
        self.reference_summaries: dict[int, Any] = {}
        #: anchor → DN of the current batch, for per-object errors.
        self.batch_dns: dict[str, str] = {}
        #: Metaverse objects whose objects of this connector the pass evaluated (linked before or after): the sync
        #: memo is written for them at the end of the pass (memo.py).
        self.evaluated_mv: set[int] = set()
        #: Anchors (of any connector, or ``metaverse:<id>``) a per-object error was recorded for in this pass.
        self.error_anchors: set[str] = set()
        #: The store's count of rows written, by table, when the pass last analyzed the table (:meth:`analyze`).
        self._analyzed_at: Counter[str] = Counter(store.rows_written)

    def analyze(self, *, stale: bool = False) -> None:
        """Refresh PostgreSQL's statistics of the tables the pass filled since it last did (its rows count in
        PostgreSQL's own only once it commits), before a step reads them: planned on the statistics of the table
        before (none, in a first sync: or one connector's links, where the outbound half adds another's), a read can
        take minutes instead of a second. ``stale``: also the tables whose committed changes autovacuum has not
        analyzed yet (the pass's start, after an import), in a transaction of their own. Nothing on other stores, nor
        in a preview (bulk.py)."""
        if self.trace is not None or self.connection.dialect.name != "postgresql":
            return  # a preview is rolled back, and an analyze's reset of PostgreSQL's change counters is not
        written = self.store.rows_written - self._analyzed_at
        analyzed = analyze_written(self.connection, written, PASS_TABLES)
        if stale:
            # In a transaction of its own, committed at once: the pass may yet roll back.
            with self.store.engine.begin() as own:
                analyzed += refresh_statistics(own, [t for t in PASS_TABLES if t.name not in analyzed])
        for name in analyzed:
            self._analyzed_at[name] = self.store.rows_written[name]

    def keeps_alive(self, mv_type: str, connectors: set[str]) -> bool:
        """Does a link from one of ``connectors`` keep a metaverse object of ``mv_type`` alive? Yes when a projecting
        rule reads that connector (by name, or by kind: ``ad`` rules project ``ad_fabrikam`` objects too)."""
        projecting = self.authoritative.get(mv_type, set())
        return any(inbound_rule_applies(rule, connector) for rule in projecting for connector in connectors)

    def error(self, anchor: str | None, dn: str | None, code: str, message: str) -> None:
        """Record a per-object error (and in the trace when previewing); the pass goes on."""
        if anchor is not None:
            self.error_anchors.add(anchor)
        if self.trace is not None:
            self.trace.setdefault("errors", []).append({"code": code, "message": message})
        self.errors.record(anchor=anchor, dn=dn, code=code, message=message)

    def note(self, key: str, text: str) -> None:
        """Note a decision in the preview trace; a no-op in a normal run."""
        if self.trace is not None:
            if key == "decision":
                self.trace[key] = text
            else:
                self.trace.setdefault(key, []).append(text)
